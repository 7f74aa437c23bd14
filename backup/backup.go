package backup

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/restic/chunker"
	"gocloud.dev/blob"
)

// Options tune a backup.
type Options struct {
	// ID names the backup; its manifest is stored under it. Required.
	ID string
	// App and Instance are recorded in the manifest (retention groups
	// backups by them).
	App, Instance string
	// Created is recorded in the manifest; zero means now.
	Created time.Time
	// Workers compress and upload chunks in parallel (default 4).
	Workers int
	// Progress, when set, is called from the backup's goroutine as it
	// goes (at most every ProgressEvery) and once at the end.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// MinChunk, MaxChunk and AverageBits override the chunker's bounds
	// (512 KiB, 8 MiB, 2^20: restic's); tests use small chunks.
	MinChunk, MaxChunk uint
	AverageBits        int
	// Parent is an earlier backup of the same directory (a migration's
	// live copy): a regular file whose size and modification time are
	// those the parent recorded, and which had not been modified for
	// racyWindow before the parent began, takes the parent's chunks
	// without being read again (the quick check of rsync, with git's
	// guard against files changed in the same clock tick as the scan).
	// Only chunks the target holds are reused.
	Parent *Manifest
}

// racyWindow is how long before its backup began a file must have been
// unmodified for a later backup to trust its size and modification time:
// a write just after the scan may keep both (a coarse clock, an overwrite
// in place) while the copy read the old content.
const racyWindow = 2 * time.Second

// Progress reports how far a backup or restore got.
type Progress struct {
	// Bytes of file content read (backup) or written (restore) so far, of
	// TotalBytes.
	Bytes, TotalBytes int64
	// Chunks handled so far; NewChunks of them uploaded (backup).
	Chunks, NewChunks int
	// UploadedBytes is the compressed size of the new chunks so far.
	UploadedBytes int64
	Elapsed       time.Duration
}

// Rate is the throughput so far in bytes per second.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Bytes) / p.Elapsed.Seconds()
}

// Result is a finished backup.
type Result struct {
	Manifest *Manifest
	// ManifestSHA256 is the checksum of the stored manifest; record it and
	// pass it to Restore and Verify to detect a changed manifest.
	ManifestSHA256 string
	Elapsed        time.Duration
}

type pendingChunk struct {
	hash string
	data []byte
}

// Backup copies the directory dir into the target as backup opts.ID:
// every chunk the target lacks is compressed and uploaded, then the
// manifest is written last, so a backup interrupted at any point leaves
// no manifest (and only chunks a later backup reuses or GC removes).
func (t *Target) Backup(ctx context.Context, dir string, opts Options) (*Result, error) {
	if opts.ID == "" || !validID(opts.ID) {
		return nil, fmt.Errorf("backup id %q: must be letters, digits, '.', '_' or '-'", opts.ID)
	}
	start := time.Now()
	if opts.Created.IsZero() {
		opts.Created = start.UTC()
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = time.Second
	}
	entries, total, err := scan(dir)
	if err != nil {
		return nil, err
	}
	have, err := t.chunkSet(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", opts.ID, err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan pendingChunk, opts.Workers)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		uploaded int64
	)
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				n, err := t.putChunk(ctx, c.hash, c.data)
				if err != nil {
					cancel(err)
					continue // drain
				}
				mu.Lock()
				uploaded += n
				mu.Unlock()
			}
		}()
	}

	m := &Manifest{Version: FormatVersion, ID: opts.ID, App: opts.App, Instance: opts.Instance,
		Created: opts.Created.UTC(), Compression: compressionName}
	prog := Progress{TotalBytes: total}
	lastReport := start
	report := func(final bool) {
		if opts.Progress == nil {
			return
		}
		now := time.Now()
		if !final && now.Sub(lastReport) < opts.ProgressEvery {
			return
		}
		lastReport = now
		mu.Lock()
		prog.UploadedBytes = uploaded
		mu.Unlock()
		prog.Elapsed = now.Sub(start)
		opts.Progress(prog)
	}
	parent := map[string]*File{}
	if opts.Parent != nil {
		for i := range opts.Parent.Files {
			parent[opts.Parent.Files[i].Path] = &opts.Parent.Files[i]
		}
	}
	inRun := map[string]bool{} // chunks queued in this backup
	unique := map[string]bool{}
	ch := chunker.New(nil, t.pol)
	buf := make([]byte, chunker.MaxSize)
	var walkErr error
	for _, e := range entries {
		if ctx.Err() != nil {
			break
		}
		if e.skipped {
			m.Skipped = append(m.Skipped, e.file.Path)
			continue
		}
		f := e.file
		if p := unchanged(parent[f.Path], e, opts.Parent, have); p != nil {
			f.Chunks, f.SHA256, f.Size = p.Chunks, p.SHA256, p.Size
			for _, r := range p.Chunks {
				unique[r.Hash] = true
			}
			prog.Chunks += len(p.Chunks)
			prog.Bytes += p.Size
			report(false)
			m.Totals.Files++
			m.Totals.Bytes += p.Size
			m.Totals.Chunks += len(p.Chunks)
			m.Totals.ReusedFiles++
		} else if f.Type == TypeFile {
			refs, sum, n, err := t.chunkFile(ctx, filepath.Join(dir, filepath.FromSlash(f.Path)), ch, buf, opts, func(hash string, data []byte) {
				prog.Chunks++
				unique[hash] = true
				if _, ok := have[hash]; ok || inRun[hash] {
					return
				}
				inRun[hash] = true
				prog.NewChunks++
				select {
				case work <- pendingChunk{hash: hash, data: bytes.Clone(data)}:
				case <-ctx.Done():
				}
			}, func(n int) { prog.Bytes += int64(n); report(false) })
			if err != nil {
				walkErr = err
				break
			}
			f.Chunks, f.SHA256, f.Size = refs, sum, n
			m.Totals.Files++
			m.Totals.Bytes += n
			m.Totals.Chunks += len(refs)
		}
		m.Files = append(m.Files, f)
	}
	close(work)
	wg.Wait()
	if walkErr != nil {
		return nil, fmt.Errorf("backup %s: %w", opts.ID, walkErr)
	}
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("backup %s: %w", opts.ID, err)
	}
	m.Totals.UniqueChunks = len(unique)
	m.Totals.NewChunks = prog.NewChunks
	m.Totals.NewBytes = uploaded
	sum, err := t.writeManifest(ctx, m)
	if err != nil {
		return nil, err
	}
	report(true)
	return &Result{Manifest: m, ManifestSHA256: sum, Elapsed: time.Since(start)}, nil
}

