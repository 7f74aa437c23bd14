package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/backup"
)

// berth volume: the volume-copy mode the scheduler's backup and restore
// tasks run on an agent (the binary fetched from a Berth server), also
// usable by hand on a directory. Target credentials come from the
// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY for s3://).

func init() {
	volumeCmd := &cobra.Command{
		Use:   "volume",
		Short: "Copy a volume to a backup target and back (what backup and restore tasks run)",
	}
	volumeCmd.PersistentFlags().String("target", os.Getenv("BERTH_BACKUP_TARGET"), "backup target: file:///path or s3://bucket/prefix?endpoint=URL&region=R (env BERTH_BACKUP_TARGET)")
	volumeCmd.AddCommand(volumeBackupCmd(), volumeRestoreCmd(), volumeVerifyCmd(), volumePruneCmd(), volumeListCmd())
	rootCmd.AddCommand(volumeCmd)
}

func openTargetFlag(c *cobra.Command) (*backup.Target, error) {
	raw, _ := c.Flags().GetString("target")
	if raw == "" {
		return nil, fmt.Errorf("--target (or BERTH_BACKUP_TARGET) is required")
	}
	return backup.Open(c.Context(), raw)
}

// openCopy starts a copy command: its context (see copyContext) and the
// target of its --target flag; done closes both.
func openCopy(c *cobra.Command) (context.Context, *backup.Target, func(), error) {
	ctx, cancel := copyContext(c.Context())
	c.SetContext(ctx)
	t, err := openTargetFlag(c)
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return ctx, t, func() { t.Close(); cancel() }, nil
}

// copyContext ends on SIGTERM or SIGINT: Mesos kills a task with SIGTERM
// first, and an interrupted copy must stop without writing a manifest.
func copyContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, syscall.SIGTERM, os.Interrupt)
}

// progressPrinter logs progress lines to w.
func progressPrinter(w io.Writer, verb string) func(backup.Progress) {
	return func(p backup.Progress) {
		fmt.Fprintf(w, "%s: %d/%d bytes, %d chunks (%d new, %d bytes uploaded), %.1f MB/s\n",
			verb, p.Bytes, p.TotalBytes, p.Chunks, p.NewChunks, p.UploadedBytes, p.Rate()/1e6)
	}
}

// runHook runs a pre or post command with sh in dir.
func runHook(ctx context.Context, name, command, dir string, out io.Writer) error {
	if command == "" {
		return nil
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s command %q: %w", name, command, err)
	}
	return nil
}

func volumeBackupCmd() *cobra.Command {
	var id, dir, app, instance, pre, post string
	var workers int
	c := &cobra.Command{
		Use:   "backup",
		Short: "Back up a directory to the target (only chunks the target lacks are uploaded)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ctx, t, done, err := openCopy(c)
			if err != nil {
				return err
			}
			defer done()
			if dir == "" || id == "" {
				return fmt.Errorf("--dir and --id are required")
			}
			out := c.ErrOrStderr()
			if err := runHook(ctx, "pre", pre, dir, out); err != nil {
				return err
			}
			printer := progressPrinter(out, "backup")
			report := func(p backup.Progress) {
				printer(p)
				// The leader reads it for the event stream; a failed write
				// only costs an update.
				if err := t.PutProgress(ctx, id, p); err != nil {
					fmt.Fprintln(out, err)
				}
			}
			opts := backup.Options{ID: id, App: app, Instance: instance, Workers: workers, Progress: report, ProgressEvery: 2 * time.Second}
			// An earlier copy under the same id (a migration's live copy):
			// files unchanged since are taken from it without being read.
			if parent, perr := t.Manifest(ctx, id, ""); perr == nil {
				opts.Parent = parent
				fmt.Fprintf(out, "backup %s: an earlier copy under this id (%s) lends its unchanged files\n", id, parent.Created.Format(time.RFC3339))
			}
			res, err := t.Backup(ctx, dir, opts)
			_ = t.ClearProgress(context.WithoutCancel(ctx), id)
			// The post command runs whatever the copy's outcome: it ends
			// what the pre command began (a backup mode, a lock).
			if perr := runHook(context.WithoutCancel(ctx), "post", post, dir, out); perr != nil && err == nil {
				err = perr
			}
			if err != nil {
				return err
			}
			tot := res.Manifest.Totals
			fmt.Fprintf(out, "backup %s: %d files (%d unchanged, not read), %d bytes, %d chunks (%d new, %d bytes uploaded) in %s, %.1f MB/s\n",
				id, tot.Files, tot.ReusedFiles, tot.Bytes, tot.Chunks, tot.NewChunks, tot.NewBytes, res.Elapsed.Round(time.Millisecond),
				float64(tot.Bytes)/res.Elapsed.Seconds()/1e6)
			return json.NewEncoder(c.OutOrStdout()).Encode(map[string]any{"id": id, "manifestSha256": res.ManifestSHA256, "totals": tot})
		},
	}
	c.Flags().StringVar(&id, "id", os.Getenv("BERTH_BACKUP_ID"), "backup id (env BERTH_BACKUP_ID)")
	c.Flags().StringVar(&dir, "dir", "", "directory to back up (the volume)")
	c.Flags().StringVar(&app, "app", os.Getenv("BERTH_APP_ID"), "app id recorded in the manifest")
	c.Flags().StringVar(&instance, "instance", os.Getenv("BERTH_INSTANCE_ID"), "instance id recorded in the manifest")
	c.Flags().StringVar(&pre, "pre-command", os.Getenv("BERTH_BACKUP_PRE_COMMAND"), "shell command run in DIR before the copy")
	c.Flags().StringVar(&post, "post-command", os.Getenv("BERTH_BACKUP_POST_COMMAND"), "shell command run in DIR after the copy")
	c.Flags().IntVar(&workers, "workers", 4, "chunks compressed and uploaded in parallel")
	return c
}

