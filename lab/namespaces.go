// Package lab builds throwaway network labs out of real kernel parts:
// network namespaces joined by veth links, processes run inside them, and
// user-mode-linux guests running stock pppd on real kernel PPP. Integration
// tests, benchmarks and `roamtun demo` share it. Everything a Lab creates is
// removed by Close, also when a test fails half-way.
package lab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// RequirePrivileged skips a test that needs root, unless the environment
// says privileged tests must run (ROAMTUN_REQUIRE_PRIVILEGED=1, as in CI):
// then a missing privilege fails the test instead.
func RequirePrivileged(t TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("ROAMTUN_REQUIRE_PRIVILEGED") == "1" {
		t.Fatal("this test needs root (network namespaces, TUN); ROAMTUN_REQUIRE_PRIVILEGED=1 forbids skipping")
	}
	t.Skip("needs root (network namespaces, TUN)")
}

// RequireCommand is RequirePrivileged for a program the test drives.
func RequireCommand(t TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("ROAMTUN_REQUIRE_PRIVILEGED") == "1" {
		t.Fatalf("%s not installed (make deps installs it)", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}

// Lab owns namespaces, processes and a temporary directory.
type Lab struct {
	prefix  string
	dir     string
	account string // the server's link account (LabUser unless UseAccount)

	mu    sync.Mutex
	nss   []*Namespace
	procs []*os.Process
	after []func()
	last  []func() // after every process is gone (removing the account)
}

// New creates an empty lab whose namespaces are named prefix+random+"-"+role.
func New(prefix string) (*Lab, error) {
	var b [3]byte
	rand.Read(b[:])
	l := &Lab{prefix: prefix + hex.EncodeToString(b[:]), account: LabUser}
	dir, err := os.MkdirTemp("", "roamtun-"+prefix+"-")
	if err != nil {
		return nil, fmt.Errorf("creating lab dir: %w", err)
	}
	// UML guests and daemons running as other users read files from here.
	os.Chmod(dir, 0o755)
	l.dir = dir
	return l, nil
}

// NewT is New for a test: it needs root, and Close runs at cleanup.
func NewT(t TB) *Lab {
	t.Helper()
	RequirePrivileged(t)
	l, err := New("rt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// Dir is a private directory removed at Close.
func (l *Lab) Dir() string { return l.dir }

// Prefix is the unique prefix of this lab's namespaces.
func (l *Lab) Prefix() string { return l.prefix }

// Defer runs fn at Close, before namespaces are deleted (last in, first out).
func (l *Lab) Defer(fn func()) {
	l.mu.Lock()
	l.after = append(l.after, fn)
	l.mu.Unlock()
}

// Namespace is one network namespace of a lab.
type Namespace struct {
	lab  *Lab
	name string
}

// Namespace creates a namespace for role with its loopback up.
func (l *Lab) Namespace(role string) (*Namespace, error) {
	name := l.prefix + "-" + role
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	ns := &Namespace{lab: l, name: name}
	// Every process the lab starts in the namespace (through ip netns exec)
	// sees this file bind-mounted over /etc/resolv.conf: DNS changes made
	// in a lab never reach the host's.
	if err := os.MkdirAll(filepath.Dir(ns.ResolvConf()), 0o755); err != nil {
		return nil, fmt.Errorf("lab namespace %s: %w", name, err)
	}
	if err := os.WriteFile(ns.ResolvConf(), []byte("# resolv.conf of lab namespace "+name+"\nnameserver 10.200.1.1\n"), 0o644); err != nil {
		return nil, fmt.Errorf("lab namespace %s: %w", name, err)
	}
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	if _, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return ns, nil
}

// ResolvConf is the file processes in the namespace see as /etc/resolv.conf.
func (ns *Namespace) ResolvConf() string { return filepath.Join("/etc/netns", ns.name, "resolv.conf") }

// Name is the namespace's name (for ip netns exec).
func (ns *Namespace) Name() string { return ns.name }

// Exec returns argv prefixed so that it runs inside the namespace.
func (ns *Namespace) Exec(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns.name}, argv...)
}

// Run runs argv inside the namespace and returns its combined output; a
// failure's error includes the output.
func (ns *Namespace) Run(argv ...string) (string, error) {
	full := ns.Exec(argv...)
	out, err := exec.Command(full[0], full[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Start starts cmd inside the namespace (its Path and Args are wrapped with
// ip netns exec). The lab kills it, and its process group, at Close.
func (ns *Namespace) Start(cmd *exec.Cmd) error {
	full := ns.Exec(cmd.Args...)
	path, err := exec.LookPath(full[0])
	if err != nil {
		return err
	}
	cmd.Path, cmd.Args = path, full
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s in %s: %w", strings.Join(cmd.Args, " "), ns.name, err)
	}
	ns.lab.Track(cmd.Process)
	return nil
}

// Track makes the lab kill p (and its process group) at Close.
func (l *Lab) Track(p *os.Process) {
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
}

// Do runs fn on a locked OS thread switched into the namespace; sockets
// fn creates live there.
func (ns *Namespace) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(ns.name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening namespace %s: %w", ns.name, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering namespace %s: %w", ns.name, err)
			return
		}
		err = fn()
		// Put the thread back before anything else may run on it. If that
		// fails the thread stays locked, and Go discards it with this
		// goroutine rather than reuse it in the wrong namespace.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Veth links two namespaces with a veth pair, addresses them ("10.0.0.1/24",
// empty for none) and brings both ends up.
func (l *Lab) Veth(a *Namespace, aName, aAddr string, b *Namespace, bName, bAddr string) error {
	if out, err := exec.Command("ip", "link", "add", aName, "netns", a.name, "type", "veth",
		"peer", "name", bName, "netns", b.name).CombinedOutput(); err != nil {
		return fmt.Errorf("creating veth %s/%s: %v: %s", aName, bName, err, strings.TrimSpace(string(out)))
	}
	for _, e := range []struct {
		ns         *Namespace
		name, addr string
	}{{a, aName, aAddr}, {b, bName, bAddr}} {
		if e.addr != "" {
			if _, err := e.ns.Run("ip", "addr", "add", e.addr, "dev", e.name); err != nil {
				return err
			}
		}
		// No duplicate address detection: the link-local address is usable
		// (and in the tables) as soon as the link is up, so snapshots of
		// the tables taken before and after a test compare equal.
		e.ns.Run("sysctl", "-qw", "net.ipv6.conf."+e.name+".accept_dad=0")
		if _, err := e.ns.Run("ip", "link", "set", e.name, "up"); err != nil {
			return err
		}
	}
	return nil
}

// Close kills every process the lab started and every process left in its
// namespaces, deletes the namespaces and removes the directory. It is safe
// to call more than once.
func (l *Lab) Close() {
	l.mu.Lock()
	after, procs, nss := l.after, l.procs, l.nss
	l.after, l.procs, l.nss = nil, nil, nil
	l.mu.Unlock()
	for i := len(after) - 1; i >= 0; i-- {
		after[i]()
	}
	for _, p := range procs {
		syscall.Kill(-p.Pid, syscall.SIGTERM)
		p.Signal(syscall.SIGTERM)
	}
	for _, ns := range nss {
		for _, pid := range ns.pids() {
			syscall.Kill(pid, syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for _, p := range procs {
		for time.Now().Before(deadline) && p.Signal(syscall.Signal(0)) == nil && !reaped(p) {
			time.Sleep(20 * time.Millisecond)
		}
		syscall.Kill(-p.Pid, syscall.SIGKILL)
		p.Kill()
		reaped(p)
	}
	for _, ns := range nss {
		for _, pid := range ns.pids() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		exec.Command("ip", "netns", "del", ns.name).Run()
		os.RemoveAll(filepath.Dir(ns.ResolvConf()))
	}
	if l.dir != "" {
		os.RemoveAll(l.dir)
	}
	l.mu.Lock()
	last := l.last
	l.last = nil
	l.mu.Unlock()
	for _, f := range last {
		f()
	}
}

// reaped collects an exited child without blocking.
func reaped(p *os.Process) bool {
	var ws syscall.WaitStatus
	pid, err := syscall.Wait4(p.Pid, &ws, syscall.WNOHANG, nil)
	return pid == p.Pid || errors.Is(err, syscall.ECHILD)
}

// pids lists the processes living in the namespace.
func (ns *Namespace) pids() []int {
	out, _ := exec.Command("ip", "netns", "pids", ns.name).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		// Never ourselves: a thread of ours may be visiting the namespace.
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Exists reports whether the namespace is still there (for leak checks).
func (ns *Namespace) Exists() bool {
	_, err := os.Stat("/run/netns/" + ns.name)
	return err == nil
}

// TB is the part of testing.TB the lab's helpers use; *testing.T and
// *testing.B satisfy it. The lab does not import package testing, so that
// roamtun demo, which builds its namespaces with the lab, does not link the
// test framework into the product.
type TB interface {
	Helper()
	Cleanup(func())
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
}

// NetState is everything a run may touch in the namespace's networking, as
// text (routes of every table, rules, links, the nftables ruleset): it must
// be identical before and after.
func (ns *Namespace) NetState(t TB) string {
	t.Helper()
	var b strings.Builder
	for _, argv := range [][]string{
		{"ip", "-4", "route", "show", "table", "all"},
		{"ip", "-6", "route", "show", "table", "all"},
		{"ip", "-4", "rule"},
		{"ip", "-6", "rule"},
		{"ip", "-br", "link"},
		{"nft", "list", "ruleset"},
	} {
		out, err := ns.Run(argv...)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("$ " + strings.Join(argv, " ") + "\n" + out)
	}
	return b.String()
}

// RouteGet is `ip route get dst` in the namespace ("error: …" when it fails).
func (ns *Namespace) RouteGet(dst string) string {
	out, err := ns.Run("ip", "route", "get", dst)
	if err != nil {
		return "error: " + err.Error()
	}
	return strings.TrimSpace(out)
}

// Restored compares a system's state (as text from state) with before: at
// once for everything but the lines naming device — routes, rules, firewall
// and DNS are put back before the daemon reports the change — then, for up
// to wait, until the device's lines are gone too (a link's goodbye runs in
// the background). It returns "" when all is back, else what differs.
func Restored(before string, state func() string, device string, wait time.Duration) string {
	without := func(s string) string {
		var keep []string
		for l := range strings.SplitSeq(s, "\n") {
			if !strings.Contains(l, device) {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	after := state()
	if without(after) != without(before) {
		return "not restored:\nbefore:\n" + before + "\nafter:\n" + after
	}
	for deadline := time.Now().Add(wait); after != before && time.Now().Before(deadline); after = state() {
		time.Sleep(50 * time.Millisecond)
	}
	if after != before {
		return "the tunnel device " + device + " stayed:\nbefore:\n" + before + "\nafter:\n" + after
	}
	return ""
}
