package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/roamtun/roamtun/internal/safefile"
	"github.com/roamtun/roamtun/watcher"
)

// HookEnv is what a hook is told about the link (as environment variables).
type HookEnv struct {
	Profile   string
	Ifname    string // the TUN
	Local     netip.Addr
	Remote    netip.Addr
	DNS       []netip.Addr
	SSID      string // raw bytes of the untrusted network's SSID, if Wi-Fi
	Interface string // the untrusted uplink
}

// Hooks runs the executables in a profile's hooks_dir on "up" and "down",
// one at a time in name order, each time-limited; a failing hook is logged,
// never fatal. A hook runs with the daemon's privileges, so like
// NetworkManager's dispatcher it trusts only what no one else could have
// put there: the directory (and those above it) owned by root or the
// daemon's user and not writable by group or others; each hook a regular
// file (never a symlink) owned likewise, not group/other writable. The file
// is opened once, checked through the open descriptor and executed from it,
// so what runs is what was checked.
type Hooks struct {
	Timeout time.Duration // per hook; 0 means 30 s
	Log     *slog.Logger

	once   sync.Once
	mu     sync.Mutex
	queue  chan func()
	closed bool
	wg     sync.WaitGroup // queued jobs
	worker sync.WaitGroup // the goroutine running them
}

// Run queues event's hooks in dir; it does not wait for them. A nil Hooks
// or an empty dir runs nothing.
func (h *Hooks) Run(dir, event string, env HookEnv) {
	if h == nil || dir == "" {
		return
	}
	h.once.Do(func() {
		h.queue = make(chan func(), 64)
		h.worker.Go(func() {
			for f := range h.queue {
				f()
			}
		})
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.wg.Add(1)
	job := func() { defer h.wg.Done(); h.runAll(dir, event, env) }
	select {
	case h.queue <- job:
	default:
		h.wg.Done()
		h.log().Warn("hooks: queue full, event dropped", "event", event)
	}
}

// Wait waits for queued hooks to finish.
func (h *Hooks) Wait() {
	if h != nil {
		h.wg.Wait()
	}
}

// Close runs what is queued, then stops the worker and waits for it; later
// events run nothing.
func (h *Hooks) Close() {
	if h == nil {
		return
	}
	h.mu.Lock()
	if !h.closed && h.queue != nil {
		close(h.queue)
	}
	h.closed = true
	h.mu.Unlock()
	h.worker.Wait()
}

func (h *Hooks) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

func (h *Hooks) runAll(dir, event string, env HookEnv) {
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return
	}
	if err := checkHookDir(dir); err != nil {
		h.log().Warn("hooks not run: their directory could be changed by others", "dir", dir, "err", err)
		return
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		h.log().Warn("hooks", "dir", dir, "err", err)
		return
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") && !strings.HasSuffix(e.Name(), "~") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	vars := append(os.Environ(),
		"ROAMTUN_EVENT="+event, "PROFILE="+escapeEnv(env.Profile), "IFNAME="+escapeEnv(env.Ifname),
		"LOCAL="+addrOrEmpty(env.Local), "REMOTE="+addrOrEmpty(env.Remote),
		"DNS="+joinAddrList(env.DNS), "SSID="+escapeEnv(env.SSID), "SSID_HEX="+hex.EncodeToString([]byte(env.SSID)),
		"UPLINK="+escapeEnv(env.Interface))
	for _, name := range names {
		path := filepath.Join(dir, name)
		f, why := openHook(path)
		if why != "" {
			h.log().Warn("hook skipped", "hook", path, "why", why)
			continue
		}
		h.runOne(f, path, event, vars)
		f.Close()
	}
}

// checkHookDir: the directory and those above it must be root's (or the
// daemon user's) and writable by no one else, or anyone could drop a
// program in, or swap the directory, and have it run as root.
func checkHookDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	if err := safefile.CheckAncestors(filepath.Dir(real)); err != nil {
		return err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err
	}
	return trustedOwner(real, fi)
}

// trustedOwner: owned by root or the daemon's user, not group/other writable.
func trustedOwner(path string, fi os.FileInfo) error {
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o)", path, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not root", path, st.Uid)
	}
	return nil
}

// openHook opens path without following a symlink and checks the open file:
// a regular, executable file of a trusted owner. It returns the open file,
// or why the hook must not run.
func openHook(path string) (*os.File, string) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, "a symlink (hooks must be files in the directory itself)"
		}
		return nil, err.Error()
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		f.Close()
		return nil, err.Error()
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		f.Close()
		return nil, "not an executable file"
	}
	if err := trustedOwner(path, fi); err != nil {
		f.Close()
		return nil, err.Error()
	}
	return f, ""
}

// runOne executes the checked, open hook file f (through /proc/self/fd in
// the child, so a file swapped in after the check is not what runs).
func (h *Hooks) runOne(f *os.File, path, event string, vars []string) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, event)
	cmd.Path = "/proc/self/fd/3" // ExtraFiles[0] in the child
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = vars
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	msg := strings.TrimSpace(string(out))
	if len(msg) > 2000 {
		msg = msg[len(msg)-2000:]
	}
	switch {
	case ctx.Err() != nil:
		h.log().Warn("hook timed out and was killed", "hook", path, "event", event, "timeout", timeout, "output", msg)
	case err != nil:
		h.log().Warn("hook failed", "hook", path, "event", event, "err", err, "output", msg)
	default:
		h.log().Info("hook ran", "hook", path, "event", event, "took", time.Since(start).Round(time.Millisecond))
	}
}

func addrOrEmpty(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func joinAddrList(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

// escapeEnv makes s fit for an environment variable a shell script reads:
// printable UTF-8 passes; a backslash becomes \\ and every other byte
// (NUL, newline, control characters, invalid UTF-8) \xHH — as SSIDs are
// shown everywhere (SSID_HEX carries them exactly).
func escapeEnv(s string) string { return watcher.EscapeSSID(s) }
