package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// policySetup writes a config with one profile "home" whose policy_dir holds
// files; it returns the config path and the policy dir.
func policySetup(t *testing.T, files map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	pdir := filepath.Join(dir, "networks.d")
	if err := os.Mkdir(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(pdir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "roamtun.toml")
	src := "[daemon]\npolicy_dir = \"" + pdir + "\"\n\n[profile.home]\ndial_command = [\"cat\"]\nsecrets = \"" + dir + "/none\"\n"
	if err := os.WriteFile(cfg, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg, pdir
}

const cliHome = "[[rule]]\nname = \"home\"\nssid = \"HomeNet\"\nbssid = [\"aa:bb:cc:dd:ee:*\"]\nsecurity = [\"wpa2\"]\naction = \"trust\"\n\n[default]\naction = \"tunnel\"\nprofile = \"home\"\n"

func TestCheck(t *testing.T) {
	cfg, pdir := policySetup(t, map[string]string{"10-home.toml": cliHome})
	code, out, stderr := runCLI(t, "check", "--config", cfg)
	if code != 0 || !strings.Contains(out, "OK: 1 profile(s), 1 rule(s) in 1 file(s)") {
		t.Fatalf("good: exit %d, out %q, err %q", code, out, stderr)
	}
	bad := "[[rule]]\nssid = \"x\"\naction = \"allow\"\n\n[[rule]]\nssid = \"y\"\nprofile = \"work\"\naction = \"tunnel\"\n"
	os.WriteFile(filepath.Join(pdir, "20-bad.toml"), []byte(bad), 0o644)
	code, out, stderr = runCLI(t, "check", "--config", cfg)
	f := filepath.Join(pdir, "20-bad.toml")
	if code != 1 || out != "" || !strings.Contains(stderr, f+":3: action:") || !strings.Contains(stderr, f+":7: profile: no profile \"work\"") {
		t.Fatalf("bad policy: exit %d, out %q, err %q", code, out, stderr)
	}
	os.WriteFile(cfg, []byte("[daemon]\nbogus = 1\n"), 0o644)
	code, _, stderr = runCLI(t, "check", "--config", cfg)
	if code != 1 || !strings.Contains(stderr, cfg+":2: ") {
		t.Fatalf("bad config: exit %d, err %q", code, stderr)
	}
	if code, _, _ := runCLI(t, "check", "--config", cfg, "extra"); code != 2 {
		t.Fatalf("extra argument: exit %d", code)
	}
}

// TestShippedExamplesCheck: the example config and policy in dist/ are valid.
func TestShippedExamplesCheck(t *testing.T) {
	dir := t.TempDir()
	cfg, err := os.ReadFile("../../dist/etc/roamtun/roamtun.toml")
	if err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "networks.d")
	os.MkdirAll(pol, 0o755)
	b, _ := os.ReadFile("../../dist/etc/roamtun/networks.d/10-home.toml")
	os.WriteFile(filepath.Join(pol, "10-home.toml"), b, 0o644)
	src := strings.Replace(string(cfg), `policy_dir   = "/etc/roamtun/networks.d"`, `policy_dir   = "`+pol+`"`, 1)
	path := filepath.Join(dir, "roamtun.toml")
	os.WriteFile(path, []byte(src), 0o644)
	var out, errb strings.Builder
	e := &env{ctx: context.Background(), stdout: &out, stderr: &errb, log: slog.New(slog.DiscardHandler)}
	if code := run(e, []string{"check", "--config", path}); code != 0 {
		t.Fatalf("check of the shipped examples: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
