package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseGood(t *testing.T) {
	c, err := Parse("r.toml", []byte(`
[daemon]
dns = "file"
sources = ["netlink"]

[profile.home]
host = "vpn.example.net"
user = "ppp-link"
identity_file = "/etc/roamtun/id_ed25519"
keepalive = "2s"
mtu = 1400
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Profile("home")
	if err != nil {
		t.Fatal(err)
	}
	if p.Port != 22 || p.MTU != 1400 || p.Keepalive != 2*time.Second || !p.RequireCHAP || p.Interface != "roamtun0" ||
		p.LocalName != "client" || p.RemoteName != "server" || p.IPv6 != IPv6Block || !p.Lockdown {
		t.Errorf("profile = %+v", p)
	}
	if c.Daemon.DNS != "file" || c.Daemon.PolicyDir != "/etc/roamtun/networks.d" || len(c.Daemon.Sources) != 1 {
		t.Errorf("daemon = %+v", c.Daemon)
	}
	if _, err := c.Profile("nope"); err == nil || !strings.Contains(err.Error(), "have: home") {
		t.Errorf("missing profile error = %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"unknown key", "[daemon]\ndns = \"file\"\nbogus = 1\n", []string{"r.toml:3: unknown key \"daemon.bogus\""}},
		{"unknown table", "[deamon]\ndns = \"file\"\n", []string{"r.toml:1: unknown key \"deamon\""}},
		{"unknown profile key", "[profile.x]\ndial_command=[\"cat\"]\n\n  mut = 1\n", []string{"r.toml:4: unknown key \"profile.x.mut\""}},
		{"syntax", "[daemon]\ndns = \n", []string{"r.toml:2:"}},
		{"type", "[daemon]\n\ndns = 3\n", []string{"r.toml:3:"}},
		{"bad values", "[profile.h]\nhost = \"h\"\nuser = \"u\"\nidentity_file = \"/k\"\nmtu = 10\nkeepalive = \"soon\"\nipv6 = \"yes\"\n",
			[]string{"r.toml:5: profile.h.mtu: must be 576..16384, not 10", "r.toml:6: profile.h.keepalive", "r.toml:7: profile.h.ipv6"}},
		{"missing host", "[profile.h]\nuser = \"u\"\n", []string{"r.toml:1: profile.h.host: is required", "identity_file: is required"}},
		{"relaxed host keys", "[profile.h]\ndial_command=[\"x\"]\nssh_options = [\"StrictHostKeyChecking=accept-new\"]\n", []string{"r.toml:3: profile.h.ssh_options"}},
		{"bad dns", "[daemon]\ndns = \"magic\"\n", []string{"r.toml:2: daemon.dns: must be one of"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("r.toml", []byte(tc.text))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
