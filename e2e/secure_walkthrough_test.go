package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecurePostgresWalkthrough runs issue 10's promise end to end: a
// 3-server cluster with mutual TLS, a gossip key and ACLs, driven through a
// follower with a write token, runs the PostgreSQL walkthrough (add, stop,
// start, remove) and keeps its rows; with no token or a read token, or
// without a client certificate, the same writes fail and change nothing.
func TestSecurePostgresWalkthrough(t *testing.T) {
	requirePostgres(t)
	p := newPKI(t, "s1", "s2", "s3")
	keyFile := writeFile(t, "gossip.key", berthOK(t, "cluster", "keygen"))
	// Tasks run as user postgres: its work dir must be reachable.
	mesosAddr, mesosDir := freePort(t), traversableTempDir(t)
	startProc(t, "mesos-local", "mesos-local", "--listen", mesosAddr, "--work-dir", mesosDir)
	eventually(t, time.Minute, "mesos-local to answer", func() bool { return len(mesosStateOrNil(mesosAddr)) > 0 })

	var servers []*secureServer
	for _, n := range []string{"s1", "s2", "s3"} {
		s := newSecureServer(t, n)
		s.mesos = mesosAddr
		servers = append(servers, s)
	}
	for _, s := range servers {
		var join []string
		for _, o := range servers {
			if o != s {
				join = append(join, o.gossip)
			}
		}
		s.args = append(p.secureArgs(s, s.name, keyFile, 3, join), "--acl-enabled", "--task-users", "postgres")
		s.p = startProc(t, s.name, s.args...)
	}
	var boot tokenJSON
	eventually(t, 2*time.Minute, "acl bootstrap", func() bool {
		r := p.cli(t, servers[0].api, "-o", "json", "acl", "bootstrap")
		if r.err != nil {
			return false
		}
		boot = decodeToken(t, r.stdout)
		return true
	})
	t.Setenv("BERTH_TOKEN", boot.SecretID) // for the test's own lookups
	var follower *secureServer
	eventually(t, time.Minute, "a follower that knows the leader", func() bool {
		for _, s := range servers {
			if l := p.secureLeader(t, s.api); l != "" && l != s.name {
				follower = s
				return true
			}
		}
		return false
	})
	write := decodeToken(t, p.mustCLI(t, follower.api, "-o", "json", "acl", "token", "create", "--policy", "write"))
	read := decodeToken(t, p.mustCLI(t, follower.api, "-o", "json", "acl", "token", "create", "--policy", "read"))
	as := func(secret string, args ...string) cliResult {
		return p.cli(t, follower.api, append([]string{"--token", secret}, args...)...)
	}
	mustAs := func(secret string, args ...string) string {
		t.Helper()
		r := as(secret, args...)
		if r.err != nil {
			t.Fatalf("berth %s: %v\n%s%s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
		}
		return r.stdout
	}
	healthy := func() taskJSON {
		t.Helper()
		var got taskJSON
		eventually(t, 4*time.Minute, "PostgreSQL running and healthy", func() bool {
			var out struct{ Tasks []taskJSON }
			if json.Unmarshal([]byte(mustAs(write.SecretID, "-o", "json", "task", "list", "--app", "/postgres")), &out) != nil || len(out.Tasks) != 1 {
				return false
			}
			tk := out.Tasks[0]
			if tk.State != "TASK_RUNNING" || tk.Healthy == nil || !*tk.Healthy || len(tk.Ports) == 0 {
				return false
			}
			got = tk
			return true
		})
		return got
	}

	example, err := filepath.Abs("../deploy/examples/postgres.json")
	if err != nil {
		t.Fatal(err)
	}
	// Refused writes change nothing.
	for _, tc := range []struct {
		name string
		r    cliResult
		want string
	}{
		{"no token", as("", "app", "add", example), "unauthenticated"},
		{"read token", as(read.SecretID, "app", "add", example), "permission_denied"},
		{"no client certificate", cli(t, "https://"+follower.api, "--ca-file", p.ca(), "--token", write.SecretID, "app", "add", example), "certificate"},
	} {
		if tc.r.err == nil || !strings.Contains(tc.r.stderr, tc.want) {
			t.Fatalf("%s: err %v, stderr %q; want %s", tc.name, tc.r.err, tc.r.stderr, tc.want)
		}
	}
	if out := mustAs(write.SecretID, "app", "list"); strings.Contains(out, "/postgres") {
		t.Fatalf("a refused add created the app:\n%s", out)
	}

	mustAs(write.SecretID, "app", "add", example, "--wait")
	tk := healthy()
	pid := persistenceID(t, tk)
	conn := pgConnect(t, tk.Ports[0])
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE walk (n int); INSERT INTO walk VALUES (1), (2), (3)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	mustAs(write.SecretID, "app", "stop", "/postgres", "--wait")
	if r := as(read.SecretID, "app", "start", "/postgres"); r.err == nil || !strings.Contains(r.stderr, "permission_denied") {
		t.Fatalf("start with a read token: err %v, stderr %q", r.err, r.stderr)
	}
	mustAs(write.SecretID, "app", "start", "/postgres", "--wait")
	tk = healthy()
	if got := persistenceID(t, tk); got != pid {
		t.Fatalf("restarted on volume %s, want the same %s", got, pid)
	}
	conn = pgConnect(t, tk.Ports[0])
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM walk").Scan(&n); err != nil || n != 3 {
		t.Fatalf("rows after stop and start: %d, %v", n, err)
	}
	conn.Close(ctx)

	mustAs(write.SecretID, "app", "remove", "/postgres", "--wait")
	eventually(t, 2*time.Minute, "the volume destroyed and the reservation released", func() bool {
		return len(volumeDirs(t, mesosDir)) == 0 && len(reservedResources(t, mesosAddr)) == 0
	})
}
