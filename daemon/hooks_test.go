package daemon_test

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/lab"
)

// TestHooks: executables run in name order with the link's facts in their
// environment; a failing one and one that hangs past its time limit are
// logged, not fatal; files others may write are not run.
func TestHooks(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	hooks := filepath.Join(dir, "hooks.d")
	os.MkdirAll(hooks, 0o755)
	write := func(name, body string, mode os.FileMode) {
		p := filepath.Join(hooks, name)
		os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), mode)
		os.Chmod(p, mode) // past the umask
	}
	write("10-env", `echo "$1 $ROAMTUN_EVENT $PROFILE $IFNAME $LOCAL $REMOTE [$DNS] $SSID $UPLINK" >> `+out, 0o755)
	write("20-fails", `echo broken >&2; exit 3`, 0o755)
	write("30-hangs", `sleep 60`, 0o755)
	write("40-after", `echo "after $1" >> `+out, 0o755)
	write("50-writable", `echo "SHOULD NOT RUN" >> `+out, 0o777)
	write("60-not-executable", `echo "SHOULD NOT RUN" >> `+out, 0o644)
	os.WriteFile(filepath.Join(hooks, ".hidden"), []byte("#!/bin/sh\necho SHOULD NOT RUN >> "+out+"\n"), 0o755)

	var log lab.SyncBuffer
	h := &daemon.Hooks{Timeout: time.Second, Log: slog.New(slog.NewTextHandler(&log, nil))}
	env := daemon.HookEnv{Profile: "home", Ifname: "roamtun0", Local: netip.MustParseAddr("10.9.0.2"),
		Remote: netip.MustParseAddr("10.9.0.1"), DNS: []netip.Addr{netip.MustParseAddr("10.9.0.53"), netip.MustParseAddr("10.9.0.54")},
		SSID: "Cafe", Interface: "wlan0"}
	h.Run(hooks, "up", env)
	h.Run(hooks, "down", env)
	h.Wait()
	b, _ := os.ReadFile(out)
	want := "up up home roamtun0 10.9.0.2 10.9.0.1 [10.9.0.53 10.9.0.54] Cafe wlan0\nafter up\n" +
		"down down home roamtun0 10.9.0.2 10.9.0.1 [10.9.0.53 10.9.0.54] Cafe wlan0\nafter down\n"
	if string(b) != want {
		t.Errorf("hooks wrote:\n%s\nwant:\n%s", b, want)
	}
	l := log.String()
	for _, w := range []string{"hook failed", "broken", "hook timed out and was killed"} {
		if !strings.Contains(l, w) {
			t.Errorf("log lacks %q:\n%s", w, l)
		}
	}
	var nilHooks *daemon.Hooks
	nilHooks.Run(hooks, "up", env) // no hooks configured: nothing, no panic
	nilHooks.Wait()
}

// TestHooksRefuseUnsafe: hooks run as root, so nothing another user could
// have placed runs: not from a directory others may write (or under one),
// not through a symlink (even to a trusted program), not a file another
// user owns. An SSID with NUL, newline and invalid UTF-8 still runs the
// hooks, escaped in SSID and exact in SSID_HEX.
func TestHooksRefuseUnsafe(t *testing.T) {
	lab.RequirePrivileged(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	script := func(path, body string) {
		os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755)
		os.Chmod(path, 0o755)
	}
	var log lab.SyncBuffer
	h := &daemon.Hooks{Timeout: 5 * time.Second, Log: slog.New(slog.NewTextHandler(&log, nil))}
	defer h.Close()
	env := daemon.HookEnv{Profile: "home", Ifname: "roamtun0", SSID: "Caf\xe9\x00\n$(reboot)\\x", Interface: "wlan0"}

	// A world-writable hooks directory: nothing in it runs.
	open := filepath.Join(dir, "open.d")
	os.Mkdir(open, 0o777)
	os.Chmod(open, 0o777)
	script(filepath.Join(open, "10-hook"), "echo RAN-FROM-OPEN-DIR >> "+out)
	// A trusted directory under one others may write (without the sticky
	// bit): they could swap it.
	under := filepath.Join(open, "sub.d")
	os.Mkdir(under, 0o755)
	script(filepath.Join(under, "10-hook"), "echo RAN-UNDER-OPEN-DIR >> "+out)
	// A trusted directory with a symlink to a trusted program, a file of
	// another user, and a good hook printing its environment.
	good := filepath.Join(dir, "hooks.d")
	os.Mkdir(good, 0o755)
	target := filepath.Join(dir, "elsewhere")
	script(target, "echo RAN-THROUGH-SYMLINK >> "+out)
	os.Symlink(target, filepath.Join(good, "10-link"))
	script(filepath.Join(good, "20-others"), "echo RAN-OTHERS-FILE >> "+out)
	os.Chown(filepath.Join(good, "20-others"), 65534, 65534)
	script(filepath.Join(good, "30-env"), `printf 'SSID=%s\nSSID_HEX=%s\n' "$SSID" "$SSID_HEX" >> `+out)

	for _, d := range []string{open, under, good} {
		h.Run(d, "up", env)
	}
	h.Wait()
	b, _ := os.ReadFile(out)
	want := "SSID=Caf\\xe9\\x00\\x0a$(reboot)\\\\x\nSSID_HEX=436166e9000a24287265626f6f74295c78\n"
	if string(b) != want {
		t.Errorf("hooks wrote:\n%q\nwant:\n%q", b, want)
	}
	l := log.String()
	for _, w := range []string{open + " is writable by group or others", "a symlink", "owned by uid 65534"} {
		if !strings.Contains(l, w) {
			t.Errorf("log lacks %q:\n%s", w, l)
		}
	}
}
