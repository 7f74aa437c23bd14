package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pki is the directory `berth tls` wrote a CA and certificates into.
type pki struct {
	dir string
}

func (p pki) ca() string { return filepath.Join(p.dir, "berth-agent-ca.pem") }
func (p pki) server(name string) (string, string) {
	return filepath.Join(p.dir, "global-server-berth-"+name+".pem"), filepath.Join(p.dir, "global-server-berth-"+name+"-key.pem")
}
func (p pki) client() (string, string) {
	return filepath.Join(p.dir, "global-client-berth-0.pem"), filepath.Join(p.dir, "global-client-berth-0-key.pem")
}

// berthOK runs the berth binary with args (no --addr) and returns stdout.
func berthOK(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := execBerth(args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("berth %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// newPKI creates a CA, server certificates for names and one client
// certificate with the CLI, as an operator would.
func newPKI(t *testing.T, names ...string) pki {
	t.Helper()
	p := pki{dir: t.TempDir()}
	berthOK(t, "tls", "ca", "create", "--dir", p.dir)
	for _, n := range names {
		berthOK(t, "tls", "cert", "create", "--server", "--node-name", n, "--dir", p.dir)
	}
	berthOK(t, "tls", "cert", "create", "--client", "--dir", p.dir)
	return p
}

// secureCLI runs the CLI against addr with the client certificate.
func (p pki) cli(t *testing.T, addr string, args ...string) cliResult {
	t.Helper()
	cert, key := p.client()
	return cli(t, addr, append([]string{"--ca-file", p.ca(), "--client-cert", cert, "--client-key", key}, args...)...)
}

func (p pki) mustCLI(t *testing.T, addr string, args ...string) string {
	t.Helper()
	r := p.cli(t, addr, args...)
	if r.err != nil {
		t.Fatalf("berth %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return r.stdout
}

// tlsConfig is a client config with the given certificate (none if empty).
func (p pki) tlsConfig(t *testing.T, cert, key string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(p.ca())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

type secureServer struct {
	name, api, raft, gossip, data string
	mesos                         string // nothing listens there
	args                          []string
	p                             *proc
}

// secureArgs are the flags of a server with mTLS and a gossip key.
func (p pki) secureArgs(s *secureServer, certName, gossipKeyFile string, expect int, join []string) []string {
	cert, key := p.server(certName)
	args := []string{"server", "--node-name", s.name, "--data-dir", s.data,
		"--api-addr", s.api, "--raft-addr", s.raft, "--gossip-addr", s.gossip,
		"--bootstrap-expect", strconv.Itoa(expect), "--mesos-master", "http://" + s.mesos,
		"--tls-ca-file", p.ca(), "--tls-cert-file", cert, "--tls-key-file", key, "--tls-verify-client",
		"--gossip-key-file", gossipKeyFile}
	for _, j := range join {
		args = append(args, "--join", j)
	}
	return args
}

func newSecureServer(t *testing.T, name string) *secureServer {
	return &secureServer{name: name, api: freePort(t), raft: freePort(t), gossip: freePort(t), mesos: freePort(t), data: t.TempDir()}
}

type membersJSON struct {
	Members []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"members"`
}

// aliveMembers lists the names of members s sees alive.
func (p pki) aliveMembers(t *testing.T, api string) []string {
	r := p.cli(t, api, "-o", "json", "cluster", "members")
	if r.err != nil {
		return nil
	}
	var m membersJSON
	if json.Unmarshal([]byte(r.stdout), &m) != nil {
		return nil
	}
	var out []string
	for _, x := range m.Members {
		if x.Status == "alive" {
			out = append(out, x.Name)
		}
	}
	slices.Sort(out)
	return out
}

// secureLeader returns the name of the leader as api sees it.
func (p pki) secureLeader(t *testing.T, api string) string {
	r := p.cli(t, api, "-o", "json", "cluster", "leader")
	if r.err != nil {
		return ""
	}
	var l leaderJSON
	if json.Unmarshal([]byte(r.stdout), &l) != nil {
		return ""
	}
	return l.ID
}

// connectPost calls a Connect unary method with JSON and returns the HTTP
// status and the error code ("" on success).
func connectPost(t *testing.T, cfg *tls.Config, addr, procedure, body string, header map[string]string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
	req, err := http.NewRequest(http.MethodPost, "https://"+addr+procedure, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	var e struct {
		Code string `json:"code"`
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		_ = json.Unmarshal(b, &e)
	}
	return res.StatusCode, e.Code
}

// raftRefuses dials a Raft port with cfg and reports whether the server
// refused the connection (during or right after the TLS handshake).
func raftRefuses(addr string, cfg *tls.Config) bool {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return true
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, _ = c.Write([]byte{0})
	_, err = io.ReadAll(c)
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// servedSerial is the serial of the certificate a TLS server presents to a
// new connection.
func servedSerial(t *testing.T, addr string, cfg *tls.Config) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func certSerial(t *testing.T, path string) string {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(path, strings.TrimSuffix(path, ".pem")+"-key.pem")
	if err != nil {
		t.Fatal(err)
	}
	return pair.Leaf.SerialNumber.String()
}

// TestSecureCluster is issue 10's transport half on a live 3-server
// cluster with mutual TLS and an encrypted gossip: writes through a
// follower work; clients without a certificate, or with a certificate
// lacking the server identity, reach neither the API's server-only
// requests nor the Raft port; servers with the wrong gossip key or without
// a server certificate cannot join; a gossip key rotation keeps the
// cluster healthy and survives a restart; SIGHUP reloads certificates.
func TestSecureCluster(t *testing.T) {
	p := newPKI(t, "s1", "s2", "s3", "s4")
	keyFile := writeFile(t, "gossip.key", berthOK(t, "cluster", "keygen"))

	var servers []*secureServer
	for _, n := range []string{"s1", "s2", "s3"} {
		servers = append(servers, newSecureServer(t, n))
	}
	for _, s := range servers {
		var join []string
		for _, o := range servers {
			if o != s {
				join = append(join, o.gossip)
			}
		}
		s.args = p.secureArgs(s, s.name, keyFile, 3, join)
		s.p = startProc(t, s.name, s.args...)
	}
	var leader *secureServer
	eventually(t, 2*time.Minute, "a leader agreed by the three servers", func() bool {
		id := p.secureLeader(t, servers[0].api)
		for _, s := range servers[1:] {
			if id == "" || p.secureLeader(t, s.api) != id {
				return false
			}
		}
		for _, s := range servers {
			if s.name == id {
				leader = s
			}
		}
		return leader != nil
	})
	var follower *secureServer
	for _, s := range servers {
		if s != leader {
			follower = s
			break
		}
	}

	// A write through a follower with the client certificate works.
	app := writeFile(t, "secure.json", `{"id": "/secure/a", "instances": 0, "cpus": 0.1, "mem": 16, "cmd": "sleep 1000"}`)
	p.mustCLI(t, follower.api, "-o", "json", "app", "add", app)
	if out := p.mustCLI(t, leader.api, "app", "list"); !strings.Contains(out, "/secure/a") {
		t.Fatalf("the leader does not list the app written through a follower:\n%s", out)
	}

	t.Run("clients without a certificate", func(t *testing.T) {
		for name, args := range map[string][]string{
			"no TLS":             nil,
			"CA but no cert":     {"--ca-file", p.ca()},
			"https without a CA": {"--addr", "https://" + follower.api},
		} {
			r := cli(t, follower.api, append(args, "app", "remove", "/secure/a")...)
			if r.err == nil {
				t.Errorf("%s: remove succeeded: %s", name, r.stdout)
			}
		}
		if out := p.mustCLI(t, leader.api, "app", "list"); !strings.Contains(out, "/secure/a") {
			t.Fatalf("the app is gone after refused removals:\n%s", out)
		}
	})

	clientCert, clientKey := p.client()
	s1Cert, s1Key := p.server("s1")
	withClient := p.tlsConfig(t, clientCert, clientKey)
	withServer := p.tlsConfig(t, s1Cert, s1Key)
	noCert := p.tlsConfig(t, "", "")

	t.Run("raft port requires the server identity", func(t *testing.T) {
		for _, s := range servers {
			if !raftRefuses(s.raft, withClient) {
				t.Errorf("%s's raft port accepted a client certificate", s.name)
			}
			if !raftRefuses(s.raft, noCert) {
				t.Errorf("%s's raft port accepted a client without a certificate", s.name)
			}
		}
	})

	t.Run("forwarded requests only from servers", func(t *testing.T) {
		fwd := map[string]string{"Berth-Forwarded": "1"}
		// A client certificate claiming to be a forwarding server.
		status, code := connectPost(t, withClient, follower.api, "/berth.v1.AppService/DeleteApp", `{"id": "/secure/a", "force": true}`, fwd)
		if code != "permission_denied" {
			t.Fatalf("forwarded delete with a client certificate: HTTP %d code %q, want permission_denied", status, code)
		}
		status, code = connectPost(t, withClient, leader.api, "/berth.v1.AppService/DeleteApp", `{"id": "/secure/a", "force": true}`, fwd)
		if code != "permission_denied" {
			t.Fatalf("forwarded delete to the leader with a client certificate: HTTP %d code %q, want permission_denied", status, code)
		}
		if out := p.mustCLI(t, leader.api, "app", "list"); !strings.Contains(out, "/secure/a") {
			t.Fatalf("the app is gone after a refused forwarded delete:\n%s", out)
		}
		// A server identity is honoured: the follower, not the leader,
		// answers that it does not lead instead of forwarding again.
		status, code = connectPost(t, withServer, follower.api, "/berth.v1.AppService/GetApp", `{"id": "/secure/a"}`, fwd)
		if status != http.StatusOK {
			t.Fatalf("forwarded read with a server certificate: HTTP %d code %q", status, code)
		}
		status, code = connectPost(t, withServer, follower.api, "/berth.v1.AppService/DeleteApp", `{"id": "/nothing/here"}`, fwd)
		if code != "unavailable" {
			t.Fatalf("forwarded write to a follower with a server certificate: HTTP %d code %q, want unavailable (not the leader)", status, code)
		}
	})

	t.Run("wrong gossip key cannot join", func(t *testing.T) {
		rogue := newSecureServer(t, "s4")
		badKey := writeFile(t, "bad.key", berthOK(t, "cluster", "keygen"))
		rp := startProc(t, "rogue-s4", p.secureArgs(rogue, "s4", badKey, 0, []string{servers[0].gossip})...)
		eventually(t, 2*time.Minute, "the rogue server's failed join", func() bool {
			return strings.Contains(rp.out.String(), "cannot join gossip yet")
		})
		if m := p.aliveMembers(t, servers[0].api); slices.Contains(m, "s4") {
			t.Fatalf("a server with the wrong gossip key is a member: %v", m)
		}
		if !strings.Contains(rp.out.String(), "no installed keys could decrypt") {
			t.Fatalf("the rogue's join failed for another reason:\n%s", rp.out.String())
		}
		rp.stop(syscall.SIGTERM, 30*time.Second)
	})

	t.Run("server without a server certificate cannot start", func(t *testing.T) {
		rogue := newSecureServer(t, "s5")
		args := p.secureArgs(rogue, "s4", keyFile, 0, []string{servers[0].gossip})
		for i, a := range args {
			if a == "--tls-cert-file" {
				args[i+1] = clientCert
			}
			if a == "--tls-key-file" {
				args[i+1] = clientKey
			}
		}
		rp := startProc(t, "rogue-s5", args...)
		select {
		case <-rp.done:
		case <-time.After(2 * time.Minute):
			t.Fatal("a server with a client certificate kept running")
		}
		if out := rp.out.String(); !strings.Contains(out, "does not carry the identity server.global.berth") {
			t.Fatalf("unexpected refusal:\n%s", out)
		}
		if m := p.aliveMembers(t, servers[0].api); slices.Contains(m, "s5") {
			t.Fatalf("a server with a client certificate is a member: %v", m)
		}
	})

	t.Run("gossip key rotation", func(t *testing.T) {
		oldKey := strings.TrimSpace(readFile(t, keyFile))
		newKey := strings.TrimSpace(berthOK(t, "cluster", "keygen"))
		for _, step := range [][]string{{"install", newKey}, {"use", newKey}, {"remove", oldKey}} {
			out := p.mustCLI(t, follower.api, append([]string{"cluster", "keyring"}, step...)...)
			for _, s := range servers {
				if !regexp.MustCompile(`(?m)^` + s.name + `\s+ok\s*$`).MatchString(out) {
					t.Fatalf("keyring %s: no ok from %s:\n%s", step[0], s.name, out)
				}
			}
		}
		var list struct {
			Servers []struct {
				Node       string   `json:"node"`
				Keys       []string `json:"keys"`
				PrimaryKey string   `json:"primaryKey"`
			} `json:"servers"`
		}
		if err := json.Unmarshal([]byte(p.mustCLI(t, leader.api, "-o", "json", "cluster", "keyring", "list")), &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Servers) != 3 {
			t.Fatalf("keyring list answered for %d servers, want 3", len(list.Servers))
		}
		for _, s := range list.Servers {
			if s.PrimaryKey != newKey || !slices.Equal(s.Keys, []string{newKey}) {
				t.Fatalf("%s keyring %v primary %s, want only the new key", s.Node, s.Keys, s.PrimaryKey)
			}
		}
		// Still healthy: gossip sees everyone and writes commit.
		eventually(t, time.Minute, "three alive members after the rotation", func() bool {
			return slices.Equal(p.aliveMembers(t, follower.api), []string{"s1", "s2", "s3"})
		})
		app2 := writeFile(t, "secure2.json", `{"id": "/secure/b", "instances": 0, "cpus": 0.1, "mem": 16, "cmd": "sleep 1000"}`)
		p.mustCLI(t, follower.api, "-o", "json", "app", "add", app2)

		// A restart keeps the rotated key (its --gossip-key-file still
		// names the old one): it rejoins the others.
		s := follower
		s.p.stop(syscall.SIGTERM, 30*time.Second)
		s.p.restart()
		eventually(t, 2*time.Minute, "the restarted server back in gossip", func() bool {
			// Its own member list fills only through gossip it can
			// decrypt.
			return slices.Equal(p.aliveMembers(t, s.api), []string{"s1", "s2", "s3"}) &&
				slices.Equal(p.aliveMembers(t, leader.api), []string{"s1", "s2", "s3"}) &&
				p.secureLeader(t, s.api) != ""
		})
	})

	t.Run("certificate reload on SIGHUP", func(t *testing.T) {
		cert, _ := p.server(leader.name)
		before := certSerial(t, cert)
		if got := servedSerial(t, leader.api, withClient); got != before {
			t.Fatalf("served serial %s, want %s", got, before)
		}
		// A new certificate for the same server, written over its files.
		fresh := t.TempDir()
		berthOK(t, "tls", "cert", "create", "--server", "--node-name", leader.name, "--dir", fresh,
			"--ca", p.ca(), "--key", filepath.Join(p.dir, "berth-agent-ca-key.pem"))
		freshCert := filepath.Join(fresh, filepath.Base(cert))
		after := certSerial(t, freshCert)
		for _, suffix := range []string{".pem", "-key.pem"} {
			data := readFile(t, strings.TrimSuffix(freshCert, ".pem")+suffix)
			if err := os.WriteFile(strings.TrimSuffix(cert, ".pem")+suffix, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if got := servedSerial(t, leader.api, withClient); got != before {
			t.Fatalf("the new certificate is served before SIGHUP (serial %s)", got)
		}
		if err := leader.p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "the reloaded certificate on new connections", func() bool {
			return servedSerial(t, leader.api, withClient) == after
		})
		// The Raft port serves it too, and the cluster still works.
		raftCfg := p.tlsConfig(t, s1Cert, s1Key)
		raftCfg.InsecureSkipVerify = true // raft addresses are checked by identity, not host name
		if got := servedSerial(t, leader.raft, raftCfg); got != after {
			t.Fatalf("raft port serves serial %s, want %s", got, after)
		}
		app3 := writeFile(t, "secure3.json", `{"id": "/secure/c", "instances": 0, "cpus": 0.1, "mem": 16, "cmd": "sleep 1000"}`)
		p.mustCLI(t, follower.api, "-o", "json", "app", "add", app3)
	})
}

// TestServerRefusesExposedWithoutSecurity: a server asked to listen beyond
// loopback without TLS, client verification and a gossip key refuses to
// start and says what is missing; --insecure starts it with a warning.
func TestServerRefusesExposedWithoutSecurity(t *testing.T) {
	api := freePort(t)
	_, port, _ := strings.Cut(api, ":")
	args := []string{"server", "--node-name", "exposed", "--data-dir", t.TempDir(),
		"--api-addr", "0.0.0.0:" + port, "--api-advertise", api, "--raft-addr", freePort(t), "--gossip-addr", freePort(t),
		"--mesos-master", "http://" + freePort(t)}
	var stderr bytes.Buffer
	cmd := execBerth(args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("an exposed server without security started")
	}
	for _, want := range []string{"--api-addr 0.0.0.0:" + port, "--tls-verify-client", "--gossip-key-file", "--insecure"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("refusal does not mention %s:\n%s", want, stderr.String())
		}
	}
	p := startProc(t, "insecure", append(args, "--insecure")...)
	eventually(t, time.Minute, "the insecure server to start with a warning", func() bool {
		out := p.out.String()
		return strings.Contains(out, "INSECURE") && strings.Contains(out, "berth server started")
	})
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func execBerth(args ...string) *exec.Cmd { return exec.Command(berthBin, args...) }
