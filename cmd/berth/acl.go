package main

import (
	"fmt"
	"io"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/berth-dev/berth/acl"
	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func init() {
	aclCmd := &cobra.Command{Use: "acl", Short: "Manage ACL tokens (servers started with --acl-enabled)"}
	tokenCmd := &cobra.Command{Use: "token", Short: "Create, list, delete and inspect ACL tokens"}
	tokenCmd.AddCommand(aclTokenCreateCmd(), aclTokenListCmd(), aclTokenDeleteCmd(), aclTokenSelfCmd())
	aclCmd.AddCommand(aclBootstrapCmd(), tokenCmd)
	rootCmd.AddCommand(clientCommand(aclCmd))
}

func aclBootstrapCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "bootstrap",
		Short: "Create the first management token (works once per cluster)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.acl.Bootstrap(c.Context(), connect.NewRequest(&v1.BootstrapRequest{}))
			if err != nil {
				return err
			}
			return printToken(c.OutOrStdout(), res.Msg, res.Msg.GetToken(), res.Msg.GetSecretId())
		},
	}
}

func aclTokenCreateCmd() *cobra.Command {
	var policy, prefix, description string
	c := &cobra.Command{
		Use:   "create",
		Short: "Create a token; its secret is shown once",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			p, err := acl.ParsePolicy(policy)
			if err != nil {
				return fmt.Errorf("--policy: %w", err)
			}
			if err := acl.CheckAppPrefix(prefix); err != nil {
				return fmt.Errorf("--app-prefix: %w", err)
			}
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.acl.CreateToken(c.Context(), connect.NewRequest(&v1.CreateTokenRequest{Policy: p, AppPrefix: prefix, Description: description}))
			if err != nil {
				return err
			}
			return printToken(c.OutOrStdout(), res.Msg, res.Msg.GetToken(), res.Msg.GetSecretId())
		},
	}
	c.Flags().StringVar(&policy, "policy", "", "read, write, operator or management")
	c.Flags().StringVar(&prefix, "app-prefix", "", "limit the token to apps whose id starts with this path, e.g. /team-a/ (read and write tokens)")
	c.Flags().StringVar(&description, "description", "", "what the token is for")
	_ = c.MarkFlagRequired("policy")
	return c
}

func aclTokenListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the tokens (without secrets)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.acl.ListTokens(c.Context(), connect.NewRequest(&v1.ListTokensRequest{}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			var rows [][]string
			for _, t := range res.Msg.GetTokens() {
				rows = append(rows, tokenRow(t))
			}
			return table(c.OutOrStdout(), tokenHeader, rows)
		},
	}
}

func aclTokenDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ACCESSOR",
		Short: "Delete a token",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			if _, err := cl.acl.DeleteToken(c.Context(), connect.NewRequest(&v1.DeleteTokenRequest{AccessorId: args[0]})); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "token %s deleted\n", args[0])
			return nil
		},
	}
}

func aclTokenSelfCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "self",
		Short: "Describe the token given by --token / BERTH_TOKEN",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.acl.TokenSelf(c.Context(), connect.NewRequest(&v1.TokenSelfRequest{}))
			if err != nil {
				return err
			}
			return printToken(c.OutOrStdout(), res.Msg, res.Msg.GetToken(), "")
		},
	}
}

var tokenHeader = []string{"ACCESSOR", "POLICY", "APP PREFIX", "DESCRIPTION", "CREATED"}

func tokenRow(t *v1.ACLToken) []string {
	created := ""
	if t.GetCreateTime() != nil {
		created = t.GetCreateTime().AsTime().UTC().Format("2006-01-02T15:04:05Z")
	}
	return []string{t.GetAccessorId(), acl.PolicyName(t.GetPolicy()), orNA(t.GetAppPrefix()), orNA(t.GetDescription()), created}
}

// printToken prints one token (and its secret, when just created).
func printToken(w io.Writer, msg proto.Message, t *v1.ACLToken, secret string) error {
	if flagOutput == "json" {
		return printJSON(w, msg)
	}
	if err := table(w, tokenHeader, [][]string{tokenRow(t)}); err != nil {
		return err
	}
	if secret != "" {
		_, err := fmt.Fprintf(w, "\nSecret: %s\n(shown once; pass it with --token or BERTH_TOKEN)\n", secret)
		return err
	}
	return nil
}
