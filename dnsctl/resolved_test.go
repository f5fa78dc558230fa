package dnsctl

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/roamtun/roamtun/lab"
)

// privateBus runs a real dbus-daemon with system-bus semantics for one test,
// its socket in a temporary directory, and returns its address. It is
// killed by PID at cleanup.
func privateBus(t *testing.T) string {
	t.Helper()
	lab.RequireCommand(t, "dbus-daemon")
	dir := t.TempDir()
	conf := filepath.Join(dir, "bus.conf")
	os.WriteFile(conf, []byte(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=`+filepath.Join(dir, "bus")+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`), 0o644)
	cmd := exec.Command("dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile", "--print-address")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// The address is printed once the bus listens.
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("dbus-daemon printed no address: %v", err)
	}
	return strings.TrimSpace(addr)
}

func busOpt(addr string) func() (*dbus.Conn, error) {
	return func() (*dbus.Conn, error) { return dbus.Connect(addr) }
}

// fakeResolved is systemd-resolved's org.freedesktop.resolve1.Manager as far
// as dnsctl uses it (resolved cannot run here). Like sd-bus, it rejects a
// call whose signature is not the documented one; it records the rest.
type fakeResolved struct {
	mu      sync.Mutex
	calls   []string
	noLinks atomic.Bool // answer RevertLink as for a link resolved does not know
}

func (f *fakeResolved) record(msg dbus.Message, want, call string) *dbus.Error {
	sig, _ := msg.Headers[dbus.FieldSignature].Value().(dbus.Signature)
	if sig.String() != want {
		return &dbus.Error{Name: "org.freedesktop.DBus.Error.InvalidArgs",
			Body: []any{fmt.Sprintf("signature %q, want %q", sig.String(), want)}}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return nil
}

func (f *fakeResolved) SetLinkDNS(msg dbus.Message, idx int32, servers []resolvedDNS) *dbus.Error {
	var s []string
	for _, a := range servers {
		s = append(s, fmt.Sprintf("%d:%v", a.Family, net.IP(a.Address)))
	}
	return f.record(msg, "ia(iay)", fmt.Sprintf("SetLinkDNS %d %s", idx, strings.Join(s, ",")))
}

func (f *fakeResolved) SetLinkDomains(msg dbus.Message, idx int32, domains []resolvedDomain) *dbus.Error {
	var s []string
	for _, d := range domains {
		s = append(s, fmt.Sprintf("%s/%v", d.Domain, d.RoutingOnly))
	}
	return f.record(msg, "ia(sb)", fmt.Sprintf("SetLinkDomains %d %s", idx, strings.Join(s, ",")))
}

func (f *fakeResolved) SetLinkDefaultRoute(msg dbus.Message, idx int32, on bool) *dbus.Error {
	return f.record(msg, "ib", fmt.Sprintf("SetLinkDefaultRoute %d %v", idx, on))
}

func (f *fakeResolved) RevertLink(msg dbus.Message, idx int32) *dbus.Error {
	if f.noLinks.Load() {
		return &dbus.Error{Name: errNoSuchLink, Body: []any{fmt.Sprintf("Link %d not known", idx)}}
	}
	return f.record(msg, "i", fmt.Sprintf("RevertLink %d", idx))
}

func (f *fakeResolved) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// serveResolved claims org.freedesktop.resolve1 on the bus at addr.
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

// loopback is a link that exists everywhere, standing in for the tunnel's.
func loopback(t *testing.T) *net.Interface {
	t.Helper()
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			return &ifi
		}
	}
	t.Skip("no loopback interface")
	return nil
}

