package keys

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"keysmith/models"
)

// ActionLeaked is the audit action of a key revoked because a secret
// scanner found it in a public place.
const ActionLeaked = "key.leaked"

// MaxLeakReports bounds one call of RevokeLeaked: GitHub batches matches,
// a few at a time; a thousand is far beyond any real batch.
const MaxLeakReports = 1000

// Labels of a LeakResult, as GitHub's secret-scanning partner program
// names them.
const (
	TruePositive  = "true_positive"
	FalsePositive = "false_positive"
)

// LeakReport is one match a secret scanner reports, in the shape of
// GitHub's secret-scanning partner program.
type LeakReport struct {
	Token  string // the text that matched the key pattern
	Type   string // the scanner's name for the pattern
	URL    string // where it was found
	Source string // what it was found in: content, commit, issue_comment, npm, …
}

// LeakResult is the verdict on one report.
type LeakResult struct {
	TokenRaw  string
	TokenType string
	Label     string // TruePositive: the token is one of our keys; FalsePositive otherwise
	// Key is the key the token is, as it stands after the report, with its
	// creator loaded; nil for a false positive.
	Key *models.APIKey
	// WorkspaceID and CreatedByID say whom to tell (0 and nil for a false
	// positive; CreatedByID is nil too for a key created by a key or an app).
	WorkspaceID int64
	CreatedByID *int64
	// Revoked is true when this report revoked the key; false when it was
	// revoked already (or a report earlier in the batch revoked it).
	Revoked bool
}

// OnLeak registers f to run after each revocation of a leaked key has
// committed, with the key as revoked and the report that found it: the
// place to tell the key's owners (mail, the key.leaked webhook). It runs in
// RevokeLeaked's goroutine, with a context that the scanner hanging up
// does not cancel: the key is revoked by then, and its owners must know.
func (s *Service) OnLeak(f func(ctx context.Context, k models.APIKey, r LeakReport)) { s.leaked = f }

func (s *Service) onLeak(ctx context.Context, k models.APIKey, r LeakReport) {
	if s.leaked != nil {
		s.leaked(context.WithoutCancel(ctx), k, r)
	}
}

// Lengths of the report's text kept in the audit log.
const (
	leakURLMax    = 500
	leakSourceMax = 64
)

// lookupChunk bounds the hashes one lookup query binds: far below
// SQLite's and PostgreSQL's limits on parameters.
const lookupChunk = 500

// RevokeLeaked takes the reports of a secret scanner and revokes at once
// every active key they name. A token is checked against the key format
// and its checksum first, so garbage costs no database lookup; the
// well-formed ones are looked up by hash together. A key already revoked
// is ours (a true positive) but is not revoked again, nor audited again.
// Each revocation is its own transaction, audited as ActionLeaked with
// where the key leaked, and evicted from every replica's cache like any
// revocation. The results follow the reports' order.
func (s *Service) RevokeLeaked(ctx context.Context, reports []LeakReport) ([]LeakResult, error) {
	out := make([]LeakResult, len(reports))
	hashes := make([]string, len(reports)) // "" for a token that is not a key
	var lookup []string
	for i, r := range reports {
		out[i] = LeakResult{TokenRaw: r.Token, TokenType: r.Type, Label: FalsePositive}
		if _, err := Parse(r.Token, s.prefix); err == nil {
			hashes[i] = Hash(r.Token)
			lookup = append(lookup, hashes[i])
		}
	}
	found, err := s.keysByHash(ctx, lookup)
	if err != nil {
		return nil, err
	}
	for i, r := range reports {
		k, ok := found[hashes[i]]
		if !ok {
			continue
		}
		if k.RevokedAt == nil {
			if out[i].Revoked, err = s.revokeLeaked(ctx, k, r); err != nil {
				return nil, err
			}
		}
		key := *k
		out[i].Label, out[i].Key, out[i].WorkspaceID, out[i].CreatedByID = TruePositive, &key, k.WorkspaceID, k.CreatedByID
	}
	return out, nil
}

// keysByHash loads the keys with these hashes, with their creators, in
// queries served by the unique index api_keys_secret_hash_idx.
func (s *Service) keysByHash(ctx context.Context, hashes []string) (map[string]*models.APIKey, error) {
	found := make(map[string]*models.APIKey, len(hashes))
	for start := 0; start < len(hashes); start += lookupChunk {
		chunk := hashes[start:min(start+lookupChunk, len(hashes))]
		var ks []models.APIKey
		if err := s.db.WithContext(ctx).Preload("CreatedBy").Where("secret_hash IN ?", chunk).Find(&ks).Error; err != nil {
			return nil, err
		}
		for i := range ks {
			found[ks[i].SecretHash] = &ks[i]
		}
	}
	return found, nil
}

// revokeLeaked revokes k as Revoke does (one transaction: the guarded
// update, the key counts, the audit event and the change feed's notice;
// then the local cache's eviction), and updates k. It reports false when
// the key was revoked meanwhile, by another request or an earlier report
// of the same batch.
func (s *Service) revokeLeaked(ctx context.Context, k *models.APIKey, r LeakReport) (bool, error) {
	now := s.clock.Now()
	actor := Actor{Label: "secret scanning"}
	source := models.StorableText(r.Source, leakSourceMax)
	if source != "" {
		actor.Label += " (" + source + ")"
	}
	detail := "found in a public place by a secret scanner; revoked at once"
	if u := models.StorableText(r.URL, leakURLMax); u != "" {
		detail = fmt.Sprintf("found at %s by a secret scanner; revoked at once", u)
	}
	if source != "" {
		detail += " (source: " + source + ")"
	}
	revoked := false
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var err error
		if revoked, err = revokeIn(tx, k, actor, now); err != nil {
			return err
		}
		if !revoked {
			// Revoked meanwhile: nothing to do but say when.
			var current models.APIKey
			err := tx.Select("revoked_at").Take(&current, k.ID).Error
			k.RevokedAt = current.RevokedAt
			return err
		}
		return s.audit(tx, k.WorkspaceID, actor, ActionLeaked, *k, detail)
	})
	if err != nil || !revoked {
		return false, err
	}
	s.changed(k.ID)
	s.onLeak(ctx, *k, r)
	return true, nil
}
