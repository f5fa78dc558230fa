package tunnel_test

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/internal/serve"

	"github.com/roamtun/roamtun/lab"
)

// TestInitFromNothingToTunnel: `roamtun init` on the laptop, from no key
// and no profile, sets up a real server over ssh as its root (server-setup
// --apply --json in the server's private /etc), writes the laptop's half
// and dials once through it. A wrong --host-key writes nothing; a second
// laptop key gets the next peer address; --list shows both; --revoke
// takes one away and its login then fails. The host's own accounts are
// never touched.
func TestInitFromNothingToTunnel(t *testing.T) {
	l := lab.NewT(t)
	for _, c := range []string{"sshd", "ssh", "setcap", "useradd", "install"} {
		lab.RequireCommand(t, c)
	}
	bin := roamtun(t)
	tri, err := l.Triangle()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := l.StartAdminSSHD(tri.Home, lab.HomeIP, 2222)
	if err != nil {
		t.Fatal(err)
	}
	hostFP, err := serve.Fingerprint(srv.HostKeyPub)
	if err != nil {
		t.Fatal(err)
	}
	dir := l.Dir()
	laptop := filepath.Join(dir, "laptop")
	os.MkdirAll(filepath.Join(laptop, "networks.d"), 0o755)
	original := fmt.Sprintf("# my config, kept byte for byte\n[daemon]\nstate_dir = %q\npolicy_dir = %q   # trailing\n",
		filepath.Join(dir, "state"), filepath.Join(laptop, "networks.d"))
	cfg := writeFile(t, laptop, "roamtun.toml", original, 0o644)
	const link = "rt-init-link"
	initCmd := func(profile, hostKey string, extra ...string) (string, error) {
		argv := append([]string{bin, "init", "--config", cfg, "--server", "root@" + srv.Addr, "--host-key", hostKey,
			"--admin-identity", srv.Key, "--link-user", link, "--remote-roamtun", bin,
			"--serve-binary", filepath.Join(dir, "libexec", "roamtun-serve")}, extra...)
		out, err := tri.Laptop.Run(append(argv, profile)...)
		t.Logf("init %s:\n%s", profile, out)
		return out, err
	}

	// A wrong host key: refused naming both, nothing written anywhere.
	wrong := "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	out, err := initCmd("home", wrong)
	if err == nil || !strings.Contains(out, "host key mismatch") || !strings.Contains(out, hostFP) || !strings.Contains(out, wrong) {
		t.Fatalf("wrong --host-key: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(laptop); len(ents) != 2 {
		t.Errorf("after a refused host key the laptop dir holds %d entries, want 2 (config, networks.d)", len(ents))
	}
	if _, err := os.Stat(filepath.Join(srv.Etc, "roamtun", "server-pool.json")); err == nil {
		t.Error("after a refused host key the server has a pool")
	}

	// From nothing to a tunnel.
	out, err = initCmd("home", hostFP)
	if err != nil {
		t.Fatalf("init home: %v", err)
	}
	for _, want := range []string{"made the key", "check: OK: 1 profile(s)", "dial: up: roamtun0 10.9.0.2 -> 10.9.0.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("init home: no %q in its output", want)
		}
	}
	got, _ := os.ReadFile(cfg)
	if !strings.HasPrefix(string(got), original) || !strings.Contains(string(got), "[profile.home]") {
		t.Errorf("config after init:\n%s", got)
	}
	for name, mode := range map[string]os.FileMode{"id_ed25519_home": 0o600, "known_hosts": 0o644, "chap-secrets": 0o600} {
		if fi, err := os.Stat(filepath.Join(laptop, name)); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v, want mode %04o", name, err, mode)
		}
	}
	// The same profile again: refused without --force.
	if out, err := initCmd("home", hostFP, "--no-dial"); err == nil || !strings.Contains(out, "--force") {
		t.Errorf("init home twice: %v", err)
	}

	// A second laptop key: its own address.
	out, err = initCmd("work", hostFP)
	if err != nil || !strings.Contains(out, "dial: up: roamtun0 10.9.0.3 -> 10.9.0.1") {
		t.Fatalf("init work: %v", err)
	}
	kh := filepath.Join(laptop, "known_hosts")
	admin := func(args ...string) (string, error) {
		return tri.Laptop.Run(append(srv.SSHArgs(kh), append([]string{bin, "server-setup"}, args...)...)...)
	}
	fpHome := keyFP(t, filepath.Join(laptop, "id_ed25519_home.pub"))
	fpWork := keyFP(t, filepath.Join(laptop, "id_ed25519_work.pub"))
	list, err := admin("--list")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("--list:\n%s", list)
	for _, want := range []string{fpHome + "  10.9.0.2", fpWork + "  10.9.0.3", "roamtun-home@", "roamtun-work@"} {
		if !strings.Contains(list, want) {
			t.Errorf("--list lacks %q", want)
		}
	}

	// Revoked: its login fails, the other's still works.
	if out, err := admin("--revoke", fpHome); err != nil || !strings.Contains(out, "revoked "+fpHome) {
		t.Fatalf("--revoke: %v\n%s", err, out)
	}
	list, _ = admin("--list")
	if strings.Contains(list, fpHome) || !strings.Contains(list, fpWork) {
		t.Errorf("--list after revoking home:\n%s", list)
	}
	ak, _ := os.ReadFile(filepath.Join(srv.Home, link, ".ssh", "authorized_keys"))
	if n := strings.Count(string(ak), "\n"); n != 1 || !strings.Contains(string(ak), "--peer 10.9.0.3") {
		t.Errorf("authorized_keys after revoking home:\n%s", ak)
	}
	conn, err := tri.Laptop.StartProc(nil, bin, "connect", "--once", "--config", cfg, "home")
	if err != nil {
		t.Fatal(err)
	}
	if code, err := conn.Wait(60 * time.Second); err != nil || code == 0 || !strings.Contains(conn.Stderr(), "refused") {
		t.Errorf("connect with the revoked key: exit %d (%v)\n%s", code, err, conn.Stderr())
	}
	conn, err = tri.Laptop.StartProc(nil, bin, "connect", "--once", "--config", cfg, "work")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.WaitOutput(`up: roamtun0 10\.9\.0\.3 -> 10\.9\.0\.1`, 60*time.Second); err != nil {
		t.Error(err)
	}
	if _, err := user.Lookup(link); err == nil {
		t.Error("the link account leaked into the host's /etc")
	}
}

func keyFP(t *testing.T, path string) string {
	t.Helper()
	k, err := serve.ReadPubKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fp, err := serve.Fingerprint(k)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}
