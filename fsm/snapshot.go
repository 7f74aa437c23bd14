package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"math"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// snapshotMagic starts every snapshot; the trailing digit is the format
// version. Format 2 stores each instance once: format 1 also stored its
// reservation and volumes as records of their own (tags 4 and 5), which
// ReadSnapshot skips, as they are in the instance.
const (
	snapshotMagic   = "BERTHSNAP2\n"
	snapshotMagicV1 = "BERTHSNAP1\n"
)

// Record tags of format 1 that format 2 no longer has.
const (
	tagReservationV1 = 4
	tagVolumeV1      = 5
)

// maxRecordBytes bounds one snapshot record, so a corrupt length cannot make
// Restore allocate without limit.
const maxRecordBytes = 64 << 20

// Snapshot captures the store at this point of the log. Persist runs later,
// concurrently with Apply, on an immutable view of the store (memdb's
// read transaction and the instance set of the same index).
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{view: f.State().Snapshot(), observer: f.observer}, nil
}

type snapshot struct {
	view     *Snapshot
	observer Observer
}

// Persist streams every table into the sink.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	cw := &countingWriter{w: sink}
	if err := WriteSnapshot(s.view, cw); err != nil {
		_ = sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	if s.observer != nil {
		s.observer.SnapshotPersisted(cw.n, time.Since(start))
	}
	return nil
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Release is a no-op: the view is garbage collected.
func (s *snapshot) Release() {}

// WriteSnapshot writes every table of the store view to w in the snapshot
// format.
func WriteSnapshot(view *Snapshot, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	var buf []byte
	enc := proto.MarshalOptions{}
	for _, t := range tables {
		for msg, err := range view.records(t.name, t.indexes == nil) {
			if err != nil {
				return fmt.Errorf("snapshot table %s: %w", t.name, err)
			}
			// One buffer for every record: tag, length, message.
			size := enc.Size(msg)
			buf = append(buf[:0], t.tag)
			buf = binary.AppendUvarint(buf, uint64(size))
			if buf, err = enc.MarshalAppend(buf, msg); err != nil {
				return fmt.Errorf("snapshot table %s: %w", t.name, err)
			}
			if _, err := bw.Write(buf); err != nil {
				return fmt.Errorf("write snapshot: %w", err)
			}
		}
	}
	// Tag 0 ends the stream, so a truncated snapshot is detected.
	if err := bw.WriteByte(0); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	return bw.Flush()
}

// Restore replaces the whole state with a snapshot. The new store is built
// aside and swapped in at once; readers waiting on the old store's Watch are
// woken so they re-read from the new one. When PrepareRestore has decoded
// the very same bytes (same SHA-256), their store is swapped in instead of
// decoding them again.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	start := time.Now()
	in := &countingReader{r: rc}
	prepared := f.takePrepared()
	if prepared != nil {
		defer prepared.release()
	}
	defer liftMemoryLimit()()
	var s *Store
	if prepared != nil {
		// Read and hash it whole (a fraction of decoding it), keeping
		// the bytes to decode them after all should they differ.
		buf := bytes.NewBuffer(make([]byte, 0, prepared.size))
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(buf, h), in); err != nil {
			return fmt.Errorf("read snapshot: %w", err)
		}
		if [sha256.Size]byte(h.Sum(nil)) == prepared.sum {
			s = prepared.store
		} else {
			f.logger.Warn("the snapshot to restore is not the one verified before; decoding it", "bytes", in.n)
			var err error
			if s, err = ReadSnapshot(buf); err != nil {
				return err
			}
		}
	} else {
		var err error
		if s, err = ReadSnapshot(in); err != nil {
			return err
		}
	}
	// The snapshot carries the index it reflects. A follower installing
	// the leader's snapshot jumps forward to it; an operator's restore of
	// an older snapshot keeps this store's index, so the applied index
	// never goes backwards for readers waiting on it.
	if cur := f.State().LastIndex(); cur > s.LastIndex() {
		s.commit(nil, cur)
	}
	old := f.state.Swap(s)
	old.notify()
	s.notify()
	f.logger.Info("state restored from a snapshot", "bytes", in.n, "index", s.LastIndex(), "verified_before", prepared != nil && s == prepared.store, "took", time.Since(start).Round(time.Millisecond))
	if in.n >= returnMemoryAfter {
		// A large restore leaves the old store and the decoding's
		// garbage behind, as much again as the state: give it back to
		// the system, after the restore has returned (raft waits for
		// it: a follower's reply to InstallSnapshot, a leader's
		// restore call).
		f.returnMemory()
	}
	return nil
}

