package config

import (
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/internal/tomlfile"
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
		p.LocalName != "client" || p.RemoteName != "server" || p.IPv6 != IPv6Block || !p.Lockdown || p.Engine != EngineBuiltin {
		t.Errorf("profile = %+v", p)
	}
	if c.Daemon.DNS != "file" || c.Daemon.PolicyDir != "/etc/roamtun/networks.d" || len(c.Daemon.Sources) != 1 {
		t.Errorf("daemon = %+v", c.Daemon)
	}
	if c.Daemon.PortalProbe != DefaultPortalProbe || c.Daemon.PortalProbeAnswer != DefaultPortalAnswer {
		t.Errorf("portal probe defaults: %+v", c.Daemon)
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
		{"bad engine", "[profile.h]\ndial_command=[\"x\"]\n\nengine = \"ppp\"\n", []string{`r.toml:4: profile.h.engine: must be "builtin" or "pppd", not "ppp"`}},
		{"pppd with ipv6", "[profile.h]\ndial_command=[\"x\"]\nengine = \"pppd\"\nipv6 = \"tunnel\"\n", []string{`r.toml:3: profile.h.engine: "pppd" cannot be used with ipv6 = "tunnel"`}},
		{"https portal probe", "[daemon]\nsources = [\"netlink\", \"portal\"]\n\nportal_probe = \"https://example.org/\"\n",
			[]string{`r.toml:4: daemon.portal_probe: "https://example.org/": must be a plain http:// URL`}},
		{"unknown source", "[daemon]\nsources = [\"netlink\", \"portals\"]\n", []string{`r.toml:2: daemon.sources: unknown source "portals" (known: nl80211, networkmanager, netlink, dhcp, portal)`}},
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

func TestAddresses(t *testing.T) {
	c, err := Parse("r.toml", []byte("[profile.h]\ndial_command = [\"x\"]\naddresses = [\"192.0.2.10\", \"2001:db8::10\", \"::ffff:192.0.2.11\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Profiles["h"].Addresses
	if len(got) != 3 || got[0].String() != "192.0.2.10" || got[1].String() != "2001:db8::10" || got[2].String() != "192.0.2.11" {
		t.Fatalf("addresses = %v", got)
	}
	c, _ = Parse("r.toml", []byte("[profile.h]\ndial_command = [\"x\"]\n"))
	if c.Profiles["h"].Addresses != nil {
		t.Fatalf("no addresses: %v", c.Profiles["h"].Addresses)
	}
	_, err = Parse("r.toml", []byte("[profile.h]\ndial_command = [\"x\"]\naddresses = [\n  \"192.0.2.10\",\n  \"vpn.example.net\",\n  \"10.0.0.0/8\",\n  \"0.0.0.0\",\n  \"ff02::1\",\n  \"fe80::1%eth0\",\n  7,\n]\n"))
	want := []string{
		`r.toml:5: profile.h.addresses: not an IP address: "vpn.example.net"`,
		`r.toml:6: profile.h.addresses: not an IP address: "10.0.0.0/8"`,
		`r.toml:7: profile.h.addresses: "0.0.0.0" is not a host's address`,
		`r.toml:8: profile.h.addresses: "ff02::1" is not a host's address`,
		`r.toml:9: profile.h.addresses: "fe80::1%eth0": an address with a zone cannot be pinned`,
		`r.toml:10: profile.h.addresses: must be a string, not an integer`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("error:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	if _, err := Parse("r.toml", []byte("[profile.h]\ndial_command = [\"x\"]\naddresses = []\n")); err == nil || !strings.Contains(err.Error(), "r.toml:3: profile.h.addresses: empty list") {
		t.Fatalf("empty: %v", err)
	}
}

// TestBadInput: input of every wrong shape gets FILE:LINE errors, never a
// panic, and each is reported once (no echo from a value already rejected).
func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string // the whole list, in order
	}{
		{"profile = 5", "profile = 5\n", []string{"r.toml:1: profile: must be a table, not an integer (write it as [profile.NAME] or a {…} inline table)"}},
		{"profile.x = 5", "[profile]\nx = 5\n", []string{"r.toml:2: profile.x: must be a table, not an integer (write it as [profile.x] or a {…} inline table)"}},
		{"daemon = []", "daemon = []\n", []string{"r.toml:1: daemon: must be a table, not an array (write it as [daemon] or a {…} inline table)"}},
		{"wrong types everywhere", "[daemon]\ndns = 1\nsources = \"x\"\nportal_window = 5\n[profile.h]\ndial_command = \"cat\"\nport = \"22\"\nmtu = 1.5\nrequire_chap = \"yes\"\nssh_options = [1, \"A=b\"]\n",
			[]string{
				"r.toml:2: daemon.dns: must be a string, not an integer",
				"r.toml:3: daemon.sources: must be an array, not a string",
				"r.toml:4: daemon.portal_window: must be a string, not an integer",
				"r.toml:6: profile.h.dial_command: must be an array, not a string",
				"r.toml:7: profile.h.port: must be an integer, not a string",
				"r.toml:8: profile.h.mtu: must be an integer, not a float",
				"r.toml:9: profile.h.require_chap: must be a boolean, not a string",
				"r.toml:10: profile.h.ssh_options: must be a string, not an integer",
			}},
		{"huge int", "[profile.h]\ndial_command = [\"x\"]\nport = 99999999999999999999\n", []string{"r.toml:3: integer 99999999999999999999: out of range"}},
		{"int past int32", "[profile.h]\ndial_command = [\"x\"]\nmtu = 9999999999\n", []string{"r.toml:3: profile.h.mtu: 9999999999 is out of range"}},
		{"deep arrays", "[daemon]\nsources = " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\n", []string{"r.toml:2: arrays and inline tables nested more than 64 deep"}},
		{"deep tables", "[daemon]\nsources = " + strings.Repeat("{a=", 10000) + "1" + strings.Repeat("}", 10000) + "\n", []string{"r.toml:2: arrays and inline tables nested more than 64 deep"}},
		{"too deep for the parser", "x = " + strings.Repeat("[", 20000) + "\n", []string{"r.toml:1: syntax error: arrays and inline tables are nested more than the maximum of 10000 levels deep"}},
		{"syntax error after a profile", "[profile.h]\nhost = \"h\"\n[profile.h2\nuser = \"u\"\n", []string{"r.toml:3: syntax error: expected ']' to close table name"}},
		{"key twice", "[daemon]\ndns = \"file\"\ndns = \"auto\"\n", []string{"r.toml:3: dns is defined twice: first on line 2"}},
		{"multi-line string then a bad key", "[profile.h]\nremote_command = \"\"\"\npppd\nnotty\"\"\"\ndial_command = [\"x\"]\nmtux = 1\n", []string{`r.toml:6: unknown key "profile.h.mtux" (did you mean "mtu"?)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("r.toml", []byte(tc.text))
			if err == nil {
				t.Fatal("no error")
			}
			if got := err.Error(); got != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", got, strings.Join(tc.want, "\n"))
			}
		})
	}
	c, err := Parse("r.toml", nil)
	if err != nil || len(c.Profiles) != 0 {
		t.Fatalf("empty config: %v %+v", err, c)
	}
	if p := Check(c); len(p) == 0 || !strings.HasPrefix(p[0].Error(), "r.toml:1: warning: no [profile.NAME] table") {
		t.Fatalf("empty config, Check: %v", p)
	}
}

// FuzzParse: any input gives a config or errors that each name the file and
// a line; never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte("[daemon]\ndns = \"file\"\n[profile.h]\nhost = \"h\"\nuser = \"u\"\nidentity_file = \"/k\"\naddresses = [\"192.0.2.1\"]\n"))
	f.Add([]byte("profile = 5\n"))
	f.Add([]byte("[profile.x]\ndial_command = [\"cat\"]\nkeepalive = \"soon\"\nssh_options = [\"a\"]\n"))
	f.Add([]byte("a = [[{b = 1}]]\n[a.b]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err == nil {
			if c == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		for _, e := range err.(tomlfile.Errors) {
			if !strings.HasPrefix(e.Error(), "fuzz.toml:") || e.(*tomlfile.Problem).Line < 1 {
				t.Fatalf("error without FILE:LINE: %q", e)
			}
		}
	})
}

// TestPortalProbe: the portal source is opt-in; its probe URL and answer
// are configurable, "" disables it.
func TestPortalProbe(t *testing.T) {
	c, err := Parse("r.toml", []byte("[daemon]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Daemon.Sources {
		if s == "portal" {
			t.Errorf("portal is in the default sources: %v", c.Daemon.Sources)
		}
	}
	c, err = Parse("r.toml", []byte("[daemon]\nsources = [\"netlink\", \"dhcp\", \"portal\"]\nportal_probe = \"http://192.0.2.80/generate_204\"\nportal_probe_answer = \"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Daemon.PortalProbe != "http://192.0.2.80/generate_204" || c.Daemon.PortalProbeAnswer != "" || len(c.Daemon.Sources) != 3 {
		t.Errorf("%+v", c.Daemon)
	}
	c, err = Parse("r.toml", []byte("[daemon]\nportal_probe = \"\"\n"))
	if err != nil || c.Daemon.PortalProbe != "" {
		t.Errorf("disabled: %v %+v", err, c.Daemon)
	}
}
