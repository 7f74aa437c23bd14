package backup

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/backup/backuptest"
)

// small chunks keep the tests quick while cutting files into many chunks.
func smallChunks(id string) Options {
	return Options{ID: id, App: "/db", Instance: "i1", MinChunk: 16 << 10, MaxChunk: 256 << 10, AverageBits: 16}
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// makeVolume writes a small tree: a big random file, a compressible
// file, an empty file, a nested directory, a symlink.
func makeVolume(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "base", "16384"), 0o700))
	must(t, os.WriteFile(filepath.Join(dir, "base", "16384", "data"), randomBytes(1, 4<<20), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "log.txt"), bytes.Repeat([]byte("a line of log\n"), 20000), 0o640))
	must(t, os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600))
	must(t, os.Symlink("base/16384/data", filepath.Join(dir, "link")))
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openTarget(t *testing.T, url string) *Target {
	t.Helper()
	tg, err := Open(context.Background(), url)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { tg.Close() })
	return tg
}

func fileTarget(t *testing.T) (*Target, string) {
	dir := t.TempDir()
	return openTarget(t, "file://"+dir), dir
}

// assertSameTree fails unless b has exactly a's entries, contents, modes,
// symlink targets and file modification times.
func assertSameTree(t *testing.T, a, b string) {
	t.Helper()
	seen := map[string]bool{}
	must(t, filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		must(t, err)
		rel, _ := filepath.Rel(a, p)
		seen[rel] = true
		ia, err := os.Lstat(p)
		must(t, err)
		ib, err := os.Lstat(filepath.Join(b, rel))
		if err != nil {
			t.Errorf("%s: missing in restore: %v", rel, err)
			return nil
		}
		if ia.Mode() != ib.Mode() {
			t.Errorf("%s: mode %v, restored %v", rel, ia.Mode(), ib.Mode())
		}
		switch {
		case ia.Mode().IsRegular():
			da, _ := os.ReadFile(p)
			db, _ := os.ReadFile(filepath.Join(b, rel))
			if !bytes.Equal(da, db) {
				t.Errorf("%s: content differs", rel)
			}
			if !ia.ModTime().Equal(ib.ModTime()) {
				t.Errorf("%s: mtime %v, restored %v", rel, ia.ModTime(), ib.ModTime())
			}
		case ia.Mode()&fs.ModeSymlink != 0:
			la, _ := os.Readlink(p)
			lb, _ := os.Readlink(filepath.Join(b, rel))
			if la != lb {
				t.Errorf("%s: link %q, restored %q", rel, la, lb)
			}
		}
		return nil
	}))
	must(t, filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(b, p)
		if !seen[rel] {
			t.Errorf("%s: restored but not in the source", rel)
		}
		return nil
	}))
}

func chunkHashes(m *Manifest) map[string]bool {
	out := map[string]bool{}
	for _, c := range m.uniqueChunks() {
		out[c.Hash] = true
	}
	return out
}

