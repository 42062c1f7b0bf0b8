package accounts

// DummyHash reports whether s has made its dummy hash yet, and the hash.
func DummyHash(s *Service) (bool, []byte) {
	if !s.dummyMade.Load() {
		return false, nil
	}
	return true, s.dummyHash()
}
