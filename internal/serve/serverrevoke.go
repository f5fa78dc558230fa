package serve

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"

	"github.com/roamtun/roamtun/internal/atomicfile"
)

// Revoke undoes what `server-setup --apply` did for one laptop: its line in
// the link account's authorized_keys (whatever options it carries), its two
// lines in the secrets file, and its pppd peers file. What is already gone
// is success. The caller removes the entry from the pool.
func Revoke(e PoolEntry) error {
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(e.Key))
	if err != nil {
		return fmt.Errorf("revoking %s: its key in the pool: %w", e.Fingerprint, err)
	}
	var errs []error
	if u, err := user.Lookup(e.User); err == nil {
		ak := filepath.Join(u.HomeDir, ".ssh", "authorized_keys")
		errs = append(errs, removeLines(ak, func(line string) bool {
			k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
			return err == nil && bytes.Equal(k.Marshal(), key.Marshal())
		}))
	}
	if e.Secrets != "" {
		errs = append(errs, removeLines(e.Secrets, func(line string) bool {
			f := strings.Fields(line)
			if len(f) < 2 {
				return false
			}
			c, s := strings.Trim(f[0], `"'`), strings.Trim(f[1], `"'`)
			return (c == e.ClientName && s == e.ServerName) || (c == e.ServerName && s == e.ClientName)
		}))
	}
	if e.PeersFile != "" {
		if err := os.Remove(e.PeersFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("revoking %s: %w", e.Fingerprint, err)
	}
	return nil
}

// removeLines rewrites path without the lines drop matches, keeping its
// owner and mode; the rest stays byte for byte. A missing file is fine.
func removeLines(path string, drop func(line string) bool) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	lines := strings.SplitAfter(string(data), "\n")
	var out strings.Builder
	n := 0
	for _, l := range lines {
		if l != "" && drop(strings.TrimRight(l, "\r\n")) {
			n++
			continue
		}
		out.WriteString(l)
	}
	if n == 0 {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := atomicfile.WriteFileOwned(path, []byte(out.String()), fi.Mode().Perm(), int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("rewriting %s: %w", path, err)
	}
	return nil
}
