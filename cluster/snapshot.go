package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Snapshot file format (version 1):
//
//	BERTH-SNAPSHOT 1\n
//	{"format":1,"index":...,"term":...,"size":N,...}\n   (SnapshotInfo as JSON)
//	<N bytes: the FSM snapshot exactly as raft stores it>
//	sha256 <hex digest of those N bytes>\n
//
// The header makes a file recognisable and carries what raft.Restore needs;
// the trailer lets a restore reject a truncated or corrupted file before
// anything is applied (raft panics if the FSM fails to restore).
const (
	snapshotMagic   = "BERTH-SNAPSHOT 1"
	snapshotFormat  = 1
	maxHeaderLen    = 64 << 10
	snapshotTrailer = "sha256 "
)

// SnapshotInfo describes a saved snapshot.
type SnapshotInfo struct {
	Format int `json:"format"`
	// ID is raft's snapshot id on the server that saved it.
	ID string `json:"id"`
	// Index and Term of the last log entry the snapshot contains.
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	// Size of the FSM data in bytes.
	Size int64 `json:"size"`
	// RaftSnapshotVersion is raft's snapshot format version.
	RaftSnapshotVersion int       `json:"raft_snapshot_version"`
	NodeName            string    `json:"node_name"`
	BerthVersion        string    `json:"berth_version,omitempty"`
	CreatedAt           time.Time `json:"created_at"`
	// SHA256 of the FSM data (hex); from the trailer, not the header.
	SHA256 string `json:"-"`
}

// SaveSnapshot takes a Raft snapshot of the FSM on this server (leader or
// follower) and streams it to w with a header identifying it and a
// checksum trailer. If nothing was applied since the last snapshot, that
// snapshot is streamed.
func (n *Node) SaveSnapshot(ctx context.Context, w io.Writer) (SnapshotInfo, error) {
	if err := n.running(); err != nil {
		return SnapshotInfo{}, err
	}
	meta, rc, err := n.openSnapshot(ctx)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("save snapshot: %w", err)
	}
	defer rc.Close()
	info := SnapshotInfo{
		Format:              snapshotFormat,
		ID:                  meta.ID,
		Index:               meta.Index,
		Term:                meta.Term,
		Size:                meta.Size,
		RaftSnapshotVersion: int(meta.Version),
		NodeName:            n.cfg.NodeName,
		BerthVersion:        n.cfg.Version,
		CreatedAt:           time.Now().UTC(),
	}
	header, err := json.Marshal(info)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("save snapshot: encode header: %w", err)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := fmt.Fprintf(bw, "%s\n%s\n", snapshotMagic, header); err != nil {
		return SnapshotInfo{}, fmt.Errorf("save snapshot: write header: %w", err)
	}
	h := sha256.New()
	copied, err := io.Copy(io.MultiWriter(bw, h), &ctxReader{ctx: ctx, r: rc})
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("save snapshot: write data: %w", err)
	}
	if copied != meta.Size {
		return SnapshotInfo{}, fmt.Errorf("save snapshot: raft snapshot %s has %d bytes, its metadata says %d", meta.ID, copied, meta.Size)
	}
	info.SHA256 = hex.EncodeToString(h.Sum(nil))
	if _, err := fmt.Fprintf(bw, "%s%s\n", snapshotTrailer, info.SHA256); err != nil {
		return SnapshotInfo{}, fmt.Errorf("save snapshot: write trailer: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return SnapshotInfo{}, fmt.Errorf("save snapshot: %w", err)
	}
	n.log.Info("snapshot saved", "index", info.Index, "term", info.Term, "bytes", info.Size)
	return info, nil
}

// openSnapshot takes a fresh snapshot, or opens the newest stored one when
// nothing was applied since.
func (n *Node) openSnapshot(ctx context.Context) (*raft.SnapshotMeta, io.ReadCloser, error) {
	f := n.raft.Snapshot()
	err := waitFuture(ctx, f)
	if err == nil {
		return f.Open()
	}
	if !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil, nil, err
	}
	metas, lerr := n.snaps.List()
	if lerr != nil {
		return nil, nil, fmt.Errorf("list raft snapshots: %w", lerr)
	}
	if len(metas) > 0 {
		return n.snaps.Open(metas[0].ID)
	}
	// Nothing has reached the FSM yet (a new, empty cluster). On the leader
	// a barrier entry gives raft something to snapshot: an empty state.
	if n.IsLeader() {
		if err := n.Barrier(ctx); err != nil {
			return nil, nil, err
		}
		f = n.raft.Snapshot()
		if err := waitFuture(ctx, f); err != nil {
			return nil, nil, err
		}
		return f.Open()
	}
	return nil, nil, errors.New("nothing to snapshot yet on this follower: no entry has been applied; try the leader")
}

