package backup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// benchVolume writes a volume of BERTH_BENCH_MB MiB (default 256) in 64
// MiB files: half random bytes (incompressible), half repetitive text, as
// a database's mix of data pages and logs.
func benchVolume(b *testing.B) (string, int64) {
	b.Helper()
	mb := 256
	if v, err := strconv.Atoi(os.Getenv("BERTH_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	dir := b.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	var total int64
	for i := 0; total < int64(mb)<<20; i++ {
		size := min(64<<20, int64(mb)<<20-total)
		buf := make([]byte, size)
		if i%2 == 0 {
			for j := range buf {
				buf[j] = byte(r.Uint32())
			}
		} else {
			line := []byte(fmt.Sprintf("2026-01-01 00:00:%02d LOG checkpoint complete: wrote %d buffers\n", i, i*7))
			for j := range buf {
				buf[j] = line[j%len(line)]
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%02d", i)), buf, 0o600); err != nil {
			b.Fatal(err)
		}
		total += size
	}
	return dir, total
}

func benchTarget(b *testing.B) *Target {
	b.Helper()
	t, err := Open(context.Background(), "file://"+b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { t.Close() })
	return t
}

// BenchmarkBackupFull: a first backup into an empty target.
func BenchmarkBackupFull(b *testing.B) {
	vol, size := benchVolume(b)
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		t := benchTarget(b)
		b.StartTimer()
		if _, err := t.Backup(context.Background(), vol, Options{ID: fmt.Sprintf("b%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBackupUnchanged: a backup of a volume the target already holds
// (read, chunk and hash everything; upload nothing).
func BenchmarkBackupUnchanged(b *testing.B) {
	vol, size := benchVolume(b)
	t := benchTarget(b)
	if _, err := t.Backup(context.Background(), vol, Options{ID: "base"}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		res, err := t.Backup(context.Background(), vol, Options{ID: fmt.Sprintf("b%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		if res.Manifest.Totals.NewChunks != 0 {
			b.Fatalf("unchanged volume uploaded %d chunks", res.Manifest.Totals.NewChunks)
		}
	}
}

// BenchmarkRestore: a restore into an empty directory (every chunk read,
// decompressed and checked).
func BenchmarkRestore(b *testing.B) {
	vol, size := benchVolume(b)
	t := benchTarget(b)
	res, err := t.Backup(context.Background(), vol, Options{ID: "base"})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dst := filepath.Join(b.TempDir(), "vol")
		b.StartTimer()
		if _, err := t.Restore(context.Background(), "base", dst, RestoreOptions{ManifestSHA256: res.ManifestSHA256}); err != nil {
			b.Fatal(err)
		}
	}
}
