package dnsctl

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	ctx    = context.Background()
	tunDNS = []netip.Addr{netip.MustParseAddr("10.9.0.53"), netip.MustParseAddr("fd00::53")}
	origRC = []byte("# the user's own\nnameserver 192.168.1.1\nsearch home.arpa\noptions edns0\n")
)

// roundTrip is what the journal does: the Change as JSON, read back by
// another process.
func roundTrip(t *testing.T, c Change) Change {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back Change
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	return back
}

// logRecorder is a slog handler that keeps messages for assertions.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
	seen chan string
}

func newLogRecorder() *logRecorder { return &logRecorder{seen: make(chan string, 100)} }

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, rec.Message)
	r.mu.Unlock()
	select {
	case r.seen <- rec.Message:
	default:
	}
	return nil
}

func (r *logRecorder) has(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.Contains(m, sub) {
			return true
		}
	}
	return false
}

// fileEnv is a fake /etc with a resolv.conf and a state dir.
type fileEnv struct {
	dir, etc, rc, state string
	log                 *logRecorder
}

func newFileEnv(t *testing.T) *fileEnv {
	dir := t.TempDir()
	e := &fileEnv{dir: dir, etc: filepath.Join(dir, "etc"), state: filepath.Join(dir, "state"), log: newLogRecorder()}
	e.rc = filepath.Join(e.etc, "resolv.conf")
	os.MkdirAll(e.etc, 0o755)
	os.MkdirAll(filepath.Join(dir, "run"), 0o755)
	return e
}

// opts are the options of a fresh process: nothing but paths.
func (e *fileEnv) opts() Options {
	return Options{Backend: BackendFile, StateDir: e.state, ResolvConf: e.rc, Log: slog.New(e.log)}
}

// originals set up resolv.conf as found on real systems.
var originals = []struct {
	name  string
	setup func(t *testing.T, e *fileEnv)
}{
	{"regular file", func(t *testing.T, e *fileEnv) {
		os.WriteFile(e.rc, origRC, 0o640)
		os.Chmod(e.rc, 0o640) // whatever the umask
		if os.Geteuid() == 0 {
			os.Chown(e.rc, 1234, 4321)
		}
	}},
	{"relative symlink", func(t *testing.T, e *fileEnv) {
		// As Debian's resolvconf and systemd-resolved install it.
		os.WriteFile(filepath.Join(e.dir, "run", "managed.conf"), origRC, 0o644)
		os.Symlink("../run/managed.conf", e.rc)
	}},
	{"dangling symlink", func(t *testing.T, e *fileEnv) {
		os.Symlink("/nonexistent/roamtun-test/resolv.conf", e.rc)
	}},
	{"missing", func(t *testing.T, e *fileEnv) {}},
}

// snapshot says exactly what is at path: kind, target, mode, owner, bytes.
func snapshot(path string) string {
	fi, err := os.Lstat(path)
	if err != nil {
		return "absent"
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		l, _ := os.Readlink(path)
		return "symlink -> " + l
	}
	st := fi.Sys().(*syscall.Stat_t)
	b, _ := os.ReadFile(path)
	return fmt.Sprintf("%v %d:%d %q", fi.Mode(), st.Uid, st.Gid, b)
}

func stateFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestFileCycle: for every kind of original, Prepare + Apply writes ours
// (never through a symlink), and Revert from a JSON round-tripped Change
// with fresh options puts back the same kind, target, bytes, mode and
// owner; a second Revert is a no-op; nothing is left in the state dir.
func TestFileCycle(t *testing.T) {
	for _, tc := range originals {
		t.Run(tc.name, func(t *testing.T) {
			e := newFileEnv(t)
			tc.setup(t, e)
			before := snapshot(e.rc)
			target := filepath.Join(e.dir, "run", "managed.conf")
			targetBefore := snapshot(target)

			c, err := Prepare(ctx, e.opts(), Settings{Link: "roamtun0", Servers: tunDNS, Domains: []string{"corp.example"}})
			if err != nil {
				t.Fatal(err)
			}
			if snapshot(e.rc) != before {
				t.Fatalf("Prepare changed resolv.conf: %s", snapshot(e.rc))
			}
			if err := Apply(ctx, e.opts(), roundTrip(t, c)); err != nil {
				t.Fatal(err)
			}
			up, _ := os.ReadFile(e.rc)
			for _, want := range []string{marker + " for roamtun0", "nameserver 10.9.0.53\n", "nameserver fd00::53\n", "search corp.example\n"} {
				if !strings.Contains(string(up), want) {
					t.Errorf("resolv.conf while up lacks %q:\n%s", want, up)
				}
			}
			if fi, _ := os.Lstat(e.rc); fi.Mode()&os.ModeSymlink != 0 {
				t.Error("still a symlink while up: its target would be written")
			}
			if snapshot(target) != targetBefore {
				t.Errorf("a symlink's target was written: %s", snapshot(target))
			}

			for i := range 2 { // the second one finds it done
				if err := Revert(ctx, e.opts(), roundTrip(t, c)); err != nil {
					t.Fatalf("revert %d: %v", i+1, err)
				}
				if got := snapshot(e.rc); got != before {
					t.Fatalf("after revert %d:\n got %s\nwant %s", i+1, got, before)
				}
			}
			if left := stateFiles(t, e.state); len(left) != 0 {
				t.Errorf("state dir keeps %v", left)
			}
			if e.log.has("someone else") {
				t.Error("warned about an intruder that was not there")
			}
		})
	}
}

// TestFileRevertAfterIntruder: someone rewrote resolv.conf while the tunnel
// was up. Revert restores the original anyway (DESIGN: DNS equals what was
// there before) and keeps theirs in the state dir, with a warning.
func TestFileRevertAfterIntruder(t *testing.T) {
	theirs := []byte("# dhclient was here\nnameserver 10.200.1.1\n")
	for _, tc := range originals {
		t.Run(tc.name, func(t *testing.T) {
			e := newFileEnv(t)
			tc.setup(t, e)
			before := snapshot(e.rc)
			c, err := Prepare(ctx, e.opts(), Settings{Link: "roamtun0", Servers: tunDNS})
			if err != nil {
				t.Fatal(err)
			}
			if err := Apply(ctx, e.opts(), c); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(e.rc, theirs, 0o644)
			if err := Revert(ctx, e.opts(), roundTrip(t, c)); err != nil {
				t.Fatal(err)
			}
			if got := snapshot(e.rc); got != before {
				t.Fatalf("after revert:\n got %s\nwant %s", got, before)
			}
			if !e.log.has("rewritten by someone else") {
				t.Error("no warning")
			}
			left := stateFiles(t, e.state)
			if len(left) != 1 || !strings.HasPrefix(left[0], replacedPrefix) {
				t.Fatalf("state dir: %v, want one %s* copy", left, replacedPrefix)
			}
			if b, _ := os.ReadFile(filepath.Join(e.state, left[0])); string(b) != string(theirs) {
				t.Errorf("their version kept as %q", b)
			}
		})
	}
}

// TestFileKeep: something rewrites resolv.conf while up; Keep puts ours
// back and says so, and returns when its context ends.
func TestFileKeep(t *testing.T) {
	e := newFileEnv(t)
	os.WriteFile(e.rc, origRC, 0o644)
	c, err := Prepare(ctx, e.opts(), Settings{Link: "roamtun0", Servers: tunDNS})
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, e.opts(), c); err != nil {
		t.Fatal(err)
	}
	ours, _ := os.ReadFile(e.rc)
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Keep(kctx, e.opts(), roundTrip(t, c)) }()

	os.WriteFile(e.rc, []byte("# dhclient was here\nnameserver 10.200.1.1\n"), 0o644)
	// A fail-safe only: Keep is told by inotify.
	failsafe := time.After(60 * time.Second)
	for !e.log.has("put ours back") {
		select {
		case <-e.log.seen:
		case <-failsafe:
			t.Fatal("Keep did not notice the rewrite")
		}
	}
	if b, _ := os.ReadFile(e.rc); string(b) != string(ours) {
		t.Fatalf("ours was not put back:\n%s", b)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := Revert(ctx, e.opts(), c); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(e.rc); string(b) != string(origRC) {
		t.Fatalf("not restored:\n%s", b)
	}
}

