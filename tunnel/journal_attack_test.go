package tunnel_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/lab"
)

// plant writes a journal entry by hand, as an attacker with some way into
// state_dir would, with the given owner and mode.
func plant(t *testing.T, dir string, seq int, kind, data string, uid int, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("%010d-%s.json", seq, kind))
	body := fmt.Sprintf(`{"seq":%d,"kind":%q,"data":%s,"pid":1,"time":"2026-01-01T00:00:00Z"}`+"\n", seq, kind, data)
	if err := os.WriteFile(path, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
	os.Chown(path, uid, uid)
	return path
}

// TestJournalReplayRefusesPlanted: `roamtun cleanup` (the real binary, in a
// namespace) replays only what roamtun itself makes. Entries naming main's
// default route, the "lookup main" rule, another nftables table (also one
// smuggled in with a newline) or a file other than resolv.conf are refused
// and kept; entries another user owns or may write, and symlinks, are not
// believed; a state_dir others may write, or a lock that is a symlink, is
// refused outright. Everything the attacker aimed at is still there.
func TestJournalReplayRefusesPlanted(t *testing.T) {
	l := lab.NewT(t)
	lab.RequireCommand(t, "nft")
	bin := roamtun(t)
	ns, err := l.Namespace("victim")
	if err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		{"ip", "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy1"},
		{"ip", "addr", "add", "10.77.0.2/24", "dev", "dummy0"},
		{"ip", "link", "set", "dummy0", "up"},
		{"ip", "route", "add", "default", "via", "10.77.0.1"},
		{"nft", "add", "table", "inet", "victim"},
	} {
		if out, err := ns.Run(argv...); err != nil {
			t.Fatalf("%v: %v %s", argv, err, out)
		}
	}
	dir := l.Dir()
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("precious\n"), 0o600)
	state := filepath.Join(dir, "state")
	jdir := filepath.Join(state, "journal")
	os.MkdirAll(jdir, 0o700)
	os.Chmod(state, 0o700)
	evil := filepath.Join(state, "resolv.conf.original-evil")
	os.WriteFile(evil, []byte("owned\n"), 0o600)
	cfg := filepath.Join(dir, "roamtun.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[daemon]\nstate_dir = %q\npolicy_dir = %q\ndns = \"file\"\n", state, dir)), 0o644)

	planted := []string{
		plant(t, jdir, 1, "route", `{"table":254,"dst":"0.0.0.0/0","gateway":"10.77.0.1"}`, 0, 0o600),
		plant(t, jdir, 2, "rule", `{"family":4,"priority":32766,"table":254}`, 0, 0o600),
		plant(t, jdir, 3, "nft", `{"table":"victim"}`, 0, 0o600),
		plant(t, jdir, 4, "nft", `{"table":"roamtun\ndelete table inet victim"}`, 0, 0o600),
		plant(t, jdir, 5, "dns", fmt.Sprintf(`{"backend":"file","link":"roamtun0","servers":["10.9.0.53"],"path":%q,"original":%q,"mode":3583,"uid":65534,"gid":65534}`, victim, evil), 0, 0o600),
		// Well-formed, but written by someone else, or writable by others:
		plant(t, jdir, 6, "route", `{"table":5250,"dst":"10.77.0.0/24","dev":"dummy0"}`, 65534, 0o600),
		plant(t, jdir, 7, "route", `{"table":5250,"dst":"10.77.0.0/24","dev":"dummy0"}`, 0, 0o666),
	}
	link := filepath.Join(jdir, "0000000008-rule.json")
	os.WriteFile(filepath.Join(dir, "elsewhere.json"), []byte(`{"seq":8,"kind":"rule","data":{"family":4,"priority":0,"table":255}}`), 0o600)
	os.Symlink(filepath.Join(dir, "elsewhere.json"), link)
	planted = append(planted, link)

	before := attackTargets(t, ns)
	out, err := exec.Command("ip", "netns", "exec", ns.Name(), bin, "cleanup", "--config", cfg).CombinedOutput()
	if err == nil {
		t.Errorf("cleanup with planted entries succeeded:\n%s", out)
	}
	for _, want := range []string{
		"route 0.0.0.0/0 via 10.77.0.1 table 254 is not in table 5250",
		"rule v4 pref 32766 lookup 254 is not one of roamtun's",
		`nftables table "victim" is not`,
		`nftables table "roamtun\ndelete table inet victim" is not`,
		"is not the resolv.conf roamtun manages",
		"owned by uid 65534",
		"writable by group or others (mode 0666)",
		"symlink",
	} {
		if !strings.Contains(string(out), want) && !strings.Contains(strings.ReplaceAll(string(out), `\n`, "\n"), want) {
			t.Errorf("cleanup output lacks %q:\n%s", want, out)
		}
	}
	if after := attackTargets(t, ns); after != before {
		t.Errorf("cleanup changed the system:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("victim file now %q", b)
	}
	if fi, _ := os.Stat(victim); fi.Mode().Perm() != 0o600 {
		t.Errorf("victim file mode now %v", fi.Mode())
	}
	for _, p := range planted {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("planted entry %s was not kept for inspection: %v", p, err)
		}
	}

	// A state_dir others may write is refused before anything is read.
	os.Chmod(state, 0o777)
	out, err = exec.Command(bin, "cleanup", "--config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), state+": writable by group or others") {
		t.Errorf("world-writable state_dir: %v\n%s", err, out)
	}
	os.Chmod(state, 0o700)

	// A lock that is a symlink is not followed (Open truncates the lock).
	lock := filepath.Join(state, "lock")
	os.Remove(lock)
	os.Symlink(victim, lock)
	out, err = exec.Command(bin, "cleanup", "--config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "lock") {
		t.Errorf("symlinked lock: %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("victim file through the lock symlink: now %q", b)
	}
}

// attackTargets is what the attack aims at in ns: routes, rules, nftables.
func attackTargets(t *testing.T, ns *lab.Namespace) string {
	t.Helper()
	var b strings.Builder
	for _, argv := range [][]string{{"ip", "route", "show", "table", "all"}, {"ip", "rule"}, {"ip", "-6", "rule"}, {"nft", "list", "tables"}} {
		out, err := ns.Run(argv...)
		if err != nil {
			t.Fatalf("%v: %v %s", argv, err, out)
		}
		b.WriteString(out)
	}
	return b.String()
}
