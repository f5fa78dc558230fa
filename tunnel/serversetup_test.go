package tunnel

import (
	"net/netip"
	"strings"
	"testing"
)

func TestServerSetupRecipe(t *testing.T) {
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGf0o laptop"
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
		if far == "roamtun" && !strings.Contains(r, "setcap cap_net_admin+ep /usr/local/bin/roamtun") {
			t.Errorf("roamtun recipe:\n%s", r)
		}
		// Two different secrets on the server, and the same two on the laptop.
		var secrets []string
		for _, line := range strings.Split(r, "\n") {
			if f := strings.Fields(line); len(f) >= 4 && f[0] == "echo" && strings.HasPrefix(f[3], `"`) {
				secrets = append(secrets, f[3])
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
	} {
		if _, err := bad.Recipe(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
