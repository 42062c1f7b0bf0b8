// Package assets embeds the dashboard's static files (htmx, CSS, JS) so the
// binary is self-contained, and names them by content hash for caching.
package assets

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"sync"
)

//go:embed htmx.min.js app.css app.js passkeys.js favicon.ico favicon.svg
var FS embed.FS

var versions = sync.OnceValue(func() map[string]string {
	out := map[string]string{}
	_ = fs.WalkDir(FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := FS.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[path] = hex.EncodeToString(sum[:6])
		return nil
	})
	return out
})

// Path is the URL of an embedded file, with its content hash as a version,
// so browsers may cache it forever and still see every change.
func Path(name string) string {
	return "/assets/" + name + "?v=" + versions()[name]
}

// Version is the content hash Path puts in the URL.
func Version(name string) string { return versions()[name] }
