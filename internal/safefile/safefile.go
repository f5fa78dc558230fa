// Package safefile checks files and directories that a root process acts
// on — the journal, the address book, hooks — before it believes them:
// owned by the process's own user, not writable by group or others, not
// symlinks, under directories nobody else can swap.
package safefile

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// CheckOwned checks that path is a directory (dir) or regular file of ours:
// not a symlink, owned by this process's user, not writable by group or
// others.
func CheckOwned(path string, dir bool) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	return checkInfo(path, fi, dir)
}

func checkInfo(path string, fi os.FileInfo, dir bool) error {
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("%s: a symlink", path)
	case dir && !fi.IsDir():
		return fmt.Errorf("%s: not a directory", path)
	case !dir && !fi.Mode().IsRegular():
		return fmt.Errorf("%s: not a regular file", path)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information", path)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s: owned by uid %d, not %d", path, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s: writable by group or others (mode %04o)", path, fi.Mode().Perm())
	}
	return nil
}

// CheckOpen checks an open file the way CheckOwned checks a path.
func CheckOpen(f *os.File, path string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return checkInfo(path, fi, false)
}

// CheckAncestors checks that no directory above the state dir lets another
// user rename or replace what is in it: each is owned by root or us, and
// writable by group or others only with the sticky bit (as /tmp).
func CheckAncestors(dir string) error {
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no owner information", dir)
		}
		if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
			return fmt.Errorf("%s is owned by uid %d", dir, st.Uid)
		}
		if fi.Mode().Perm()&0o022 != 0 && fi.Mode()&os.ModeSticky == 0 {
			return fmt.Errorf("%s is writable by group or others (mode %04o)", dir, fi.Mode().Perm())
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

// ReadOwned reads (at most max bytes of) a file that CheckOwned accepts, without following a
// symlink put in its place meanwhile.
func ReadOwned(path string, max int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("refused (a symlink, or unreadable): %w; left in place", err)
	}
	defer f.Close()
	if err := CheckOpen(f, path); err != nil {
		return nil, fmt.Errorf("refused: %w; left in place for inspection", err)
	}
	return io.ReadAll(io.LimitReader(f, max+1))
}
