package mesoslocal

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// filesGetRaw calls a files endpoint and returns the status and body.
func filesGetRaw(t *testing.T, c *Cluster, endpoint string, params url.Values) (int, string) {
	t.Helper()
	u := fmt.Sprintf("%s/files/%s?%s", c.URL(), endpoint, params.Encode())
	res, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read %s: %v", u, err)
	}
	return res.StatusCode, string(b)
}

func filesRead(t *testing.T, c *Cluster, p string, offset, length string) (int, fileRead, string) {
	t.Helper()
	q := url.Values{"path": {p}}
	if offset != "" {
		q.Set("offset", offset)
	}
	if length != "" {
		q.Set("length", length)
	}
	code, body := filesGetRaw(t, c, "read", q)
	var fr fileRead
	if code == http.StatusOK {
		if err := json.Unmarshal([]byte(body), &fr); err != nil {
			t.Fatalf("read %s: body %q: %v", p, body, err)
		}
	}
	return code, fr, body
}

// TestFilesAPIReadsTaskSandbox: a failed command task's stdout and stderr
// are readable through /files/read at the virtual path a scheduler derives
// from the framework and task ids (and at the real sandbox path), with
// Mesos' offset semantics; /files/browse lists the sandbox.
func TestFilesAPIReadsTaskSandbox(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("any", nil)
	if u := o.GetURL(); u == nil || u.Address.Port == 0 || u.Address.GetHostname() == "" {
		t.Fatalf("offer url %+v: want the agent's hostname and port", u)
	}
	launch(s, o, smallTask("crash", o, `echo hello out; echo "database is broken" >&2; exit 3`))
	st := s.awaitUpdate("crash", mesos.TASK_FAILED)
	if st.GetMessage() != "Command exited with status 3" {
		t.Fatalf("message %q", st.GetMessage())
	}
	virtual := "/frameworks/" + s.fwID + "/executors/crash/runs/latest"

	code, fr, body := filesRead(t, c, virtual+"/stderr", "", "")
	if code != http.StatusOK || fr.Data != "" || fr.Offset != int64(len("database is broken\n")) {
		t.Fatalf("read without offset = %d %q, want 200 with the size and no data", code, body)
	}
	code, fr, body = filesRead(t, c, virtual+"/stderr", "0", "")
	if code != http.StatusOK || fr.Data != "database is broken\n" || fr.Offset != 0 {
		t.Fatalf("read stderr = %d %q", code, body)
	}
	code, fr, body = filesRead(t, c, virtual+"/stdout", "6", "3")
	if code != http.StatusOK || fr.Data != "out" || fr.Offset != 6 {
		t.Fatalf("read stdout at 6, 3 bytes = %d %q", code, body)
	}
	code, fr, body = filesRead(t, c, virtual+"/stdout", "100", "")
	if code != http.StatusOK || fr.Data != "" || fr.Offset != 100 {
		t.Fatalf("read past the end = %d %q", code, body)
	}

	real := c.taskSandbox(t, s.fwID, "crash")
	code, fr, body = filesRead(t, c, real+"/stdout", "0", "")
	if code != http.StatusOK || fr.Data != "hello out\n" {
		t.Fatalf("read at the real sandbox path = %d %q", code, body)
	}

	code, body = filesGetRaw(t, c, "browse", url.Values{"path": {virtual + "/"}})
	if code != http.StatusOK {
		t.Fatalf("browse = %d %q", code, body)
	}
	var list []fileInfo
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatalf("browse body %q: %v", body, err)
	}
	byName := map[string]fileInfo{}
	for _, e := range list {
		byName[e.Path] = e
	}
	e, ok := byName[virtual+"/stderr"]
	if !ok || e.Size != int64(len("database is broken\n")) || e.Mode != "-rw-r--r--" || e.Nlink != 1 || e.UID == "" || e.GID == "" || e.Mtime == 0 {
		t.Fatalf("browse entries %+v: want %s/stderr with size, mode, nlink, uid, gid, mtime", list, virtual)
	}
	if _, ok := byName[virtual+"/stdout"]; !ok {
		t.Fatalf("browse entries %+v: no stdout", list)
	}
	if code, body := filesGetRaw(t, c, "browse", url.Values{"path": {virtual + "/stdout"}}); code != http.StatusOK || body != "[]" {
		t.Fatalf("browse of a file = %d %q, want 200 []", code, body)
	}
}

