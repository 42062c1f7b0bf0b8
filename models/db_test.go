package models_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"keysmith/clock"
	"keysmith/models"
	"keysmith/testutil"
)

// A new SQLite file, its write-ahead log and shared memory are readable by
// the owner only; a file the operator made keeps the mode they gave it.
func TestSQLiteFilesAreNotWorldReadable(t *testing.T) {
	path := testutil.DatabaseURL(t, "sqlite")
	db, err := models.Open(path, clock.NewFake(testutil.Epoch))
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close(db)
	if _, err := models.Migrate(db); err != nil { // writes: the -wal and -shm files appear
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		info, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %o, want 600", filepath.Base(f), mode)
		}
	}

	existing := filepath.Join(t.TempDir(), "shared.db")
	if err := os.WriteFile(existing, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(existing, 0o640); err != nil { // whatever the umask
		t.Fatal(err)
	}
	db2, err := models.Open(existing, clock.NewFake(testutil.Epoch))
	if err != nil {
		t.Fatal(err)
	}
	defer models.Close(db2)
	if _, err := models.Migrate(db2); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(existing); err != nil || info.Mode().Perm() != fs.FileMode(0o640) {
		t.Fatalf("an existing file's mode changed: %v %v", info.Mode(), err)
	}
}
