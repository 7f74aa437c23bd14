package mesoslocal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/user"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// The agents' files API (/files/read, /files/browse), as a Mesos agent
// serves it on its port: a client reads a task's stdout and stderr through
// the agent address in the offer and the task's sandbox path, the same way
// against mesos-local and against a real cluster. Only sandboxes can be
// read: a path resolves as Mesos resolves its attached virtual paths,
//
//	/frameworks/<framework>/executors/<executor>/runs/<run>[/...]
//	<agent dir>/frameworks/<framework>/executors/<executor>/runs/<run>[/...]
//
// where <run> is a container id or "latest" (a link to the newest run), for
// any agent of the cluster. Anything else is not attached: 404, as Mesos
// answers for a path it does not know.

// maxFileRead caps one /files/read reply at 16 pages, as Mesos does.
const maxFileRead = 16 * 4096

// latestRun is the name of the link to an executor's newest run.
const latestRun = "latest"

// fileInfo is one entry of /files/browse (Mesos' model(FileInfo)).
type fileInfo struct {
	Path  string `json:"path"`
	Nlink uint64 `json:"nlink"`
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime"`
	Mode  string `json:"mode"`
	UID   string `json:"uid"`
	GID   string `json:"gid"`
}

// fileRead is the reply of /files/read.
type fileRead struct {
	Data   string `json:"data"`
	Offset int64  `json:"offset"`
}

// filesError is a files API failure with its HTTP status.
type filesError struct {
	code int
	msg  string
}

func (e *filesError) Error() string { return e.msg }

func filesErr(code int, format string, args ...any) *filesError {
	return &filesError{code: code, msg: fmt.Sprintf(format, args...)}
}

func (c *Cluster) handleFilesRead(w http.ResponseWriter, r *http.Request) {
	if !filesGet(w, r) {
		return
	}
	q := r.URL.Query()
	offset, err := filesInt(q.Get("offset"), "offset")
	if err != nil {
		writeFilesError(w, err)
		return
	}
	length, err := filesInt(q.Get("length"), "length")
	if err != nil {
		writeFilesError(w, err)
		return
	}
	real, ferr := c.resolveFilesPath(q.Get("path"))
	if ferr != nil {
		writeFilesError(w, ferr)
		return
	}
	res, ferr := readFileRange(real, offset, length)
	if ferr != nil {
		writeFilesError(w, ferr)
		return
	}
	writeFilesJSON(w, r, res)
}

func (c *Cluster) handleFilesBrowse(w http.ResponseWriter, r *http.Request) {
	if !filesGet(w, r) {
		return
	}
	p := r.URL.Query().Get("path")
	real, ferr := c.resolveFilesPath(p)
	if ferr != nil {
		writeFilesError(w, ferr)
		return
	}
	list, ferr := browseDir(real, strings.TrimRight(p, "/"))
	if ferr != nil {
		writeFilesError(w, ferr)
		return
	}
	writeFilesJSON(w, r, list)
}

// filesGet refuses anything but GET (and HEAD).
func filesGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET")
	writeError(w, http.StatusMethodNotAllowed, "Expecting a 'GET' request, received '"+r.Method+"'")
	return false
}

// filesInt parses offset or length: absent means -1, values below -1 are
// refused.
func filesInt(s, name string) (int64, error) {
	if s == "" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, filesErr(http.StatusBadRequest, "Failed to parse %s: %v", name, err)
	}
	if n < -1 {
		return 0, filesErr(http.StatusBadRequest, "Negative %s provided: %d", name, n)
	}
	return n, nil
}

func writeFilesError(w http.ResponseWriter, err error) {
	var fe *filesError
	if !errors.As(err, &fe) {
		fe = &filesError{code: http.StatusInternalServerError, msg: err.Error()}
	}
	if fe.code == http.StatusNotFound {
		w.WriteHeader(http.StatusNotFound) // Mesos answers an empty body
		return
	}
	writeError(w, fe.code, fe.msg)
}

// writeFilesJSON writes v as JSON, wrapped in the jsonp callback if asked.
func writeFilesJSON(w http.ResponseWriter, r *http.Request, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if cb := r.URL.Query().Get("jsonp"); cb != "" {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprintf(w, "%s(%s);", cb, b)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// resolveFilesPath maps a files API path to a real path inside one
// sandbox. An unknown path is 404; a path whose real location leaves its
// sandbox (through ".." or a link) is 400 "inaccessible", as in Mesos.
func (c *Cluster) resolveFilesPath(p string) (string, error) {
	if p == "" {
		return "", filesErr(http.StatusBadRequest, "Expecting 'path=value' in query.")
	}
	if !strings.HasPrefix(p, "/") {
		return "", filesErr(http.StatusNotFound, "")
	}
	clean := path.Clean(p)
	for _, dir := range c.agentDirs() {
		rel := ""
		switch {
		case strings.HasPrefix(clean, "/frameworks/"):
			rel = strings.TrimPrefix(clean, "/")
		case strings.HasPrefix(clean, dir+"/frameworks/"):
			rel = strings.TrimPrefix(clean, dir+"/")
		default:
			continue
		}
		// frameworks/<fw>/executors/<ex>/runs/<run>/...
		parts := strings.SplitN(rel, "/", 7)
		if len(parts) < 6 || parts[2] != "executors" || parts[4] != "runs" {
			continue
		}
		root := filepath.Join(dir, filepath.FromSlash(strings.Join(parts[:6], "/")))
		realRoot, err := filepath.EvalSymlinks(root)
		if err != nil {
			continue // not on this agent
		}
		target := root
		if len(parts) == 7 {
			target = filepath.Join(root, filepath.FromSlash(parts[6]))
		}
		realTarget, err := filepath.EvalSymlinks(target)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return "", filesErr(http.StatusNotFound, "")
			}
			return "", filesErr(http.StatusInternalServerError, "Failed to resolve '%s': %v", p, err)
		}
		if realTarget != realRoot && !strings.HasPrefix(realTarget, realRoot+string(filepath.Separator)) {
			return "", filesErr(http.StatusBadRequest, "'%s' is inaccessible", p)
		}
		return realTarget, nil
	}
	return "", filesErr(http.StatusNotFound, "")
}

