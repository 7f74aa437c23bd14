package marathon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzRESTRequest sends arbitrary requests to the Marathon REST API of a
// one-server cluster: any method of the API's, any path under /v2, any
// query and any body. Whatever a client sends, the server answers (no
// panic, no broken connection), never with a server error other than 503,
// and a JSON answer is valid JSON.
func FuzzRESTRequest(f *testing.F) {
	s := startCluster(f, 1)[0]
	seeds := []struct {
		method      byte
		path, query string
		body        string
	}{
		{0, "/v2/apps", "embed=apps.tasks&embed=apps.counts", ""},
		{1, "/v2/apps", "", `{"id":"/fuzz/a","cmd":"sleep 1","instances":1,"cpus":0.1,"mem":32}`},
		{1, "/v2/apps", "", `{"id":"/fuzz/b","cmd":"sleep 1","container":{"type":"MESOS","volumes":[{"containerPath":"data","mode":"RW","persistent":{"size":1}}]}}`},
		{2, "/v2/apps/fuzz/a", "force=true", `{"instances":2}`},
		{2, "/v2/apps", "partialUpdate=false", `[{"id":"/fuzz/a","instances":0}]`},
		{3, "/v2/apps/fuzz/a", "force=maybe", `{"env":{"A":{"secret":"x"}}}`},
		{4, "/v2/apps/fuzz/a", "wipe=true", ""},
		{1, "/v2/apps/fuzz/a/restart", "force=true", ""},
		{0, "/v2/apps/fuzz/a/versions/not-a-time", "", ""},
		{0, "/v2/apps/fuzz/*/tasks", "", ""},
		{4, "/v2/apps/fuzz/a/tasks/fuzz_a.instance-x._app.1", "scale=true&wipe=true", ""},
		{1, "/v2/tasks/delete", "scale=true", `{"ids":["a","",null]}`},
		{0, "/v2/tasks", "status=running&status[]=staging", ""},
		{1, "/v2/groups", "", `{"id":"/fuzz/g","apps":[{"id":"x","cmd":"true"}],"groups":[{"id":"sub"}]}`},
		{2, "/v2/groups/fuzz/g", "force=true&dryRun=true", `{"scaleBy":1.5}`},
		{4, "/v2/groups/fuzz", "", ""},
		{0, "/v2/queue", "embed=lastUnusedOffers", ""},
		{4, "/v2/queue/fuzz/a/delay", "", ""},
		{0, "/v2/deployments", "", ""},
		{4, "/v2/deployments/nope", "force=true", ""},
		{0, "/v2/info", "", ""},
		{0, "/v2/leader", "", ""},
		{1, "/v2/apps", "", "\x00\xff{"},
		{1, "/v2/apps", "", `{"id":"/` + strings.Repeat("a", 300) + `","instances":1e12}`},
	}
	for _, sd := range seeds {
		f.Add(sd.method, sd.path, sd.query, []byte(sd.body))
	}
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions}
	client := &http.Client{}
	f.Fuzz(func(t *testing.T, m byte, path, query string, body []byte) {
		if !strings.HasPrefix(path, "/") || strings.Contains(path, "events") {
			return // /v2/events streams until the client leaves
		}
		u, err := url.Parse(s.url() + path)
		if err != nil {
			return
		}
		u.RawQuery = query
		method := methods[int(m)%len(methods)]
		if method == http.MethodDelete && strings.HasPrefix(u.Path, "/v2/leader") {
			return // abdicating would leave the fuzzer without a leader
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/json")
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: no answer: %v", method, u, err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("%s %s: reading the answer: %v", method, u, err)
		}
		if res.StatusCode >= 500 && res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s %s with body %q: status %d: %s", method, u, body, res.StatusCode, b)
		}
		if strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") && len(b) > 0 && !json.Valid(b) {
			t.Fatalf("%s %s: invalid JSON answer: %q", method, u, b)
		}
	})
}