// TestFileKeepWatches: each way of rewriting resolv.conf wakes Keep through
// inotify (its periodic check is an hour away here), including a write in
// place to the file a bind mount shows as resolv.conf, whose directory is
// elsewhere.
func TestFileKeepWatches(t *testing.T) {
	defer func(d time.Duration) { keepFallback = d }(keepFallback)
	keepFallback = time.Hour
	theirs := []byte("# dhclient was here\nnameserver 10.200.1.1\n")
	for _, tc := range []struct {
		name    string
		root    bool
		rewrite func(t *testing.T, e *fileEnv, under string)
	}{
		{"in place", false, func(t *testing.T, e *fileEnv, _ string) {
			if err := os.WriteFile(e.rc, theirs, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"renamed over", false, func(t *testing.T, e *fileEnv, _ string) {
			tmp := filepath.Join(e.etc, "resolv.conf.dhclient-new")
			os.WriteFile(tmp, theirs, 0o644)
			if err := os.Rename(tmp, e.rc); err != nil {
				t.Fatal(err)
			}
		}},
		{"removed", false, func(t *testing.T, e *fileEnv, _ string) {
			if err := os.Remove(e.rc); err != nil {
				t.Fatal(err)
			}
		}},
		{"symlink put there", false, func(t *testing.T, e *fileEnv, _ string) {
			os.WriteFile(filepath.Join(e.dir, "run", "managed.conf"), theirs, 0o644)
			os.Remove(e.rc)
			if err := os.Symlink("../run/managed.conf", e.rc); err != nil {
				t.Fatal(err)
			}
		}},
		{"bind mount, the file underneath written", true, func(t *testing.T, e *fileEnv, under string) {
			if err := os.WriteFile(under, theirs, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFileEnv(t)
			os.WriteFile(e.rc, origRC, 0o644)
			var under string
			if tc.root {
				if os.Geteuid() != 0 {
					t.Skip("needs root to bind mount")
				}
				// As ip netns exec shows /etc/netns/NAME/resolv.conf.
				under = filepath.Join(e.dir, "netns", "resolv.conf")
				os.MkdirAll(filepath.Dir(under), 0o755)
				os.WriteFile(under, origRC, 0o644)
				if err := syscall.Mount(under, e.rc, "", syscall.MS_BIND, ""); err != nil {
					t.Skipf("bind mount: %v", err)
				}
				t.Cleanup(func() { syscall.Unmount(e.rc, syscall.MNT_DETACH) })
			}
			c, err := Prepare(ctx, e.opts(), Settings{Link: "roamtun0", Servers: tunDNS})
			if err != nil {
				t.Fatal(err)
			}
			if err := Apply(ctx, e.opts(), c); err != nil {
				t.Fatal(err)
			}
			ours, _ := os.ReadFile(e.rc)
			kctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- Keep(kctx, e.opts(), roundTrip(t, c)) }()
			// Keep's first look (after it watches) finds ours: nothing to
			// do. Rewrites before it watches would be put back all the same.
			tc.rewrite(t, e, under)
			failsafe := time.After(60 * time.Second)
			for !e.log.has("put ours back") {
				select {
				case <-e.log.seen:
				case <-failsafe:
					t.Fatal("Keep did not notice the rewrite")
				}
			}
			if b, _ := os.ReadFile(e.rc); string(b) != string(ours) {
				t.Fatalf("ours was not put back:\n%s", b)
			}
			if fi, err := os.Lstat(e.rc); err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("resolv.conf after: %v %v", fi, err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if err := Revert(ctx, e.opts(), c); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(e.rc); string(b) != string(origRC) {
				t.Fatalf("not restored:\n%s", b)
			}
		})
	}
}

// TestKeepNothingToWatch: backends whose manager holds the settings return
// at once.
func TestKeepNothingToWatch(t *testing.T) {
	for _, b := range []string{BackendResolved, BackendResolvconf} {
		if err := Keep(ctx, Options{}, Change{Backend: b, Link: "roamtun0"}); err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
}

// TestFileRefusesOwnAsOriginal: a crashed run's file is never taken for
// the original, and auto detection says why.
func TestFileRefusesOwnAsOriginal(t *testing.T) {
	e := newFileEnv(t)
	os.WriteFile(e.rc, origRC, 0o644)
	c, err := Prepare(ctx, e.opts(), Settings{Link: "roamtun0", Servers: tunDNS})
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, e.opts(), c); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(ctx, e.opts(), Settings{Link: "roamtun0", Servers: tunDNS}); err == nil || !strings.Contains(err.Error(), "roamtun cleanup") {
		t.Fatalf("prepare over our own file: %v", err)
	}
	o := e.opts()
	o.Backend, o.Resolvconf = BackendAuto, "/nonexistent/resolvconf"
	if b, why, _ := Detect(ctx, o); b != BackendFile || !strings.Contains(why, "earlier run") {
		t.Errorf("detect over our own file: %s (%s)", b, why)
	}
}

// TestFileLostCopy: the kept original vanished. Still ours: an error (the
// entry stays in the journal for a human); already someone else's: done.
func TestFileLostCopy(t *testing.T) {
	e := newFileEnv(t)
	os.WriteFile(e.rc, origRC, 0o644)
	c, _ := Prepare(ctx, e.opts(), Settings{Link: "roamtun0", Servers: tunDNS})
	Apply(ctx, e.opts(), c)
	os.Remove(c.Original)
	if err := Revert(ctx, e.opts(), c); err == nil || !strings.Contains(err.Error(), "is gone") {
		t.Errorf("revert with the copy gone: %v", err)
	}
	os.WriteFile(e.rc, origRC, 0o644)
	if err := Revert(ctx, e.opts(), c); err != nil {
		t.Errorf("revert of a restored file: %v", err)
	}
}

// TestBadInput: errors name the field at fault.
func TestBadInput(t *testing.T) {
	e := newFileEnv(t)
	os.WriteFile(e.rc, origRC, 0o644)
	for _, c := range []struct {
		s    Settings
		want string
	}{
		{Settings{Servers: tunDNS}, "link is empty"},
		{Settings{Link: "a-very-long-interface-name", Servers: tunDNS}, "longer than 15"},
		{Settings{Link: "../etc", Servers: tunDNS}, "not an interface name"},
		{Settings{Link: "roamtun0"}, "servers: none"},
		{Settings{Link: "roamtun0", Servers: []netip.Addr{{}}}, "servers[0]"},
		{Settings{Link: "roamtun0", Servers: []netip.Addr{tunDNS[0], netip.IPv4Unspecified()}}, "servers[1]"},
		{Settings{Link: "roamtun0", Servers: []netip.Addr{netip.MustParseAddr("fe80::1%eth0")}}, "servers[0]: fe80::1%eth0 has a zone"},
		{Settings{Link: "roamtun0", Servers: tunDNS, Domains: []string{"a b"}}, "domains[0]"},
		{Settings{Link: "roamtun0", Servers: tunDNS, Domains: []string{"ok.example", ""}}, "domains[1]"},
	} {
		if _, err := Prepare(ctx, e.opts(), c.s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.s, err, c.want)
		}
	}
	if left := stateFiles(t, e.state); len(left) != 0 {
		t.Errorf("bad input left state: %v", left)
	}
	good := Settings{Link: "roamtun0", Servers: tunDNS}
	if _, err := Prepare(ctx, Options{Backend: "bind"}, good); err == nil || !strings.Contains(err.Error(), `unknown backend "bind"`) {
		t.Errorf("unknown backend: %v", err)
	}
	if _, err := Prepare(ctx, Options{Backend: BackendFile, ResolvConf: e.rc}, good); err == nil || !strings.Contains(err.Error(), "state_dir is empty") {
		t.Errorf("no state dir: %v", err)
	}
	for _, c := range []struct {
		c    Change
		want string
	}{
		{Change{Link: "roamtun0"}, `unknown backend ""`},
		{Change{Backend: BackendFile, Link: "roamtun0", Path: "resolv.conf", Missing: true}, "path"},
		{Change{Backend: BackendFile, Link: "roamtun0", Path: e.rc}, "original: none recorded"},
		{Change{Backend: BackendResolvconf, Link: "roamtun0", Record: "-x"}, "record"},
		{Change{Backend: BackendResolved, Link: "roamtun0"}, "ifindex 0"},
	} {
		if err := Revert(ctx, e.opts(), c.c); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("revert %+v: %v, want %q", c.c, err, c.want)
		}
		if err := Apply(ctx, e.opts(), c.c); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("apply %+v: %v, want %q", c.c, err, c.want)
		}
	}
	if err := Apply(ctx, e.opts(), Change{Backend: BackendFile}); err == nil || !strings.Contains(err.Error(), "link is empty") {
		t.Errorf("apply without link: %v", err)
	}
	if b, _ := os.ReadFile(e.rc); string(b) != string(origRC) {
		t.Errorf("bad input changed resolv.conf: %q", b)
	}
}

