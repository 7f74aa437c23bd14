package rpc_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// TestPlainRoutesBehindACL: with ACLs on, /metrics and the debug endpoints
// need an operator token (they show the cluster's inside and profiles),
// while /v1/health and /v1/ready stay open for load balancers.
func TestPlainRoutesBehindACL(t *testing.T) {
	s := startCluster(t, 1, clusterOpts{aclEnabled: true, metrics: true})[0]
	ctx := ctxFor(t, time.Minute)
	boot, err := withSecret(s, "").acl.Bootstrap(ctx, connect.NewRequest(&v1.BootstrapRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path, secret string) int {
		req, _ := http.NewRequest(http.MethodGet, s.url()+path, nil)
		if secret != "" {
			req.Header.Set("Authorization", "Bearer "+secret)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	for path, want := range map[string]int{"/v1/health": 200, "/metrics": 401, "/v1/debug/scheduler": 401} {
		if got := get(path, ""); got != want {
			t.Errorf("GET %s without a token: %d, want %d", path, got, want)
		}
	}
	if got := get("/metrics", boot.Msg.GetSecretId()); got != 200 {
		t.Errorf("GET /metrics with a management token: %d", got)
	}
}

// TestUIIsPublic: with ACLs on, the web UI's files are served without a
// token (they hold no state), /ui redirects to /ui/, and the API calls the
// UI makes still need one.
func TestUIIsPublic(t *testing.T) {
	files := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ui "+r.URL.Path) })
	s := startCluster(t, 1, clusterOpts{aclEnabled: true, ui: files})[0]
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Get(s.url() + "/ui/assets/app.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(body) != "ui /ui/assets/app.js" {
		t.Errorf("GET /ui/assets/app.js without a token: %d %q", res.StatusCode, body)
	}
	res, err = client.Get(s.url() + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want a redirect to /ui/", res.StatusCode, res.Header.Get("Location"))
	}
	_, err = clientsFor(s).app.ListApps(ctxFor(t, time.Minute), connect.NewRequest(&v1.ListAppsRequest{}))
	wantCode(t, err, connect.CodeUnauthenticated)
}