// testIncremental is the scenario both target kinds run: a full backup,
// one changed region, an incremental backup that uploads only the chunks
// covering it, and restores of both that match the volume at each time.
func testIncremental(t *testing.T, tg *Target) {
	ctx := context.Background()
	vol := makeVolume(t)
	first, err := tg.Backup(ctx, vol, smallChunks("b1"))
	must(t, err)
	m1 := first.Manifest
	if m1.Totals.Files != 3 || m1.Totals.Bytes != 4<<20+14*20000 {
		t.Fatalf("first backup totals %+v", m1.Totals)
	}
	if m1.Totals.Chunks < 10 {
		t.Fatalf("first backup cut only %d chunks; the test needs many", m1.Totals.Chunks)
	}
	if m1.Totals.NewChunks != m1.Totals.UniqueChunks {
		t.Fatalf("first backup uploaded %d of %d distinct chunks, want all", m1.Totals.NewChunks, m1.Totals.UniqueChunks)
	}
	snap1 := t.TempDir()
	_, err = tg.Restore(ctx, "b1", snap1, RestoreOptions{ManifestSHA256: first.ManifestSHA256})
	must(t, err)
	assertSameTree(t, vol, snap1)

	// Overwrite 4 KiB in the middle of the big file.
	data := filepath.Join(vol, "base", "16384", "data")
	fh, err := os.OpenFile(data, os.O_WRONLY, 0)
	must(t, err)
	_, err = fh.WriteAt(randomBytes(99, 4096), 2<<20)
	must(t, err)
	must(t, fh.Close())

	second, err := tg.Backup(ctx, vol, smallChunks("b2"))
	must(t, err)
	m2 := second.Manifest
	// Exactly the chunks the first backup did not have were uploaded, and
	// a changed region of 4 KiB touches at most two chunks.
	old := chunkHashes(m1)
	fresh := 0
	for h := range chunkHashes(m2) {
		if !old[h] {
			fresh++
		}
	}
	if m2.Totals.NewChunks != fresh {
		t.Errorf("incremental backup uploaded %d chunks, %d were new", m2.Totals.NewChunks, fresh)
	}
	if fresh < 1 || fresh > 2 {
		t.Errorf("a 4 KiB change made %d new chunks, want 1 or 2 (of %d)", fresh, m2.Totals.Chunks)
	}
	if m2.Totals.NewBytes >= m1.Totals.NewBytes/4 {
		t.Errorf("incremental uploaded %d bytes, full %d", m2.Totals.NewBytes, m1.Totals.NewBytes)
	}

	snap2 := t.TempDir()
	_, err = tg.Restore(ctx, "b2", snap2, RestoreOptions{ManifestSHA256: second.ManifestSHA256})
	must(t, err)
	assertSameTree(t, vol, snap2)

	// The first backup still restores the first state, into a wiped dir.
	_, err = tg.Restore(ctx, "b1", snap2, RestoreOptions{Wipe: true})
	must(t, err)
	assertSameTree(t, snap1, snap2)

	ids, err := tg.Manifests(ctx)
	must(t, err)
	if strings.Join(ids, ",") != "b1,b2" {
		t.Errorf("manifests %v", ids)
	}
}

func TestIncrementalFileTarget(t *testing.T) {
	tg, _ := fileTarget(t)
	testIncremental(t, tg)
}

func TestIncrementalS3Target(t *testing.T) {
	url := backuptest.NewTestS3(t, "backups", "team/db")
	testIncremental(t, openTarget(t, url))
	// A second opening reads the same chunker polynomial: an unchanged
	// volume uploads nothing.
	tg := openTarget(t, url)
	vol := makeVolume(t)
	_, err := tg.Backup(context.Background(), vol, smallChunks("c1"))
	must(t, err)
	again, err := openTarget(t, url).Backup(context.Background(), vol, smallChunks("c2"))
	must(t, err)
	if again.Manifest.Totals.NewChunks != 0 {
		t.Errorf("unchanged volume uploaded %d chunks", again.Manifest.Totals.NewChunks)
	}
}

func TestVerifyDetectsCorruptAndMissingChunks(t *testing.T) {
	ctx := context.Background()
	tg, root := fileTarget(t)
	res, err := tg.Backup(ctx, makeVolume(t), smallChunks("b1"))
	must(t, err)
	v, err := tg.Verify(ctx, "b1", res.ManifestSHA256, nil)
	must(t, err)
	if !v.OK() || v.Chunks != res.Manifest.Totals.UniqueChunks || v.Bytes != res.Manifest.Totals.Bytes {
		t.Fatalf("verify of an intact backup: %+v (manifest %+v)", v, res.Manifest.Totals)
	}

	refs := res.Manifest.uniqueChunks()
	bad, gone := refs[1].Hash, refs[2].Hash
	// Replace a chunk by another valid compressed chunk: only the hash
	// check can tell.
	other, err := os.ReadFile(filepath.Join(root, "chunks", refs[3].Hash[:2], refs[3].Hash))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(root, "chunks", bad[:2], bad), other, 0o600))
	must(t, os.Remove(filepath.Join(root, "chunks", gone[:2], gone)))

	v, err = tg.Verify(ctx, "b1", res.ManifestSHA256, nil)
	must(t, err)
	if strings.Join(v.Corrupt, ",") != bad || strings.Join(v.Missing, ",") != gone {
		t.Fatalf("verify found corrupt %v missing %v, want %s and %s", v.Corrupt, v.Missing, bad, gone)
	}
	if v.Err() == nil {
		t.Fatal("Err() is nil for a damaged backup")
	}
	// A restore with a chunk missing changes nothing, not even with Wipe.
	keep := t.TempDir()
	must(t, os.WriteFile(filepath.Join(keep, "old"), []byte("old data"), 0o600))
	if _, err := tg.Restore(ctx, "b1", keep, RestoreOptions{Wipe: true}); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("restore with a missing chunk: %v", err)
	}
	if _, err := os.Stat(filepath.Join(keep, "old")); err != nil {
		t.Fatalf("the volume was wiped for a restore that could not succeed: %v", err)
	}
	// With every chunk present, a corrupt one stops the restore instead
	// of writing wrong data.
	other2, err := os.ReadFile(filepath.Join(root, "chunks", refs[3].Hash[:2], refs[3].Hash))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(root, "chunks", gone[:2], gone), other2, 0o600))
	if _, err := tg.Restore(ctx, "b1", t.TempDir(), RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "does not match its hash") {
		t.Fatalf("restore of a damaged backup: %v", err)
	}
}

