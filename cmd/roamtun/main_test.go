package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the command line as main would and returns the exit status
// and what went to stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{ctx: context.Background(), stdin: strings.NewReader(""), stdout: &out, stderr: &errb,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return run(e, args), out.String(), errb.String()
}

func TestDispatch(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{nil, 2, "usage: roamtun COMMAND"},
		{[]string{"help", "frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"serve"}, 2, "--local is required"},
		{[]string{"serve", "--local", "10.0.0.1"}, 2, "--peer is required"},
		{[]string{"serve", "--local", "10.0.0.1", "--peer", "10.0.0.1"}, 2, "must differ"},
		{[]string{"serve", "--local", "fe80::1", "--peer", "10.0.0.2"}, 2, "not an IPv4 address"},
		{[]string{"serve", "--local", "10.0.0.1", "--peer", "10.0.0.2", "--dns", "1.1.1.1,8.8.8.8,9.9.9.9"}, 2, "at most two"},
		{[]string{"serve", "--local", "10.0.0.1", "--peer", "10.0.0.2", "--mtu", "70"}, 2, "--mtu"},
		{[]string{"serve", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"serve", "--local", "10.0.0.1", "--peer", "10.0.0.2", "--interface", "much-too-long-a-name"}, 2, "not a valid interface name"},
		{[]string{"serve", "--local", "10.0.0.1", "--peer", "10.0.0.2", "extra"}, 2, "unexpected arguments"},
		{[]string{"serve", "--local", "10.0.0.1", "--peer", "10.0.0.2", "--require-chap", "--secrets", "/nonexistent/chap-secrets"}, 1, "reading secrets"},
		{[]string{"connect"}, 2, "want exactly one PROFILE"},
		{[]string{"connect", "--config", "/nonexistent/roamtun.toml", "home"}, 1, "reading config"},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(stderr, tc.inStderr) {
			t.Errorf("roamtun %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.inStderr)
		}
	}
}

func TestConnectConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "roamtun.toml")
	os.WriteFile(cfg, []byte("[profile.home]\ndial_command = [\"cat\"]\nsecrets = \""+dir+"/none\"\nmtu = 9\n"), 0o644)
	code, _, stderr := runCLI(t, "connect", "--config", cfg, "home")
	if code != 1 || !strings.Contains(stderr, cfg+":4: profile.home.mtu") {
		t.Errorf("bad mtu: exit %d, stderr %q", code, stderr)
	}
	os.WriteFile(cfg, []byte("[profile.home]\ndial_command = [\"cat\"]\nsecrets = \""+dir+"/none\"\n"), 0o644)
	code, _, stderr = runCLI(t, "connect", "--config", cfg, "work")
	if code != 1 || !strings.Contains(stderr, `no profile "work" (have: home)`) {
		t.Errorf("unknown profile: exit %d, stderr %q", code, stderr)
	}
	// require_chap (the default) without a secrets file cannot work.
	code, _, stderr = runCLI(t, "connect", "--config", cfg, "home")
	if code != 1 || !strings.Contains(stderr, "reading secrets") {
		t.Errorf("missing secrets: exit %d, stderr %q", code, stderr)
	}
}
