package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// RestoreOptions tune a restore.
type RestoreOptions struct {
	// ManifestSHA256 is the manifest checksum recorded at backup time
	// ("" skips the check).
	ManifestSHA256 string
	// Wipe removes everything in the directory first. Without it the
	// directory must be empty: a restore never mixes two volumes.
	Wipe bool
	// Workers fetch chunks ahead in parallel (default 4).
	Workers int
	// Progress as for Options.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Restore fills dir with backup id: files with their content, modes,
// owners (when running as root) and modification times, directories and
// symlinks. Every chunk and every file is checked against its hash as it
// is written; a mismatch stops the restore with an error.
func (t *Target) Restore(ctx context.Context, id, dir string, opts RestoreOptions) (*Manifest, error) {
	start := time.Now()
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = time.Second
	}
	m, err := t.Manifest(ctx, id, opts.ManifestSHA256)
	if err != nil {
		return nil, err
	}
	for _, f := range m.Files {
		if f.Path != "." && !filepath.IsLocal(filepath.FromSlash(f.Path)) {
			return nil, fmt.Errorf("manifest %s: path %q leaves the volume", id, f.Path)
		}
	}
	// Every chunk must be there before anything of the volume is wiped:
	// a missing chunk found half way would leave a half-restored volume.
	have, err := t.chunkSet(ctx)
	if err != nil {
		return nil, fmt.Errorf("restore %s: %w", id, err)
	}
	missing := 0
	for _, c := range m.uniqueChunks() {
		if _, ok := have[c.Hash]; !ok {
			missing++
		}
	}
	if missing > 0 {
		return nil, fmt.Errorf("restore %s: %d chunk(s) missing from the target; nothing was changed (run verify)", id, missing)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restore %s: %w", id, err)
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil { // a volume linked into the sandbox
		return nil, fmt.Errorf("restore %s: %w", id, err)
	}
	if err := prepareDir(dir, opts.Wipe); err != nil {
		return nil, fmt.Errorf("restore %s: %w", id, err)
	}

	var refs []ChunkRef
	for _, f := range m.Files {
		refs = append(refs, f.Chunks...)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := t.prefetch(ctx, refs, opts.Workers)

	prog := Progress{TotalBytes: m.Totals.Bytes}
	last := start
	report := func(final bool) {
		if opts.Progress == nil || (!final && time.Since(last) < opts.ProgressEvery) {
			return
		}
		last = time.Now()
		prog.Elapsed = last.Sub(start)
		opts.Progress(prog)
	}
	asRoot := os.Geteuid() == 0
	var dirs []File
	for _, f := range m.Files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		switch f.Type {
		case TypeDir:
			if f.Path != "." {
				if err := os.Mkdir(p, 0o700); err != nil && !os.IsExist(err) {
					return nil, fmt.Errorf("restore %s: %w", id, err)
				}
			}
			dirs = append(dirs, f)
			continue
		case TypeSymlink:
			if err := os.Symlink(f.Link, p); err != nil {
				return nil, fmt.Errorf("restore %s: %w", id, err)
			}
			if asRoot {
				_ = os.Lchown(p, f.UID, f.GID)
			}
			continue
		case TypeFile:
			if err := writeFile(p, f, next, func(n int) { prog.Bytes += int64(n); prog.Chunks++; report(false) }); err != nil {
				return nil, fmt.Errorf("restore %s: %w", id, err)
			}
		default:
			return nil, fmt.Errorf("restore %s: %s: unknown type %q", id, f.Path, f.Type)
		}
		if err := setMeta(p, f, asRoot); err != nil {
			return nil, fmt.Errorf("restore %s: %w", id, err)
		}
	}
	// Directories last, deepest first: writing into a directory changes
	// its modification time, and a read-only mode would stop the writes.
	for i := len(dirs) - 1; i >= 0; i-- {
		f := dirs[i]
		if err := setMeta(filepath.Join(dir, filepath.FromSlash(f.Path)), f, asRoot); err != nil {
			return nil, fmt.Errorf("restore %s: %w", id, err)
		}
	}
	report(true)
	return m, nil
}

// prepareDir empties dir (wipe) or checks that it is empty.
func prepareDir(dir string, wipe bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) > 0 && !wipe {
		return fmt.Errorf("%s is not empty (%s, ...): restore into an empty volume or wipe it", dir, ents[0].Name())
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("wipe %s: %w", dir, err)
		}
	}
	return nil
}

func writeFile(p string, f File, next func() ([]byte, error), wrote func(int)) error {
	out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	whole := sha256.New()
	for range f.Chunks {
		data, err := next()
		if err != nil {
			out.Close()
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		whole.Write(data)
		if _, err := out.Write(data); err != nil {
			out.Close()
			return err
		}
		wrote(len(data))
	}
	if err := out.Close(); err != nil {
		return err
	}
	if got := hex.EncodeToString(whole.Sum(nil)); got != f.SHA256 {
		return fmt.Errorf("%s: restored content has checksum %s, manifest says %s", f.Path, got, f.SHA256)
	}
	return nil
}

func setMeta(p string, f File, asRoot bool) error {
	if asRoot {
		if err := os.Lchown(p, f.UID, f.GID); err != nil {
			return err
		}
	}
	mode := fs.FileMode(f.Mode).Perm()
	if f.Mode&uint32(fs.ModeSetuid) != 0 {
		mode |= fs.ModeSetuid
	}
	if f.Mode&uint32(fs.ModeSetgid) != 0 {
		mode |= fs.ModeSetgid
	}
	if f.Mode&uint32(fs.ModeSticky) != 0 {
		mode |= fs.ModeSticky
	}
	if err := os.Chmod(p, mode); err != nil {
		return err
	}
	return os.Chtimes(p, f.ModTime, f.ModTime)
}

type fetched struct {
	data []byte
	err  error
}

// prefetch fetches refs in order with up to workers requests in flight;
// each call of the returned function yields the next chunk.
func (t *Target) prefetch(ctx context.Context, refs []ChunkRef, workers int) func() ([]byte, error) {
	futures := make(chan chan fetched, workers)
	go func() {
		defer close(futures)
		for _, r := range refs {
			fut := make(chan fetched, 1)
			select {
			case futures <- fut:
			case <-ctx.Done():
				return
			}
			go func(r ChunkRef) {
				data, err := t.getChunk(ctx, r)
				fut <- fetched{data, err}
			}(r)
		}
	}()
	return func() ([]byte, error) {
		fut, ok := <-futures
		if !ok {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("manifest lists more chunks than were fetched")
		}
		r := <-fut
		return r.data, r.err
	}
}
