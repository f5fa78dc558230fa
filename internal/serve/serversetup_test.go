package serve

import (
	"net/netip"
	"strings"
	"testing"
)

// testKey is a real ed25519 public key line.
const testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFvVPGn0HGJfZ1m0BMcFkJTmWVBCJ85PLeWJ1VBUqCh0 laptop"

func TestServerSetupRecipe(t *testing.T) {
	key := testKey
	for _, far := range []string{"pppd", "roamtun"} {
		s := ServerSetup{FarEnd: far, PubKey: key, From: netip.MustParsePrefix("198.51.100.0/24"),
			Local: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2"), Host: "vpn.example.net", Port: 2222}
		r, err := s.Recipe()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"useradd --system", "usermod -p '*' ppp-link",
			`restrict,from="198.51.100.0/24",command="`, key,
			"[vpn.example.net]:2222 <the line of",
		} {
			if !strings.Contains(r, want) {
				t.Errorf("%s recipe lacks %q:\n%s", far, want, r)
			}
		}
		if far == "pppd" && (!strings.Contains(r, `command="/usr/sbin/pppd call roamtun"`) || !strings.Contains(r, "\nrequire-chap\n")) {
			t.Errorf("pppd recipe:\n%s", r)
		}
		if far == "roamtun" && (!strings.Contains(r, "setcap cap_net_admin+ep /usr/lib/roamtun/roamtun-serve") ||
			!strings.Contains(r, "install -m 0750 -o root -g roamtun-link /usr/bin/roamtun /usr/lib/roamtun/roamtun-serve") ||
			!strings.Contains(r, `command="/usr/lib/roamtun/roamtun-serve serve `) || strings.Contains(r, "setcap cap_net_admin+ep /usr/bin/roamtun")) {
			t.Errorf("roamtun recipe:\n%s", r)
		}
		// Two different secrets on the server, and the same two on the laptop.
		var secrets []string
		for _, line := range strings.Split(r, "\n") {
			if f := strings.Fields(line); len(f) >= 5 && f[0] == "printf" && strings.HasPrefix(f[4], `"`) {
				secrets = append(secrets, f[4])
			}
			if strings.HasPrefix(strings.TrimSpace(line), "echo ") && strings.Contains(line, ">>") {
				t.Errorf("%s: a file is written with echo (dash expands backslashes): %s", far, line)
			}
		}
		if len(secrets) != 4 || secrets[0] == secrets[1] || secrets[0] != secrets[2] || secrets[1] != secrets[3] {
			t.Errorf("%s: secrets server %q, laptop %q", far, secrets[:min(2, len(secrets))], secrets[min(2, len(secrets)):])
		}
		if r2, _ := s.Recipe(); r2 == r {
			t.Error("secrets are not fresh per run")
		}
	}
	for _, bad := range []ServerSetup{
		{FarEnd: "openvpn", PubKey: key, Local: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2")},
		{FarEnd: "pppd", PubKey: "not a key", Local: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2")},
		{FarEnd: "pppd", PubKey: key + "' ; rm -rf /", Local: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2")},
		{FarEnd: "pppd", PubKey: key, User: "Bad User", Local: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2")},
		{FarEnd: "pppd", PubKey: key, Local: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.1")},
		{FarEnd: "pppd", PubKey: key, ClientName: "a b", Local: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2")},
		{FarEnd: "pppd", PubKey: key, Host: "vpn'; reboot", Local: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2")},
		{FarEnd: "roamtun", PubKey: key, Roamtun: "/usr/bin/roam tun", Local: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2")},
		{FarEnd: "pppd", PubKey: key, HostKeyPub: "ssh-ed25519 AAAA\\n", Local: netip.MustParseAddr("10.9.0.1"), Peer: netip.MustParseAddr("10.9.0.2")},
	} {
		if _, err := bad.Recipe(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

// TestParsePubKeyRefusesInjection: a key line that could turn into more
// than one authorized_keys line, or carry options, is refused naming why;
// an honest one comes back canonical.
func TestParsePubKeyRefusesInjection(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{testKey + `\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFvVPGn0HGJfZ1m0BMcFkJTmWVBCJ85PLeWJ1VBUqCh0 other`, "backslash"},
		{testKey + "\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFvVPGn0HGJfZ1m0BMcFkJTmWVBCJ85PLeWJ1VBUqCh0 other", "control character"},
		{testKey + "\rx", "control character"},
		{testKey + "\tx", "control character"},
		{testKey + "\x00", "control character"},
		{testKey + "\u0085", "control character"},
		{testKey + " it's", "quote"},
		{`command="sh" ` + testKey, "quote"},
		{"no-pty " + testKey, "options"},
		{"ssh-ed25519 AAAAnotbase64!", "not an OpenSSH public key"},
		{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==", "not an OpenSSH public key"},
		{"", "not an OpenSSH public key"},
		{"\xff\xfe", "UTF-8"},
	} {
		if _, err := ParsePubKey(c.line); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.line, err, c.want)
		}
	}
	got, err := ParsePubKey(strings.Replace(testKey, " laptop", "   me@laptop  50%s", 1))
	if want := strings.Replace(testKey, "laptop", "me@laptop 50%s", 1); err != nil || got != want {
		t.Errorf("honest key: %q, %v; want %q", got, err, want)
	}
}
