package marathon_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/berth-dev/berth/rpc/marathon"
)

// placeholders of the golden file's expected strings.
var placeholders = strings.NewReplacer(
	regexp.QuoteMeta("<id>"), `[A-Za-z0-9._-]+`,
	regexp.QuoteMeta("<ts>"), `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`,
	regexp.QuoteMeta("<any>"), `(?s:.+)`,
)

// match compares a decoded answer with an expected value: objects key by
// key (the same keys), arrays element by element, strings as patterns.
func match(path string, want, got any) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: got %v, want an object", path, got)
		}
		var wk, gk []string
		for k := range w {
			wk = append(wk, k)
		}
		for k := range g {
			gk = append(gk, k)
		}
		sort.Strings(wk)
		sort.Strings(gk)
		if !slices.Equal(wk, gk) {
			return fmt.Errorf("%s: keys %v, want %v", path, gk, wk)
		}
		for k := range w {
			if err := match(path+"/"+k, w[k], g[k]); err != nil {
				return err
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: got %v, want %d elements", path, got, len(w))
		}
		for i := range w {
			if err := match(fmt.Sprintf("%s(%d)", path, i), w[i], g[i]); err != nil {
				return err
			}
		}
	case string:
		g, ok := got.(string)
		re := regexp.MustCompile("^" + placeholders.Replace(regexp.QuoteMeta(w)) + "$")
		if !ok || !re.MatchString(g) {
			return fmt.Errorf("%s: got %v, want %q", path, got, w)
		}
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return fmt.Errorf("%s: got %v, want %v", path, got, want)
		}
	}
	return nil
}

// TestMarathonExamples replays the request/response examples of
// Marathon's REST reference (testdata/marathon-examples.json) against a
// server: status, headers, and the JSON shape of each answer.
func TestMarathonExamples(t *testing.T) {
	raw, err := os.ReadFile("testdata/marathon-examples.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Steps []struct {
			Name, Method, Path, RawBody string
			Body                        json.RawMessage
			Status                      int
			Headers                     map[string]string
			Response                    any
			Keys, Absent                []string
		}
	}
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	s := startCluster(t, 1)[0]
	for _, st := range golden.Steps {
		var body any
		switch {
		case st.RawBody != "":
			body = st.RawBody
		case st.Body != nil:
			body = string(st.Body)
		}
		r := do(t, s, st.Method, st.Path, body)
		if r.status != st.Status {
			t.Errorf("%s: status %d, want %d (%s)", st.Name, r.status, st.Status, r.body)
			continue
		}
		for h, v := range st.Headers {
			if err := match(h, v, r.header.Get(h)); err != nil {
				t.Errorf("%s: header %v", st.Name, err)
			}
		}
		var got any
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Errorf("%s: body is not JSON: %s", st.Name, r.body)
			continue
		}
		if st.Response != nil {
			if err := match("", st.Response, got); err != nil {
				t.Errorf("%s: %v\n%s", st.Name, err, r.body)
			}
		}
		obj, _ := got.(map[string]any)
		for _, k := range st.Keys {
			if _, ok := obj[k]; !ok {
				t.Errorf("%s: no key %s in %s", st.Name, k, r.body)
			}
		}
		for _, k := range st.Absent {
			if _, ok := obj[k]; ok {
				t.Errorf("%s: key %s should be absent: %s", st.Name, k, r.body)
			}
		}
	}
}

// Every route of marathon.Routes (the list the permission table covers)
// is served: none answers "URI not found" or a wrong method.
func TestRoutesServed(t *testing.T) {
	s := startCluster(t, 1)[0]
	fill := strings.NewReplacer("{id}", "r", "{taskId}", "r.instance-1._app.1", "{version}", "2020-01-01T00:00:00Z")
	for _, rt := range marathon.Routes {
		if rt.Path == "/v2/events" || rt.Method == "DELETE" && rt.Path == "/v2/leader" {
			continue // a stream; an abdication (tested in TestInfoLeaderPing)
		}
		var body any
		if rt.Method == "POST" || rt.Method == "PUT" || rt.Method == "PATCH" {
			body = "{}"
		}
		r := do(t, s, rt.Method, fill.Replace(rt.Path), body)
		if r.status == 405 || strings.Contains(string(r.body), "URI not found") {
			t.Errorf("%s %s is not served: %d %s", rt.Method, rt.Path, r.status, r.body)
		}
	}
}
