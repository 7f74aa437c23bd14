package rpc_test

import (
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
