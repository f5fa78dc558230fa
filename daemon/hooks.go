package daemon

import (
	"context"
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
// never fatal. Like NetworkManager's dispatcher, it runs only files owned by
// root (or the daemon's user) that group and others cannot write: a hook
// runs with the daemon's privileges.
type Hooks struct {
	Timeout time.Duration // per hook; 0 means 30 s
	Log     *slog.Logger

	once  sync.Once
	queue chan func()
	wg    sync.WaitGroup
}

// Run queues event's hooks in dir; it does not wait for them. A nil Hooks
// or an empty dir runs nothing.
func (h *Hooks) Run(dir, event string, env HookEnv) {
	if h == nil || dir == "" {
		return
	}
	h.once.Do(func() {
		h.queue = make(chan func(), 64)
		go func() {
			for f := range h.queue {
				f()
			}
		}()
	})
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

func (h *Hooks) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

func (h *Hooks) runAll(dir, event string, env HookEnv) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !os.IsNotExist(err) {
			h.log().Warn("hooks", "dir", dir, "err", err)
		}
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
		"ROAMTUN_EVENT="+event, "PROFILE="+env.Profile, "IFNAME="+env.Ifname,
		"LOCAL="+addrOrEmpty(env.Local), "REMOTE="+addrOrEmpty(env.Remote),
		"DNS="+joinAddrList(env.DNS), "SSID="+env.SSID, "UPLINK="+env.Interface)
	for _, name := range names {
		path := filepath.Join(dir, name)
		if why := unsafeHook(path); why != "" {
			h.log().Debug("hook skipped", "hook", path, "why", why)
			continue
		}
		h.runOne(path, event, vars)
	}
}

func (h *Hooks) runOne(path, event string, vars []string) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, event)
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

// unsafeHook says why path must not run, or "".
func unsafeHook(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return err.Error()
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "not an executable file"
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return "writable by group or others"
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Sprintf("owned by uid %d, not root", st.Uid)
	}
	return ""
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
