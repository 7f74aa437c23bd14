// Package fsm is Berth's replicated state machine: the Raft FSM and the
// in-memory state store it maintains. Every Raft log entry is one
// CommandType byte followed by the protobuf encoding of that command's
// message (proto/berth/v1/commands.proto). The package knows nothing of Mesos
// or of the API; it only applies commands deterministically.
package fsm

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// Errors that an applied command can return in ApplyResult.Err. They are
// part of the replicated outcome: every replica computes the same one.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	ErrConflict      = errors.New("conflict")
	ErrInvalid       = errors.New("invalid command")
)

// errorKinds names the sentinel errors in RequestRecords.
var errorKinds = map[string]error{
	"not_found":      ErrNotFound,
	"already_exists": ErrAlreadyExists,
	"conflict":       ErrConflict,
	"invalid":        ErrInvalid,
}

// ApplyResult is what FSM.Apply returns for every entry.
type ApplyResult struct {
	// Index is the Raft index of the entry that produced the outcome. For a
	// de-duplicated retry it is the index of the first application.
	Index uint64
	// Err is nil, or wraps one of ErrNotFound, ErrAlreadyExists, ErrConflict
	// or ErrInvalid.
	Err error
}

// requestRetention is how many log entries a request id is remembered for.
const requestRetention = 100_000

// FSM implements raft.FSM over a Store. The commands it applies are those
// of the registry (registry.go).
type FSM struct {
	logger   *slog.Logger
	state    atomic.Pointer[Store]
	observer Observer
	// prepared is the store PrepareRestore decoded for the next Restore.
	prepared atomic.Pointer[preparedRestore]
	// returning is set while freed memory is being returned to the
	// system after a large restore.
	returning atomic.Bool
}

// Observer is told how long each applied entry and each snapshot took (the
// server's metrics implement it; the FSM does not know Prometheus).
// Its methods are called from Raft's FSM goroutines and must not block.
type Observer interface {
	// CommandApplied is called after each applied log entry with its
	// command type's name (COMMAND_TYPE_APP_CREATE, ...).
	CommandApplied(command string, took time.Duration)
	// SnapshotPersisted is called after each snapshot written by Persist.
	SnapshotPersisted(bytes int64, took time.Duration)
}

// SetObserver sets the FSM's observer. Call it before the FSM is handed
// to Raft.
func (f *FSM) SetObserver(o Observer) { f.observer = o }

// New returns an FSM with an empty store.
func New(logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.Default()
	}
	f := &FSM{logger: logger}
	f.state.Store(NewStore())
	return f
}

// State returns the current store. Restore swaps in a new one, so hold on to
// the returned pointer only for one read.
func (f *FSM) State() *Store { return f.state.Load() }

// Apply applies one Raft log entry. It returns *ApplyResult. An entry with an
// unknown command type panics, unless its type carries
// IgnoreUnknownTypeFlag: a replica that cannot apply an entry must stop
// rather than diverge from the others.
func (f *FSM) Apply(l *raft.Log) any {
	if f.observer == nil || l.Type != raft.LogCommand || len(l.Data) == 0 {
		return f.apply(l)
	}
	start := time.Now()
	res := f.apply(l)
	f.observer.CommandApplied((v1.CommandType(l.Data[0]) &^ IgnoreUnknownTypeFlag).String(), time.Since(start))
	return res
}

func (f *FSM) apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return &ApplyResult{Index: l.Index}
	}
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("fsm: empty log entry at index %d", l.Index))
	}
	flagged := v1.CommandType(l.Data[0])
	t := flagged &^ IgnoreUnknownTypeFlag
	spec, ok := commands[t]
	if !ok {
		if flagged&IgnoreUnknownTypeFlag != 0 {
			f.logger.Warn("skipping a log entry of a command type this server does not know (flagged ignorable); upgrade this server",
				"type", int(t), "index", l.Index)
			return f.applyEntry(f.State(), t, nil, logEntry{index: l.Index, term: l.Term}, nil)
		}
		f.logger.Error("unknown command type in raft log; stopping to avoid divergence",
			"type", int(l.Data[0]), "index", l.Index)
		panic(fmt.Sprintf("fsm: unknown command type %d at index %d", l.Data[0], l.Index))
	}
	return f.applyEntry(f.State(), t, &spec, logEntry{index: l.Index, term: l.Term}, l.Data[1:])
}