func volumeRestoreCmd() *cobra.Command {
	var id, dir, sum string
	var wipe bool
	c := &cobra.Command{
		Use:   "restore",
		Short: "Restore a backup into a directory (empty, or emptied with --wipe)",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			ctx, t, done, err := openCopy(c)
			if err != nil {
				return err
			}
			defer done()
			if dir == "" || id == "" {
				return fmt.Errorf("--dir and --backup are required")
			}
			start := time.Now()
			m, err := t.Restore(ctx, id, dir, backup.RestoreOptions{ManifestSHA256: sum, Wipe: wipe,
				Progress: progressPrinter(c.ErrOrStderr(), "restore"), ProgressEvery: 2 * time.Second})
			if err != nil {
				return err
			}
			el := time.Since(start)
			fmt.Fprintf(c.ErrOrStderr(), "restored %s into %s: %d files, %d bytes in %s, %.1f MB/s\n",
				id, filepath.Clean(dir), m.Totals.Files, m.Totals.Bytes, el.Round(time.Millisecond), float64(m.Totals.Bytes)/el.Seconds()/1e6)
			return nil
		},
	}
	c.Flags().StringVar(&id, "backup", "", "backup id to restore")
	c.Flags().StringVar(&dir, "dir", "", "directory to restore into (the volume)")
	c.Flags().StringVar(&sum, "manifest-sha256", "", "refuse a manifest whose checksum differs (recorded at backup time)")
	c.Flags().BoolVar(&wipe, "wipe", false, "remove the directory's contents first")
	return c
}

func volumeVerifyCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "verify BACKUP_ID",
		Short: "Re-read every chunk of a backup and check its hash",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("one backup id is required")
			}
			t, err := openTargetFlag(c)
			if err != nil {
				return err
			}
			defer t.Close()
			res, err := t.Verify(c.Context(), args[0], "", nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: %d chunks, %d bytes checked in %s\n", args[0], res.Chunks, res.Bytes, res.Elapsed.Round(time.Millisecond))
			return res.Err()
		},
	}
	return c
}

func volumeListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the backups stored in a target",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			t, err := openTargetFlag(c)
			if err != nil {
				return err
			}
			defer t.Close()
			ids, err := t.Manifests(c.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, id := range ids {
				m, err := t.Manifest(c.Context(), id, "")
				if err != nil {
					return err
				}
				rows = append(rows, []string{id, m.App, m.Instance, m.Created.Format(time.RFC3339), fmt.Sprint(m.Totals.Files), fmt.Sprint(m.Totals.Bytes), fmt.Sprint(m.Totals.NewChunks)})
			}
			return table(c.OutOrStdout(), []string{"ID", "APP", "INSTANCE", "CREATED", "FILES", "BYTES", "NEW CHUNKS"}, rows)
		},
	}
}

func volumePruneCmd() *cobra.Command {
	var keep int
	var maxAge time.Duration
	c := &cobra.Command{
		Use:   "prune",
		Short: "Delete the backups retention drops (per app and instance) and the chunks only they used",
		Args:  usageArgs,
		RunE: func(c *cobra.Command, args []string) error {
			t, err := openTargetFlag(c)
			if err != nil {
				return err
			}
			defer t.Close()
			deleted, gc, err := t.Prune(c.Context(), backup.Retention{Keep: keep, MaxAge: maxAge}, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "deleted %d backup(s) %v and %d chunk(s) (%d bytes)\n", len(deleted), deleted, gc.Deleted, gc.DeletedBytes)
			return nil
		},
	}
	c.Flags().IntVar(&keep, "keep", 0, "keep this many newest backups per instance (0: no limit)")
	c.Flags().DurationVar(&maxAge, "max-age", 0, "delete backups older than this (the newest of an instance is kept)")
	return c
}
