package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/tlsutil"
)

func init() {
	tlsCmd := &cobra.Command{
		Use:   "tls",
		Short: "Create a certificate authority and certificates for mutual TLS",
		Long: `tls creates the files a secure cluster needs, as consul tls / nomad tls:

  berth tls ca create                      # berth-agent-ca.pem, berth-agent-ca-key.pem
  berth tls cert create --server --ip 10.0.0.1 --node-name s1
                                           # global-server-berth-s1.pem (+ -key.pem)
  berth tls cert create --client           # global-client-berth-0.pem (+ -key.pem)

Server certificates carry the server identity server.<cluster-name>.<domain>
(default server.global.berth) that Berth requires of every peer on the Raft
port and of every server-to-server call; client certificates do not, so a
leaked CLI certificate cannot join the cluster. Keys are ECDSA P-256.`,
	}
	caCmd := &cobra.Command{Use: "ca", Short: "Manage the certificate authority"}
	caCmd.AddCommand(tlsCACreateCmd())
	certCmd := &cobra.Command{Use: "cert", Short: "Manage server and client certificates"}
	certCmd.AddCommand(tlsCertCreateCmd())
	tlsCmd.AddCommand(caCmd, certCmd)
	rootCmd.AddCommand(tlsCmd)
}

func tlsCACreateCmd() *cobra.Command {
	var domain, dir string
	var days int
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a new certificate authority (<domain>-agent-ca.pem and its key)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ca, err := tlsutil.GenerateCA(tlsutil.CAOptions{Domain: domain, Days: days})
			if err != nil {
				return err
			}
			cert, key := caFiles(dir, domain)
			if err := writePEMPair(cert, key, ca); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "==> CA certificate saved to %s\n==> CA key saved to %s (keep it offline: it signs server identities)\n", cert, key)
			return nil
		},
	}
	c.Flags().StringVar(&domain, "domain", tlsutil.DefaultDomain, "domain of the identities this CA signs (server.<cluster-name>.<domain>)")
	c.Flags().IntVar(&days, "days", 1825, "days the CA is valid")
	c.Flags().StringVar(&dir, "dir", ".", "directory to write the files to")
	return c
}

func caFiles(dir, domain string) (cert, key string) {
	return filepath.Join(dir, domain+"-agent-ca.pem"), filepath.Join(dir, domain+"-agent-ca-key.pem")
}

func tlsCertCreateCmd() *cobra.Command {
	var o tlsutil.CertOptions
	var client bool
	var caFile, caKey, dir string
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a server (--server) or client (--client) certificate signed by the CA",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if o.Server == client {
				return errors.New("give exactly one of --server and --client")
			}
			defCert, defKey := caFiles(dir, o.Domain)
			if caFile == "" {
				caFile = defCert
			}
			if caKey == "" {
				caKey = defKey
			}
			var ca tlsutil.PEMPair
			var err error
			if ca.Cert, err = os.ReadFile(caFile); err != nil {
				return fmt.Errorf("--ca: %w (create one with `berth tls ca create`)", err)
			}
			if ca.Key, err = os.ReadFile(caKey); err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			pair, err := tlsutil.GenerateCert(ca, o)
			if err != nil {
				return err
			}
			kind, identity := "client", tlsutil.ClientName(o.ClusterName, o.Domain)
			if o.Server {
				kind, identity = "server", tlsutil.ServerName(o.ClusterName, o.Domain)
			}
			prefix := filepath.Join(dir, fmt.Sprintf("%s-%s-%s-", o.ClusterName, kind, o.Domain))
			var cert, key string
			if o.NodeName != "" {
				cert, key = prefix+o.NodeName+".pem", prefix+o.NodeName+"-key.pem"
			} else {
				for i := 0; ; i++ {
					cert, key = prefix+strconv.Itoa(i)+".pem", prefix+strconv.Itoa(i)+"-key.pem"
					if !exists(cert) && !exists(key) {
						break
					}
				}
			}
			if err := writePEMPair(cert, key, pair); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "==> Using CA %s\n==> %s certificate (%s) saved to %s\n==> key saved to %s\n", caFile, kind, identity, cert, key)
			return nil
		},
	}
	f := c.Flags()
	f.BoolVar(&o.Server, "server", false, "a server certificate: carries the server identity, for serving and for server-to-server calls")
	f.BoolVar(&client, "client", false, "a client (CLI) certificate, without the server identity")
	f.StringVar(&o.ClusterName, "cluster-name", tlsutil.DefaultClusterName, "cluster name in the identity (as the servers' --cluster-name)")
	f.StringVar(&o.Domain, "domain", tlsutil.DefaultDomain, "domain in the identity (as the servers' --domain)")
	f.StringVar(&o.NodeName, "node-name", "", "server name, added as a DNS name and used in the file names")
	f.StringSliceVar(&o.IPs, "ip", nil, "extra IP address SAN: the addresses clients dial (repeatable; 127.0.0.1 is always included)")
	f.StringSliceVar(&o.DNSNames, "dns", nil, "extra DNS name SAN (repeatable; localhost is always included)")
	f.IntVar(&o.Days, "days", 365, "days the certificate is valid")
	f.StringVar(&caFile, "ca", "", "CA certificate (default <dir>/<domain>-agent-ca.pem)")
	f.StringVar(&caKey, "key", "", "CA key (default <dir>/<domain>-agent-ca-key.pem)")
	f.StringVar(&dir, "dir", ".", "directory to read the CA from and write the files to")
	return c
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// writePEMPair writes a certificate (0644) and its key (0600), refusing to
// overwrite existing files.
func writePEMPair(cert, key string, p tlsutil.PEMPair) error {
	for _, f := range []string{cert, key} {
		if exists(f) {
			return fmt.Errorf("%s already exists; remove it or choose another --dir", f)
		}
	}
	if err := os.WriteFile(key, p.Key, 0o600); err != nil {
		return err
	}
	return os.WriteFile(cert, p.Cert, 0o644)
}
