package backup

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"gocloud.dev/gcerrors"
)

// VerifyResult is what re-reading a backup found.
type VerifyResult struct {
	// Chunks and Bytes checked (distinct chunks, plain size).
	Chunks int
	Bytes  int64
	// Missing and Corrupt list chunk hashes that are absent, or whose
	// content does not decompress to its hash.
	Missing []string
	Corrupt []string
	Elapsed time.Duration
}

// OK is true when every chunk was present and intact.
func (r *VerifyResult) OK() bool { return len(r.Missing) == 0 && len(r.Corrupt) == 0 }

// Err describes the damage, or is nil.
func (r *VerifyResult) Err() error {
	if r.OK() {
		return nil
	}
	var parts []string
	if n := len(r.Missing); n > 0 {
		parts = append(parts, fmt.Sprintf("%d missing chunk(s) (first %s)", n, r.Missing[0]))
	}
	if n := len(r.Corrupt); n > 0 {
		parts = append(parts, fmt.Sprintf("%d corrupt chunk(s) (first %s)", n, r.Corrupt[0]))
	}
	return errors.New(strings.Join(parts, ", "))
}

// Verify re-reads every chunk of backup id, decompresses it and checks its
// SHA-256 and size against the manifest (whose own checksum is checked
// against manifestSHA256 when given). It returns an error only when it
// could not verify (the manifest is unreadable, the target fails); damage
// is reported in the result.
func (t *Target) Verify(ctx context.Context, id, manifestSHA256 string, progress func(Progress)) (*VerifyResult, error) {
	start := time.Now()
	m, err := t.Manifest(ctx, id, manifestSHA256)
	if err != nil {
		return nil, err
	}
	refs := m.uniqueChunks()
	var total int64
	for _, r := range refs {
		total += int64(r.Size)
	}
	res := &VerifyResult{}
	next := t.prefetch(ctx, refs, 4)
	last := start
	for _, r := range refs {
		_, err := next()
		switch {
		case err == nil:
			res.Bytes += int64(r.Size)
		case errors.Is(err, errCorrupt):
			res.Corrupt = append(res.Corrupt, r.Hash)
		case gcerrors.Code(err) == gcerrors.NotFound:
			res.Missing = append(res.Missing, r.Hash)
		default:
			return nil, fmt.Errorf("verify %s: %w", id, err)
		}
		res.Chunks++
		if progress != nil && time.Since(last) >= time.Second {
			last = time.Now()
			progress(Progress{Bytes: res.Bytes, TotalBytes: total, Chunks: res.Chunks, Elapsed: last.Sub(start)})
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}
