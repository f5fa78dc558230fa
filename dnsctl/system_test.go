package dnsctl

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/roamtun/roamtun/lab"
)

// privateBus runs a real dbus-daemon (system bus semantics) for one test
// and returns its address.
func privateBus(t *testing.T) string {
	t.Helper()
	lab.RequireCommand(t, "dbus-daemon")
	dir := t.TempDir()
	sock := filepath.Join(dir, "bus")
	conf := filepath.Join(dir, "bus.conf")
	os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+sock+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`), 0o644)
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := "unix:path=" + sock
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := dbus.Connect(addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatal("private dbus-daemon did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeResolved implements the resolve1 Manager calls dnsctl uses, as
// systemd-resolved does (it cannot run here), recording them.
type fakeResolved struct {
	mu      sync.Mutex
	calls   []string
	noLinks atomic.Bool // answer RevertLink as for a link that is gone
}

func (f *fakeResolved) log(s string) *dbus.Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	return nil
}

func (f *fakeResolved) SetLinkDNS(idx int32, servers []resolvedDNS) *dbus.Error {
	var s []string
	for _, a := range servers {
		s = append(s, fmt.Sprintf("%d:%v", a.Family, a.Address))
	}
	return f.log(fmt.Sprintf("SetLinkDNS %d %s", idx, strings.Join(s, ",")))
}

func (f *fakeResolved) SetLinkDomains(idx int32, domains []resolvedDomain) *dbus.Error {
	var s []string
	for _, d := range domains {
		s = append(s, fmt.Sprintf("%s/%v", d.Domain, d.RoutingOnly))
	}
	return f.log(fmt.Sprintf("SetLinkDomains %d %s", idx, strings.Join(s, ",")))
}

func (f *fakeResolved) SetLinkDefaultRoute(idx int32, on bool) *dbus.Error {
	return f.log(fmt.Sprintf("SetLinkDefaultRoute %d %v", idx, on))
}

func (f *fakeResolved) RevertLink(idx int32) *dbus.Error {
	if f.noLinks.Load() {
		return &dbus.Error{Name: "org.freedesktop.resolve1.NoSuchLink", Body: []any{fmt.Sprintf("Link %d not known", idx)}}
	}
	return f.log(fmt.Sprintf("RevertLink %d", idx))
}

func (f *fakeResolved) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func serveResolved(t *testing.T, addr string) *fakeResolved {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fakeResolved{}
	if err := conn.Export(f, resolvedPath, resolvedIface); err != nil {
		t.Fatal(err)
	}
	if r, err := conn.RequestName(resolvedName, dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("owning %s: %v %v", resolvedName, r, err)
	}
	return f
}

func busOpt(addr string) func() (*dbus.Conn, error) {
	return func() (*dbus.Conn, error) { return dbus.Connect(addr) }
}

// TestResolved: the calls systemd-resolved gets, over a real bus, and a
// revert after the link is gone counting as done.
func TestResolved(t *testing.T) {
	addr := privateBus(t)
	f := serveResolved(t, addr)
	o := Options{Backend: BackendResolved, SystemBus: busOpt(addr)}
	c, err := Prepare(ctx, o, Settings{Link: tunLink, Servers: tunDNS, Domains: []string{"corp.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, o, roundTrip(t, c)); err != nil {
		t.Fatal(err)
	}
	if err := Revert(ctx, o, roundTrip(t, c)); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("SetLinkDNS %d 2:[10 9 0 53],10:[253 0 0 0 0 0 0 0 0 0 0 0 0 0 0 83]", c.IfIndex),
		fmt.Sprintf("SetLinkDomains %d ~./true,corp.example/false", c.IfIndex),
		fmt.Sprintf("SetLinkDefaultRoute %d true", c.IfIndex),
		fmt.Sprintf("RevertLink %d", c.IfIndex),
	}
	if got := f.Calls(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	f.noLinks.Store(true)
	if err := Revert(ctx, o, c); err != nil {
		t.Fatalf("revert of a link resolved no longer knows: %v", err)
	}
}

// TestDetect: auto picks resolved, resolvconf or file by looking.
func TestDetect(t *testing.T) {
	addr := privateBus(t)
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	stub := func() {
		os.Remove(rc)
		os.Symlink("/run/systemd/resolve/stub-resolv.conf", rc)
	}
	detect := func(o Options) string {
		t.Helper()
		o.ResolvConf = rc
		b, why, err := Detect(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s", b, why)
		return b
	}
	noResolvconf := filepath.Join(dir, "no-resolvconf")
	stub()
	if b := detect(Options{SystemBus: busOpt(addr), Resolvconf: noResolvconf}); b != BackendFile {
		t.Errorf("stub link, resolved not on the bus: %s, want file", b)
	}
	serveResolved(t, addr)
	if b := detect(Options{SystemBus: busOpt(addr), Resolvconf: noResolvconf}); b != BackendResolved {
		t.Errorf("stub link + resolve1 on the bus: %s, want resolved", b)
	}
	os.Remove(rc)
	os.WriteFile(rc, []byte("# Generated by resolvconf\nnameserver 192.168.1.1\n"), 0o644)
	if bin, err := exec.LookPath("resolvconf"); err == nil {
		if b := detect(Options{SystemBus: busOpt(addr), Resolvconf: bin}); b != BackendResolvconf {
			t.Errorf("resolvconf's file: %s, want resolvconf", b)
		}
	} else if os.Getenv("ROAMTUN_REQUIRE_PRIVILEGED") != "" {
		t.Error("resolvconf (openresolv) not installed")
	}
	if b := detect(Options{SystemBus: busOpt(addr), Resolvconf: noResolvconf}); b != BackendFile {
		t.Errorf("resolvconf's file but no resolvconf: %s, want file", b)
	}
	os.WriteFile(rc, origRC, 0o644)
	if b := detect(Options{SystemBus: busOpt(addr)}); b != BackendFile {
		t.Errorf("a plain file: %s, want file", b)
	}
}

// The namespace tests run a copy of this test binary under ip netns exec,
// where /etc/resolv.conf (and /etc/resolvconf.conf) are bind mounts of the
// namespace's own files: the host's are never touched.
const childEnv = "DNSCTL_CHILD"

func TestNamespaceChild(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "":
		return // only as a helper process
	case "file":
		o := Options{Backend: BackendFile, StateDir: os.Getenv("DNSCTL_STATE")}
		childCycle(t, o, "/etc/resolv.conf")
	case "auto":
		o := Options{Backend: BackendAuto, StateDir: os.Getenv("DNSCTL_STATE"), SystemBus: busOpt("unix:path=/nonexistent")}
		b, why, _ := Detect(ctx, o)
		fmt.Printf("DETECT %s (%s)\n", b, why)
		childCycle(t, o, "/etc/resolv.conf")
	}
}

// childCycle applies, shows, and reverts, printing what resolv.conf held.
func childCycle(t *testing.T, o Options, path string) {
	c, err := Prepare(ctx, o, Settings{Link: tunLink, Servers: tunDNS})
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, o, c); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	fmt.Printf("UP %q\n", b)
	if err := Revert(ctx, o, c); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	fmt.Printf("DOWN %q\n", b)
}

func nsChild(t *testing.T, ns *lab.Namespace, scenario string) string {
	t.Helper()
	state := filepath.Join(t.TempDir(), "state")
	p, err := ns.StartProc(func(c *exec.Cmd) {
		c.Env = append(os.Environ(), childEnv+"="+scenario, "DNSCTL_STATE="+state)
	}, os.Args[0], "-test.run=^TestNamespaceChild$", "-test.count=1", "-test.v")
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(60 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("child %s: exit %d %v\n%s%s", scenario, code, err, p.Stdout(), p.Stderr())
	}
	return p.Stdout()
}

func hostResolvConf(t *testing.T) func() {
	before, _ := os.ReadFile("/etc/resolv.conf")
	return func() {
		if after, _ := os.ReadFile("/etc/resolv.conf"); string(after) != string(before) {
			t.Errorf("the host's /etc/resolv.conf changed!\nbefore %q\nafter %q", before, after)
		}
	}
}

// TestFileBindMounted: resolv.conf is a bind mount (ip netns exec, as in
// containers): rename cannot replace it, so it is written in place; the
// original comes back byte for byte.
func TestFileBindMounted(t *testing.T) {
	l := lab.NewT(t)
	defer hostResolvConf(t)()
	ns, err := l.Namespace("dns")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(ns.ResolvConf(), origRC, 0o644)
	out := nsChild(t, ns, "file")
	if !strings.Contains(out, `UP "`+marker) || !strings.Contains(out, `nameserver 10.9.0.53`) {
		t.Errorf("while up:\n%s", out)
	}
	if !strings.Contains(out, fmt.Sprintf("DOWN %q", origRC)) {
		t.Errorf("after revert:\n%s", out)
	}
	if b, _ := os.ReadFile(ns.ResolvConf()); string(b) != string(origRC) {
		t.Errorf("the namespace's resolv.conf: %q", b)
	}
}

