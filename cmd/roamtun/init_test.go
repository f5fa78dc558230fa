package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/internal/tomlfile"
)

// TestInitUsage: bad PROFILE, --server and --host-key are usage errors
// (exit 2) naming the problem, before anything is dialed or written.
func TestInitUsage(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "roamtun.toml")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"init", "--config", cfg, "home"}, "--server USER@HOST[:PORT] is required"},
		{[]string{"init", "--config", cfg, "--server", "vpn.example.net", "home"}, "want USER@HOST[:PORT]"},
		{[]string{"init", "--config", cfg, "--server", "root@vpn.example.net:99999", "home"}, "bad port"},
		{[]string{"init", "--config", cfg, "--server", "root@vpn'; reboot", "home"}, "want USER@HOST[:PORT]"},
		{[]string{"init", "--config", cfg, "--server", "-oProxyCommand=x@vpn", "home"}, "want USER@HOST[:PORT]"},
		{[]string{"init", "--config", cfg, "--server", "root@vpn", "bad name"}, "PROFILE"},
		{[]string{"init", "--config", cfg, "--server", "root@vpn", "--host-key", "MD5:aa", "home"}, "want SHA256:"},
		{[]string{"init", "--config", cfg, "--server", "root@vpn", "--far-end", "openvpn", "home"}, "--far-end"},
	} {
		code, _, stderr := runCLI(t, c.args...)
		if code != exitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
	if _, err := os.Stat(cfg); err == nil {
		t.Error("a usage error wrote the config")
	}
}

// TestDropTable: --force removes exactly the profile's table; every other
// byte stays.
func TestDropTable(t *testing.T) {
	in := "# top\n[daemon]\nstate_dir = \"/x\"\n\n[profile.home] # old\nhost = \"a\"\n\n[profile.homeoffice]\nhost = \"b\"\n"
	want := "# top\n[daemon]\nstate_dir = \"/x\"\n\n[profile.homeoffice]\nhost = \"b\"\n"
	if got := string(dropTable([]byte(in), "profile.home")); got != want {
		t.Errorf("dropTable:\n%s\nwant:\n%s", got, want)
	}
	if got := tomlfile.Quote("a\"b\\c\n"); got != `"a\"b\\c\u000A"` {
		t.Errorf("tomlString: %s", got)
	}
}

// TestServerSetupWarnsWrongMachine: server-setup names both keys when the
// host key it would hand out is not the one the laptop connected to.
func TestServerSetupWarnsWrongMachine(t *testing.T) {
	dir := t.TempDir()
	laptop := filepath.Join(dir, "laptop.pub")
	os.WriteFile(laptop, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFvVPGn0HGJfZ1m0BMcFkJTmWVBCJ85PLeWJ1VBUqCh0 laptop\n"), 0o644)
	host := filepath.Join(dir, "host.pub")
	os.WriteFile(host, []byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFvVPGn0HGJfZ1m0BMcFkJTmWVBCJ85PLeWJ1VBUqCh0 host\n"), 0o644)
	const other = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	code, _, stderr := runCLI(t, "server-setup", "--host-key", host, "--expect-host-key", other, laptop)
	if code != 0 || !strings.Contains(stderr, "warning") || !strings.Contains(stderr, other) ||
		!strings.Contains(stderr, "SHA256:") || !strings.Contains(stderr, host) {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
	code, _, stderr = runCLI(t, "server-setup", "--host-key", host, "--host", "192.0.2.7", laptop)
	if code != 0 || !strings.Contains(stderr, "--host 192.0.2.7 is 192.0.2.7, not an address of this machine") {
		t.Errorf("--host elsewhere: exit %d, stderr:\n%s", code, stderr)
	}
	code, _, stderr = runCLI(t, "server-setup", "--host-key", host, "--host", "127.0.0.1", laptop)
	if code != 0 || strings.Contains(stderr, "warning") {
		t.Errorf("--host here: exit %d, stderr:\n%s", code, stderr)
	}
}
