package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func init() {
	clusterCmd := &cobra.Command{Use: "cluster", Short: "Operate the Berth server cluster"}
	raftCmd := &cobra.Command{Use: "raft", Short: "Inspect and change the Raft configuration"}
	raftCmd.AddCommand(clusterListPeersCmd(), clusterRemovePeerCmd(), clusterTransferCmd())
	snapCmd := &cobra.Command{Use: "snapshot", Short: "Save and restore the replicated state"}
	snapCmd.AddCommand(clusterSnapshotSaveCmd(), clusterSnapshotRestoreCmd())
	clusterCmd.AddCommand(clusterMembersCmd(), clusterLeaderCmd(), raftCmd, snapCmd, clusterKeygenCmd(), clusterKeyringCmd(), clusterLeaveCmd())
	rootCmd.AddCommand(clientCommand(clusterCmd))
}

func clusterMembersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the servers known by gossip",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.cluster.Members(c.Context(), connect.NewRequest(&v1.MembersRequest{}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			var rows [][]string
			for _, m := range res.Msg.GetMembers() {
				status := m.GetStatus()
				if m.GetDiskError() != "" {
					status += " (disk failing: " + m.GetDiskError() + ")"
				}
				rows = append(rows, []string{m.GetName(), status, strconv.FormatBool(m.GetLeader()), m.GetRaftAddr(), m.GetApiAddr(), m.GetGossipAddr(), m.GetVersion()})
			}
			return table(c.OutOrStdout(), []string{"NAME", "STATUS", "LEADER", "RAFT", "API", "GOSSIP", "VERSION"}, rows)
		},
	}
}

func clusterLeaderCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "leader",
		Short: "Show the current leader",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.cluster.Leader(c.Context(), connect.NewRequest(&v1.LeaderRequest{}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			m := res.Msg
			return table(c.OutOrStdout(), []string{"ID", "RAFT", "API", "TERM"}, [][]string{{m.GetId(), m.GetRaftAddr(), m.GetApiAddr(), strconv.FormatUint(m.GetTerm(), 10)}})
		},
	}
}

func clusterListPeersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list-peers",
		Short: "List the Raft voters",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.cluster.ListPeers(c.Context(), connect.NewRequest(&v1.ListPeersRequest{}))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			var rows [][]string
			for _, p := range res.Msg.GetPeers() {
				state := "follower"
				if p.GetLeader() {
					state = "leader"
				}
				rows = append(rows, []string{p.GetId(), p.GetAddress(), state, p.GetSuffrage()})
			}
			return table(c.OutOrStdout(), []string{"ID", "ADDRESS", "STATE", "SUFFRAGE"}, rows)
		},
	}
}

func clusterRemovePeerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove-peer SERVER_ID",
		Short: "Remove a server from the Raft configuration",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			if _, err := cl.cluster.RemovePeer(c.Context(), connect.NewRequest(&v1.RemovePeerRequest{Id: args[0]})); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "Removed peer %s\n", args[0])
			return nil
		},
	}
}

func clusterTransferCmd() *cobra.Command {
	var to string
	c := &cobra.Command{
		Use:   "transfer-leadership",
		Short: "Hand leadership to another server",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.cluster.TransferLeadership(c.Context(), connect.NewRequest(&v1.TransferLeadershipRequest{To: to}))
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "Leadership transferred to %s\n", res.Msg.GetLeader())
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "id of the server to transfer to (default: any)")
	return c
}

func clusterSnapshotSaveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Save a snapshot of the replicated state to FILE",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.cluster.SaveSnapshot(c.Context(), connect.NewRequest(&v1.SaveSnapshotRequest{}))
			if err != nil {
				return err
			}
			tmp := args[0] + ".tmp"
			if err := os.WriteFile(tmp, res.Msg.GetData(), 0o600); err != nil {
				return fmt.Errorf("write snapshot: %w", err)
			}
			if err := os.Rename(tmp, args[0]); err != nil {
				return fmt.Errorf("write snapshot: %w", err)
			}
			fmt.Fprintf(c.OutOrStdout(), "Saved snapshot at index %d (term %d, %d bytes) to %s\n",
				res.Msg.GetIndex(), res.Msg.GetTerm(), len(res.Msg.GetData()), args[0])
			return nil
		},
	}
}

func clusterSnapshotRestoreCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the cluster's whole state with a saved snapshot",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("read snapshot: %w", err)
			}
			defer f.Close()
			var buf bytes.Buffer
			if _, err := io.Copy(&buf, f); err != nil {
				return fmt.Errorf("read snapshot: %w", err)
			}
			if _, err := cl.cluster.RestoreSnapshot(c.Context(), connect.NewRequest(&v1.RestoreSnapshotRequest{Data: buf.Bytes()})); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "Restored snapshot %s (%d bytes)\n", args[0], buf.Len())
			return nil
		},
	}
}

func clusterLeaveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "leave",
		Short: "Make the server at --addr leave the cluster for good, then stop (a restart needs no leave)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.cluster.Leave(c.Context(), connect.NewRequest(&v1.LeaveRequest{}))
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "Server %s left the cluster and is stopping\n", res.Msg.GetId())
			return nil
		},
	}
}
