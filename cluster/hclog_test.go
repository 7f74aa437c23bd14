package cluster

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := NewHCLogger(base, "").Named("raft").With("node", "s1")
	l.Info("entering leader state", "leader", "127.0.0.1:1", "err", errors.New("boom"))
	l.Trace("dropped: below debug")
	l.Debug("kept", "dangling")
	out := buf.String()
	for _, want := range []string{
		`level=INFO msg="entering leader state" component=raft node=s1 leader=127.0.0.1:1 err=boom`,
		`level=DEBUG msg=kept component=raft node=s1 EXTRA_VALUE_AT_END=dangling`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if strings.Contains(out, "dropped") {
		t.Errorf("trace logged although the handler is at debug:\n%s", out)
	}
	if !l.IsDebug() || l.IsTrace() || l.GetLevel() != hclog.Debug {
		t.Errorf("levels: debug=%v trace=%v level=%v", l.IsDebug(), l.IsTrace(), l.GetLevel())
	}
	l.SetLevel(hclog.Warn)
	if l.IsInfo() {
		t.Error("SetLevel(Warn) did not filter info")
	}

	// memberlist logs through a standard logger with "[LEVEL]" prefixes.
	buf.Reset()
	std := NewHCLogger(base, "memberlist").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	std.Printf("[WARN] memberlist: Refuting a dead message (from: s2)")
	std.Printf("[DEBUG] memberlist: Stream connection from=127.0.0.1:1")
	std.Printf("no level here")
	out = buf.String()
	for _, want := range []string{
		`level=WARN msg="memberlist: Refuting a dead message (from: s2)" component=memberlist`,
		`level=DEBUG msg="memberlist: Stream connection from=127.0.0.1:1" component=memberlist`,
		`level=INFO msg="no level here" component=memberlist`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
