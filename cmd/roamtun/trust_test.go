package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/policy"
)

func TestTrustCLI(t *testing.T) {
	cfg, pdir := policySetup(t, map[string]string{"10-home.toml": cliHome})
	managed := filepath.Join(pdir, policy.ManagedFile)
	explain := func(args ...string) string {
		t.Helper()
		code, out, stderr := runCLI(t, append([]string{"explain", "--config", cfg}, args...)...)
		if code != 0 {
			t.Fatalf("explain: %d %s", code, stderr)
		}
		return out
	}
	steps := []struct {
		args []string
		code int
		has  string // in stdout+stderr
	}{
		{[]string{"trust", "--bssid", "aa:11:22:33:44:55", "Cafe"}, 0, "trusting Cafe"},
		{[]string{"trust", "--gateway=00:11:22:33:44:55", "--security", "wpa3", "Work"}, 0, "trusting Work"},
		{[]string{"trust", "--bssid", "Cafe"}, 2, "pin the current network's"},
		{[]string{"trust"}, 3, "roamtun daemon is not running"},
		{[]string{"trust", "--bssid=nope", "X"}, 1, "bssid: bad MAC"},
		{[]string{"trust", "--verify", "host", "X"}, 1, "verify: want HOST:PORT"},
		{[]string{"trust", "a", "b"}, 2, "at most one SSID"},
		{[]string{"untrust"}, 3, "roamtun daemon is not running"},
		{[]string{"untrust", "HomeNet"}, 1, "10-home.toml:1"},
		{[]string{"untrust", "Nowhere"}, 0, "no rule trusts Nowhere"},
	}
	for _, s := range steps {
		code, out, stderr := runCLI(t, append(s.args[:1:1], append([]string{"--config", cfg}, s.args[1:]...)...)...)
		if code != s.code || !strings.Contains(out+stderr, s.has) {
			t.Errorf("%q: exit %d, out %q, err %q; want %d, %q", s.args, code, out, stderr, s.code, s.has)
		}
	}
	if out := explain("--ssid", "Cafe", "--bssid", "aa:11:22:33:44:55"); !strings.HasPrefix(out, "trust") {
		t.Errorf("Cafe pinned: %q", out)
	}
	if out := explain("--ssid", "Cafe", "--bssid", "aa:11:22:33:44:56"); !strings.HasPrefix(out, "tunnel") || !strings.Contains(out, "not pinned") {
		t.Errorf("Cafe evil twin: %q", out)
	}
	if out := explain("--ssid", "Work", "--security", "wpa3", "--gateway-mac", "00:11:22:33:44:55"); !strings.HasPrefix(out, "trust") {
		t.Errorf("Work: %q", out)
	}
	code, out, _ := runCLI(t, "networks", "--config", cfg)
	if code != 0 || !strings.Contains(out, "10-home.toml:1") || !strings.Contains(out, policy.ManagedFile+":") ||
		!strings.Contains(out, "default") || !strings.Contains(out, "ssid Cafe, bssid aa:11:22:33:44:55") {
		t.Errorf("networks: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "untrust", "--config", cfg, "Cafe"); code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("untrust Cafe: %d %q", code, out)
	}
	if out := explain("--ssid", "Cafe", "--bssid", "aa:11:22:33:44:55"); !strings.HasPrefix(out, "tunnel") {
		t.Errorf("Cafe after untrust: %q", out)
	}
	data, _ := os.ReadFile(managed)
	if !strings.HasPrefix(string(data), "# Managed by roamtun") || strings.Contains(string(data), "Cafe") {
		t.Errorf("managed file:\n%s", data)
	}
}
