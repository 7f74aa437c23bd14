package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// newLogger returns the process logger at the given level and format
// (text or json), writing to stderr and, when set, also to also.
func newLogger(level, format string, also io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	var w io.Writer = os.Stderr
	if also != nil {
		w = io.MultiWriter(os.Stderr, also)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format: %q is not text or json", format)
	}
}

// logRing keeps the most recent log lines (at most maxBytes of them) with
// the time each was written, for the debug bundle (/v1/debug/logs).
type logRing struct {
	mu       sync.Mutex
	lines    []logLine
	size     int
	maxBytes int
	now      func() time.Time
	partial  []byte
}

type logLine struct {
	at   time.Time
	text []byte
}

// defaultLogRingBytes is how much recent log a server keeps in memory.
const defaultLogRingBytes = 4 << 20

func newLogRing(maxBytes int) *logRing {
	return &logRing{maxBytes: maxBytes, now: time.Now}
}

// Write stores p's complete lines; a trailing partial line waits for the
// rest.
func (r *logRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	data := append(r.partial, p...)
	now := r.now()
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		line := append([]byte(nil), data[:i+1]...)
		r.lines = append(r.lines, logLine{at: now, text: line})
		r.size += len(line)
		data = data[i+1:]
	}
	r.partial = append([]byte(nil), data...)
	for r.size > r.maxBytes && len(r.lines) > 0 {
		r.size -= len(r.lines[0].text)
		r.lines[0] = logLine{}
		r.lines = r.lines[1:]
	}
	return len(p), nil
}

// WriteSince writes the kept lines written at or after since to w.
func (r *logRing) WriteSince(w io.Writer, since time.Time) error {
	r.mu.Lock()
	var out []byte
	for _, l := range r.lines {
		if !l.at.Before(since) {
			out = append(out, l.text...)
		}
	}
	r.mu.Unlock()
	_, err := w.Write(out)
	return err
}
