package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/cluster"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func clusterKeygenCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new random gossip encryption key (32 bytes, base64)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			key, err := cluster.GenerateGossipKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), key)
			return nil
		},
	}
}

func clusterKeyringCmd() *cobra.Command {
	kr := &cobra.Command{
		Use:   "keyring",
		Short: "List and rotate the gossip encryption keys of every server",
		Long: `keyring changes the gossip keyring of every server alive in gossip: the
server at --addr applies the change and passes it on to the others through
their APIs, and one line per server reports the result. Rotate a key with:

  berth cluster keyring install NEW   # every server can decrypt with NEW
  berth cluster keyring use NEW       # every server encrypts with NEW
  berth cluster keyring remove OLD    # OLD is no longer accepted

Each server keeps its keyring in its data dir, so a restart keeps the
rotated keys. A server that is down during a rotation misses it: install
the new key in its data dir's gossip/keyring or give it --gossip-key-file
with the new key on a fresh data dir.`,
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List each server's gossip keys (the primary key encrypts)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.keyring.ListKeys(c.Context(), connect.NewRequest(&v1.ListKeysRequest{}))
			if err != nil {
				return err
			}
			return printKeyring(c.OutOrStdout(), res.Msg, true)
		},
	}
	kr.AddCommand(list)
	for _, op := range []struct {
		name, short string
		call        func(*clients) keyringCall
	}{
		{"install", "Install a gossip key on every server (decrypts; does not encrypt yet)", func(cl *clients) keyringCall { return cl.keyring.InstallKey }},
		{"use", "Make an installed key the primary (encrypting) key on every server", func(cl *clients) keyringCall { return cl.keyring.UseKey }},
		{"remove", "Remove a gossip key that is not the primary from every server", func(cl *clients) keyringCall { return cl.keyring.RemoveKey }},
	} {
		kr.AddCommand(&cobra.Command{
			Use:   op.name + " KEY",
			Short: op.short,
			Args:  usageArgs,
			RunE: func(c *cobra.Command, args []string) error {
				if _, err := cluster.DecodeGossipKey(args[0]); err != nil {
					return fmt.Errorf("KEY: %w", err)
				}
				cl, err := newClients()
				if err != nil {
					return err
				}
				res, err := op.call(cl)(c.Context(), connect.NewRequest(&v1.KeyringKeyRequest{Key: strings.TrimSpace(args[0])}))
				if err != nil {
					return err
				}
				return printKeyring(c.OutOrStdout(), res.Msg, false)
			},
		})
	}
	return kr
}

// keyringCall is one of KeyringService's changing methods.
type keyringCall = func(context.Context, *connect.Request[v1.KeyringKeyRequest]) (*connect.Response[v1.KeyringResponse], error)

// printKeyring prints one line per server (and, for list, its keys); it
// fails if any server reported an error, so scripts can stop a rotation.
func printKeyring(w io.Writer, res *v1.KeyringResponse, keys bool) error {
	if flagOutput == "json" {
		if err := printJSON(w, res); err != nil {
			return err
		}
	} else {
		var rows [][]string
		for _, s := range res.GetServers() {
			status := "ok"
			if s.GetError() != "" {
				status = "error: " + s.GetError()
			}
			if !keys {
				rows = append(rows, []string{s.GetNode(), status})
				continue
			}
			if len(s.GetKeys()) == 0 {
				rows = append(rows, []string{s.GetNode(), "", "", status})
			}
			for _, k := range s.GetKeys() {
				rows = append(rows, []string{s.GetNode(), k, fmt.Sprint(k == s.GetPrimaryKey()), status})
			}
		}
		header := []string{"SERVER", "RESULT"}
		if keys {
			header = []string{"SERVER", "KEY", "PRIMARY", "RESULT"}
		}
		if err := table(w, header, rows); err != nil {
			return err
		}
	}
	failed := 0
	for _, s := range res.GetServers() {
		if s.GetError() != "" {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d servers failed", failed, len(res.GetServers()))
	}
	if len(res.GetServers()) == 0 {
		return errors.New("no server answered")
	}
	return nil
}