// TestMappedServers: an IPv4-mapped IPv6 server is an IPv4 server.
func TestMappedServers(t *testing.T) {
	e := newFileEnv(t)
	c, err := Prepare(ctx, e.opts(), Settings{Link: "roamtun0", Servers: []netip.Addr{netip.MustParseAddr("::ffff:10.9.0.53")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Servers[0].String(); got != "10.9.0.53" {
		t.Errorf("server %s", got)
	}
	if got := resolvedServers(c); got[0].Family != 2 || len(got[0].Address) != 4 {
		t.Errorf("resolved gets %+v", got)
	}
}

func TestResolvconfImplementation(t *testing.T) {
	for out, want := range map[string]string{
		"openresolv 3.12.0\nCopyright (c) 2007-2020 Roy Marples\n": implOpenresolv,
		"systemd 252 (252.36-1~deb12u1)\n+PAM +AUDIT +SELINUX\n":   implSystemd,
		"/sbin/resolvconf: Error: Command not recognized\n":        implDebian,
		"": implDebian,
	} {
		if got := implementation([]byte(out)); got != want {
			t.Errorf("%q: %s, want %s", out, got, want)
		}
	}
	dir := t.TempDir()
	order := filepath.Join(dir, "interface-order")
	// Debian's own file, abridged.
	os.WriteFile(order, []byte("# interface-order(5)\nlo.inet6\nlo.inet\nlo.@(dnsmasq|pdnsd)\nlo\ntun*\ntap*\nhso*\n*\n"), 0o644)
	if got := debianPrefix(order); got != "tun." {
		t.Errorf("prefix %q, want tun.", got)
	}
	if got := debianPrefix(filepath.Join(dir, "none")); got != "" {
		t.Errorf("prefix without the file %q", got)
	}
}

func TestIsMountPoint(t *testing.T) {
	if !isMountPoint("/proc") {
		t.Error("/proc is not a mount point?")
	}
	if isMountPoint(t.TempDir()) {
		t.Error("a temporary directory is a mount point?")
	}
	if got := unescapeMount(`/a\040b\134c\011`); got != "/a b\\c\t" {
		t.Errorf("unescapeMount: %q", got)
	}
}
