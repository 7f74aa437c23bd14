package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustCA(t *testing.T) PEMPair {
	t.Helper()
	ca, err := GenerateCA(CAOptions{Domain: "berth", Days: 10})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func parse(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGeneratedCertsVerify: server and client certificates chain to the CA,
// carry the identity, localhost, the loopback IP and the extra SANs, and
// the right key usages.
func TestGeneratedCertsVerify(t *testing.T) {
	ca := mustCA(t)
	caCert := parse(t, ca.Cert)
	if !caCert.IsCA || caCert.Subject.CommonName != "Berth Agent CA berth" {
		t.Fatalf("CA: IsCA %v, CN %q", caCert.IsCA, caCert.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)

	srv, err := GenerateCert(ca, CertOptions{Server: true, ClusterName: "prod", NodeName: "s1", IPs: []string{"10.0.0.5"}, DNSNames: []string{"s1.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	sc := parse(t, srv.Cert)
	for _, name := range []string{"server.prod.berth", "localhost", "s1", "s1.example.com"} {
		if !slices.Contains(sc.DNSNames, name) {
			t.Errorf("server cert DNS SANs %v lack %s", sc.DNSNames, name)
		}
	}
	if !slices.ContainsFunc(sc.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP("10.0.0.5")) }) {
		t.Errorf("server cert IPs %v lack 10.0.0.5", sc.IPAddresses)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := sc.Verify(x509.VerifyOptions{Roots: roots, DNSName: "10.0.0.5", KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("server cert does not verify for %v: %v", usage, err)
		}
	}
	if _, err := tls.X509KeyPair(srv.Cert, srv.Key); err != nil {
		t.Errorf("server key does not match: %v", err)
	}

	cli, err := GenerateCert(ca, CertOptions{ClusterName: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	cc := parse(t, cli.Cert)
	if HasName(cc, ServerName("prod", "berth")) || !HasName(cc, "client.prod.berth") {
		t.Errorf("client cert DNS SANs %v: want client.prod.berth and no server identity", cc.DNSNames)
	}
	if _, err := cc.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client cert does not verify: %v", err)
	}
	if _, err := cc.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("client cert is usable to serve")
	}

	other := mustCA(t)
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(parse(t, other.Cert))
	if _, err := sc.Verify(x509.VerifyOptions{Roots: otherRoots}); err == nil {
		t.Error("server cert verifies against another CA")
	}
}

func TestGenerateRejectsBadInput(t *testing.T) {
	ca := mustCA(t)
	for name, o := range map[string]CertOptions{
		"--ip":           {IPs: []string{"not-an-ip"}},
		"--dns":          {DNSNames: []string{"a b"}},
		"--cluster-name": {ClusterName: "Prod!"},
		"--days":         {Days: -1},
	} {
		if _, err := GenerateCert(ca, o); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err %v, want one naming %s", name, err, name)
		}
	}
	if _, err := GenerateCert(PEMPair{Cert: ca.Cert, Key: mustCA(t).Key}, CertOptions{}); err == nil {
		t.Error("signing with a key that does not match the CA succeeded")
	}
}

// files writes a CA and a server certificate into dir.
func writePair(t *testing.T, dir, name string, p PEMPair) (string, string) {
	t.Helper()
	c, k := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(c, p.Cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k, p.Key, 0o600); err != nil {
		t.Fatal(err)
	}
	return c, k
}

// TestHolderReload: a listener built on a holder serves the new
// certificate to new connections after Reload; a broken file keeps the old
// one; the server identity is required where asked.
func TestHolderReload(t *testing.T) {
	dir := t.TempDir()
	ca := mustCA(t)
	caFile, _ := writePair(t, dir, "ca", ca)
	first, err := GenerateCert(ca, CertOptions{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writePair(t, dir, "server", first)
	h, err := NewHolder(Files{CAFile: caFile, CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	id := ServerName(DefaultClusterName, DefaultDomain)
	lis, err := tls.Listen("tcp", "127.0.0.1:0", h.ServerConfig(ServerOptions{RequireName: id}))
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("ok"))
			}()
		}
	}()
	// served dials with the holder's own (server) certificate as client and
	// returns the serial the server presented.
	served := func(client *tls.Config) (string, error) {
		c, err := tls.Dial("tcp", lis.Addr().String(), client)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 2)
		if _, err := c.Read(buf); err != nil {
			return "", err
		}
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	client := h.ClientConfig(id)
	got, err := served(client)
	if err != nil || got != parse(t, first.Cert).SerialNumber.String() {
		t.Fatalf("first connection: serial %s, %v", got, err)
	}

	second, err := GenerateCert(ca, CertOptions{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	writePair(t, dir, "server", second)
	if err := h.Reload(); err != nil {
		t.Fatal(err)
	}
	if got, err := served(client); err != nil || got != parse(t, second.Cert).SerialNumber.String() {
		t.Fatalf("after reload: serial %s, %v; want the new certificate", got, err)
	}

	// A broken file: Reload fails and the current certificate stays.
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := h.Reload(); err == nil {
		t.Fatal("Reload accepted a garbage key")
	}
	if got, err := served(client); err != nil || got != parse(t, second.Cert).SerialNumber.String() {
		t.Fatalf("after a failed reload: serial %s, %v; want the previous certificate", got, err)
	}

	// A client certificate lacks the server identity: refused.
	cli, err := GenerateCert(ca, CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cc, ck := writePair(t, dir, "client", cli)
	ch, err := NewHolder(Files{CAFile: caFile, CertFile: cc, KeyFile: ck})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := served(ch.ClientConfig(id)); err == nil {
		t.Fatal("a client certificate was accepted where the server identity is required")
	}
	// A certificate from another CA does not load.
	other, err := GenerateCert(mustCA(t), CertOptions{Server: true})
	if err != nil {
		t.Fatal(err)
	}
	oc, ok := writePair(t, dir, "other", other)
	if _, err := NewHolder(Files{CAFile: caFile, CertFile: oc, KeyFile: ok}); err == nil || !strings.Contains(err.Error(), "not signed by the CA") {
		t.Fatalf("certificate of another CA: %v", err)
	}
}

func TestFilesValidate(t *testing.T) {
	if err := (Files{CertFile: "a"}).Validate(); err == nil || !strings.Contains(err.Error(), "--tls-key-file") {
		t.Fatalf("cert without key: %v", err)
	}
	if err := (Files{CertFile: "a", KeyFile: "b"}).Validate(); err == nil || !strings.Contains(err.Error(), "--tls-ca-file") {
		t.Fatalf("cert without CA: %v", err)
	}
}