// RestoreSnapshot replaces the cluster's state with a snapshot written by
// SaveSnapshot (from this or another cluster; the current Raft
// configuration is kept). Leader only (ErrNotLeader otherwise). The file is
// read and verified completely (header, size, checksum, and
// Config.VerifySnapshot if set) before Raft sees it. Meant for disaster
// recovery into a fresh cluster.
func (n *Node) RestoreSnapshot(ctx context.Context, r io.Reader) (SnapshotInfo, error) {
	if err := n.running(); err != nil {
		return SnapshotInfo{}, err
	}
	if !n.IsLeader() {
		return SnapshotInfo{}, ErrNotLeader
	}
	received := time.Now()
	info, tmp, err := n.readSnapshot(ctx, r)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("restore snapshot: %w", err)
	}
	cleanup := func() {
		tmp.Close()
		os.Remove(tmp.Name())
		if n.cfg.DiscardVerified != nil {
			n.cfg.DiscardVerified()
		}
	}
	n.log.Info("snapshot to restore received and checksummed", "bytes", info.Size, "took", time.Since(received).Round(time.Millisecond))
	if n.cfg.VerifySnapshot != nil {
		verifying := time.Now()
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			cleanup()
			return SnapshotInfo{}, fmt.Errorf("restore snapshot: %w", err)
		}
		if err := n.cfg.VerifySnapshot(io.LimitReader(tmp, info.Size)); err != nil {
			cleanup()
			return SnapshotInfo{}, fmt.Errorf("restore snapshot: data rejected: %w", err)
		}
		n.log.Info("snapshot to restore verified", "took", time.Since(verifying).Round(time.Millisecond))
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		cleanup()
		return SnapshotInfo{}, fmt.Errorf("restore snapshot: %w", err)
	}
	meta := &raft.SnapshotMeta{
		Version: raft.SnapshotVersion(info.RaftSnapshotVersion),
		ID:      info.ID,
		Index:   info.Index,
		Term:    info.Term,
		Size:    info.Size,
	}
	timeout, err := timeoutFrom(ctx)
	if err != nil {
		cleanup()
		return SnapshotInfo{}, fmt.Errorf("restore snapshot: %w", err)
	}
	// raft.Restore cannot be interrupted; it owns the file until it returns.
	done := make(chan error, 1)
	go func() {
		defer cleanup()
		started := time.Now()
		err := n.raft.Restore(meta, tmp, timeout)
		n.log.Info("raft restore returned (snapshot installed here and on a quorum)", "took", time.Since(started).Round(time.Millisecond), "err", err)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return SnapshotInfo{}, fmt.Errorf("restore snapshot: %w", mapRaftErr(err))
		}
	case <-ctx.Done():
		return SnapshotInfo{}, fmt.Errorf("restore snapshot: %w; the restore may still complete", ctx.Err())
	}
	n.log.Info("snapshot restored", "from_node", info.NodeName, "from_index", info.Index, "bytes", info.Size)
	return info, nil
}

// readSnapshot parses and verifies a snapshot stream into a temporary file
// positioned anywhere; the caller seeks and removes it.
func (n *Node) readSnapshot(ctx context.Context, r io.Reader) (SnapshotInfo, *os.File, error) {
	var info SnapshotInfo
	br := bufio.NewReaderSize(&ctxReader{ctx: ctx, r: r}, 64<<10)
	magic, err := readLine(br, len(snapshotMagic)+1)
	if errors.Is(err, io.EOF) {
		return info, nil, errors.New("not a Berth snapshot (empty input)")
	}
	if err != nil || magic != snapshotMagic {
		if err == nil || errors.Is(err, errLineTooLong) {
			return info, nil, errors.New("not a Berth snapshot (missing \"" + snapshotMagic + "\" header)")
		}
		return info, nil, fmt.Errorf("read header: %w", err)
	}
	header, err := readLine(br, maxHeaderLen)
	if err != nil {
		return info, nil, fmt.Errorf("read header: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(header))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&info); err != nil {
		return info, nil, fmt.Errorf("header: %w", err)
	}
	switch {
	case info.Format != snapshotFormat:
		return info, nil, fmt.Errorf("header: format %d is not supported (want %d)", info.Format, snapshotFormat)
	case info.Size < 0:
		return info, nil, fmt.Errorf("header: size %d is negative", info.Size)
	case info.RaftSnapshotVersion < int(raft.SnapshotVersionMin) || info.RaftSnapshotVersion > int(raft.SnapshotVersionMax):
		return info, nil, fmt.Errorf("header: raft_snapshot_version %d is not supported", info.RaftSnapshotVersion)
	}
	dir := os.TempDir()
	if !n.cfg.InMemory {
		dir = n.cfg.DataDir
	}
	tmp, err := os.CreateTemp(dir, "restore-*.snap")
	if err != nil {
		return info, nil, fmt.Errorf("temporary file: %w", err)
	}
	fail := func(err error) (SnapshotInfo, *os.File, error) {
		tmp.Close()
		os.Remove(tmp.Name())
		return info, nil, err
	}
	h := sha256.New()
	copied, err := io.CopyN(io.MultiWriter(tmp, h), br, info.Size)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fail(fmt.Errorf("truncated: %d of %d data bytes", copied, info.Size))
		}
		return fail(fmt.Errorf("read data: %w", err))
	}
	if err := checkTrailer(br, h); err != nil {
		return fail(err)
	}
	info.SHA256 = hex.EncodeToString(h.Sum(nil))
	return info, tmp, nil
}

func checkTrailer(br *bufio.Reader, h hash.Hash) error {
	line, err := readLine(br, len(snapshotTrailer)+2*sha256.Size+1)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("truncated: checksum trailer missing")
		}
		return fmt.Errorf("checksum trailer: %w", err)
	}
	want, ok := strings.CutPrefix(line, snapshotTrailer)
	if !ok {
		return errors.New("checksum trailer malformed (data size in header wrong?)")
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("checksum mismatch: data has sha256 %s, trailer says %s", got, want)
	}
	if _, err := br.ReadByte(); err == nil {
		return errors.New("unexpected data after the checksum trailer")
	} else if !errors.Is(err, io.EOF) {
		return fmt.Errorf("after trailer: %w", err)
	}
	return nil
}

var errLineTooLong = errors.New("line too long")

// readLine reads one '\n'-terminated line of at most max bytes.
func readLine(br *bufio.Reader, max int) (string, error) {
	var buf bytes.Buffer
	for {
		b, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && buf.Len() > 0 {
				return "", io.ErrUnexpectedEOF
			}
			return "", err
		}
		if b == '\n' {
			return buf.String(), nil
		}
		if buf.Len() >= max {
			return "", errLineTooLong
		}
		buf.WriteByte(b)
	}
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