// returnMemory returns freed memory to the system in the background, one
// at a time (a forced GC over the whole heap: 0.5-1 s of CPU with
// 100,000 instances).
func (f *FSM) returnMemory() {
	if !f.returning.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer f.returning.Store(false)
		debug.FreeOSMemory()
	}()
}

// PrepareRestore decodes a snapshot into a store without installing it,
// and fails as Restore would on bad data. The store is kept for the next
// Restore, which installs it without decoding again if it is given the
// same bytes: an operator's restore checks the snapshot before Raft sees
// it, then Raft restores it. DiscardPrepared drops it.
func (f *FSM) PrepareRestore(r io.Reader) error {
	f.DiscardPrepared()
	// Two states are live from here until Restore installs this one.
	release := liftMemoryLimit()
	h := sha256.New()
	in := &countingReader{r: io.TeeReader(r, h)}
	s, err := ReadSnapshot(in)
	if err == nil {
		// ReadSnapshot stops at the end tag: anything after it is
		// hashed too, as Restore hashes the whole stream.
		if _, err = io.Copy(io.Discard, in); err != nil {
			err = fmt.Errorf("read snapshot: %w", err)
		}
	}
	if err != nil {
		release()
		return err
	}
	f.prepared.Store(&preparedRestore{store: s, sum: [sha256.Size]byte(h.Sum(nil)), size: in.n, release: release})
	return nil
}

// DiscardPrepared drops the store PrepareRestore kept, if any (a restore
// that did not reach Restore).
func (f *FSM) DiscardPrepared() {
	if p := f.takePrepared(); p != nil {
		p.release()
	}
}

func (f *FSM) takePrepared() *preparedRestore { return f.prepared.Swap(nil) }

// preparedRestore is a snapshot PrepareRestore decoded, by its SHA-256.
type preparedRestore struct {
	store *Store
	sum   [sha256.Size]byte
	size  int64
	// release ends the memory limit's lift for it (once).
	release func()
}

// Lifts of the runtime's soft memory limit (see liftMemoryLimit).
var (
	limitMu    sync.Mutex
	limitLifts int
	limitSaved int64
)

// liftMemoryLimit lifts the Go runtime's soft memory limit (--memory-limit,
// GOMEMLIMIT) while a restore holds two states, the current store and the
// one being built, and returns the function that puts it back (once). A
// limit sized for one state would make the garbage collector run without
// pause for the whole restore (100,000 instances: ~500 MiB live during
// the restore against a 300 MiB limit; BenchmarkState100k's leaders
// stepped down). Once the new store is installed the old one is garbage
// and the limit holds again.
func liftMemoryLimit() (release func()) {
	limitMu.Lock()
	defer limitMu.Unlock()
	if limitLifts == 0 {
		limitSaved = debug.SetMemoryLimit(math.MaxInt64)
	}
	limitLifts++
	var once sync.Once
	return func() {
		once.Do(func() {
			limitMu.Lock()
			defer limitMu.Unlock()
			if limitLifts--; limitLifts == 0 {
				debug.SetMemoryLimit(limitSaved)
			}
		})
	}
}

