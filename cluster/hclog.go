package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// levelTrace is the slog level used for hclog's Trace level (below Debug).
const levelTrace = slog.LevelDebug - 4

// hclogAdapter implements hclog.Logger on top of a *slog.Logger so that
// hashicorp/raft and memberlist log through the server's one slog handler,
// in one format. The hclog name becomes the "component" attribute.
type hclogAdapter struct {
	logger *slog.Logger
	name   string
	args   []any
	// level is shared by all loggers derived from the same root, like hclog.
	level *atomic.Int32
}

// NewHCLogger returns an hclog.Logger that writes to logger. It is exported
// so that other hashicorp libraries wired in by the server binary log in the
// same format as the cluster layer.
func NewHCLogger(logger *slog.Logger, name string) hclog.Logger {
	if logger == nil {
		logger = slog.Default()
	}
	lvl := new(atomic.Int32)
	lvl.Store(int32(hclog.NoLevel))
	return &hclogAdapter{logger: logger, name: name, level: lvl}
}

func toSlogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace:
		return levelTrace
	case hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (h *hclogAdapter) enabled(l hclog.Level) bool {
	if min := hclog.Level(h.level.Load()); min != hclog.NoLevel && l < min {
		return false
	}
	return h.logger.Enabled(context.Background(), toSlogLevel(l))
}

// Log implements hclog.Logger.
func (h *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off || !h.enabled(level) {
		return
	}
	attrs := make([]any, 0, len(h.args)+len(args)+2)
	if h.name != "" {
		attrs = append(attrs, "component", h.name)
	}
	attrs = append(attrs, h.args...)
	attrs = append(attrs, normalizeArgs(args)...)
	h.logger.Log(context.Background(), toSlogLevel(level), msg, attrs...)
}

// normalizeArgs turns hclog's key/value list into slog's: keys are strings,
// an odd trailing value gets the key "EXTRA_VALUE_AT_END" like hclog does.
func normalizeArgs(args []any) []any {
	if len(args) == 0 {
		return nil
	}
	out := make([]any, 0, len(args)+1)
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			out = append(out, "EXTRA_VALUE_AT_END", args[i])
			break
		}
		key, ok := args[i].(string)
		if !ok {
			key = "BAD_KEY"
		}
		val := args[i+1]
		if f, ok := val.(hclog.Format); ok && len(f) > 0 {
			if s, ok := f[0].(string); ok {
				val = fmt.Sprintf(s, f[1:]...)
			}
		}
		out = append(out, key, val)
	}
	return out
}

// Trace implements hclog.Logger.
func (h *hclogAdapter) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (h *hclogAdapter) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (h *hclogAdapter) Info(msg string, args ...any) { h.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (h *hclogAdapter) Warn(msg string, args ...any) { h.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (h *hclogAdapter) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

// IsTrace implements hclog.Logger.
func (h *hclogAdapter) IsTrace() bool { return h.enabled(hclog.Trace) }

// IsDebug implements hclog.Logger.
func (h *hclogAdapter) IsDebug() bool { return h.enabled(hclog.Debug) }

// IsInfo implements hclog.Logger.
func (h *hclogAdapter) IsInfo() bool { return h.enabled(hclog.Info) }

// IsWarn implements hclog.Logger.
func (h *hclogAdapter) IsWarn() bool { return h.enabled(hclog.Warn) }

// IsError implements hclog.Logger.
func (h *hclogAdapter) IsError() bool { return h.enabled(hclog.Error) }

// ImpliedArgs implements hclog.Logger.
func (h *hclogAdapter) ImpliedArgs() []any { return append([]any(nil), h.args...) }

// With implements hclog.Logger.
func (h *hclogAdapter) With(args ...any) hclog.Logger {
	c := *h
	c.args = append(append([]any(nil), h.args...), normalizeArgs(args)...)
	return &c
}

// Name implements hclog.Logger.
func (h *hclogAdapter) Name() string { return h.name }

// Named implements hclog.Logger.
func (h *hclogAdapter) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		c.name = c.name + "." + name
	} else {
		c.name = name
	}
	return &c
}

// ResetNamed implements hclog.Logger.
func (h *hclogAdapter) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel implements hclog.Logger. It only filters further: the slog
// handler's own level still applies.
func (h *hclogAdapter) SetLevel(level hclog.Level) { h.level.Store(int32(level)) }

// GetLevel implements hclog.Logger.
func (h *hclogAdapter) GetLevel() hclog.Level {
	if l := hclog.Level(h.level.Load()); l != hclog.NoLevel {
		return l
	}
	for _, l := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn} {
		if h.logger.Enabled(context.Background(), toSlogLevel(l)) {
			return l
		}
	}
	return hclog.Error
}

// StandardLogger implements hclog.Logger. Lines of the form
// "[LEVEL] name: message" (memberlist's style) are logged at that level.
func (h *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger.
func (h *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	w := &stdlogWriter{log: h, inferLevels: true, forceLevel: hclog.NoLevel}
	if opts != nil {
		w.inferLevels = opts.InferLevels || opts.InferLevelsWithTimestamp
		w.forceLevel = opts.ForceLevel
	}
	return w
}

// stdlogWriter parses lines written by a standard library logger.
type stdlogWriter struct {
	log         *hclogAdapter
	inferLevels bool
	forceLevel  hclog.Level
}

func (w *stdlogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		s := strings.TrimSpace(string(line))
		if s == "" {
			continue
		}
		level := hclog.Info
		if w.forceLevel != hclog.NoLevel {
			level = w.forceLevel
		}
		if w.inferLevels {
			level, s = inferLevel(s, level)
		}
		w.log.Log(level, s)
	}
	return len(p), nil
}

// inferLevel strips a leading "[LEVEL] " tag and returns its level.
func inferLevel(s string, def hclog.Level) (hclog.Level, string) {
	tags := []struct {
		tag   string
		level hclog.Level
	}{
		{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn}, {"[WARNING]", hclog.Warn}, {"[ERR]", hclog.Error},
		{"[ERROR]", hclog.Error},
	}
	for _, t := range tags {
		if rest, ok := strings.CutPrefix(s, t.tag); ok {
			return t.level, strings.TrimSpace(rest)
		}
	}
	return def, s
}
