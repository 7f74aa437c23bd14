// Package ui is Berth's web UI: a single-page app (TypeScript, Preact,
// Vite) built into dist/ and embedded in the binary, so that every server
// serves it at /ui/ on its API port. The app calls the same Connect API as
// the CLI, through clients generated from proto/ into src/gen.
//
// Rebuild after changing src/ or the protos:
//
//	npm --prefix ui ci && make -C ui
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed all:dist
var dist embed.FS

// Prefix is the path the UI is served under.
const Prefix = "/ui/"

// Handler serves the built UI under Prefix. The content is static and
// public: the data it shows is fetched by the browser with the ACL token the
// user enters.
func Handler() http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		// dist is embedded at build time; a missing one fails the build.
		panic("ui: embedded dist: " + err.Error())
	}
	files := http.StripPrefix(Prefix, http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// Everything the UI loads comes from this server; nothing may frame
		// it (clickjacking of the kill and wipe buttons).
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// index.html must be fetched again after an upgrade; the assets'
		// names do not change between builds, so they are revalidated too.
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}