// applyEntry decodes and applies one command (spec nil: an ignored entry
// that only advances the index) and records its outcome.
func (f *FSM) applyEntry(s *Store, t v1.CommandType, spec *commandSpec, e logEntry, buf []byte) *ApplyResult {
	index := e.index
	tx := s.write()
	defer tx.Abort()

	var reqID string
	var err error
	if spec != nil {
		msg := spec.newMsg()
		if err = decode(buf, msg); err == nil {
			reqID, err = spec.apply(tx, e, msg)
		}
	}
	if reqID != "" {
		prev, lerr := lookupRequest(tx, reqID)
		if lerr != nil {
			panic(fmt.Sprintf("fsm: look up request %q at %d: %v", reqID, index, lerr))
		}
		if prev != nil {
			// A retry of a write that was already applied: report the
			// first outcome and change nothing.
			tx.Abort()
			s.commit(nil, index)
			return prev
		}
	}
	if err != nil {
		// Discard partial writes, but remember the outcome of the request.
		tx.Abort()
		tx = s.write()
		defer tx.Abort()
	}
	if reqID != "" {
		if rerr := recordRequest(tx, reqID, index, err); rerr != nil {
			panic(fmt.Sprintf("fsm: record request %q at %d: %v", reqID, index, rerr))
		}
	}
	s.commit(tx, index)
	if err != nil {
		f.logger.Debug("command refused", "type", t.String(), "index", index, "err", err)
	}
	return &ApplyResult{Index: index, Err: err}
}

// lookupRequest returns the recorded outcome of a request id, or nil.
func lookupRequest(tx *txn, reqID string) (*ApplyResult, error) {
	raw, err := tx.First(tableRequests, "id", reqID)
	if err != nil || raw == nil {
		return nil, err
	}
	rec := raw.(*v1.RequestRecord)
	res := &ApplyResult{Index: rec.GetIndex()}
	if rec.GetErrorKind() != "" {
		sentinel := errorKinds[rec.GetErrorKind()]
		if sentinel == nil {
			sentinel = ErrInvalid
		}
		res.Err = &commandError{kind: sentinel, msg: rec.GetErrorMessage()}
	}
	return res, nil
}

func recordRequest(tx *txn, reqID string, index uint64, outcome error) error {
	rec := &v1.RequestRecord{RequestId: reqID, Index: index}
	if outcome != nil {
		rec.ErrorMessage = outcome.Error()
		rec.ErrorKind = "invalid"
		for kind, sentinel := range errorKinds {
			if errors.Is(outcome, sentinel) {
				rec.ErrorKind = kind
			}
		}
	}
	if err := tx.Insert(tableRequests, rec); err != nil {
		return err
	}
	// Forget request ids older than the retention window. Pruning depends
	// only on the log index, so every replica prunes the same ones.
	if index <= requestRetention {
		return nil
	}
	it, err := tx.LowerBound(tableRequests, "index", uint64(0))
	if err != nil {
		return err
	}
	var old []any
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if raw.(*v1.RequestRecord).GetIndex() >= index-requestRetention {
			break
		}
		old = append(old, raw)
	}
	for _, o := range old {
		if err := tx.Delete(tableRequests, o); err != nil {
			return err
		}
	}
	return nil
}

// commandError is a refusal with a message; errors.Is matches its kind.
type commandError struct {
	kind error
	msg  string
}

func (e *commandError) Error() string { return e.msg }
func (e *commandError) Unwrap() error { return e.kind }

func refuse(kind error, format string, args ...any) error {
	return &commandError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// decode unmarshals a command payload, reporting ErrInvalid on failure.
func decode(buf []byte, msg proto.Message) error {
	if err := proto.Unmarshal(buf, msg); err != nil {
		return refuse(ErrInvalid, "decode %T: %v", msg, err)
	}
	return nil
}
