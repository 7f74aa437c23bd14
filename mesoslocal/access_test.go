package mesoslocal

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

func nobodyCredential(t *testing.T) *credential {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &credential{uid: uint32(uid), gid: uint32(gid), name: "nobody"}
}

func TestCheckReachableNamesTheBlockingDirectory(t *testing.T) {
	cr := nobodyCredential(t)
	root := t.TempDir()
	private := filepath.Join(root, "private")
	sandbox := filepath.Join(private, "sandbox")
	if err := os.MkdirAll(sandbox, 0o755); err != nil {
		t.Fatal(err)
	}
	// Open the way down to root (the directories below the temp root: the
	// root itself, /tmp, keeps its sticky 1777), then close one directory
	// on the path.
	tmp := filepath.Clean(os.TempDir())
	for d := root; strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	err := checkReachable(cr, sandbox)
	if err == nil || !strings.Contains(err.Error(), "user nobody cannot enter "+private+" (mode 0700") ||
		!strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("err = %v", err)
	}
	// Reachable but not writable: the sandbox itself is named.
	os.Chmod(private, 0o755)
	if err := checkReachable(cr, sandbox); err == nil || !strings.Contains(err.Error(), "cannot write to "+sandbox) {
		t.Fatalf("unwritable sandbox: %v", err)
	}
	if err := os.Chown(sandbox, int(cr.uid), int(cr.gid)); err != nil {
		t.Skipf("chown needs root: %v", err)
	}
	if err := checkReachable(cr, sandbox); err != nil {
		t.Fatalf("reachable sandbox: %v", err)
	}
	// The agent's own user and root are never refused.
	if err := checkReachable(nil, sandbox); err != nil {
		t.Fatal(err)
	}
	if err := checkReachable(&credential{name: "root"}, "/root"); err != nil {
		t.Fatal(err)
	}
}

func TestSplitPath(t *testing.T) {
	for in, want := range map[string]string{"/": "/", "/a": "/ a", "/a/b/c": "/ a b c"} {
		if got := strings.Join(splitPath(in), " "); got != want {
			t.Errorf("splitPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// A task whose user cannot reach the work dir fails at launch with a message
// naming the directory, instead of an empty stderr.
func TestTaskUserCannotReachWorkDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	nobodyCredential(t)
	c := startCluster(t, nil) // t.TempDir: mode 0700
	info := berthInfo()
	info.User = "nobody"
	s := subscribe(t, c, info)
	o := s.awaitOffer("any", nil)
	launch(s, o, smallTask("w", o, "true"))
	st := s.awaitUpdate("w", mesos.TASK_FAILED)
	if !strings.Contains(st.GetMessage(), "user nobody cannot enter") || st.GetReason() != mesos.REASON_CONTAINER_LAUNCH_FAILED {
		t.Fatalf("status: %v", st)
	}
}
