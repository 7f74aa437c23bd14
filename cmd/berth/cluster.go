package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
	"github.com/berth-dev/berth/rpc"
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
			// Written next to FILE and renamed once complete: FILE is
			// never a partial snapshot.
			tmp := args[0] + ".tmp"
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return fmt.Errorf("write snapshot: %w", err)
			}
			defer os.Remove(tmp) // after the rename: nothing
			meta, size, err := saveSnapshot(c.Context(), cl, f)
			if cerr := f.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("write snapshot: %w", cerr)
			}
			if err != nil {
				return err
			}
			if err := os.Rename(tmp, args[0]); err != nil {
				return fmt.Errorf("write snapshot: %w", err)
			}
			fmt.Fprintf(c.OutOrStdout(), "Saved snapshot at index %d (term %d, %d bytes) to %s\n",
				meta.Index, meta.Term, size, args[0])
			return nil
		},
	}
}

// saveSnapshot streams a snapshot into f (SaveSnapshotStream), or takes it
// in one message from a server too old to stream it, and returns it with
// its size.
func saveSnapshot(ctx context.Context, cl *clients, f *os.File) (rpc.SnapshotMeta, int64, error) {
	meta, err := rpc.DownloadSnapshot(ctx, cl.cluster, connect.NewRequest(&v1.SaveSnapshotRequest{}), f)
	size, serr := f.Seek(0, io.SeekCurrent)
	if serr != nil {
		return rpc.SnapshotMeta{}, 0, fmt.Errorf("write snapshot: %w", serr)
	}
	if connect.CodeOf(err) == connect.CodeUnimplemented && size == 0 {
		res, uerr := cl.cluster.SaveSnapshot(ctx, connect.NewRequest(&v1.SaveSnapshotRequest{}))
		if uerr != nil {
			return rpc.SnapshotMeta{}, 0, uerr
		}
		if _, err := f.Write(res.Msg.GetData()); err != nil {
			return rpc.SnapshotMeta{}, 0, fmt.Errorf("write snapshot: %w", err)
		}
		meta, size, err = rpc.SnapshotMeta{Index: res.Msg.GetIndex(), Term: res.Msg.GetTerm()}, int64(len(res.Msg.GetData())), nil
	}
	if err != nil {
		return rpc.SnapshotMeta{}, 0, err
	}
	if err := f.Sync(); err != nil {
		return rpc.SnapshotMeta{}, 0, fmt.Errorf("write snapshot: %w", err)
	}
	return meta, size, nil
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
			st, err := f.Stat()
			if err != nil {
				return fmt.Errorf("read snapshot: %w", err)
			}
			_, err = rpc.UploadSnapshot(c.Context(), cl.cluster, nil, f, st.Size())
			if connect.CodeOf(err) == connect.CodeUnimplemented {
				// A server too old to take it in chunks.
				err = restoreWhole(c.Context(), cl, f)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "Restored snapshot %s (%d bytes)\n", args[0], st.Size())
			return nil
		},
	}
}

// restoreWhole sends the snapshot file f in one RestoreSnapshot message.
func restoreWhole(ctx context.Context, cl *clients, f *os.File) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	_, err = cl.cluster.RestoreSnapshot(ctx, connect.NewRequest(&v1.RestoreSnapshotRequest{Data: data}))
	return err
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
