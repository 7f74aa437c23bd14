package main

import (
	"context"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

func init() {
	backupCmd := &cobra.Command{Use: "backup", Short: "Back up instances' volumes to their app's backup target; list, verify, delete and prune backups"}
	backupCmd.AddCommand(backupCreateCmd(), backupListCmd(), backupGetCmd(), backupVerifyCmd(), backupDeleteCmd(), backupPruneCmd())
	rootCmd.AddCommand(clientCommand(backupCmd), clientCommand(restoreCmd()))
}

func backupCreateCmd() *cobra.Command {
	var instance string
	var wait bool
	c := &cobra.Command{
		Use:   "create APP",
		Short: "Back up one instance (--instance) or every instance of an app with a berth",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.backups.CreateBackup(c.Context(), connect.NewRequest(&v1.CreateBackupRequest{AppId: args[0], InstanceId: instance}))
			if err != nil {
				return err
			}
			if !wait {
				if flagOutput == "json" {
					return printJSON(c.OutOrStdout(), res.Msg)
				}
				return backupTable(c, res.Msg.GetBackups())
			}
			return waitBackups(c.Context(), c, cl, args[0], res.Msg.GetBackups())
		},
	}
	c.Flags().StringVar(&instance, "instance", "", "back up only this instance")
	c.Flags().BoolVar(&wait, "wait", false, "follow the backups (progress) until they end; fail if one fails")
	return c
}

func backupListCmd() *cobra.Command {
	var instance string
	var restores bool
	c := &cobra.Command{
		Use:   "list [APP]",
		Short: "List backups, newest first",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			req := &v1.ListBackupsRequest{InstanceId: instance, IncludeRestores: restores}
			if len(args) > 0 {
				req.AppId = args[0]
			}
			res, err := cl.backups.ListBackups(c.Context(), connect.NewRequest(req))
			if err != nil {
				return err
			}
			if flagOutput == "json" {
				return printJSON(c.OutOrStdout(), res.Msg)
			}
			return backupTable(c, res.Msg.GetBackups())
		},
	}
	c.Flags().StringVar(&instance, "instance", "", "only backups of this instance")
	c.Flags().BoolVar(&restores, "restores", false, "list restores too")
	return c
}

func backupGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get BACKUP",
		Short: "Show one backup or restore",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.backups.GetBackup(c.Context(), connect.NewRequest(&v1.GetBackupRequest{Id: args[0]}))
			if err != nil {
				return err
			}
			return printJSON(c.OutOrStdout(), res.Msg.GetBackup())
		},
	}
}

func backupVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify BACKUP",
		Short: "Re-read every chunk of a backup and check its hash",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.backups.VerifyBackup(c.Context(), connect.NewRequest(&v1.VerifyBackupRequest{Id: args[0]}))
			if err != nil {
				return err
			}
			m := res.Msg
			if flagOutput == "json" {
				if err := printJSON(c.OutOrStdout(), m); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(c.OutOrStdout(), "backup %s: %d chunks, %d bytes checked; %d missing, %d corrupt\n",
					args[0], m.GetChunks(), m.GetBytes(), len(m.GetMissingChunks()), len(m.GetCorruptChunks()))
			}
			if !m.GetOk() {
				return fmt.Errorf("backup %s is damaged: %s", args[0], m.GetBackup().GetVerifyError())
			}
			return nil
		},
	}
}

func backupDeleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "delete BACKUP",
		Short: "Delete a backup (its manifest, its record, and the chunks no other backup uses)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			if _, err := cl.backups.DeleteBackup(c.Context(), connect.NewRequest(&v1.DeleteBackupRequest{Id: args[0]})); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "backup %s deleted\n", args[0])
			return err
		},
	}
}

func backupPruneCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "prune APP",
		Short: "Apply the app's backup retention now",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cl, err := newClients()
			if err != nil {
				return err
			}
			res, err := cl.backups.PruneBackups(c.Context(), connect.NewRequest(&v1.PruneBackupsRequest{AppId: args[0]}))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.OutOrStdout(), "deleted %d backup(s) %v, %d chunk(s)\n", len(res.Msg.GetDeleted()), res.Msg.GetDeleted(), res.Msg.GetChunksDeleted())
			return err
		},
	}
}

