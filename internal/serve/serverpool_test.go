package serve

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestPoolAllocates: every laptop gets its own peer address, the lowest
// free one, kept across a save and a reopen; a freed one is reused; a
// wanted one that is taken is refused naming who has it.
func TestPoolAllocates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pool.json")
	local := netip.MustParseAddr("10.9.0.1")
	p, err := OpenPool(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"10.9.0.2", "10.9.0.3"} {
		a, err := p.Allocate(local, netip.Addr{})
		if err != nil || a.String() != want {
			t.Fatalf("allocation %d: %v, %v; want %s", i, a, err, want)
		}
		p.Laptops = append(p.Laptops, PoolEntry{Fingerprint: "SHA256:k" + want, Peer: a, Local: local})
	}
	if err := p.Save(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("pool file: %v %v, want mode 0600", fi, err)
	}
	p, err = OpenPool(path)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if len(p.Laptops) != 2 || p.Find("SHA256:k10.9.0.3") != 1 || p.Find("SHA256:nope") != -1 {
		t.Fatalf("reopened pool: %+v", p.Laptops)
	}
	if _, err := p.Allocate(local, netip.MustParseAddr("10.9.0.2")); err == nil || !strings.Contains(err.Error(), "SHA256:k10.9.0.2") {
		t.Errorf("a taken address: %v", err)
	}
	p.Laptops = p.Laptops[1:]
	if a, _ := p.Allocate(local, netip.Addr{}); a.String() != "10.9.0.2" {
		t.Errorf("after freeing 10.9.0.2 got %s", a)
	}
	if p.Find(testKey) != -1 {
		t.Error("an unknown key found")
	}
}

// TestRevokeRemovesOnlyItsLines: the laptop's two secrets lines go, the
// other laptop's and the comments stay byte for byte, with the mode and
// (as root) the group.
func TestRevokeRemovesOnlyItsLines(t *testing.T) {
	dir := t.TempDir()
	secrets := filepath.Join(dir, "chap-secrets")
	other := "laptop-b server \"sB\" 10.9.0.3\nserver laptop-b \"sB2\" *\n"
	os.WriteFile(secrets, []byte("# header\nlaptop-a server \"sA\" 10.9.0.2\n"+other+"server laptop-a \"sA2\" *\n"), 0o640)
	const gid = 4242 // a group other than ours, which only root can give
	owned := os.Getuid() == 0 && os.Chown(secrets, 0, gid) == nil
	peers := filepath.Join(dir, "roamtun-a")
	os.WriteFile(peers, []byte("notty\n"), 0o600)
	e := PoolEntry{Fingerprint: "SHA256:a", Key: testKey, User: "no-such-user-rt", ClientName: "laptop-a",
		ServerName: "server", Secrets: secrets, PeersFile: peers}
	if err := Revoke(e); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(secrets)
	if string(got) != "# header\n"+other {
		t.Errorf("secrets after revoke:\n%s", got)
	}
	if fi, _ := os.Stat(secrets); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	} else if st := fi.Sys().(*syscall.Stat_t); owned && st.Gid != gid {
		t.Errorf("group %d, want %d", st.Gid, gid)
	}
	if _, err := os.Stat(peers); !os.IsNotExist(err) {
		t.Error("peers file left")
	}
	if err := Revoke(e); err != nil {
		t.Errorf("revoking again (all gone already): %v", err)
	}
}
