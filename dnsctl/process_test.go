package dnsctl

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/roamtun/roamtun/internal/atomicfile"
	"github.com/roamtun/roamtun/lab"
)

// Helper processes are this test binary run again with DNSCTL_CHILD set:
// a process that gets SIGKILLed, or one inside a namespace where
// /etc/resolv.conf (and /etc/resolvconf.conf) are bind mounts of the
// namespace's own files, so the host's are never touched.
const childEnv = "DNSCTL_CHILD"

func TestHelperProcess(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "":
		t.Skip("only run as a helper process")
	case "crash":
		childCrash(t)
	case "file":
		childFile(t)
	case "resolvconf":
		childResolvconf(t)
	default:
		t.Fatalf("unknown child %q", os.Getenv(childEnv))
	}
}

func childLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// childCrash applies a file change, journals it the way the daemon does
// (fsynced before Apply), says READY and holds it with Keep until it is
// killed.
func childCrash(t *testing.T) {
	o := Options{Backend: BackendFile, StateDir: os.Getenv("DNSCTL_STATE"), ResolvConf: os.Getenv("DNSCTL_RC"), Log: childLog()}
	c, err := Prepare(ctx, o, Settings{Link: "roamtun0", Servers: tunDNS})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c)
	if err := atomicfile.WriteFile(os.Getenv("DNSCTL_JOURNAL"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, o, c); err != nil {
		t.Fatal(err)
	}
	fmt.Println("READY")
	Keep(ctx, o, c) // until SIGKILL
}

// TestRevertAfterKill: a process applies a change and is SIGKILLed; a new
// process reverts it from nothing but the journaled JSON, exactly, twice.
func TestRevertAfterKill(t *testing.T) {
	for _, tc := range originals {
		t.Run(tc.name, func(t *testing.T) {
			e := newFileEnv(t)
			tc.setup(t, e)
			before := snapshot(e.rc)
			journal := filepath.Join(e.dir, "journal.json")
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), childEnv+"=crash", "DNSCTL_RC="+e.rc, "DNSCTL_STATE="+e.state, "DNSCTL_JOURNAL="+journal)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			defer cmd.Process.Kill()
			var seen []string
			for s := bufio.NewScanner(out); s.Scan() && s.Text() != "READY"; {
				seen = append(seen, s.Text())
			}
			up, _ := os.ReadFile(e.rc)
			if !isOurs(up) {
				t.Fatalf("the child did not apply (output %q): %s", seen, snapshot(e.rc))
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()

			b, err := os.ReadFile(journal)
			if err != nil {
				t.Fatal(err)
			}
			var c Change
			if err := json.Unmarshal(b, &c); err != nil {
				t.Fatal(err)
			}
			fresh := Options{StateDir: e.state, Log: slog.New(e.log)} // a new process: no backend, no path given
			for i := range 2 {
				if err := Revert(ctx, fresh, c); err != nil {
					t.Fatalf("revert %d: %v", i+1, err)
				}
				if got := snapshot(e.rc); got != before {
					t.Fatalf("after revert %d:\n got %s\nwant %s", i+1, got, before)
				}
			}
			if left := stateFiles(t, e.state); len(left) != 0 {
				t.Errorf("state dir keeps %v", left)
			}
		})
	}
}

// hostUntouched fails the test if the host's /etc/resolv.conf, or
// resolvconf's run directory, differ at the end from now.
func hostUntouched(t *testing.T) {
	before, runBefore := snapshot("/etc/resolv.conf"), snapshot("/run/resolvconf")
	t.Cleanup(func() {
		if after := snapshot("/etc/resolv.conf"); after != before {
			t.Errorf("the host's /etc/resolv.conf changed!\nbefore %s\nafter  %s", before, after)
		}
		if after := snapshot("/run/resolvconf"); after != runBefore {
			t.Errorf("the host's /run/resolvconf changed: %s, was %s", after, runBefore)
		}
	})
}