// chunkFile cuts one file into chunks, calling emit for each (data is only
// valid during the call) and read after each chunk with its size.
func (t *Target) chunkFile(ctx context.Context, path string, ch *chunker.Chunker, buf []byte, opts Options,
	emit func(hash string, data []byte), read func(int)) ([]ChunkRef, string, int64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, "", 0, err
	}
	defer fh.Close()
	min, max := uint(chunker.MinSize), uint(chunker.MaxSize)
	if opts.MinChunk > 0 {
		min = opts.MinChunk
	}
	if opts.MaxChunk > 0 {
		max = opts.MaxChunk
	}
	ch.ResetWithBoundaries(fh, t.pol, min, max)
	if opts.AverageBits > 0 {
		ch.SetAverageBits(opts.AverageBits)
	}
	whole := sha256.New()
	var refs []ChunkRef
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			return nil, "", 0, err
		}
		c, err := ch.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, "", 0, fmt.Errorf("read %s: %w", path, err)
		}
		sum := sha256.Sum256(c.Data)
		hash := hex.EncodeToString(sum[:])
		whole.Write(c.Data)
		refs = append(refs, ChunkRef{Hash: hash, Size: uint32(c.Length)})
		size += int64(c.Length)
		emit(hash, c.Data)
		read(int(c.Length))
	}
	return refs, hex.EncodeToString(whole.Sum(nil)), size, nil
}

// putChunk compresses and stores one chunk, returning its stored size.
func (t *Target) putChunk(ctx context.Context, hash string, data []byte) (int64, error) {
	var out bytes.Buffer
	out.Grow(len(data)/2 + 64)
	zw, _ := flate.NewWriter(&out, flate.BestSpeed)
	if _, err := zw.Write(data); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	if err := t.bucket.WriteAll(ctx, chunkKey(hash), out.Bytes(), &blob.WriterOptions{ContentType: "application/octet-stream"}); err != nil {
		return 0, fmt.Errorf("upload chunk %s: %w", hash[:12], err)
	}
	return int64(out.Len()), nil
}

// getChunk reads, decompresses and checks one chunk.
func (t *Target) getChunk(ctx context.Context, ref ChunkRef) ([]byte, error) {
	z, err := t.bucket.ReadAll(ctx, chunkKey(ref.Hash))
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", ref.Hash[:12], err)
	}
	data, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(z)), int64(ref.Size)+1))
	if err != nil {
		return nil, fmt.Errorf("chunk %s: decompress: %w", ref.Hash[:12], errCorrupt)
	}
	sum := sha256.Sum256(data)
	if len(data) != int(ref.Size) || hex.EncodeToString(sum[:]) != ref.Hash {
		return nil, fmt.Errorf("chunk %s: content does not match its hash: %w", ref.Hash[:12], errCorrupt)
	}
	return data, nil
}

var errCorrupt = errors.New("corrupt chunk")

// unchanged returns the parent's entry of a regular file it may reuse
// (see Options.Parent), or nil.
func unchanged(p *File, e scanned, parent *Manifest, have map[string]int64) *File {
	f := e.file
	if p == nil || f.Type != TypeFile || p.Type != TypeFile || p.Size != e.size || !p.ModTime.Equal(f.ModTime) ||
		!p.ModTime.Before(parent.Created.Add(-racyWindow)) {
		return nil
	}
	for _, r := range p.Chunks {
		if _, ok := have[r.Hash]; !ok {
			return nil
		}
	}
	return p
}

type scanned struct {
	file    File
	size    int64 // a regular file's size when scanned
	skipped bool
}

// scan walks dir in lexical order (parents before children) and returns
// its entries and the total size of its regular files.
func scan(dir string) ([]scanned, int64, error) {
	// The volume may be a symlink to its directory (mesos-local links it
	// into the sandbox); walk what it points to.
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("volume: %w", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("volume: %w", err)
	}
	if !info.IsDir() {
		return nil, 0, fmt.Errorf("volume %s: not a directory", dir)
	}
	var out []scanned
	var total int64
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f := File{Path: filepath.ToSlash(rel), Mode: uint32(info.Mode().Perm() | info.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)),
			ModTime: info.ModTime().UTC()}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			f.UID, f.GID = int(st.Uid), int(st.Gid)
		}
		switch {
		case info.Mode().IsRegular():
			f.Type = TypeFile
			total += info.Size()
			out = append(out, scanned{file: f, size: info.Size()})
			return nil
		case info.IsDir():
			f.Type = TypeDir
		case info.Mode()&fs.ModeSymlink != 0:
			f.Type = TypeSymlink
			if f.Link, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			out = append(out, scanned{file: f, skipped: true})
			return nil
		}
		out = append(out, scanned{file: f})
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("scan volume: %w", err)
	}
	return out, total, nil
}

func validID(id string) bool {
	if len(id) > 200 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return id != "." && id != ".."
}
