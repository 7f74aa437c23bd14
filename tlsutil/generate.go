package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"
)

// CAOptions configure a new certificate authority.
type CAOptions struct {
	// Domain names the CA ("Berth Agent CA <domain>"); default "berth".
	Domain string
	// Days the CA is valid (default 1825).
	Days int
	// Now is the issue time (default time.Now).
	Now func() time.Time
}

// PEMPair is a certificate and its private key, PEM encoded.
type PEMPair struct {
	Cert, Key []byte
}

// GenerateCA creates a self-signed ECDSA P-256 CA certificate and key.
func GenerateCA(o CAOptions) (PEMPair, error) {
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if o.Days == 0 {
		o.Days = 1825
	}
	if o.Days < 0 {
		return PEMPair{}, fmt.Errorf("--days: must be > 0, got %d", o.Days)
	}
	if err := validateLabel(o.Domain); err != nil {
		return PEMPair{}, fmt.Errorf("--domain: %w", err)
	}
	key, serial, skid, err := newKey()
	if err != nil {
		return PEMPair{}, err
	}
	now := nowOf(o.Now)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Berth Agent CA " + o.Domain, Organization: []string{"Berth"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(0, 0, o.Days),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          skid,
		AuthorityKeyId:        skid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return PEMPair{}, fmt.Errorf("create CA certificate: %w", err)
	}
	return encodePair(der, key)
}

// CertOptions configure a server or client certificate.
type CertOptions struct {
	// Server makes a server certificate (server identity, server and
	// client authentication); otherwise a client certificate.
	Server bool
	// ClusterName and Domain form the identity (defaults global, berth).
	ClusterName string
	Domain      string
	// NodeName, if set, is added as a DNS SAN (and <node>.<domain> is not
	// implied: give --dns for any other name).
	NodeName string
	// IPs and DNSNames are extra SANs; 127.0.0.1 and localhost are always
	// included.
	IPs      []string
	DNSNames []string
	// Days the certificate is valid (default 365).
	Days int
	Now  func() time.Time
}

// GenerateCert creates an ECDSA P-256 certificate signed by ca.
func GenerateCert(ca PEMPair, o CertOptions) (PEMPair, error) {
	if o.ClusterName == "" {
		o.ClusterName = DefaultClusterName
	}
	if o.Domain == "" {
		o.Domain = DefaultDomain
	}
	if o.Days == 0 {
		o.Days = 365
	}
	if o.Days < 0 {
		return PEMPair{}, fmt.Errorf("--days: must be > 0, got %d", o.Days)
	}
	if err := validateLabel(o.ClusterName); err != nil {
		return PEMPair{}, fmt.Errorf("--cluster-name: %w", err)
	}
	if err := validateLabel(o.Domain); err != nil {
		return PEMPair{}, fmt.Errorf("--domain: %w", err)
	}
	caCert, caKey, err := parseCA(ca)
	if err != nil {
		return PEMPair{}, err
	}
	identity := ClientName(o.ClusterName, o.Domain)
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if o.Server {
		identity = ServerName(o.ClusterName, o.Domain)
		// Servers also dial each other (forwarding, Raft) as clients.
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	dns := []string{identity, "localhost"}
	if o.NodeName != "" {
		dns = append(dns, o.NodeName)
	}
	for _, d := range o.DNSNames {
		if d == "" || strings.ContainsAny(d, " /:") {
			return PEMPair{}, fmt.Errorf("--dns: %q is not a DNS name", d)
		}
		dns = append(dns, d)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, s := range o.IPs {
		ip := net.ParseIP(s)
		if ip == nil {
			return PEMPair{}, fmt.Errorf("--ip: %q is not an IP address", s)
		}
		ips = append(ips, ip)
	}
	key, serial, skid, err := newKey()
	if err != nil {
		return PEMPair{}, err
	}
	now := nowOf(o.Now)
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: identity},
		NotBefore:      now.Add(-time.Minute),
		NotAfter:       now.AddDate(0, 0, o.Days),
		KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:    usage,
		DNSNames:       dns,
		IPAddresses:    ips,
		SubjectKeyId:   skid,
		AuthorityKeyId: caCert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return PEMPair{}, fmt.Errorf("create certificate: %w", err)
	}
	return encodePair(der, key)
}

func parseCA(ca PEMPair) (*x509.Certificate, crypto.Signer, error) {
	b, _ := pem.Decode(ca.Cert)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, nil, errors.New("CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, nil, errors.New("CA certificate: not a CA (basic constraints)")
	}
	k, _ := pem.Decode(ca.Key)
	if k == nil {
		return nil, nil, errors.New("CA key: no PEM block")
	}
	var key any
	switch k.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(k.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(k.Bytes)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("CA key: %T cannot sign", key)
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, nil, errors.New("CA key does not match the CA certificate")
	}
	return cert, signer, nil
}

func encodePair(der []byte, key *ecdsa.PrivateKey) (PEMPair, error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return PEMPair{}, err
	}
	return PEMPair{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}, nil
}

// newKey returns a fresh ECDSA P-256 key, a random serial number and the
// key's subject key id.
func newKey() (*ecdsa.PrivateKey, *big.Int, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, nil, err
	}
	sum := sha256.Sum256(der)
	return key, serial, sum[:20], nil
}

func nowOf(f func() time.Time) time.Time {
	if f == nil {
		return time.Now()
	}
	return f()
}

// validateLabel checks one DNS label of an identity.
func validateLabel(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("%q must be 1 to 63 characters", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("%q: use lower-case letters, digits and '-'", s)
		}
	}
	return nil
}
