package fsm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	v1 "github.com/berth-dev/berth/proto/berth/v1"
)

// IgnoreUnknownTypeFlag, set in a log entry's type byte, tells a server
// that does not know the command type to skip the entry instead of
// stopping. Only a command whose loss cannot make replicas diverge in a
// way that matters (a record for display, say) may carry it; the known
// types keep the flag clear, so an older server stops rather than
// silently miss a write it does not understand.
const IgnoreUnknownTypeFlag v1.CommandType = 128

// ErrUnsupported is returned by CheckProposal for a command that some
// server is too old to apply.
var ErrUnsupported = errors.New("command not supported by every server")

// logEntry is what an apply function knows of its Raft entry. Both fields
// come from the log itself, so every replica sees the same values.
type logEntry struct {
	index uint64
	// term is the Raft term in which the leader appended the entry.
	term uint64
}

// commandSpec is one row of the command registry.
type commandSpec struct {
	// newMsg returns an empty payload message of the command's type.
	newMsg func() proto.Message
	// apply applies a decoded payload inside a write transaction. The
	// returned error is the command's outcome; the transaction commits
	// whatever apply wrote only when it returns nil.
	apply func(tx *txn, e logEntry, msg proto.Message) (requestID string, err error)
	// since is the first server version that applies the command; the
	// leader does not propose it before every server runs at least that
	// version (see CheckProposal). "" for the commands of the first
	// release.
	since string
}

// commands is the command registry: the one list of command types, their
// payload messages and apply functions. Each family file registers its
// commands in an init function, one line per command.
var commands = map[v1.CommandType]commandSpec{}

// registerCommand adds a command type to the registry. since is the first
// server version that knows it ("" for the first release). A type
// registered twice, or out of range, is a programming error.
func registerCommand[M proto.Message](t v1.CommandType, since string, apply func(tx *txn, e logEntry, cmd M) (string, error)) {
	if t <= 0 || t >= IgnoreUnknownTypeFlag {
		panic(fmt.Sprintf("fsm: command type %d out of range 1..127", t))
	}
	if _, dup := commands[t]; dup {
		panic(fmt.Sprintf("fsm: command type %s registered twice", t))
	}
	if since != "" {
		if _, ok := parseVersion(since); !ok {
			panic(fmt.Sprintf("fsm: command type %s: invalid version %q", t, since))
		}
	}
	var zero M
	commands[t] = commandSpec{
		newMsg: func() proto.Message { return zero.ProtoReflect().New().Interface() },
		apply: func(tx *txn, e logEntry, msg proto.Message) (string, error) {
			return apply(tx, e, msg.(M))
		},
		since: since,
	}
}

// CommandTypes lists the registered command types.
func CommandTypes() []v1.CommandType {
	out := make([]v1.CommandType, 0, len(commands))
	for t := range commands {
		out = append(out, t)
	}
	return out
}

// NewCommandMessage returns an empty payload message for a registered
// command type (the ignore flag is allowed), or nil for an unknown one.
func NewCommandMessage(t v1.CommandType) proto.Message {
	spec, ok := commands[t&^IgnoreUnknownTypeFlag]
	if !ok {
		return nil
	}
	return spec.newMsg()
}

// Encode builds a log entry: the type byte, then msg in protobuf. t may
// carry IgnoreUnknownTypeFlag; msg must be the payload type registered for
// t, so that no entry reaches the log that every replica would refuse.
func Encode(t v1.CommandType, msg proto.Message) ([]byte, error) {
	base := t &^ IgnoreUnknownTypeFlag
	if t <= 0 || t > 255 || base == 0 {
		return nil, fmt.Errorf("encode command: type %d out of range", t)
	}
	if spec, ok := commands[base]; ok {
		if want := spec.newMsg().ProtoReflect().Descriptor(); want != msg.ProtoReflect().Descriptor() {
			return nil, fmt.Errorf("encode command %s: payload is %s, want %s", base, msg.ProtoReflect().Descriptor().FullName(), want.FullName())
		}
	} else if t&IgnoreUnknownTypeFlag == 0 {
		return nil, fmt.Errorf("encode command: unknown type %d", t)
	}
	b, err := proto.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode command %s: %w", base, err)
	}
	return append([]byte{byte(t)}, b...), nil
}

// CheckProposal tells whether the leader may propose the encoded entry
// cmd to servers running the given versions (one per server of the Raft
// configuration; "" when a server's version is not known yet). A command
// type added after the first release is refused until every server runs
// a version that applies it: an older server would stop at the entry.
// Entries flagged IgnoreUnknownTypeFlag are always allowed.
func CheckProposal(cmd []byte, versions []string) error {
	if len(cmd) == 0 {
		return fmt.Errorf("empty command")
	}
	t := v1.CommandType(cmd[0])
	if t&IgnoreUnknownTypeFlag != 0 {
		return nil
	}
	spec, ok := commands[t]
	if !ok {
		return fmt.Errorf("unknown command type %d", t)
	}
	if spec.since == "" {
		return nil
	}
	min, _ := parseVersion(spec.since)
	for _, v := range versions {
		have, ok := parseVersion(v)
		if !ok || versionLess(have, min) {
			if v == "" {
				v = "unknown"
			}
			return fmt.Errorf("%w: %s needs every server at version %s or newer; one runs %s (finish the upgrade first)", ErrUnsupported, t, spec.since, v)
		}
	}
	return nil
}

// parseVersion reads MAJOR.MINOR.PATCH, ignoring any pre-release or build
// suffix: a 0.2.0-dev build applies what 0.2.0 applies.
func parseVersion(s string) ([3]int, bool) {
	var out [3]int
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(strings.TrimPrefix(s, "v"), ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

func versionLess(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}
