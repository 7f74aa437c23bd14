package cluster

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

// countingStore counts the reads that reach the log store.
type countingStore struct {
	*raft.InmemStore
	reads int
}

func (s *countingStore) GetLog(idx uint64, log *raft.Log) error {
	s.reads++
	return s.InmemStore.GetLog(idx, log)
}

func entry(idx uint64, size int) *raft.Log {
	return &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(idx)}, size)}
}

// mustRead reads idx through c and checks it is the entry stored, and
// whether the read reached the store.
func mustRead(t *testing.T, c *logCache, store *countingStore, idx uint64, size int, fromStore bool) {
	t.Helper()
	before := store.reads
	var got raft.Log
	if err := c.GetLog(idx, &got); err != nil {
		t.Fatalf("read %d: %v", idx, err)
	}
	if got.Index != idx || !bytes.Equal(got.Data, entry(idx, size).Data) {
		t.Fatalf("read %d: got index %d with %d bytes, want the entry stored (%d bytes)", idx, got.Index, len(got.Data), size)
	}
	if reached := store.reads > before; reached != fromStore {
		t.Fatalf("read %d: reached the log store %v, want %v", idx, reached, fromStore)
	}
}

// A follower applying plans of hundreds of KB keeps at most the byte bound
// of them in memory; every entry still reads back whole.
func TestLogCacheBoundedInBytes(t *testing.T) {
	store := &countingStore{InmemStore: raft.NewInmemStore()}
	const size, maxBytes = 300 << 10, 1 << 20 // 3 entries fit
	c, err := newLogCache(store, 512, maxBytes)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 20; i++ {
		if err := c.StoreLogs([]*raft.Log{entry(i, size)}); err != nil {
			t.Fatal(err)
		}
		if n, b := c.cached(); b > maxBytes || n > 3 {
			t.Fatalf("after entry %d the cache holds %d entries, %d bytes; want at most %d bytes", i, n, b, maxBytes)
		}
	}
	if n, _ := c.cached(); n != 3 {
		t.Fatalf("cache holds %d entries, want the newest 3", n)
	}
	for i := uint64(18); i <= 20; i++ {
		mustRead(t, c, store, i, size, false)
	}
	for i := uint64(1); i <= 17; i++ {
		mustRead(t, c, store, i, size, true)
	}

	// An entry larger than the bound is stored, not cached.
	if err := c.StoreLogs([]*raft.Log{entry(21, 2*maxBytes)}); err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, store, 21, 2*maxBytes, true)
	if n, b := c.cached(); n != 0 || b != 0 {
		t.Fatalf("cache holds %d entries, %d bytes after an entry over its bound; want none", n, b)
	}
	if err := c.StoreLogs([]*raft.Log{entry(22, 10), entry(23, 10)}); err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, store, 22, 10, false)
	mustRead(t, c, store, 23, 10, false)
}

// Small entries are bounded by count, as raft.LogCache's are.
func TestLogCacheBoundedInEntries(t *testing.T) {
	store := &countingStore{InmemStore: raft.NewInmemStore()}
	c, err := newLogCache(store, 4, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var batch []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		batch = append(batch, entry(i, 100))
	}
	if err := c.StoreLogs(batch); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.cached(); n != 4 {
		t.Fatalf("cache holds %d entries, want 4", n)
	}
	mustRead(t, c, store, 7, 100, false)
	mustRead(t, c, store, 10, 100, false)
	mustRead(t, c, store, 6, 100, true)
}

// A truncated log (a follower whose suffix the leader overwrote) never
// serves the overwritten entries from the cache.
func TestLogCacheTruncationAndOutOfSequence(t *testing.T) {
	store := &countingStore{InmemStore: raft.NewInmemStore()}
	c, err := newLogCache(store, 16, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 8; i++ {
		if err := c.StoreLog(entry(i, 50)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteRange(6, 8); err != nil {
		t.Fatal(err)
	}
	if n, _ := c.cached(); n != 0 {
		t.Fatalf("cache holds %d entries after DeleteRange, want none", n)
	}
	// Index 6 again, with other content (a new term's entry).
	repl := &raft.Log{Index: 6, Term: 2, Type: raft.LogCommand, Data: []byte("new")}
	if err := c.StoreLog(repl); err != nil {
		t.Fatal(err)
	}
	var got raft.Log
	if err := c.GetLog(6, &got); err != nil || got.Term != 2 || string(got.Data) != "new" {
		t.Fatalf("read 6 after the overwrite: %+v, %v; want term 2 %q", got, err, "new")
	}
	// Stored out of sequence without a delete: the run starts afresh.
	if err := c.StoreLog(entry(12, 50)); err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, store, 12, 50, false)
	mustRead(t, c, store, 5, 50, true)
	if n, _ := c.cached(); n != 1 {
		t.Fatalf("cache holds %d entries, want 1 (the run from 12)", n)
	}
}

func TestNewLogCacheRefusesZeroBounds(t *testing.T) {
	for _, b := range [][2]int{{0, 1}, {1, 0}, {-1, 5}} {
		if _, err := newLogCache(raft.NewInmemStore(), b[0], b[1]); err == nil {
			t.Errorf("newLogCache(%d entries, %d bytes): no error", b[0], b[1])
		}
	}
}