// agentDirs lists the agents' directories in agent order, each as an
// absolute path and, when it differs, with its links resolved too.
func (c *Cluster) agentDirs() []string {
	c.mu.Lock()
	dirs := make([]string, 0, len(c.agentList))
	for _, a := range c.agentList {
		if a.dir != "" {
			dirs = append(dirs, a.dir)
		}
	}
	c.mu.Unlock()
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			continue
		}
		out = append(out, abs)
		if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
			out = append(out, real)
		}
	}
	return out
}

// readFileRange implements /files/read on a real path.
func readFileRange(real string, offset, length int64) (*fileRead, error) {
	f, err := os.Open(real)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, filesErr(http.StatusNotFound, "")
		}
		return nil, filesErr(http.StatusInternalServerError, "Failed to open file: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, filesErr(http.StatusInternalServerError, "Failed to stat file: %v", err)
	}
	if fi.IsDir() {
		return nil, filesErr(http.StatusBadRequest, "Cannot read a directory.")
	}
	size := fi.Size()
	if offset == -1 {
		return &fileRead{Offset: size}, nil
	}
	if offset >= size {
		return &fileRead{Offset: offset}, nil
	}
	n := size - offset
	if length >= 0 && length < n {
		n = length
	}
	n = min(n, maxFileRead)
	buf := make([]byte, n)
	got, err := f.ReadAt(buf, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, filesErr(http.StatusInternalServerError, "Failed to read file: %v", err)
	}
	return &fileRead{Data: string(buf[:got]), Offset: offset}, nil
}

// browseDir implements /files/browse: a directory's entries sorted by
// path, links followed; a regular file gives an empty list.
func browseDir(real, requested string) ([]fileInfo, error) {
	fi, err := os.Stat(real)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, filesErr(http.StatusNotFound, "")
		}
		return nil, filesErr(http.StatusInternalServerError, "Failed to stat: %v", err)
	}
	out := []fileInfo{}
	if !fi.IsDir() {
		return out, nil
	}
	entries, err := os.ReadDir(real)
	if err != nil {
		return nil, filesErr(http.StatusInternalServerError, "Failed to list directory: %v", err)
	}
	for _, e := range entries {
		st, err := os.Stat(filepath.Join(real, e.Name()))
		if err != nil {
			continue // a dangling link or a file removed meanwhile
		}
		out = append(out, fileInfoOf(requested+"/"+e.Name(), st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func fileInfoOf(p string, fi fs.FileInfo) fileInfo {
	info := fileInfo{Path: p, Size: fi.Size(), Mtime: fi.ModTime().Unix(), Mode: lsMode(fi.Mode()), Nlink: 1}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.Nlink = uint64(st.Nlink)
		info.UID = userName(st.Uid)
		info.GID = groupName(st.Gid)
	}
	return info
}

// lsMode renders a mode as `ls -l` does: a type character from -dcbpls,
// then the nine permission bits with setuid, setgid and sticky.
func lsMode(m fs.FileMode) string {
	b := []byte("----------")
	switch {
	case m.IsDir():
		b[0] = 'd'
	case m&fs.ModeCharDevice != 0:
		b[0] = 'c'
	case m&fs.ModeDevice != 0:
		b[0] = 'b'
	case m&fs.ModeNamedPipe != 0:
		b[0] = 'p'
	case m&fs.ModeSymlink != 0:
		b[0] = 'l'
	case m&fs.ModeSocket != 0:
		b[0] = 's'
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if m&(1<<uint(8-i)) != 0 {
			b[i+1] = rwx[i]
		}
	}
	special := func(pos int, set bool, lower, upper byte) {
		if !set {
			return
		}
		if b[pos] == '-' {
			b[pos] = upper
		} else {
			b[pos] = lower
		}
	}
	special(3, m&fs.ModeSetuid != 0, 's', 'S')
	special(6, m&fs.ModeSetgid != 0, 's', 'S')
	special(9, m&fs.ModeSticky != 0, 't', 'T')
	return string(b)
}

func userName(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil {
		return u.Username
	}
	return id
}

func groupName(gid uint32) string {
	id := strconv.FormatUint(uint64(gid), 10)
	if g, err := user.LookupGroupId(id); err == nil {
		return g.Name
	}
	return id
}