// runChild runs the helper scenario inside ns (argv before the test binary
// wraps it) and returns its output; the child asserts itself.
func runChild(t *testing.T, ns *lab.Namespace, scenario string, env []string, wrap ...string) string {
	t.Helper()
	argv := append(wrap, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
	p, err := ns.StartProc(func(c *exec.Cmd) {
		c.Env = append(append(os.Environ(), childEnv+"="+scenario), env...)
	}, argv...)
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(2 * time.Minute) // a fail-safe, not a measure
	if err != nil || code != 0 {
		t.Fatalf("child %s: exit %d %v\n%s%s", scenario, code, err, p.Stdout(), p.Stderr())
	}
	t.Logf("child %s:\n%s", scenario, p.Stdout())
	return p.Stdout()
}

// childFile runs the file backend on the namespace's /etc/resolv.conf,
// which is a bind mount.
func childFile(t *testing.T) {
	o := Options{StateDir: os.Getenv("DNSCTL_STATE"), Log: childLog(),
		Resolvconf: "/nonexistent/resolvconf", SystemBus: func() (*dbus.Conn, error) { return nil, fmt.Errorf("no bus") }}
	before := snapshot("/etc/resolv.conf")
	c, err := Prepare(ctx, o, Settings{Link: "roamtun0", Servers: tunDNS, Domains: []string{"corp.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Backend != BackendFile {
		t.Fatalf("auto picked %s", c.Backend)
	}
	if err := Apply(ctx, o, roundTrip(t, c)); err != nil {
		t.Fatal(err)
	}
	up, _ := os.ReadFile("/etc/resolv.conf")
	if string(up) != string(content(c)) {
		t.Errorf("while up: %q", up)
	}
	for i := range 2 {
		if err := Revert(ctx, Options{Log: o.Log}, roundTrip(t, c)); err != nil {
			t.Fatalf("revert %d: %v", i+1, err)
		}
		if after := snapshot("/etc/resolv.conf"); after != before {
			t.Errorf("after revert %d:\n got %s\nwant %s", i+1, after, before)
		}
	}
}

// TestFileBindMounted: resolv.conf is a bind mount (ip netns exec, as in
// containers): rename cannot replace it, so it is written in place; the
// original's bytes, mode and owner come back.
func TestFileBindMounted(t *testing.T) {
	l := lab.NewT(t)
	hostUntouched(t)
	ns, err := l.Namespace("dns")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(ns.ResolvConf(), origRC, 0o640)
	os.Chmod(ns.ResolvConf(), 0o640)
	os.Chown(ns.ResolvConf(), 1234, 4321)
	before := snapshot(ns.ResolvConf())
	out := runChild(t, ns, "file", []string{"DNSCTL_STATE=" + filepath.Join(t.TempDir(), "state")})
	if !strings.Contains(out, "written in place") {
		t.Errorf("the write-in-place path was not taken:\n%s", out)
	}
	if got := snapshot(ns.ResolvConf()); got != before {
		t.Errorf("the namespace's resolv.conf:\n got %s\nwant %s", got, before)
	}
	l.Close()
	if ns.Exists() {
		t.Error("namespace left behind")
	}
}

// childResolvconf runs in a namespace with a tmpfs on /run (so resolvconf's
// state, /run/resolvconf, is private) and the namespace's own
// /etc/resolv.conf and /etc/resolvconf.conf. It plays the café's DHCP
// client first, as dhcpcd would, then roamtun.
func childResolvconf(t *testing.T) {
	dhcp := exec.Command("resolvconf", "-a", "wan0.dhcp")
	dhcp.Stdin = strings.NewReader("nameserver 10.200.1.1\nsearch cafe.example\n")
	if out, err := dhcp.CombinedOutput(); err != nil {
		t.Fatalf("resolvconf -a wan0.dhcp: %v %s", err, out)
	}
	before := snapshot("/etc/resolv.conf")
	if !strings.Contains(before, "10.200.1.1") {
		t.Fatalf("resolvconf does not manage the namespace's resolv.conf: %s", before)
	}
	noBus := func() (*dbus.Conn, error) { return nil, fmt.Errorf("no bus") }
	o := Options{StateDir: os.Getenv("DNSCTL_STATE"), Log: childLog(), SystemBus: noBus}
	b, why, err := Detect(ctx, o)
	if b != BackendResolvconf || err != nil {
		t.Fatalf("detect: %s (%s) %v", b, why, err)
	}
	c, err := Prepare(ctx, o, Settings{Link: "roamtun0", Servers: tunDNS, Domains: []string{"corp.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Backend != BackendResolvconf || c.Implementation != implOpenresolv || c.Record != "roamtun0.roamtun" {
		t.Fatalf("change: %+v", c)
	}
	if err := Apply(ctx, o, roundTrip(t, c)); err != nil {
		t.Fatal(err)
	}
	up, _ := os.ReadFile("/etc/resolv.conf")
	fmt.Printf("UP %q\n", up)
	for _, want := range []string{"nameserver 10.9.0.53\n", "nameserver fd00::53\n", "corp.example"} {
		if !strings.Contains(string(up), want) {
			t.Errorf("while up, resolv.conf lacks %q", want)
		}
	}
	if strings.Contains(string(up), "10.200.1.1") {
		t.Error("while up, the café's server is still in resolv.conf: -x (exclusive) did not take")
	}
	for i := range 2 { // the second finds the record gone (-f)
		if err := Revert(ctx, Options{Log: o.Log}, roundTrip(t, c)); err != nil {
			t.Fatalf("revert %d: %v", i+1, err)
		}
		if after := snapshot("/etc/resolv.conf"); after != before {
			t.Errorf("after revert %d:\n got %s\nwant %s", i+1, after, before)
		}
	}
}

// TestResolvconf: the real resolvconf(8) (openresolv) managing a
// namespace's resolv.conf; auto detects it, -x makes our servers the only
// ones, and revert gives back exactly what resolvconf had before.
func TestResolvconf(t *testing.T) {
	l := lab.NewT(t)
	lab.RequireCommand(t, "resolvconf")
	hostUntouched(t)
	ns, err := l.Namespace("rc")
	if err != nil {
		t.Fatal(err)
	}
	// libc_restart: never restart a service (nscd) through the host's
	// init; the tmpfs on /run hides the host's pid files (avahi) too.
	conf := "resolv_conf=/etc/resolv.conf\nlibc_restart=:\n"
	if err := os.WriteFile(filepath.Join(filepath.Dir(ns.ResolvConf()), "resolvconf.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// ip netns exec gives the child its own mount namespace (slave to the
	// host's: nothing propagates back), so this tmpfs is the child's alone.
	wrap := []string{"sh", "-c", `mount -t tmpfs -o mode=0755,size=4m roamtun-dnsctl-test /run && exec "$@"`, "sh"}
	runChild(t, ns, "resolvconf", []string{"DNSCTL_STATE=" + filepath.Join(t.TempDir(), "state")}, wrap...)
	if b, _ := os.ReadFile(ns.ResolvConf()); !strings.Contains(string(b), "nameserver 10.200.1.1") {
		t.Errorf("the namespace's resolv.conf at the end: %q", b)
	}
}
