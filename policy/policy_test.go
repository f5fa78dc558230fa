package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/watcher"
)

const homeFile = `[[rule]]
name = "home"
interface = "wifi"
ssid = "HomeNet"
bssid = ["aa:bb:cc:dd:ee:*"]
security = ["wpa2", "wpa3"]
action = "trust"

[[rule]]
name = "office"
ssid = "Office"
gateway_mac = ["00:11:22:33:44:55"]
action = "trust"

[[rule]]
name = "weird"
ssid_hex = "ff00fe"
security = ["wpa2"]
action = "trust"

[[rule]]
name = "hidden"
ssid = ""
security = ["wpa3"]
action = "trust"

[[rule]]
name = "legacy"
ssid = "Legacy"
action = "trust"
`

const laterFile = `[[rule]]
name = "cafes"
ssid = "Cafe-*"
action = "block"

[[rule]]
name = "office-late"
ssid = "Office"
action = "tunnel"
profile = "work"

[[rule]]
name = "old-wep"
ssid = "OldWEP"
security = ["wep"]
action = "trust"

[default]
action = "tunnel"
profile = "home"
`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var testProfiles = Profiles{"home": "", "work": ""}

func TestDecide(t *testing.T) {
	dir := writeFiles(t, map[string]string{"10-home.toml": homeFile, "20-later.toml": laterFile})
	p, err := Load(dir, testProfiles)
	if err != nil {
		t.Fatal(err)
	}
	wifi := func(ssid, bssid string, sec watcher.Security) watcher.Network {
		return watcher.Network{Interface: "wlan0", Kind: watcher.KindWifi, SSID: ssid, BSSID: bssid, Security: sec}
	}
	withGW := func(n watcher.Network, mac string) watcher.Network { n.GatewayMAC = mac; return n }
	eth := watcher.Network{Interface: "eth0", Kind: watcher.KindEthernet, SSID: "", GatewayMAC: "00:11:22:33:44:55"}
	tests := []struct {
		name      string
		n         watcher.Network
		action    Action
		rule      string
		profile   string
		reasonHas string
	}{
		{"home pinned", wifi("HomeNet", "aa:bb:cc:dd:ee:01", "wpa2"), ActionTrust, "home", "", `matched: interface wifi, ssid HomeNet, security wpa2, bssid aa:bb:cc:dd:ee:01 pinned`},
		{"evil twin BSSID", wifi("HomeNet", "66:66:66:66:66:66", "wpa2"), ActionTunnel, "default", "home", "BSSID 66:66:66:66:66:66 is not pinned"},
		{"evil twin open", wifi("HomeNet", "aa:bb:cc:dd:ee:01", "open"), ActionTunnel, "default", "home", "security is open, rule wants wpa2, wpa3"},
		{"home over ethernet", watcher.Network{Interface: "eth0", Kind: watcher.KindEthernet, SSID: "HomeNet", Security: "wpa2", BSSID: "aa:bb:cc:dd:ee:01"}, ActionTunnel, "default", "home", "no rule matched"},
		{"implicit security wpa2", wifi("Legacy", "", "wpa2"), ActionTrust, "legacy", "", "security wpa2"},
		{"implicit security open", wifi("Legacy", "", "open"), ActionTunnel, "default", "home", "never match open"},
		{"implicit security WEP", wifi("Legacy", "", "wep"), ActionTunnel, "default", "home", "security is wep"},
		{"implicit security wpa1", wifi("Legacy", "", "wpa"), ActionTunnel, "default", "home", "security is wpa"},
		{"explicit wep rule", wifi("OldWEP", "", "wep"), ActionTrust, "old-wep", "", "security wep"},
		{"gateway pin match", withGW(wifi("Office", "", "wpa3"), "00:11:22:33:44:55"), ActionTrust, "office", "", "gateway_mac 00:11:22:33:44:55 pinned"},
		{"gateway pin mismatch falls to later rule", withGW(wifi("Office", "", "wpa3"), "00:11:22:33:44:66"), ActionTunnel, "office-late", "work", "gateway MAC 00:11:22:33:44:66 is not pinned"},
		{"gateway unknown", wifi("Office", "", "wpa3"), ActionTunnel, "office-late", "work", "gateway MAC (unknown)"},
		{"glob block", wifi("Cafe-Central", "", "open"), ActionBlock, "cafes", "home", "rule \"cafes\""},
		{"glob not prefix", wifi("MyCafe-1", "", "open"), ActionTunnel, "default", "home", "default ("},
		{"non-UTF-8 ssid exact", wifi("\xff\x00\xfe", "", "wpa2"), ActionTrust, "weird", "", `ssid \xff\x00\xfe`},
		{"non-UTF-8 ssid differs", wifi("\xff\x00\xfd", "", "wpa2"), ActionTunnel, "default", "home", ""},
		{"hidden ssid", wifi("", "", "wpa3"), ActionTrust, "hidden", "", `(hidden)`},
		{"hidden ssid wpa2", wifi("", "", "wpa2"), ActionTunnel, "default", "home", ""},
		{"ethernet unmatched", eth, ActionTunnel, "default", "home", "20-later.toml:"},
		{"case matters", wifi("homenet", "aa:bb:cc:dd:ee:01", "wpa2"), ActionTunnel, "default", "home", ""},
		{"bssid upper-case normalised", wifi("HomeNet", "AA:BB:CC:DD:EE:02", "wpa3"), ActionTrust, "home", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(context.Background(), tt.n, nil)
			if d.Action != tt.action || d.Rule != tt.rule || d.Profile != tt.profile {
				t.Fatalf("got %s/%s/%s (%s), want %s/%s/%s", d.Action, d.Rule, d.Profile, d.Reason, tt.action, tt.rule, tt.profile)
			}
			if !strings.Contains(d.Reason, tt.reasonHas) {
				t.Fatalf("reason %q lacks %q", d.Reason, tt.reasonHas)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	n := watcher.Network{Interface: "wlan0", Kind: watcher.KindWifi, SSID: "X", Security: "wpa2"}
	tests := []struct {
		name     string
		files    map[string]string
		profiles Profiles
		action   Action
		profile  string
	}{
		{"no files, one profile", nil, Profiles{"home": ""}, ActionTunnel, "home"},
		{"no files, two profiles", nil, Profiles{"a": "", "b": ""}, ActionTunnel, ""},
		{"no files, unchecked", nil, nil, ActionTunnel, ""},
		{"default block", map[string]string{"a.toml": "[default]\naction = \"block\"\n"}, nil, ActionBlock, ""},
		{"default trust without profile", map[string]string{"a.toml": "[default]\naction = \"trust\"\n"}, Profiles{"p": ""}, ActionTrust, "p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Load(writeFiles(t, tt.files), tt.profiles)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide(context.Background(), n, nil)
			if d.Action != tt.action || d.Profile != tt.profile || d.Rule != DefaultRule {
				t.Fatalf("got %+v", d)
			}
		})
	}
	p, _ := Load(filepath.Join(t.TempDir(), "missing"), nil)
	if d := p.Decide(context.Background(), n, nil); d.Action != ActionTunnel || !strings.Contains(d.Reason, "built-in") {
		t.Fatalf("missing dir: %+v", d)
	}
}

func TestFirstMatchAcrossFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"20-b.toml": "[[rule]]\nname = \"b\"\nssid = \"Net\"\naction = \"block\"\n",
		"10-a.toml": "[[rule]]\nname = \"a\"\nssid = \"N*\"\naction = \"tunnel\"\n",
		"30-c.toml": "[[rule]]\nname = \"c\"\nssid = \"Net\"\naction = \"trust\"\n",
		"notes.txt": "[[rule]]\nbroken",
	})
	p, err := Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := p.Decide(context.Background(), watcher.Network{Interface: "w", Kind: watcher.KindWifi, SSID: "Net", Security: "wpa2"}, nil)
	if d.Rule != "a" || !strings.Contains(d.Reason, "10-a.toml:1") {
		t.Fatalf("got %+v", d)
	}
	if len(p.Files) != 3 || !strings.HasSuffix(p.Files[0], "10-a.toml") {
		t.Fatalf("files %v", p.Files)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		want string // substring of the error, after "FILE:"
	}{
		{"unknown key", "[[rule]]\nname = \"x\"\nssid = \"a\"\ncolour = \"red\"\naction = \"trust\"\n", "a.toml:4: "},
		{"bad action", "[[rule]]\nssid = \"a\"\naction = \"allow\"\n", `a.toml:3: action: must be trust, tunnel or block, not "allow"`},
		{"missing action", "[[rule]]\nssid = \"a\"\n", "a.toml:1: action: missing"},
		{"bad mac glob", "[[rule]]\nssid = \"a\"\nbssid = [\"zz:bb:cc:dd:ee:ff\"]\naction = \"trust\"\n", `a.toml:3: bssid: bad MAC address glob "zz:bb:cc:dd:ee:ff"`},
		{"short mac", "[[rule]]\nssid = \"a\"\ngateway_mac = [\"aa:bb\"]\naction = \"trust\"\n", `a.toml:3: gateway_mac: bad MAC`},
		{"bad security", "[[rule]]\nssid = \"a\"\nsecurity = [\"wpa4\"]\naction = \"trust\"\n", `a.toml:3: security: unknown security kind "wpa4"`},
		{"verify without port", "[[rule]]\nssid = \"a\"\nverify = \"10.0.0.1\"\naction = \"trust\"\n", `a.toml:3: verify: want HOST:PORT`},
		{"verify bad port", "[[rule]]\nssid = \"a\"\nverify = \"h:99999\"\naction = \"trust\"\n", `a.toml:3: verify: want HOST:PORT, not "h:99999": bad port`},
		{"verify on tunnel", "[[rule]]\nssid = \"a\"\nverify = \"h:22\"\naction = \"tunnel\"\n", `a.toml:3: verify: only a trust rule`},
		{"unknown profile", "[[rule]]\nssid = \"a\"\naction = \"tunnel\"\nprofile = \"nope\"\n", `a.toml:4: profile: no profile "nope"`},
		{"unknown default profile", "[default]\naction = \"tunnel\"\nprofile = \"nope\"\n", `a.toml:3: profile: no profile "nope"`},
		{"bad interface", "[[rule]]\ninterface = \"wlan\"\naction = \"tunnel\"\n", `a.toml:2: interface: must be wifi, ethernet or any`},
		{"bad glob", "[[rule]]\nssid = \"[a\"\naction = \"tunnel\"\n", `a.toml:2: ssid: bad glob`},
		{"second rule error line", "[[rule]]\nssid = \"a\"\naction = \"trust\"\n\n[[rule]]\nssid = \"b\"\naction = \"nah\"\n", `a.toml:7: action`},
		{"ssid and hex", "[[rule]]\nssid = \"a\"\nssid_hex = \"61\"\naction = \"trust\"\n", `a.toml:3: ssid_hex: give ssid or ssid_hex`},
		{"syntax", "[[rule]\n", "a.toml:1: syntax error: expected ']]'"},
		{"type", "[[rule]]\nssid = 5\naction = \"trust\"\n", "a.toml:2: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, map[string]string{"a.toml": tt.file})
			_, err := Load(dir, testProfiles)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, tt.want)) {
				t.Fatalf("error %q lacks %q", err, tt.want)
			}
		})
	}
}

func TestSecondDefault(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.toml": "[default]\naction = \"tunnel\"\n",
		"b.toml": "# x\n[default]\naction = \"block\"\n",
	})
	_, err := Load(dir, nil)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "b.toml")+":2: ") ||
		!strings.Contains(err.Error(), filepath.Join(dir, "a.toml")+":1") {
		t.Fatalf("err = %v", err)
	}
}

func TestNearMissesBounded(t *testing.T) {
	var src strings.Builder
	for i := range 8 {
		src.WriteString("[[rule]]\nssid = \"Home\"\nbssid = [\"aa:bb:cc:dd:ee:0" + string(rune('0'+i)) + "\"]\naction = \"trust\"\n")
	}
	p, err := Parse([]File{{Path: "n.toml", Data: []byte(src.String())}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := p.Decide(context.Background(), watcher.Network{Interface: "w", Kind: watcher.KindWifi, SSID: "Home", BSSID: "66:66:66:66:66:66", Security: "wpa2"}, nil)
	if d.Action != ActionTunnel || len(d.NearMisses) != maxNear+1 || !strings.Contains(d.Reason, "and 3 more") {
		t.Fatalf("got %+v", d)
	}
}