// returnMemoryAfter is the snapshot size from which Restore returns the
// freed memory to the system (about 25,000 instances).
const returnMemoryAfter = 16 << 20

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ReadSnapshot builds a store from a snapshot stream.
func ReadSnapshot(r io.Reader) (*Store, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil {
		return nil, fmt.Errorf("read snapshot header: %w", err)
	}
	v1Format := string(magic) == snapshotMagicV1
	if string(magic) != snapshotMagic && !v1Format {
		return nil, fmt.Errorf("read snapshot: not a Berth snapshot of a format this server reads (header %q)", magic)
	}
	// Records are decoded on one goroutine and inserted on this one: on
	// more than one core a restore takes about as long as the slower of
	// the two, not their sum.
	records := make(chan recordBatch, 4)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(records)
		decodeRecords(br, v1Format, records, stop)
	}()
	// On return, stop the decoder and wait for it: it reads r, which the
	// caller closes.
	defer func() { close(stop); <-done }()

	s := NewStore()
	tx := s.db.Txn(true)
	defer tx.Abort()
	for batch := range records {
		for _, rec := range batch.records {
			if inst, ok := rec.msg.(*v1.Instance); ok {
				// The new store is not published yet: its set is
				// written in place.
				s.inst.put(inst)
				continue
			}
			if err := tx.Insert(tables[rec.table].name, rec.msg); err != nil {
				return nil, fmt.Errorf("restore %s: %w", tables[rec.table].name, err)
			}
		}
		if batch.err != nil {
			return nil, batch.err
		}
	}
	if err := recountAppTotals(tx); err != nil {
		return nil, fmt.Errorf("read snapshot: count apps: %w", err)
	}
	var index uint64
	if raw, err := tx.First(tableMeta, "id", metaAppliedIndex); err != nil {
		return nil, fmt.Errorf("read snapshot: applied index: %w", err)
	} else if raw != nil {
		v := raw.(*v1.MetaRecord).GetValue()
		if index, err = strconv.ParseUint(v, 10, 64); err != nil {
			return nil, fmt.Errorf("read snapshot: applied index %q: %w", v, err)
		}
	}
	tx.Commit()
	s.lastIndex.Store(index)
	return s, nil
}

// recordBatch is a run of decoded snapshot records, and the error that
// ended the stream, if any, after them.
type recordBatch struct {
	records []record
	err     error
}

// record is one decoded snapshot record: an index into tables and the
// message.
type record struct {
	table int
	msg   proto.Message
}

// decodeRecords reads and decodes the records after the header up to the
// end marker and the end of the stream, in batches. The last batch
// carries the error that ended the stream early; after the last batch,
// the stream had nothing after the end marker.
func decodeRecords(br *bufio.Reader, v1Format bool, out chan<- recordBatch, stop <-chan struct{}) {
	const batchSize = 256
	byTag := map[byte]int{}
	for i, t := range tables {
		byTag[t.tag] = i
	}
	batch := recordBatch{records: make([]record, 0, batchSize)}
	send := func() bool {
		select {
		case out <- batch:
			batch = recordBatch{records: make([]record, 0, batchSize)}
			return true
		case <-stop:
			return false
		}
	}
	fail := func(err error) {
		batch.err = err
		send()
	}
	var buf []byte
	for n := 0; ; n++ {
		tag, err := br.ReadByte()
		if err != nil {
			fail(fmt.Errorf("read snapshot record %d: %w (truncated?)", n, err))
			return
		}
		if tag == 0 {
			break
		}
		i, ok := byTag[tag]
		derived := v1Format && (tag == tagReservationV1 || tag == tagVolumeV1)
		if !ok && !derived {
			fail(fmt.Errorf("read snapshot record %d: unknown table tag %d", n, tag))
			return
		}
		size, err := binary.ReadUvarint(br)
		if err != nil {
			fail(fmt.Errorf("read snapshot record %d: %w", n, err))
			return
		}
		if size > maxRecordBytes {
			fail(fmt.Errorf("read snapshot record %d: %d bytes exceeds the %d limit", n, size, maxRecordBytes))
			return
		}
		// The record buffer is reused: Unmarshal copies what it keeps.
		if uint64(cap(buf)) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(br, buf); err != nil {
			fail(fmt.Errorf("read snapshot record %d: %w", n, err))
			return
		}
		if derived {
			continue
		}
		msg := tables[i].new()
		if err := proto.Unmarshal(buf, msg); err != nil {
			fail(fmt.Errorf("read snapshot record %d (%s): %w", n, tables[i].name, err))
			return
		}
		if inst, ok := msg.(*v1.Instance); ok {
			compactInstance(inst)
		}
		batch.records = append(batch.records, record{table: i, msg: msg})
		if len(batch.records) == batchSize && !send() {
			return
		}
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		batch.err = fmt.Errorf("read snapshot: data after the end marker")
	}
	send()
}

// records yields the records of one table in id order: from memdb, or
// from the instance set.
func (s *Snapshot) records(table string, instances bool) iter.Seq2[proto.Message, error] {
	return func(yield func(proto.Message, error) bool) {
		if instances {
			for i := range s.inst.all() {
				if !yield(i, nil) {
					return
				}
			}
			return
		}
		it, err := s.tx.Get(table, "id")
		if err != nil {
			yield(nil, err)
			return
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if !yield(raw.(proto.Message), nil) {
				return
			}
		}
	}
}
