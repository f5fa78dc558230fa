package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/watcher"
)

func TestTrustUntrust(t *testing.T) {
	dir := writeFiles(t, map[string]string{"10-user.toml": "[[rule]]\nname = \"u\"\nssid = \"UserNet\"\naction = \"trust\"\n"})
	user, _ := os.ReadFile(filepath.Join(dir, "10-user.toml"))
	ctx := context.Background()
	decide := func(ssid, bssid string) Decision {
		p, err := Load(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p.Decide(ctx, watcher.Network{Interface: "w", Kind: watcher.KindWifi, SSID: ssid, BSSID: bssid, Security: "wpa2"}, nil)
	}
	for _, s := range []TrustSpec{
		{SSID: "Home \"Net\"", BSSID: []string{"aa:bb:cc:dd:ee:ff"}},
		{SSID: "Cafe*"},
		{SSID: "\xff\xfe"},
		{SSID: "Home \"Net\"", BSSID: []string{"aa:bb:cc:dd:ee:01"}}, // replaces the first
	} {
		if err := Trust(dir, s, nil); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(filepath.Join(dir, ManagedFile))
	if !strings.HasPrefix(string(data), managedHeader) || strings.Count(string(data), "[[rule]]") != 3 {
		t.Fatalf("managed file:\n%s", data)
	}
	tests := []struct {
		ssid, bssid string
		action      Action
	}{
		{"Home \"Net\"", "aa:bb:cc:dd:ee:01", ActionTrust},
		{"Home \"Net\"", "aa:bb:cc:dd:ee:ff", ActionTunnel}, // replaced pin
		{"Cafe*", "", ActionTrust},
		{"CafeX", "", ActionTunnel}, // literal, not a glob
		{"\xff\xfe", "", ActionTrust},
	}
	for _, tt := range tests {
		if d := decide(tt.ssid, tt.bssid); d.Action != tt.action {
			t.Errorf("%q %s: %+v", tt.ssid, tt.bssid, d)
		}
	}
	if removed, err := Untrust(dir, "Cafe*", nil); !removed || err != nil {
		t.Fatalf("untrust: %v %v", removed, err)
	}
	if d := decide("Cafe*", ""); d.Action != ActionTunnel {
		t.Fatalf("after untrust: %+v", d)
	}
	removed, err := Untrust(dir, "UserNet", nil)
	if removed || err == nil || !strings.Contains(err.Error(), "10-user.toml:1") {
		t.Fatalf("untrust of a user rule: %v %v", removed, err)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, "10-user.toml")); string(now) != string(user) {
		t.Fatal("user file changed")
	}
	if err := Trust(dir, TrustSpec{SSID: "x", BSSID: []string{"nope"}}, nil); err == nil {
		t.Fatal("bad pin accepted")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Fatalf("stray files: %v", ents)
	}
}

func TestTrustRefusesUnmanaged(t *testing.T) {
	dir := writeFiles(t, map[string]string{ManagedFile: "[[rule]]\nssid = \"a\"\naction = \"trust\"\n"})
	if err := Trust(dir, TrustSpec{SSID: "b"}, nil); err == nil || !strings.Contains(err.Error(), "not managed") {
		t.Fatalf("err = %v", err)
	}
}

// TestTrustWired: a wired network is trusted by its gateway's MAC, next to
// Wi-Fi rules, and untrusted again; another router is not trusted.
func TestTrustWired(t *testing.T) {
	dir := writeFiles(t, map[string]string{})
	ctx := context.Background()
	decide := func(mac string) Decision {
		p, err := Load(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		return p.Decide(ctx, watcher.Network{Interface: "eth0", Kind: watcher.KindEthernet, GatewayMAC: mac}, nil)
	}
	if err := Trust(dir, TrustSpec{SSID: "Home"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := Trust(dir, TrustSpec{Interface: "ethernet"}, nil); err == nil {
		t.Error("wired trust without a gateway MAC accepted")
	}
	if err := Trust(dir, TrustSpec{Interface: "ethernet", GatewayMAC: []string{"00:11:22:33:44:55"}}, nil); err != nil {
		t.Fatal(err)
	}
	if d := decide("00:11:22:33:44:55"); d.Action != ActionTrust {
		t.Errorf("the office router: %+v", d)
	}
	if d := decide("00:11:22:33:44:56"); d.Action == ActionTrust {
		t.Errorf("another router trusted: %+v", d)
	}
	removed, err := UntrustWired(dir, "00:11:22:33:44:55", nil)
	if err != nil || !removed {
		t.Fatalf("untrust wired: %v %v", removed, err)
	}
	if d := decide("00:11:22:33:44:55"); d.Action == ActionTrust {
		t.Errorf("still trusted after untrust: %+v", d)
	}
	p, _ := Load(dir, nil)
	if len(p.Rules) != 1 || p.Rules[0].SSID != "Home" {
		t.Errorf("the Wi-Fi rule should stay: %+v", p.Rules)
	}
}
