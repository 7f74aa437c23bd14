package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// The nemesis' full disk: each server's data dir is a small file system of
// its own (tmpfs, mounted by the test, which needs root), and the fault
// fills one server's with a filler file until the kernel answers ENOSPC,
// holds it full, then removes the filler. Berth must ride it out as the
// issue asks: a leader that cannot write its log steps down (once) and the
// server stays a follower, taking no part in elections, until its disk
// takes writes again (cluster/diskhealth.go); no election storm (the Raft
// term climbs by a few at most); writes resume on their own once space is
// back; nothing acknowledged is lost (the suite's usual checks).

// nemesisDiskSize is each server's data-dir file system: room for the Raft
// log and snapshots of a long run, small enough to fill in a moment.
const nemesisDiskSize = 256 << 20

// nemesisDiskTermClimb bounds how far the Raft term may climb while one
// server's disk is full, up to the others agreeing on a leader: the
// step-down of a full leader costs an election, or a few split ones on a
// busy machine; an election storm costs one per election timeout for as
// long as the disk stays full.
const nemesisDiskTermClimb = 6

// nemesisDiskQuiet is how long, once the others lead, the term must stay
// put while the disk is still full: several election timeouts.
const nemesisDiskQuiet = 3 * time.Second

// diskFaultUnavailable says why this machine cannot run the disk-full
// fault ("" when it can): it mounts and unmounts a tiny tmpfs.
func diskFaultUnavailable(t *testing.T) string {
	if os.Geteuid() != 0 {
		return "not root: cannot mount a tmpfs for the servers' data dirs"
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		return fmt.Sprintf("mount -t tmpfs failed: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
		t.Fatalf("unmount the probe tmpfs %s: %v: %s", dir, err, out)
	}
	return ""
}

// mountDataDir returns a fresh directory with a tmpfs of its own mounted
// on it, unmounted when the test ends (after the servers using it have
// stopped: cleanups run in reverse order), whether it passed or not.
func mountDataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	opts := fmt.Sprintf("size=%d,mode=0700", nemesisDiskSize)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			// Something still holds a file open there: detach it now, the
			// kernel frees it once the last user goes.
			t.Logf("umount %s: %v: %s; detaching it (umount -l)", dir, err, out)
			if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
				t.Errorf("umount -l %s: %v: %s", dir, err, out)
			}
		}
	})
	return dir
}

// fillDisk writes a filler file into dir until the file system is full;
// it returns the filler's path and size.
func fillDisk(dir string) (string, int64, error) {
	path := filepath.Join(dir, "nemesis-filler")
	f, err := os.Create(path)
	if err != nil {
		return path, 0, err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	var size int64
	for {
		n, err := f.Write(chunk)
		size += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			return path, size, nil
		}
		if err != nil {
			return path, size, err
		}
		if size > 2*nemesisDiskSize {
			return path, size, fmt.Errorf("wrote %d bytes into %s and it is still not full: not the test's small file system", size, dir)
		}
	}
}

// raftTerm is the highest Raft term the given servers report (0 when none
// answers).
func raftTerm(among []*nemesisServer) uint64 {
	var term uint64
	for _, s := range among {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		res, err := s.cluster.Leader(ctx, connect.NewRequest(&v1.LeaderRequest{}))
		cancel()
		if err == nil && res.Msg.GetTerm() > term {
			term = res.Msg.GetTerm()
		}
	}
	return term
}

// diskError is the disk error the given server's members list reports for
// name ("" if none, or no answer).
func diskError(s *nemesisServer, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	res, err := s.cluster.Members(ctx, connect.NewRequest(&v1.MembersRequest{}))
	if err != nil {
		return ""
	}
	for _, m := range res.Msg.GetMembers() {
		if m.GetName() == name {
			return m.GetDiskError()
		}
	}
	return ""
}

// diskFullFault fills the data dir of the leader or of a follower. Its
// heal checks, before freeing the space, that the full server is not the
// leader, that the term did not storm and that the others still take
// writes; then it frees the space.
var diskFullFault = fault{"disk-full", func(n *nemesis) (func(), string) {
	t := n.t
	s, role := n.target()
	rest := n.others(s)
	term := raftTerm(n.servers)
	filler, size, err := fillDisk(s.dataDir)
	if err != nil {
		t.Fatalf("fill the data dir of %s: %v", s.name, err)
	}
	desc := fmt.Sprintf("disk full on %s %s (%d MiB filler)", role, s.name, size>>20)
	return func() {
		defer func() {
			if err := os.Remove(filler); err != nil {
				t.Errorf("free the disk of %s: %v", s.name, err)
			}
		}()
		select {
		case <-s.p.done:
			t.Errorf("%s: %s exited while its disk was full:\n%s", desc, s.name, tail(s.p.out.String(), 40))
			return
		default:
		}
		// The others lead and take writes while one disk is full, whatever
		// the full server did.
		lead := n.leader(rest)
		got := raftTerm(rest)
		// Once the others lead, no election may start while the disk stays
		// full: a storm starts one per election timeout (1 s).
		time.Sleep(nemesisDiskQuiet)
		if later := raftTerm(rest); later != got {
			t.Errorf("%s: the Raft term went from %d to %d in %s after the others had a leader: elections kept starting", desc, got, later, nemesisDiskQuiet)
		}
		if got > term+nemesisDiskTermClimb {
			t.Errorf("%s: the Raft term climbed from %d to %d: an election storm", desc, term, got)
		}
		reason := diskError(lead, s.name)
		if reason == "" {
			reason = "no disk error reported (yet)"
		}
		t.Logf("%s: term %d → %d while full, then steady for %s; %s leads; %s says of %s: %s", desc, term, got, nemesisDiskQuiet, lead.name, lead.name, s.name, reason)
		if s.leaderSeen() == s.name {
			t.Errorf("%s: %s still calls itself the leader with a full disk", desc, s.name)
		}
	}, desc
}}