// TestFilesAPIErrors: Mesos' status codes for bad parameters, missing
// files and directories, and nothing outside sandboxes is readable.
func TestFilesAPIErrors(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("any", nil)
	launch(s, o, smallTask("t1", o, "echo hi"))
	s.awaitUpdate("t1", mesos.TASK_FINISHED)
	virtual := "/frameworks/" + s.fwID + "/executors/t1/runs/latest"
	real := c.taskSandbox(t, s.fwID, "t1")

	// A file outside every sandbox, and a link to it inside the sandbox.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("top secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(real, "escape")); err != nil {
		t.Fatal(err)
	}
	agentDir := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(real))))))
	if err := os.WriteFile(filepath.Join(agentDir, "not-a-sandbox"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, path, offset, length string
		code                       int
		body                       string
	}{
		{"no path", "", "0", "", http.StatusBadRequest, "Expecting 'path=value' in query."},
		{"bad offset", virtual + "/stdout", "x", "", http.StatusBadRequest, "Failed to parse offset"},
		{"negative offset", virtual + "/stdout", "-2", "", http.StatusBadRequest, "Negative offset provided: -2"},
		{"bad length", virtual + "/stdout", "0", "many", http.StatusBadRequest, "Failed to parse length"},
		{"negative length", virtual + "/stdout", "0", "-5", http.StatusBadRequest, "Negative length provided: -5"},
		{"directory", virtual, "0", "", http.StatusBadRequest, "Cannot read a directory."},
		{"missing file", virtual + "/nope", "0", "", http.StatusNotFound, ""},
		{"unknown executor", "/frameworks/" + s.fwID + "/executors/other/runs/latest/stdout", "0", "", http.StatusNotFound, ""},
		{"host file", secret, "0", "", http.StatusNotFound, ""},
		{"etc passwd", "/etc/passwd", "0", "", http.StatusNotFound, ""},
		{"agent file outside sandboxes", filepath.Join(agentDir, "not-a-sandbox"), "0", "", http.StatusNotFound, ""},
		{"dot-dot out of the sandbox", virtual + "/../../../../../../not-a-sandbox", "0", "", http.StatusNotFound, ""},
		{"link out of the sandbox", virtual + "/escape", "0", "", http.StatusBadRequest, "is inaccessible"},
		{"relative path", "frameworks/" + s.fwID + "/executors/t1/runs/latest/stdout", "0", "", http.StatusNotFound, ""},
	}
	for _, tc := range cases {
		code, _, body := filesRead(t, c, tc.path, tc.offset, tc.length)
		if code != tc.code || !strings.Contains(body, tc.body) || (tc.body == "" && body != "") {
			t.Errorf("%s: read %q = %d %q, want %d %q", tc.name, tc.path, code, body, tc.code, tc.body)
		}
		if strings.Contains(body, "top secret") {
			t.Errorf("%s: leaked a host file: %q", tc.name, body)
		}
	}
	if code, body := filesGetRaw(t, c, "browse", url.Values{"path": {"/tmp"}}); code != http.StatusNotFound {
		t.Errorf("browse /tmp = %d %q, want 404", code, body)
	}
	if code, _ := filesGetRaw(t, c, "browse", url.Values{}); code != http.StatusBadRequest {
		t.Errorf("browse without path = %d, want 400", code)
	}
	res, err := http.Post(c.URL()+"/files/read?path="+url.QueryEscape(virtual+"/stdout"), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /files/read = %d, want 405", res.StatusCode)
	}
}

// TestFilesAPIReadIsCapped: one read returns at most 16 pages, so clients
// loop, and a read from the middle returns the rest.
func TestFilesAPIReadIsCapped(t *testing.T) {
	c := startCluster(t, nil)
	s := subscribe(t, c, frameworkInfo("*"))
	o := s.awaitOffer("any", nil)
	launch(s, o, smallTask("big", o, `head -c 100000 /dev/zero | tr '\0' a`))
	s.awaitUpdate("big", mesos.TASK_FINISHED)
	p := "/frameworks/" + s.fwID + "/executors/big/runs/latest/stdout"
	_, fr, _ := filesRead(t, c, p, "0", "")
	if len(fr.Data) != maxFileRead {
		t.Fatalf("first read returned %d bytes, want the cap %d", len(fr.Data), maxFileRead)
	}
	_, fr, _ = filesRead(t, c, p, fmt.Sprint(maxFileRead), "-1")
	if len(fr.Data) != 100000-maxFileRead || fr.Offset != maxFileRead {
		t.Fatalf("second read returned %d bytes at %d", len(fr.Data), fr.Offset)
	}
}

func TestLsMode(t *testing.T) {
	cases := map[fs.FileMode]string{
		0o644:                                     "-rw-r--r--",
		fs.ModeDir | 0o755:                        "drwxr-xr-x",
		fs.ModeSymlink | 0o777:                    "lrwxrwxrwx",
		fs.ModeDir | fs.ModeSticky | 0o777:        "drwxrwxrwt",
		fs.ModeSetuid | 0o644:                     "-rwSr--r--",
		fs.ModeNamedPipe | 0o600:                  "prw-------",
		fs.ModeDevice | fs.ModeCharDevice | 0o666: "crw-rw-rw-",
	}
	for m, want := range cases {
		if got := lsMode(m); got != want {
			t.Errorf("lsMode(%v) = %q, want %q", m, got, want)
		}
	}
}
