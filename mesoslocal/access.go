package mesoslocal

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// checkReachable reports, before a task is started as cr, whether that user
// can enter every directory on the way to each of dirs and write to the last
// one. Without it a task whose work dir sits under a private directory (a
// mktemp -d, a home directory of mode 0700) fails with an empty stderr: the
// process cannot even chdir into its sandbox. The error names the directory
// and the way out.
func checkReachable(cr *credential, dirs ...string) error {
	if cr == nil || cr.uid == 0 {
		return nil // the agent's own user created these; root passes every check
	}
	for _, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		var path string
		for _, part := range splitPath(abs) {
			path = filepath.Join(path, part)
			fi, err := os.Stat(path)
			if err != nil {
				return err
			}
			want, verb := uint32(1), "enter"
			if path == abs {
				want, verb = 3, "write to"
			}
			if !cr.may(fi, want) {
				return fmt.Errorf("user %s cannot %s %s (mode %#o, owner uid %d); use a work directory that user %s can reach (berth dev --data-dir, mesos-local --work-dir), e.g. one under /var/lib or /srv, or run the task as another user",
					cr.name, verb, path, fi.Mode().Perm(), ownerUID(fi), cr.name)
			}
		}
	}
	return nil
}

// splitPath returns "/" and then each element of an absolute, clean path.
func splitPath(abs string) []string {
	parts := []string{"/"}
	for rest := abs; rest != "/" && rest != "."; rest = filepath.Dir(rest) {
		parts = append(parts, filepath.Base(rest))
	}
	slices.Reverse(parts[1:])
	return parts
}

// may reports whether cr has the permission bits want (1 execute/search,
// 2 write, 3 both) on fi, by the owner, group and other classes as the
// kernel checks them (ACLs are not consulted).
func (cr *credential) may(fi os.FileInfo, want uint32) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell: let the launch itself decide
	}
	mode := uint32(fi.Mode().Perm())
	var bits uint32
	switch {
	case st.Uid == cr.uid:
		bits = mode >> 6
	case st.Gid == cr.gid || slices.Contains(cr.groups, st.Gid):
		bits = mode >> 3
	default:
		bits = mode
	}
	return bits&want == want
}

func ownerUID(fi os.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	return 0
}

// closedAncestor returns the first existing directory on the way to dir that
// other users may not enter, or "".
func closedAncestor(dir string) string {
	var path string
	for _, part := range splitPath(dir) {
		path = filepath.Join(path, part)
		fi, err := os.Stat(path)
		if err != nil {
			return ""
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return path
		}
	}
	return ""
}
