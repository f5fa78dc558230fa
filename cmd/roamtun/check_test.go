package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/roamtun/roamtun/config"
)

// policySetup writes a config with one profile "home" whose policy_dir holds
// files; it returns the config path and the policy dir. The profile dials
// with "cat" and its secrets file holds both entries, so check is clean.
func policySetup(t *testing.T, files map[string]string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	pdir := filepath.Join(dir, "networks.d")
	if err := os.Mkdir(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, s := range files {
		writeFile(t, filepath.Join(pdir, n), s, 0o644)
	}
	writeFile(t, filepath.Join(dir, "chap-secrets"), "client server \"a\"\nserver client \"b\"\n", 0o600)
	cfg := filepath.Join(dir, "roamtun.toml")
	src := "[daemon]\npolicy_dir = \"" + pdir + "\"\n\n[profile.home]\ndial_command = [\"cat\"]\nsecrets = \"" + dir + "/chap-secrets\"\n"
	writeFile(t, cfg, src, 0o644)
	return cfg, pdir
}

func writeFile(t *testing.T, name, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(name, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

const cliHome = "[[rule]]\nname = \"home\"\nssid = \"HomeNet\"\nbssid = [\"aa:bb:cc:dd:ee:*\"]\nsecurity = [\"wpa2\"]\naction = \"trust\"\n\n[default]\naction = \"tunnel\"\nprofile = \"home\"\n"

func TestCheck(t *testing.T) {
	cfg, pdir := policySetup(t, map[string]string{"10-home.toml": cliHome})
	code, out, stderr := runCLI(t, "check", "--config", cfg)
	if code != 0 || stderr != "" || !strings.Contains(out, "OK: 1 profile(s), 1 rule(s) in 1 file(s)") {
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

// prefixes returns the "FILE:LINE: " (and "warning: ") starts of the lines
// of check's output, with dir replaced by "D".
func prefixes(out, dir string) []string {
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, "roamtun check: ") || l == "" {
			continue
		}
		l = strings.ReplaceAll(l, dir, "D")
		parts := strings.SplitN(l, ": ", 3)
		p := parts[0]
		if len(parts) > 1 && parts[1] == "warning" {
			p += ": warning"
		}
		got = append(got, p)
	}
	return got
}

// TestCheckEverythingInOneRun: mistakes of every kind, in the config and in
// several policy files, all come out of one run with their exact lines.
func TestCheckEverythingInOneRun(t *testing.T) {
	const goodPolicy = "[[rule]]\nname = \"home\"\nssid = \"HomeNet\"\naction = \"trust\"\n"
	tests := []struct {
		name   string
		config string            // %D% is the temp dir
		policy map[string]string // file → text
		want   []string          // FILE:LINE prefixes, D for the dir, in order
	}{
		{
			name: "four kinds of mistakes",
			config: `[daemon]
policy_dir = "%D%/networks.d"
dsn = "auto"

[profile.home]
dial_command = ["cat"]
secrets = "%D%/chap-secrets"
mtu = "1400"
keepalive = "soon"
`,
			policy: map[string]string{
				"10-a.toml": "[[rule]\nssid = \"x\"\n",
				"20-b.toml": "[[rule]]\nname = \"x\"\nssid = \"\"\"\nmulti\nline\"\"\"\nbssid = [\n  \"aa:bb:cc:dd:ee:ff\",\n  \"zz:bb:cc:dd:ee:ff\",\n]\naction = \"trust\"\n\n[[rule]]\nssid = \"[a\"\naction = \"tunnel\"\n",
			},
			want: []string{
				"D/roamtun.toml:3", // unknown key (dsn)
				"D/roamtun.toml:8", // wrong type (mtu)
				"D/roamtun.toml:9", // bad duration
				"D/networks.d/10-a.toml:1",
				"D/networks.d/20-b.toml:8",  // bad MAC glob, the element's own line (after a multi-line string)
				"D/networks.d/20-b.toml:13", // bad glob
			},
		},
		{
			name: "files the config names",
			config: `[daemon]
policy_dir = "%D%/nowhere"

[profile.home]
host = "vpn.example.net"
port = 2222
user = "ppp"
identity_file = "%D%/id_open"
known_hosts = "%D%/known_hosts"
secrets = "%D%/secrets-open"
name = "me"
`,
			want: []string{
				"D/roamtun.toml:2",  // policy_dir missing
				"D/roamtun.toml:8",  // identity_file readable by others
				"D/roamtun.toml:9",  // no [vpn.example.net]:2222 in known_hosts
				"D/roamtun.toml:10", // secrets readable by others
				"D/roamtun.toml:10", // no "me server" entry
				"D/roamtun.toml:10", // no "server me" entry
			},
		},
		{
			name:   "empty config",
			config: "",
			policy: map[string]string{"10-a.toml": goodPolicy},
			want:   []string{"D/roamtun.toml:1: warning", "D/roamtun.toml:1"}, // no profile; default policy_dir missing
		},
		{
			name:   "profile = 5",
			config: "profile = 5\n[daemon]\npolicy_dir = \"%D%/networks.d\"\n",
			policy: map[string]string{"10-a.toml": goodPolicy},
			want:   []string{"D/roamtun.toml:1"},
		},
		{
			name:   "wrong types everywhere",
			config: "[daemon]\npolicy_dir = \"%D%/networks.d\"\ndns = 1\nsources = \"dhcp\"\n[profile.home]\ndial_command = \"cat\"\nsecrets = [1]\nlockdown = \"yes\"\nport = true\n",
			policy: map[string]string{"10-a.toml": "rule = 1\ndefault = []\n"},
			want: []string{
				"D/roamtun.toml:3", "D/roamtun.toml:4", "D/roamtun.toml:6", "D/roamtun.toml:7", "D/roamtun.toml:8", "D/roamtun.toml:9",
				"D/networks.d/10-a.toml:1", "D/networks.d/10-a.toml:2",
			},
		},
		{
			name:   "deep nesting",
			config: "[daemon]\npolicy_dir = \"%D%/networks.d\"\n[profile.home]\ndial_command = [\"cat\"]\nsecrets = \"%D%/chap-secrets\"\n",
			policy: map[string]string{
				"10-a.toml": "\n[[rule]]\nssid = " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\naction = \"block\"\n",
				"20-b.toml": "x = " + strings.Repeat("{a=", 10000) + "1" + strings.Repeat("}", 10000) + "\n",
			},
			want: []string{"D/networks.d/10-a.toml:3", "D/networks.d/20-b.toml:1"},
		},
		{
			name:   "warnings only",
			config: "[daemon]\npolicy_dir = \"%D%/networks.d\"\n[profile.home]\ndial_command = [\"cat\"]\nsecrets = \"%D%/chap-secrets\"\n",
			policy: map[string]string{
				"10-a.toml": "[[rule]]\nname = \"open\"\ninterface = \"wifi\"\nsecurity = [\"none\"]\naction = \"trust\"\n\n" +
					"[[rule]]\nname = \"all\"\naction = \"trust\"\n\n" +
					"[[rule]]\nname = \"tunnel\"\nssid = \"Cafe\"\naction = \"tunnel\"\n\n" +
					"[[rule]]\nname = \"again\"\nssid = \"Cafe\"\naction = \"block\"\n\n" +
					"[[rule]]\nname = \"catch\"\naction = \"block\"\n\n[[rule]]\nssid = \"never\"\naction = \"tunnel\"\n",
			},
			want: []string{
				"D/networks.d/10-a.toml:1: warning",  // wifi + none: never
				"D/networks.d/10-a.toml:7: warning",  // trusts every protected network
				"D/networks.d/10-a.toml:16: warning", // shadowed by "tunnel"
				"D/networks.d/10-a.toml:21: warning", // catch-all
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat(config.DefaultPolicyDir); tt.config == "" && err == nil {
				t.Skip("the default policy_dir exists on this machine")
			}
			dir := t.TempDir()
			os.Mkdir(filepath.Join(dir, "networks.d"), 0o755)
			for n, s := range tt.policy {
				writeFile(t, filepath.Join(dir, "networks.d", n), s, 0o644)
			}
			writeFile(t, filepath.Join(dir, "chap-secrets"), "client server a\nserver client b\n", 0o600)
			writeFile(t, filepath.Join(dir, "secrets-open"), "client server a\nserver client b\n", 0o644)
			writeFile(t, filepath.Join(dir, "id_open"), "key", 0o644)
			writeFile(t, filepath.Join(dir, "known_hosts"), knownHostsLine(t, "vpn.example.net:22"), 0o644)
			fakePATH(t, "ssh", "cat")
			cfg := filepath.Join(dir, "roamtun.toml")
			writeFile(t, cfg, strings.ReplaceAll(tt.config, "%D%", dir), 0o644)
			code, out, stderr := runCLI(t, "check", "--config", cfg)
			got := prefixes(stderr, dir)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got\n  %s\nwant\n  %s\nstderr:\n%s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "), stderr)
			}
			wantCode := 0
			if hasError(tt.want) {
				wantCode = 1
			}
			if code != wantCode {
				t.Errorf("exit %d, want %d (out %q)", code, wantCode, out)
			}

			// --json: the same problems, as objects.
			code, out, _ = runCLI(t, "check", "--json", "--config", cfg)
			var list []struct {
				File, Severity, Message string
				Line                    int
			}
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				t.Fatalf("--json: %v in %q", err, out)
			}
			if len(list) != len(tt.want) || code != wantCode {
				t.Fatalf("--json: exit %d, %d problems, want %d: %s", code, len(list), len(tt.want), out)
			}
			for i, p := range list {
				if p.Line < 1 || p.Message == "" || (p.Severity == "warning") != strings.HasSuffix(tt.want[i], ": warning") {
					t.Errorf("--json [%d] = %+v", i, p)
				}
			}
		})
	}
}

func hasError(want []string) bool {
	for _, w := range want {
		if !strings.HasSuffix(w, ": warning") {
			return true
		}
	}
	return false
}

// fakePATH puts a PATH holding only the named (do-nothing) programs.
func fakePATH(t *testing.T, names ...string) {
	bin := t.TempDir()
	for _, n := range names {
		writeFile(t, filepath.Join(bin, n), "#!/bin/sh\n", 0o755)
	}
	t.Setenv("PATH", bin)
}

// knownHostsLine pins a fresh ed25519 key for addr ("host:port").
func knownHostsLine(t *testing.T, addr string) string {
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return knownhosts.Line([]string{addr}, k) + "\n"
}

// TestShippedExamplesCheck: the example config and policy in dist/ are valid
// (with the files they name made up, and addresses uncommented).
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
	src = strings.Replace(src, "# addresses", "addresses", 1)
	src = strings.ReplaceAll(src, `"/etc/roamtun/`, `"`+dir+`/`)
	writeFile(t, filepath.Join(dir, "id_ed25519"), "key", 0o600)
	writeFile(t, filepath.Join(dir, "known_hosts"), knownHostsLine(t, "vpn.example.net:22"), 0o644)
	writeFile(t, filepath.Join(dir, "chap-secrets"), "client server a\nserver client b\n", 0o600)
	fakePATH(t, "ssh")
	path := filepath.Join(dir, "roamtun.toml")
	os.WriteFile(path, []byte(src), 0o644)
	if !strings.Contains(src, "\naddresses") {
		t.Fatal("the example documents no addresses key")
	}
	var out, errb strings.Builder
	e := &env{ctx: context.Background(), stdout: &out, stderr: &errb, log: slog.New(slog.DiscardHandler)}
	if code := run(e, []string{"check", "--config", path}); code != 0 || errb.Len() != 0 {
		t.Fatalf("check of the shipped examples: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
