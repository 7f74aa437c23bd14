package rpc

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// EventTypes must list every type the server publishes, or StreamEvents
// would refuse a filter on it. The types are string literals in the
// scheduler and here; find them in the sources.
func TestEventTypesListsEveryPublishedType(t *testing.T) {
	literal := regexp.MustCompile(`(?:Type:\s*|Event[A-Za-z]*\s*=\s*)"([a-z_]+)"`)
	var files []string
	for _, dir := range []string{".", "../scheduler"} {
		fs, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
	}
	found := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range literal.FindAllStringSubmatch(string(src), -1) {
			found++
			if !slices.Contains(EventTypes, m[1]) {
				t.Errorf("%s publishes event type %q, missing from EventTypes", f, m[1])
			}
		}
	}
	if found < len(EventTypes) {
		t.Fatalf("found %d event type literals in the sources, fewer than the %d listed: is the pattern stale?", found, len(EventTypes))
	}
	if !slices.IsSorted(EventTypes) {
		t.Errorf("EventTypes is not sorted: %v", EventTypes)
	}
}