// TestResolved: the calls systemd-resolved gets over a real bus, in order
// and with the documented signatures; Revert from a JSON round-tripped
// Change in "a new process"; a second Revert, and one for a link resolved
// no longer knows, are done.
func TestResolved(t *testing.T) {
	addr := privateBus(t)
	f := serveResolved(t, addr)
	lo := loopback(t)
	o := Options{Backend: BackendResolved, SystemBus: busOpt(addr)}
	c, err := Prepare(ctx, o, Settings{Link: lo.Name, Servers: tunDNS, Domains: []string{"corp.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.IfIndex != lo.Index {
		t.Fatalf("ifindex %d, want %d", c.IfIndex, lo.Index)
	}
	if err := Apply(ctx, o, roundTrip(t, c)); err != nil {
		t.Fatal(err)
	}
	fresh := Options{Backend: BackendAuto, SystemBus: busOpt(addr)}
	if err := Revert(ctx, fresh, roundTrip(t, c)); err != nil {
		t.Fatal(err)
	}
	want := []string{
		fmt.Sprintf("SetLinkDNS %d 2:10.9.0.53,10:fd00::53", lo.Index),
		fmt.Sprintf("SetLinkDomains %d ~./true,corp.example/false", lo.Index),
		fmt.Sprintf("SetLinkDefaultRoute %d true", lo.Index),
		fmt.Sprintf("RevertLink %d", lo.Index),
	}
	if got := f.Calls(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	f.noLinks.Store(true)
	if err := Revert(ctx, fresh, c); err != nil {
		t.Fatalf("revert of a link resolved no longer knows: %v", err)
	}
	if err := Keep(ctx, o, c); err != nil {
		t.Errorf("keep: %v", err)
	}
}

// TestResolvedLinkGone: after a crash the tunnel link is gone, or its
// ifindex was reused by another link (a reboot): Revert is done without
// calling RevertLink, which would wipe the other link's settings.
func TestResolvedLinkGone(t *testing.T) {
	addr := privateBus(t)
	f := serveResolved(t, addr)
	lo := loopback(t)
	o := Options{SystemBus: busOpt(addr)}
	for _, c := range []Change{
		{Backend: BackendResolved, Link: "roamtun0", IfIndex: lo.Index}, // lo's index now
		{Backend: BackendResolved, Link: "roamtun0", IfIndex: 1 << 30},  // nobody's
	} {
		if err := Revert(ctx, o, roundTrip(t, c)); err != nil {
			t.Errorf("ifindex %d: %v", c.IfIndex, err)
		}
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("resolved was called: %v", calls)
	}
}

// TestResolvedErrors: a missing link at Prepare and a bus without resolved
// at Apply are clear errors.
func TestResolvedErrors(t *testing.T) {
	addr := privateBus(t)
	o := Options{Backend: BackendResolved, SystemBus: busOpt(addr)}
	if _, err := Prepare(ctx, o, Settings{Link: "rt-no-such0", Servers: tunDNS}); err == nil || !strings.Contains(err.Error(), "link rt-no-such0") {
		t.Errorf("prepare for a missing link: %v", err)
	}
	lo := loopback(t)
	c, err := Prepare(ctx, o, Settings{Link: lo.Name, Servers: tunDNS})
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, o, c); err == nil || !strings.Contains(err.Error(), "SetLinkDNS") {
		t.Errorf("apply with no resolved on the bus: %v", err)
	}
	// Nothing holds our settings when resolved is not there.
	if err := Revert(ctx, o, c); err != nil {
		t.Errorf("revert with no resolved on the bus: %v", err)
	}
}

// TestDetect: auto picks resolved, resolvconf or file by looking at fake
// environments (temporary resolv.conf, private bus, a resolvconf that is
// there or not).
func TestDetect(t *testing.T) {
	addr := privateBus(t)
	dir := t.TempDir()
	fakeResolvconf := filepath.Join(dir, "resolvconf") // only its presence is looked at
	os.WriteFile(fakeResolvconf, []byte("#!/bin/sh\nexit 1\n"), 0o755)
	none := filepath.Join(dir, "no-resolvconf")
	noBus := func() (*dbus.Conn, error) { return nil, fmt.Errorf("no system bus here") }

	link := func(target string) func(string) { return func(rc string) { os.Symlink(target, rc) } }
	file := func(s string) func(string) { return func(rc string) { os.WriteFile(rc, []byte(s), 0o644) } }
	stubFile := "# This is /run/systemd/resolve/stub-resolv.conf managed by man:systemd-resolved(8).\nnameserver 127.0.0.53\noptions edns0 trust-ad\n"
	cases := []struct {
		name       string
		rc         func(string)
		resolved   bool // resolve1 on the bus
		resolvconf string
		bus        func() (*dbus.Conn, error)
		want       string
	}{
		{"plain file", file(string(origRC)), false, none, nil, BackendFile},
		{"plain file, openresolv installed", file(string(origRC)), false, fakeResolvconf, nil, BackendFile},
		{"missing", func(string) {}, false, fakeResolvconf, nil, BackendFile},
		{"stub link, resolved absent", link("../run/systemd/resolve/stub-resolv.conf"), false, none, nil, BackendFile},
		{"stub link, no system bus", link("/run/systemd/resolve/stub-resolv.conf"), false, none, noBus, BackendFile},
		{"stub link, resolved", link("../run/systemd/resolve/stub-resolv.conf"), true, fakeResolvconf, nil, BackendResolved},
		{"uplink link, resolved", link("/run/systemd/resolve/resolv.conf"), true, none, nil, BackendResolved},
		{"stub copied as a file, resolved", file(stubFile), true, none, nil, BackendResolved},
		{"debian resolvconf link", link("../run/resolvconf/resolv.conf"), false, fakeResolvconf, nil, BackendResolvconf},
		{"debian resolvconf link, resolvconf gone", link("../run/resolvconf/resolv.conf"), false, none, nil, BackendFile},
		{"openresolv's file", file("# Generated by resolvconf\nnameserver 192.168.1.1\n"), false, fakeResolvconf, nil, BackendResolvconf},
		{"debian resolvconf's file", file("# Dynamic resolv.conf(5) file for glibc resolver(3) generated by resolvconf(8)\n#     DO NOT EDIT THIS FILE BY HAND -- YOUR CHANGES WILL BE OVERWRITTEN\nnameserver 192.168.1.1\n"), false, fakeResolvconf, nil, BackendResolvconf},
		{"link elsewhere", link("/etc/resolv.conf.manual"), false, fakeResolvconf, nil, BackendFile},
	}
	// The cases without resolved first: once taken, the name stays owned.
	for _, pass := range []bool{false, true} {
		if pass {
			serveResolved(t, addr)
		}
		for _, tc := range cases {
			if tc.resolved != pass {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				rc := filepath.Join(t.TempDir(), "resolv.conf")
				tc.rc(rc)
				bus := tc.bus
				if bus == nil {
					bus = busOpt(addr)
				}
				b, why, err := Detect(ctx, Options{ResolvConf: rc, Resolvconf: tc.resolvconf, SystemBus: bus})
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: %s", b, why)
				if b != tc.want {
					t.Errorf("%s (%s), want %s", b, why, tc.want)
				}
				if !strings.Contains(why, rc) {
					t.Errorf("why does not name the file: %s", why)
				}
			})
		}
	}
}
