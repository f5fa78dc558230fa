package dnsctl

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	ctx     = context.Background()
	tunDNS  = []netip.Addr{netip.MustParseAddr("10.9.0.53"), netip.MustParseAddr("fd00::53")}
	origRC  = []byte("# the user's own\nnameserver 192.168.1.1\nsearch home.arpa\noptions edns0\n")
	tunLink = "lo" // an interface that exists everywhere
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

func fileOpts(t *testing.T) (Options, string) {
	dir := t.TempDir()
	return Options{Backend: BackendFile, StateDir: filepath.Join(dir, "state"), ResolvConf: filepath.Join(dir, "resolv.conf")}, dir
}

func applyFor(t *testing.T, o Options) Change {
	t.Helper()
	c, err := Prepare(ctx, o, Settings{Link: "roamtun0", Servers: tunDNS, Domains: []string{"corp.example"}})
	if err != nil {
		t.Fatal(err)
	}
	c = roundTrip(t, c)
	if err := Apply(ctx, o, c); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(o.ResolvConf)
	for _, want := range []string{marker, "nameserver 10.9.0.53\n", "nameserver fd00::53\n", "search corp.example\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("resolv.conf while up lacks %q:\n%s", want, got)
		}
	}
	return c
}

// TestFileRegular: bytes and mode come back exactly, from a Change read back
// by "another process"; reverting twice is fine.
func TestFileRegular(t *testing.T) {
	o, _ := fileOpts(t)
	os.WriteFile(o.ResolvConf, origRC, 0o640)
	c := applyFor(t, o)
	if fi, _ := os.Lstat(o.ResolvConf); fi.Mode().Perm() != 0o644 {
		t.Errorf("ours has mode %v", fi.Mode().Perm())
	}
	fresh := Options{Backend: BackendFile, StateDir: o.StateDir, ResolvConf: o.ResolvConf}
	if err := Revert(ctx, fresh, roundTrip(t, c)); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(o.ResolvConf)
	fi, _ := os.Lstat(o.ResolvConf)
	if string(got) != string(origRC) || fi.Mode().Perm() != 0o640 {
		t.Fatalf("not restored: mode %v\n%s", fi.Mode().Perm(), got)
	}
	if err := Revert(ctx, fresh, c); err != nil {
		t.Fatalf("second revert: %v", err)
	}
	if _, err := os.Stat(c.Original); !os.IsNotExist(err) {
		t.Errorf("the kept original was not cleaned up: %v", err)
	}
}

// TestFileSymlink: a symlinked resolv.conf (as on most desktops) is replaced
// by a file while up — its target is never written — and comes back as the
// same link.
func TestFileSymlink(t *testing.T) {
	o, dir := fileOpts(t)
	target := filepath.Join(dir, "managed-elsewhere.conf")
	os.WriteFile(target, origRC, 0o644)
	os.Symlink(target, o.ResolvConf)
	c := applyFor(t, o)
	if fi, _ := os.Lstat(o.ResolvConf); fi.Mode()&os.ModeSymlink != 0 {
		t.Error("still a symlink while up: the target would have been written")
	}
	if b, _ := os.ReadFile(target); string(b) != string(origRC) {
		t.Errorf("the link's target was changed:\n%s", b)
	}
	if err := Revert(ctx, o, roundTrip(t, c)); err != nil {
		t.Fatal(err)
	}
	if l, err := os.Readlink(o.ResolvConf); err != nil || l != target {
		t.Fatalf("not a link to %s again: %q %v", target, l, err)
	}
	if err := Revert(ctx, o, c); err != nil {
		t.Fatalf("second revert: %v", err)
	}
}

// TestFileMissing: no resolv.conf before, none after.
func TestFileMissing(t *testing.T) {
	o, _ := fileOpts(t)
	c := applyFor(t, o)
	if err := Revert(ctx, o, c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(o.ResolvConf); !os.IsNotExist(err) {
		t.Fatalf("resolv.conf left behind: %v", err)
	}
}

// TestFileKeep: something rewrites resolv.conf while up; ours comes back.
// At the end the original is restored and the intruder's version is kept.
func TestFileKeep(t *testing.T) {
	o, _ := fileOpts(t)
	os.WriteFile(o.ResolvConf, origRC, 0o644)
	c := applyFor(t, o)
	ours, _ := os.ReadFile(o.ResolvConf)
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- Keep(kctx, o, c) }()
	os.WriteFile(o.ResolvConf, []byte("# dhclient was here\nnameserver 10.200.1.1\n"), 0o644)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, _ := os.ReadFile(o.ResolvConf); string(b) == string(ours) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("ours was not put back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	os.WriteFile(o.ResolvConf, []byte("# dhclient again\n"), 0o644)
	if err := Revert(ctx, o, c); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(o.ResolvConf); string(b) != string(origRC) {
		t.Fatalf("not restored:\n%s", b)
	}
	if b, _ := os.ReadFile(filepath.Join(o.StateDir, "resolv.conf.replaced")); !strings.Contains(string(b), "dhclient again") {
		t.Errorf("the intruder's version was not kept: %q", b)
	}
}

// TestFileRefusesOwnAsOriginal: a crashed run's file is never taken for
// the original.
func TestFileRefusesOwnAsOriginal(t *testing.T) {
	o, _ := fileOpts(t)
	os.WriteFile(o.ResolvConf, origRC, 0o644)
	applyFor(t, o)
	_, err := Prepare(ctx, o, Settings{Link: "roamtun0", Servers: tunDNS})
	if err == nil || !strings.Contains(err.Error(), "roamtun cleanup") {
		t.Fatalf("prepare over our own file: %v", err)
	}
}

func TestBadSettings(t *testing.T) {
	o, _ := fileOpts(t)
	for _, c := range []struct {
		s    Settings
		want string
	}{
		{Settings{Servers: tunDNS}, "link is empty"},
		{Settings{Link: "roamtun0"}, "servers: none"},
		{Settings{Link: "roamtun0", Servers: []netip.Addr{{}}}, "servers[0]"},
		{Settings{Link: "roamtun0", Servers: tunDNS, Domains: []string{"a b"}}, "domains[0]"},
	} {
		if _, err := Prepare(ctx, o, c.s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.s, err, c.want)
		}
	}
	if _, err := Prepare(ctx, Options{Backend: "bind"}, Settings{Link: "x", Servers: tunDNS}); err == nil || !strings.Contains(err.Error(), `unknown backend "bind"`) {
		t.Errorf("unknown backend: %v", err)
	}
}
