package cluster

import (
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// logCacheEntries and logCacheBytes bound the in-memory cache of the
// newest Raft log entries (see logCache).
const (
	logCacheEntries = 512
	logCacheBytes   = 8 << 20
)

// logCache keeps the newest Raft log entries in memory in front of the log
// store, as raft.LogCache does, but bounded in bytes as well as in entries.
//
// Raft reads recent entries back to replicate them (leader) and to apply
// them (follower, which reads every entry it applies from its log store);
// the cache spares those reads a boltdb lookup and a decode. raft.LogCache
// keeps a fixed number of entries whatever their size: with 512 entries
// and the scheduler's plans and status batches of 250–500 KB each at
// 100,000 instances, that was up to 250 MB on every server, held for
// nothing once the entries were replicated and applied (issue 14: a
// leader's heap after placing 20,000 instances held 27 MB of encoded plans
// in it, a follower 32 MB). A miss costs one read from boltdb's memory map.
//
// The cache holds one contiguous run of indexes, oldest evicted first; an
// entry stored out of sequence (after a truncation) starts the run afresh.
type logCache struct {
	store raft.LogStore

	mu       sync.RWMutex
	ring     []*raft.Log // by index modulo its length
	lo, hi   uint64      // cached indexes lo..hi; none when hi < lo
	bytes    int         // held by lo..hi
	maxBytes int
}

// newLogCache caches at most entries entries and maxBytes bytes of them in
// front of store.
func newLogCache(store raft.LogStore, entries, maxBytes int) (*logCache, error) {
	if entries <= 0 || maxBytes <= 0 {
		return nil, fmt.Errorf("raft log cache: %d entries and %d bytes: both must be positive", entries, maxBytes)
	}
	return &logCache{store: store, ring: make([]*raft.Log, entries), lo: 1, maxBytes: maxBytes}, nil
}

// logSize is what an entry holds in memory, roughly.
func logSize(l *raft.Log) int { return len(l.Data) + len(l.Extensions) + 96 }

// IsMonotonic implements raft.MonotonicLogStore for the store underneath.
func (c *logCache) IsMonotonic() bool {
	m, ok := c.store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

// GetLog implements raft.LogStore.
func (c *logCache) GetLog(idx uint64, log *raft.Log) error {
	c.mu.RLock()
	if idx >= c.lo && idx <= c.hi {
		*log = *c.ring[idx%uint64(len(c.ring))]
		c.mu.RUnlock()
		return nil
	}
	c.mu.RUnlock()
	return c.store.GetLog(idx, log)
}

// StoreLog implements raft.LogStore.
func (c *logCache) StoreLog(log *raft.Log) error { return c.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore: the entries are cached once stored.
func (c *logCache) StoreLogs(logs []*raft.Log) error {
	if err := c.store.StoreLogs(logs); err != nil {
		return fmt.Errorf("store raft log entries: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range logs {
		size := logSize(l)
		if c.hi < c.lo || l.Index != c.hi+1 || size > c.maxBytes {
			c.reset()
			if size > c.maxBytes {
				continue // stored, not cached
			}
			c.lo = l.Index
		}
		// Make room first: the oldest entry may share l's slot.
		for c.hi >= c.lo && (c.hi-c.lo+1 >= uint64(len(c.ring)) || c.bytes+size > c.maxBytes) {
			k := c.lo % uint64(len(c.ring))
			c.bytes -= logSize(c.ring[k])
			c.ring[k] = nil
			c.lo++
		}
		c.ring[l.Index%uint64(len(c.ring))] = l
		c.hi = l.Index
		c.bytes += size
	}
	return nil
}

// reset empties the cache; c.mu is held.
func (c *logCache) reset() {
	clear(c.ring)
	c.lo, c.hi, c.bytes = 1, 0, 0
}

// FirstIndex implements raft.LogStore.
func (c *logCache) FirstIndex() (uint64, error) { return c.store.FirstIndex() }

// LastIndex implements raft.LogStore.
func (c *logCache) LastIndex() (uint64, error) { return c.store.LastIndex() }

// DeleteRange implements raft.LogStore; it empties the cache.
func (c *logCache) DeleteRange(lo, hi uint64) error {
	c.mu.Lock()
	c.reset()
	c.mu.Unlock()
	return c.store.DeleteRange(lo, hi)
}

// cached is the number of entries and bytes the cache holds.
func (c *logCache) cached() (entries, bytes int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.hi < c.lo {
		return 0, 0
	}
	return int(c.hi - c.lo + 1), c.bytes
}
