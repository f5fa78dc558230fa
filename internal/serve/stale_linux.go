package serve

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PeerClaim is a far end's claim on a peer address (in its network
// namespace). When a laptop roams,
// its old ssh session is not closed — the laptop just vanished — so the
// old `roamtun serve` lives on (until its echoes go unanswered) with a TUN
// whose route to the same peer address shadows the new session's. The new
// session, once authenticated and up, takes the address over: it stops
// the process holding the claim.
type PeerClaim struct {
	path string
}

// claimDir is where claims are kept: the user's runtime dir, else a
// private directory in /tmp.
func claimDir() (string, error) {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return d, nil
	}
	if d := fmt.Sprintf("/run/user/%d", os.Getuid()); dirOK(d) {
		return d, nil
	}
	d := filepath.Join(os.TempDir(), fmt.Sprintf("roamtun-serve-%d", os.Getuid()))
	if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	if !dirOK(d) {
		return "", fmt.Errorf("%s is not a private directory of ours", d)
	}
	return d, nil
}

// dirOK: a directory we own that nobody else may write to.
func dirOK(d string) bool {
	fi, err := os.Lstat(d)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o022 != 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Getuid()
}

// ClaimPeer takes peer over: a live earlier `roamtun serve` of ours holding
// it is sent SIGTERM (SIGKILL after wait) and waited for. It returns the
// pid it evicted (0 for none).
func ClaimPeer(peer netip.Addr, wait time.Duration) (*PeerClaim, int, error) {
	dir, err := claimDir()
	if err != nil {
		return nil, 0, err
	}
	// A peer address is one per network namespace: the claim is too.
	ns := "0"
	if l, err := os.Readlink("/proc/self/ns/net"); err == nil {
		ns = strings.Trim(strings.TrimPrefix(l, "net:"), "[]")
	}
	c := &PeerClaim{path: filepath.Join(dir, "roamtun-serve-"+ns+"-"+peer.String()+".pid")}
	evicted := 0
	if b, err := os.ReadFile(c.path); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid != os.Getpid() && isServe(pid) {
			syscall.Kill(pid, syscall.SIGTERM)
			deadline := time.Now().Add(wait)
			for isServe(pid) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if isServe(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				for i := 0; i < 100 && isServe(pid); i++ {
					time.Sleep(20 * time.Millisecond)
				}
			}
			evicted = pid
		}
	}
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return nil, evicted, err
	}
	if err := os.Rename(tmp, c.path); err != nil {
		return nil, evicted, err
	}
	return c, evicted, nil
}

// Release drops the claim if it is still ours.
func (c *PeerClaim) Release() {
	if c == nil {
		return
	}
	if b, err := os.ReadFile(c.path); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(c.path)
	}
}

// isServe: pid is alive, ours (same uid), and a `roamtun serve` — never
// some other process that reused the pid.
func isServe(pid int) bool {
	fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	if err != nil {
		return false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Getuid() {
		return false
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := bytes.Split(bytes.TrimRight(cmd, "\x00"), []byte{0})
	if len(args) < 2 || !bytes.Contains(args[0], []byte("roamtun")) {
		return false
	}
	// A zombie has an empty cmdline and is gone for our purpose.
	for _, a := range args[1:] {
		if string(a) == "serve" {
			return true
		}
	}
	return false
}
