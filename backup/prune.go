package backup

import (
	"context"
	"fmt"
	"sort"
	"time"

	"gocloud.dev/gcerrors"
)

// Retention says which backups to keep, per group (an app's instance).
// Zero values do not limit.
type Retention struct {
	// Keep is how many of the newest backups of a group are kept.
	Keep int
	// MaxAge removes backups older than this. The newest backup of a group
	// is kept whatever its age, so a group never loses its last backup to
	// the clock alone.
	MaxAge time.Duration
}

// Entry is a backup as retention sees it.
type Entry struct {
	ID      string
	Group   string
	Created time.Time
}

// Expired returns the ids of the entries retention r removes at now,
// sorted. It is pure: the leader applies it to the replicated records,
// `berth volume prune` to the manifests of a target.
func Expired(entries []Entry, r Retention, now time.Time) []string {
	groups := map[string][]Entry{}
	for _, e := range entries {
		groups[e.Group] = append(groups[e.Group], e)
	}
	var out []string
	for _, g := range groups {
		sort.Slice(g, func(i, j int) bool {
			if !g[i].Created.Equal(g[j].Created) {
				return g[i].Created.After(g[j].Created)
			}
			return g[i].ID > g[j].ID
		})
		for i, e := range g {
			if i == 0 {
				continue
			}
			if (r.Keep > 0 && i >= r.Keep) || (r.MaxAge > 0 && now.Sub(e.Created) > r.MaxAge) {
				out = append(out, e.ID)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Delete removes a backup's manifest. Its chunks stay until GC finds them
// unreferenced. Deleting a backup that is not there is not an error.
func (t *Target) Delete(ctx context.Context, id string) error {
	err := t.bucket.Delete(ctx, ManifestKey(id))
	if err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fmt.Errorf("delete backup %s: %w", id, err)
	}
	return nil
}

// GCResult counts what garbage collection did.
type GCResult struct {
	Manifests     int
	Referenced    int
	Deleted       int
	DeletedBytes  int64
	RemainingSize int64
}

// GC deletes every chunk no manifest references. It must not run while a
// backup to the same target is in progress (that backup may rely on a
// chunk it found present but has not referenced yet): the leader runs GC
// only when no backup of the target is running. A manifest that cannot be
// read stops GC before anything is deleted.
func (t *Target) GC(ctx context.Context) (*GCResult, error) {
	ids, err := t.Manifests(ctx)
	if err != nil {
		return nil, err
	}
	ref := map[string]bool{}
	for _, id := range ids {
		m, err := t.Manifest(ctx, id, "")
		if err != nil {
			return nil, fmt.Errorf("gc: %w (nothing deleted)", err)
		}
		for _, f := range m.Files {
			for _, c := range f.Chunks {
				ref[c.Hash] = true
			}
		}
	}
	res := &GCResult{Manifests: len(ids), Referenced: len(ref)}
	err = t.eachChunk(ctx, func(h, key string, size int64) error {
		if ref[h] {
			res.RemainingSize += size
			return nil
		}
		if err := t.bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return fmt.Errorf("delete chunk %s: %w", h[:12], err)
		}
		res.Deleted++
		res.DeletedBytes += size
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	return res, nil
}

// Prune applies retention r to the manifests stored in the target
// (grouped by app and instance), deletes the expired ones and collects
// the chunks they alone used. It returns the ids it deleted.
func (t *Target) Prune(ctx context.Context, r Retention, now time.Time) ([]string, *GCResult, error) {
	ids, err := t.Manifests(ctx)
	if err != nil {
		return nil, nil, err
	}
	entries := make([]Entry, 0, len(ids))
	for _, id := range ids {
		m, err := t.Manifest(ctx, id, "")
		if err != nil {
			return nil, nil, fmt.Errorf("prune: %w (nothing deleted)", err)
		}
		entries = append(entries, Entry{ID: id, Group: m.App + "/" + m.Instance, Created: m.Created})
	}
	expired := Expired(entries, r, now)
	for _, id := range expired {
		if err := t.Delete(ctx, id); err != nil {
			return nil, nil, err
		}
	}
	gc, err := t.GC(ctx)
	return expired, gc, err
}
