package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:6060", true}, {"[::1]:6060", true}, {"localhost:6060", true}, {"127.0.0.2:0", true},
		{"0.0.0.0:6060", false}, {":6060", false}, {"10.1.2.3:6060", false}, {"example.com:6060", false}, {"6060", false},
	} {
		err := loopbackOnly("--debug-addr", tc.addr)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.addr, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--debug-addr") {
			t.Errorf("%q: error does not name the flag: %v", tc.addr, err)
		}
	}
}

func TestJSONLogsReachTheRing(t *testing.T) {
	ring := newLogRing(1 << 20)
	logger, err := newLogger("info", "json", ring)
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("app created", "request_id", "r-1")
	logger.Debug("hidden at info")
	var buf bytes.Buffer
	if err := ring.WriteSince(&buf, time.Time{}); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line["msg"] != "app created" || line["request_id"] != "r-1" {
		t.Fatalf("ring holds %q (err %v)", buf.String(), err)
	}
	if _, err := newLogger("info", "yaml", nil); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("bad format: %v", err)
	}
	if _, err := newLogger("loud", "text", nil); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Fatalf("bad level: %v", err)
	}
}

func TestLogRingKeepsRecentLinesSince(t *testing.T) {
	ring := newLogRing(30)
	now := time.Unix(100, 0)
	ring.now = func() time.Time { return now }
	_, _ = ring.Write([]byte("one 1234567\ntwo 1234567\n"))
	now = now.Add(time.Second)
	_, _ = ring.Write([]byte("three 1234\nfou")) // a partial line waits for its end
	_, _ = ring.Write([]byte("r\n"))
	var all, recent bytes.Buffer
	_ = ring.WriteSince(&all, time.Time{})
	_ = ring.WriteSince(&recent, time.Unix(101, 0))
	if all.String() != "two 1234567\nthree 1234\nfour\n" { // "one" dropped: over 30 bytes
		t.Fatalf("kept %q", all.String())
	}
	if recent.String() != "three 1234\nfour\n" {
		t.Fatalf("since: %q", recent.String())
	}
}

func TestScrubRemovesSecretsFromTextAndProfiles(t *testing.T) {
	secrets := []string{"hunter2-long", "abc"}
	got := string(scrub([]byte("pw=hunter2-long x=abc"), secrets))
	if got != "pw=[REDACTED] x=abc" {
		t.Fatalf("scrub: %q (values under 4 bytes are left)", got)
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write([]byte("label hunter2-long"))
	_ = zw.Close()
	if !containsAny(z.Bytes(), secrets) {
		t.Fatal("a secret inside a gzipped profile was not found")
	}
	if containsAny([]byte("nothing here"), secrets) {
		t.Fatal("found a secret that is not there")
	}
	if safeName("../x") != ".._x" || safeName("..") != "_" {
		t.Fatalf("safeName: %q %q", safeName("../x"), safeName(".."))
	}
}