// TestResolvconf: the real resolvconf(8) (openresolv) managing the
// namespace's resolv.conf, its state in a private directory; auto detects it.
func TestResolvconf(t *testing.T) {
	l := lab.NewT(t)
	lab.RequireCommand(t, "resolvconf")
	defer hostResolvConf(t)()
	ns, err := l.Namespace("rc")
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(l.Dir(), "resolvconf-state")
	os.MkdirAll(state, 0o755)
	etc := filepath.Dir(ns.ResolvConf())
	os.WriteFile(filepath.Join(etc, "resolvconf.conf"), []byte("resolv_conf=/etc/resolv.conf\nstate_dir="+state+"\n"), 0o644)
	// resolvconf owns the file from the start, with the café's server.
	if out, err := ns.Run("sh", "-c", "printf 'nameserver 10.200.1.1\\n' | resolvconf -a wan0.dhcp"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	before, _ := os.ReadFile(ns.ResolvConf())
	if !strings.Contains(string(before), "10.200.1.1") {
		t.Fatalf("resolvconf did not write the namespace's resolv.conf: %q", before)
	}
	out := nsChild(t, ns, "auto")
	if !strings.Contains(out, "DETECT resolvconf") {
		t.Errorf("auto did not pick resolvconf:\n%s", out)
	}
	up := out[strings.Index(out, "UP "):]
	if !strings.Contains(up, "nameserver 10.9.0.53") || strings.Contains(strings.SplitN(up, "\n", 2)[0], "10.200.1.1") {
		t.Errorf("while up (exclusive): %s", up)
	}
	if after, _ := os.ReadFile(ns.ResolvConf()); string(after) != string(before) {
		t.Errorf("after revert:\n%q\nwant\n%q", after, before)
	}
}
