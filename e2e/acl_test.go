package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// tokenJSON is the CLI's JSON of a created token.
type tokenJSON struct {
	Token struct {
		AccessorID string `json:"accessorId"`
		Policy     string `json:"policy"`
		AppPrefix  string `json:"appPrefix"`
	} `json:"token"`
	SecretID string `json:"secretId"`
}

func decodeToken(t *testing.T, out string) tokenJSON {
	t.Helper()
	var tok tokenJSON
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.SecretID == "" || tok.Token.AccessorID == "" {
		t.Fatalf("token output %q: %v (want a secret and an accessor)", out, err)
	}
	return tok
}

// TestACLThreeServers runs a 3-server cluster with --acl-enabled:
// bootstrap once, a write token for /team-a/ writes through a follower;
// with no token, a read token or a token of another prefix each write
// fails (Unauthenticated, PermissionDenied) and nothing changes; token
// self works; the leader logs the accepted write with the accessor.
func TestACLThreeServers(t *testing.T) {
	c := startCluster(t, 3, "--acl-enabled")
	var boot tokenJSON
	eventually(t, 2*time.Minute, "acl bootstrap", func() bool {
		r := cli(t, c.servers[0].api, "-o", "json", "acl", "bootstrap")
		if r.err != nil {
			return false
		}
		boot = decodeToken(t, r.stdout)
		return true
	})
	if r := cli(t, c.servers[1].api, "acl", "bootstrap"); r.err == nil || !strings.Contains(r.stderr, "already bootstrapped") {
		t.Fatalf("second bootstrap: err %v, stderr %q; want it refused", r.err, r.stderr)
	}
	// The helpers (leader lookups, lists) run with the management token.
	t.Setenv("BERTH_TOKEN", boot.SecretID)
	lead := c.waitLeader(c.servers)
	f := c.others(lead)[0]

	write := decodeToken(t, mustCLI(t, f.api, "-o", "json", "acl", "token", "create", "--policy", "write", "--app-prefix", "/team-a/", "--description", "team a"))
	read := decodeToken(t, mustCLI(t, f.api, "-o", "json", "acl", "token", "create", "--policy", "read"))
	teamB := decodeToken(t, mustCLI(t, f.api, "-o", "json", "acl", "token", "create", "--policy", "write", "--app-prefix", "/team-b/"))
	if write.Token.Policy != "ACL_POLICY_WRITE" || write.Token.AppPrefix != "/team-a/" {
		t.Fatalf("write token = %+v", write.Token)
	}

	mustCLI(t, f.api, "--token", write.SecretID, "app", "add", residentApp(t, "/team-a/db", 1), "--wait")
	eventually(t, 2*time.Minute, "the team-a task to run", func() bool { return len(runningTasks(t, f.api, "/team-a/db")) == 1 })
	before := appVersion(t, lead.api, "/team-a/db")

	other := residentApp(t, "/team-a/other", 1)
	for _, tc := range []struct{ name, secret, want string }{
		{"no token", "", "unauthenticated"},
		{"unknown token", "11111111-2222-3333-4444-555555555555", "unauthenticated"},
		{"read token", read.SecretID, "permission_denied"},
		{"team-b token", teamB.SecretID, "permission_denied"},
	} {
		for _, args := range [][]string{
			{"app", "add", other},
			{"app", "stop", "/team-a/db"},
			{"app", "remove", "/team-a/db"},
		} {
			r := cli(t, f.api, append([]string{"--token", tc.secret}, args...)...)
			if r.err == nil || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("%s: berth %s: err %v, stderr %q; want %s", tc.name, strings.Join(args, " "), r.err, r.stderr, tc.want)
			}
		}
	}
	if after := appVersion(t, lead.api, "/team-a/db"); after != before {
		t.Errorf("app changed by refused writes: version %s, then %s", before, after)
	}
	if n := len(runningTasks(t, lead.api, "/team-a/db")); n != 1 {
		t.Errorf("%d running tasks after refused writes, want 1", n)
	}
	if out := mustCLI(t, lead.api, "app", "list"); strings.Contains(out, "/team-a/other") {
		t.Errorf("refused app created:\n%s", out)
	}

	self := mustCLI(t, f.api, "--token", write.SecretID, "acl", "token", "self")
	if !strings.Contains(self, write.Token.AccessorID) || !strings.Contains(self, "write") || !strings.Contains(self, "/team-a/") {
		t.Errorf("token self:\n%s", self)
	}
	list := mustCLI(t, f.api, "acl", "token", "list")
	if strings.Contains(list, write.SecretID) || strings.Count(list, "\n") != 5 {
		t.Errorf("token list (want 4 tokens, no secrets):\n%s", list)
	}

	audit := regexp.MustCompile(`msg=audit (component=api )?accessor=` + write.Token.AccessorID + ` method=/berth.v1.AppService/CreateApp apps=\[/team-a/db\] request_id=\S+`)
	if n := len(audit.FindAllString(lead.p.out.String(), -1)); n != 1 {
		t.Errorf("leader %s logged %d audit lines for the create, want 1", lead.name, n)
	}
	for _, s := range c.others(lead) {
		if audit.MatchString(s.p.out.String()) {
			t.Errorf("follower %s audited the forwarded create", s.name)
		}
	}
}

// appVersion is an app's current version.
func appVersion(t *testing.T, api, id string) string {
	t.Helper()
	var show struct {
		Version string `json:"version"`
	}
	cliJSON(t, api, &show, "app", "show", id)
	if show.Version == "" {
		t.Fatalf("app %s has no version", id)
	}
	return show.Version
}