func restoreCmd() *cobra.Command {
	var instance, backupID, toAgent string
	var wait bool
	c := &cobra.Command{
		Use:   "restore APP",
		Short: "Replace an instance's volume contents by a backup: stop its task, wipe, restore, start it again",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if instance == "" || backupID == "" {
				return fmt.Errorf("--instance and --backup are required")
			}
			cl, err := newClients()
			if err != nil {
				return err
			}
			ctx, events := moveEventsFirst(c.Context(), cl, wait && toAgent != "")
			res, err := cl.backups.Restore(ctx, connect.NewRequest(&v1.RestoreRequest{AppId: args[0], InstanceId: instance, BackupId: backupID, ToAgent: toAgent}))
			if err != nil {
				return err
			}
			if !wait {
				if flagOutput == "json" {
					return printJSON(c.OutOrStdout(), res.Msg)
				}
				return backupTable(c, []*v1.Backup{res.Msg.GetRestore()})
			}
			if toAgent != "" {
				return waitMove(ctx, c, cl, res.Msg.GetRestore(), events)
			}
			return waitBackups(c.Context(), c, cl, args[0], []*v1.Backup{res.Msg.GetRestore()})
		},
	}
	c.Flags().StringVar(&instance, "instance", "", "instance whose berth is restored into")
	c.Flags().StringVar(&backupID, "backup", "", "backup to restore")
	c.Flags().StringVar(&toAgent, "to-agent", "", "restore onto a new berth on this agent (id or hostname); the old berth is destroyed once the new task runs (healthy)")
	c.Flags().BoolVar(&wait, "wait", false, "follow the restore until it ends; fail if it fails")
	return c
}

func backupTable(c *cobra.Command, bs []*v1.Backup) error {
	var rows [][]string
	for _, b := range bs {
		kind := "backup"
		if b.GetKind() == v1.BackupKind_BACKUP_KIND_RESTORE {
			kind = "restore of " + b.GetSourceBackupId()
		}
		created := ""
		if b.GetCreatedAt() != nil {
			created = b.GetCreatedAt().AsTime().Format(time.RFC3339)
		}
		rows = append(rows, []string{b.GetId(), kind, b.GetAppId(), b.GetInstanceId(), stateWord(b.GetState()), created,
			fmt.Sprint(b.GetBytes()), fmt.Sprintf("%d/%d", b.GetChunksNew(), b.GetChunksTotal()), orNA(b.GetError())})
	}
	return table(c.OutOrStdout(), []string{"ID", "KIND", "APP", "INSTANCE", "STATE", "CREATED", "BYTES", "NEW/CHUNKS", "ERROR"}, rows)
}

func stateWord(s v1.BackupState) string {
	switch s {
	case v1.BackupState_BACKUP_STATE_PENDING:
		return "pending"
	case v1.BackupState_BACKUP_STATE_RUNNING:
		return "running"
	case v1.BackupState_BACKUP_STATE_SUCCEEDED:
		return "succeeded"
	case v1.BackupState_BACKUP_STATE_FAILED:
		return "failed"
	}
	return "unknown"
}

// waitBackups follows backups or restores until each ended, printing
// their progress from the event stream; it fails if one failed.
func waitBackups(ctx context.Context, c *cobra.Command, cl *clients, appID string, bs []*v1.Backup) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := c.OutOrStdout()
	watch := map[string]bool{}
	for _, b := range bs {
		watch[b.GetId()] = true
		fmt.Fprintf(out, "%s %s of %s: %s\n", kindOf(b), b.GetId(), b.GetInstanceId(), stateWord(b.GetState()))
	}
	// Progress comes from the event stream; the outcome is polled too, so
	// a lost stream or a missed event cannot hang the wait.
	go func() {
		stream, err := cl.events.StreamEvents(ctx, connect.NewRequest(&v1.StreamEventsRequest{AppId: appID, Types: []string{"backup_progress"}}))
		if err != nil {
			return
		}
		defer stream.Close()
		for stream.Receive() {
			ev := stream.Msg()
			if watch[ev.GetBackup().GetId()] {
				fmt.Fprintf(out, "%s %s: %s (%.1f MB/s)\n", kindOf(ev.GetBackup()), ev.GetBackup().GetId(), ev.GetMessage(), ev.GetRateBytesPerSecond()/1e6)
			}
		}
	}()
	last := map[string]v1.BackupState{}
	var failed []string
	for len(watch) > 0 {
		for id := range watch {
			res, err := cl.backups.GetBackup(ctx, connect.NewRequest(&v1.GetBackupRequest{Id: id}))
			if err != nil {
				return err
			}
			b := res.Msg.GetBackup()
			if b.GetState() != last[id] {
				last[id] = b.GetState()
				fmt.Fprintf(out, "%s %s: %s\n", kindOf(b), id, stateWord(b.GetState()))
			}
			switch b.GetState() {
			case v1.BackupState_BACKUP_STATE_SUCCEEDED:
				delete(watch, id)
			case v1.BackupState_BACKUP_STATE_FAILED:
				delete(watch, id)
				failed = append(failed, fmt.Sprintf("%s %s: %s", kindOf(b), id, b.GetError()))
			}
		}
		if len(watch) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %v", failed)
	}
	return nil
}

func kindOf(b *v1.Backup) string {
	if b.GetKind() == v1.BackupKind_BACKUP_KIND_RESTORE {
		return "restore"
	}
	return "backup"
}