func TestManifestChecksumAndPaths(t *testing.T) {
	ctx := context.Background()
	tg, root := fileTarget(t)
	vol := makeVolume(t)
	res, err := tg.Backup(ctx, vol, smallChunks("b1"))
	must(t, err)
	if _, err := tg.Verify(ctx, "b1", strings.Repeat("0", 64), nil); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("verify with a wrong manifest checksum: %v", err)
	}
	if _, err := tg.Restore(ctx, "nope", t.TempDir(), RestoreOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("restore of an unknown backup: %v", err)
	}
	// Restoring into a volume that holds data needs Wipe.
	if _, err := tg.Restore(ctx, "b1", vol, RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("restore into a non-empty dir: %v", err)
	}
	// A manifest naming a path outside the volume is refused.
	m := res.Manifest
	m.ID = "evil"
	m.Files = append(m.Files, File{Path: "../outside", Type: TypeDir, Mode: 0o700})
	_, err = tg.writeManifest(ctx, m)
	must(t, err)
	if _, err := tg.Restore(ctx, "evil", t.TempDir(), RestoreOptions{}); err == nil || !strings.Contains(err.Error(), "leaves the volume") {
		t.Errorf("restore of a manifest with ../: %v", err)
	}
	if _, err := tg.Backup(ctx, vol, Options{ID: "../x"}); err == nil {
		t.Error("backup id ../x accepted")
	}
	_ = root
}

func TestPruneKeepsNewestAndCollectsChunks(t *testing.T) {
	ctx := context.Background()
	tg, root := fileTarget(t)
	vol := makeVolume(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	data := filepath.Join(vol, "base", "16384", "data")
	var last *Result
	for i := range 3 {
		// Each backup has a region of its own.
		must(t, os.WriteFile(data, append(randomBytes(1, 2<<20), randomBytes(uint64(10+i), 1<<20)...), 0o600))
		o := smallChunks("b" + string(rune('1'+i)))
		o.Created = base.Add(time.Duration(i) * time.Hour)
		r, err := tg.Backup(ctx, vol, o)
		must(t, err)
		last = r
	}
	countChunks := func() int {
		n := 0
		must(t, filepath.WalkDir(filepath.Join(root, "chunks"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return err
		}))
		return n
	}
	before := countChunks()
	deleted, gc, err := tg.Prune(ctx, Retention{Keep: 1}, base.Add(3*time.Hour))
	must(t, err)
	if strings.Join(deleted, ",") != "b1,b2" {
		t.Fatalf("prune deleted %v, want b1,b2", deleted)
	}
	after := countChunks()
	if gc.Deleted == 0 || before-after != gc.Deleted || after != last.Manifest.Totals.UniqueChunks {
		t.Fatalf("gc deleted %d (files %d -> %d), the kept backup has %d chunks", gc.Deleted, before, after, last.Manifest.Totals.UniqueChunks)
	}
	v, err := tg.Verify(ctx, "b3", last.ManifestSHA256, nil)
	must(t, err)
	if !v.OK() {
		t.Fatalf("kept backup damaged by gc: %v", v.Err())
	}
	// An unreadable manifest stops GC before it deletes anything.
	must(t, os.WriteFile(filepath.Join(root, "manifests", "junk.json"), []byte("{"), 0o600))
	if _, err := tg.GC(ctx); err == nil {
		t.Fatal("gc with an unreadable manifest succeeded")
	}
	if countChunks() != after {
		t.Fatal("gc deleted chunks despite an unreadable manifest")
	}
}

func TestExpired(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	day := func(d int) time.Time { return now.AddDate(0, 0, -d) }
	entries := []Entry{
		{ID: "a0", Group: "a", Created: day(0)}, {ID: "a1", Group: "a", Created: day(1)},
		{ID: "a2", Group: "a", Created: day(2)}, {ID: "a5", Group: "a", Created: day(5)},
		{ID: "b9", Group: "b", Created: day(9)},
	}
	for _, tc := range []struct {
		r    Retention
		want string
	}{
		{Retention{}, ""},
		{Retention{Keep: 2}, "a2,a5"},
		{Retention{Keep: 1}, "a1,a2,a5"},
		{Retention{MaxAge: 48 * time.Hour}, "a5"}, // b9 is b's newest: kept
		{Retention{Keep: 3, MaxAge: 36 * time.Hour}, "a2,a5"},
	} {
		if got := strings.Join(Expired(entries, tc.r, now), ","); got != tc.want {
			t.Errorf("Expired(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct{ url, err string }{
		{"file:///srv/backups", ""},
		{"s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=eu-west-1", ""},
		{"", "must not be empty"},
		{"file://host/path", "no host"},
		{"file:relative", "absolute path"},
		{"s3:///prefix", "needs a bucket"},
		{"s3://key:secret@bucket/p", "credentials"},
		{"s3://b/p?endpoint=ftp://x", "http(s)"},
		{"gs://bucket", "scheme must be file or s3"},
	} {
		_, err := ParseTarget(tc.url)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseTarget(%q) = %v, want error containing %q", tc.url, err, tc.err)
		}
	}
}

// A server reading a target creates nothing in it: a target no backup
// wrote to is ErrNotFound, and its directory is not made.
func TestOpenExistingCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "backups")
	if _, err := OpenExisting(context.Background(), "file://"+dir, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenExisting of a missing dir: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("OpenExisting created %s: %v", dir, err)
	}
	must(t, os.Mkdir(dir, 0o700))
	if _, err := OpenExisting(context.Background(), "file://"+dir, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenExisting of an empty dir: %v", err)
	}
	openTarget(t, "file://"+dir) // a backup's Open initializes it
	tg, err := OpenExisting(context.Background(), "file://"+dir, nil)
	must(t, err)
	tg.Close()
}

