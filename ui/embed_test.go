package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHandlerServesTheBuild: the embedded build is served under /ui/ with
// its content types, the page loads its assets from /ui/, and every answer
// carries the headers that keep the page from being framed or from loading
// anything from elsewhere.
func TestHandlerServesTheBuild(t *testing.T) {
	h := Handler()
	get := func(path string) *http.Response {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Result()
	}
	res := get("/ui/")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui/: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, asset := range []string{"/ui/assets/app.js", "/ui/assets/index.css"} {
		if !strings.Contains(string(body), `"`+asset+`"`) {
			t.Errorf("index.html does not load %s:\n%s", asset, body)
		}
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
	for path, ctype := range map[string]string{"/ui/assets/app.js": "text/javascript", "/ui/assets/index.css": "text/css"} {
		if res := get(path); res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %s, want 200 %s", path, res.StatusCode, res.Header.Get("Content-Type"), ctype)
		}
	}
	if res := get("/ui/nothing-here.js"); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET a missing file: %d, want 404", res.StatusCode)
	}
}
