package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// File types in a manifest.
const (
	TypeFile    = "file"
	TypeDir     = "dir"
	TypeSymlink = "symlink"
)

// Manifest describes one backup: every file, directory and symlink of the
// volume, the chunks each file is made of, and totals.
type Manifest struct {
	Version  int       `json:"version"`
	ID       string    `json:"id"`
	App      string    `json:"app,omitempty"`
	Instance string    `json:"instance,omitempty"`
	Created  time.Time `json:"created"`
	// Compression of every chunk object.
	Compression string `json:"compression"`
	Files       []File `json:"files"`
	// Skipped lists entries that cannot be backed up (sockets, devices,
	// named pipes), by path.
	Skipped []string `json:"skipped,omitempty"`
	Totals  Totals   `json:"totals"`
}

// Totals sums a backup up.
type Totals struct {
	Files int `json:"files"`
	// Bytes is the sum of the regular files' sizes.
	Bytes int64 `json:"bytes"`
	// Chunks counts chunk references; UniqueChunks distinct chunks.
	Chunks       int `json:"chunks"`
	UniqueChunks int `json:"uniqueChunks"`
	// NewChunks and NewBytes are what this backup uploaded: the chunks the
	// target lacked, and their compressed size.
	NewChunks int   `json:"newChunks"`
	NewBytes  int64 `json:"newBytes"`
	// ReusedFiles are the files taken unread from a parent backup
	// (Options.Parent).
	ReusedFiles int `json:"reusedFiles,omitempty"`
}

// File is one entry of the volume. Paths are slash-separated and relative
// to the volume's root ("." is the root itself).
type File struct {
	Path    string    `json:"path"`
	Type    string    `json:"type"`
	Mode    uint32    `json:"mode"` // permission and setuid/setgid/sticky bits
	UID     int       `json:"uid"`
	GID     int       `json:"gid"`
	ModTime time.Time `json:"mtime"`
	Size    int64     `json:"size,omitempty"`
	// SHA256 is the checksum of the whole file's content.
	SHA256 string     `json:"sha256,omitempty"`
	Chunks []ChunkRef `json:"chunks,omitempty"`
	// Link is a symlink's target.
	Link string `json:"link,omitempty"`
}

// ChunkRef names one chunk of a file by the SHA-256 of its plain content.
type ChunkRef struct {
	Hash string `json:"h"`
	Size uint32 `json:"n"`
}

// uniqueChunks returns the distinct chunks the manifest references, in
// first-use order.
func (m *Manifest) uniqueChunks() []ChunkRef {
	seen := map[string]bool{}
	var out []ChunkRef
	for _, f := range m.Files {
		for _, c := range f.Chunks {
			if !seen[c.Hash] {
				seen[c.Hash] = true
				out = append(out, c)
			}
		}
	}
	return out
}

// writeManifest stores m and returns the SHA-256 of the stored bytes.
func (t *Target) writeManifest(ctx context.Context, m *Manifest) (string, error) {
	data, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode manifest %s: %w", m.ID, err)
	}
	if err := t.bucket.WriteAll(ctx, ManifestKey(m.ID), data, &blob.WriterOptions{ContentType: "application/json"}); err != nil {
		return "", fmt.Errorf("write manifest %s: %w", m.ID, err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

// ErrNotFound is returned for a backup whose manifest the target lacks.
var ErrNotFound = fmt.Errorf("backup not found")

// Manifest reads a backup's manifest. wantSHA256, when not empty, is the
// checksum recorded when the backup was made; a manifest that does not
// match it is refused.
func (t *Target) Manifest(ctx context.Context, id, wantSHA256 string) (*Manifest, error) {
	m, sum, err := t.ManifestWithSum(ctx, id)
	if err != nil {
		return nil, err
	}
	if wantSHA256 != "" && sum != wantSHA256 {
		return nil, fmt.Errorf("manifest %s: checksum %s, recorded %s: the manifest was changed or damaged", id, sum, wantSHA256)
	}
	return m, nil
}

// ManifestWithSum reads a backup's manifest and returns it with the
// SHA-256 of its stored bytes.
func (t *Target) ManifestWithSum(ctx context.Context, id string) (*Manifest, string, error) {
	data, err := t.bucket.ReadAll(ctx, ManifestKey(id))
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, "", fmt.Errorf("backup %s in %s: %w", id, Redact(t.url), ErrNotFound)
	}
	if err != nil {
		return nil, "", fmt.Errorf("read manifest %s: %w", id, err)
	}
	raw := sha256.Sum256(data)
	sum := hex.EncodeToString(raw[:])
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, "", fmt.Errorf("decode manifest %s: %w", id, err)
	}
	if m.Version > FormatVersion {
		return nil, "", fmt.Errorf("manifest %s: format version %d is newer than this berth's %d", id, m.Version, FormatVersion)
	}
	if m.Compression != compressionName {
		return nil, "", fmt.Errorf("manifest %s: unknown compression %q", id, m.Compression)
	}
	return &m, sum, nil
}

// Manifests lists the ids of the backups stored in the target.
func (t *Target) Manifests(ctx context.Context) ([]string, error) {
	var ids []string
	err := t.each(ctx, manifestPrefix, func(key string, _ int64) error {
		if k := strings.TrimPrefix(key, manifestPrefix); strings.HasSuffix(k, manifestSuffix) && len(k) > len(manifestSuffix) {
			ids = append(ids, strings.TrimSuffix(k, manifestSuffix))
		}
		return nil
	})
	return ids, err
}

// HasManifest says whether the target raw holds backup id's manifest (a
// readable one): false, with no error, when the target or the manifest is
// not there.
func HasManifest(ctx context.Context, raw string, env map[string]string, id string) (bool, error) {
	t, err := OpenExisting(ctx, raw, env)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer t.Close()
	if _, _, err := t.ManifestWithSum(ctx, id); err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