// A backup with a parent takes the unchanged files from it unread, and
// reads again every file whose size or modification time differs, or
// that was modified too close to the parent's start to trust its time; the
// result restores exactly the directory.
func TestBackupReusesUnchangedFilesOfParent(t *testing.T) {
	ctx := context.Background()
	tg, _ := fileTarget(t)
	src := t.TempDir()
	old := time.Now().Add(-time.Hour)
	for _, name := range []string{"quiet", "grows", "rewritten", "racy"} {
		must(t, os.WriteFile(filepath.Join(src, name), bytes.Repeat([]byte(name), 5000), 0o644))
		must(t, os.Chtimes(filepath.Join(src, name), old, old))
	}
	created := time.Now()
	// "racy" was modified within racyWindow of the parent's start: its
	// recorded time cannot be trusted.
	must(t, os.Chtimes(filepath.Join(src, "racy"), created.Add(-time.Second), created.Add(-time.Second)))
	parent, err := tg.Backup(ctx, src, Options{ID: "live", Created: created})
	must(t, err)

	must(t, os.WriteFile(filepath.Join(src, "grows"), bytes.Repeat([]byte("grows"), 6000), 0o644))
	// Same size, new content: the write moved its modification time.
	must(t, os.WriteFile(filepath.Join(src, "rewritten"), bytes.Repeat([]byte("REWRITTEN"), 5000), 0o644))
	// "racy": new content of the same size with the same time as recorded.
	racyTime := created.Add(-time.Second)
	must(t, os.WriteFile(filepath.Join(src, "racy"), bytes.Repeat([]byte("RACY"), 5000), 0o644))
	must(t, os.Chtimes(filepath.Join(src, "racy"), racyTime, racyTime))

	res, err := tg.Backup(ctx, src, Options{ID: "live", Parent: parent.Manifest})
	must(t, err)
	if got := res.Manifest.Totals.ReusedFiles; got != 1 {
		t.Fatalf("reused %d files, want 1 (quiet)", got)
	}
	dst := t.TempDir()
	_, err = tg.Restore(ctx, "live", dst, RestoreOptions{ManifestSHA256: res.ManifestSHA256})
	must(t, err)
	assertSameTree(t, src, dst)
}
