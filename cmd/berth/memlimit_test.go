package main

import (
	"strings"
	"testing"
)

func TestParseMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"300MiB", 300 << 20}, {"2GiB", 2 << 30}, {"512KiB", 512 << 10}, {"1TiB", 1 << 40}, {"4096B", 4096}, {"314572800", 314572800},
	} {
		if got, err := parseSize("--memory-limit", c.in); err != nil || got != c.want {
			t.Errorf("parseSize(--memory-limit, %q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "0", "-1MiB", "300MB", "1.5GiB", "MiB", "99999999999TiB"} {
		_, err := parseSize("--memory-limit", bad)
		if err == nil || !strings.Contains(err.Error(), "--memory-limit") || !strings.Contains(err.Error(), bad) {
			t.Errorf("parseSize(--memory-limit, %q) = %v, want an error naming the flag and the value", bad, err)
		}
	}
}
