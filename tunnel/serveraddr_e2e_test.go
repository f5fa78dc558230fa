package tunnel_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// TestPoisonedServerName: the laptop's resolver answering with the wrong
// address for the server's name (a café's DNS) does not keep the tunnel
// down: an address where the pinned host key once answered is remembered
// in state_dir and tried first, and a remembered address that no longer
// answers gives way to the next candidate on the next attempt; addresses
// pinned in the profile are dialed whatever DNS says.
func TestPoisonedServerName(t *testing.T) {
	s := startSSHLab(t, "")
	const name = "vpn.roamtun.test"
	cfg, _ := os.ReadFile(s.cfg)
	os.WriteFile(s.cfg, []byte(strings.Replace(string(cfg), "host = \""+lab.HomeIP+"\"", "host = \""+name+"\"", 1)), 0o644)
	kh, _ := os.ReadFile(s.sshd.KnownHosts)
	os.WriteFile(s.sshd.KnownHosts, []byte(strings.Replace(string(kh), "["+lab.HomeIP+"]", "["+name+"]", 1)), 0o644)
	hosts := filepath.Join(filepath.Dir(s.tri.Laptop.ResolvConf()), "hosts")
	os.MkdirAll(filepath.Dir(hosts), 0o755)
	resolve := func(addr string) { os.WriteFile(hosts, []byte(addr+" "+name+"\n"), 0o644) }
	book := filepath.Join(s.dir, "state", "addresses.json")
	session := func(what string) string {
		t.Helper()
		conn := s.connect(t, "home")
		if _, err := conn.WaitOutput(`up: roamtun0 10\.9\.0\.2 -> 10\.9\.0\.1`, 60*time.Second); err != nil {
			t.Fatalf("%s: %v\nstderr:\n%s", what, err, conn.Stderr())
		}
		conn.Cmd.Process.Signal(syscall.SIGTERM)
		if code, err := conn.Wait(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("%s: connect exit %d (%v); stderr:\n%s", what, code, err, conn.Stderr())
		}
		return conn.Stderr()
	}

	// Honest DNS: the host key answers at the home address, which is kept.
	resolve(lab.HomeIP)
	session("honest DNS")
	if b, err := os.ReadFile(book); err != nil || !strings.Contains(string(b), lab.HomeIP) {
		t.Fatalf("address book after a proven session: %q, %v", b, err)
	}
	// A poisoned answer (the café router, nothing listens): the remembered
	// address is dialed first.
	resolve(lab.CafeLaptopIP)
	if e := session("poisoned DNS"); strings.Contains(e, "trying another address") {
		t.Errorf("the remembered address was not dialed first:\n%s", e)
	}
	// A remembered address that no longer answers: the fresh answer is
	// tried next.
	os.WriteFile(book, []byte(`{"`+name+`": ["`+lab.CafeLaptopIP+`"]}`), 0o600)
	resolve(lab.HomeIP)
	if e := session("stale memory"); !strings.Contains(e, "trying another address") {
		t.Errorf("no second candidate was tried:\n%s", e)
	}
	// Addresses pinned in the profile: neither DNS nor memory is asked.
	os.Remove(book)
	resolve(lab.CafeLaptopIP)
	cfg, _ = os.ReadFile(s.cfg)
	os.WriteFile(s.cfg, append(cfg, []byte("addresses = [\""+lab.HomeIP+"\"]\n")...), 0o644)
	if e := session("pinned addresses"); strings.Contains(e, "trying another address") {
		t.Errorf("a pinned profile tried another address:\n%s", e)
	}
}
