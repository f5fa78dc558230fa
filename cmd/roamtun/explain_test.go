package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestExplain(t *testing.T) {
	cfg, _ := policySetup(t, map[string]string{"10-home.toml": cliHome})
	tests := []struct {
		args   []string
		code   int
		action string
		rule   string
		reason string
	}{
		{[]string{"--ssid", "HomeNet", "--bssid", "AA:BB:CC:DD:EE:01"}, 0, "trust", "home", "matched"},
		{[]string{"--ssid", "HomeNet", "--bssid", "66:66:66:66:66:66"}, 0, "tunnel", "default", "not pinned"},
		{[]string{"--ssid", "HomeNet", "--bssid", "aa:bb:cc:dd:ee:01", "--security", "open"}, 0, "tunnel", "default", "security is open"},
		{[]string{"--interface", "ethernet"}, 0, "tunnel", "default", "no rule matched"},
		{[]string{"--interface", "wlan"}, 2, "", "", ""},
		{[]string{"--security", "wpa9"}, 2, "", "", ""},
	}
	for _, tt := range tests {
		code, out, stderr := runCLI(t, append([]string{"explain", "--json", "--config", cfg}, tt.args...)...)
		if code != tt.code {
			t.Errorf("%q: exit %d (%s)", tt.args, code, stderr)
			continue
		}
		if code != 0 {
			continue
		}
		var m map[string]string
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("%q: %v in %q", tt.args, err, out)
		}
		if len(m) != 4 || m["action"] != tt.action || m["rule"] != tt.rule || (m["profile"] == "home") == (tt.action == "trust") || !strings.Contains(m["reason"], tt.reason) {
			t.Errorf("%q: %v", tt.args, m)
		}
	}
	code, out, _ := runCLI(t, "explain", "--config", cfg, "--ssid", "HomeNet")
	if code != 0 || !strings.HasPrefix(out, "tunnel (rule default, profile home)\n") {
		t.Errorf("text: exit %d, %q", code, out)
	}
}

// TestExplainWired: a wired network with no link security is trusted by an
// ethernet rule pinned to its gateway's MAC, and explain says so.
func TestExplainWired(t *testing.T) {
	const wired = "[[rule]]\nname = \"office\"\ninterface = \"ethernet\"\ngateway_mac = [\"00:11:22:33:44:55\"]\naction = \"trust\"\n"
	cfg, _ := policySetup(t, map[string]string{"10-home.toml": cliHome, "20-wired.toml": wired})
	for _, tt := range []struct {
		args           []string
		action, reason string
	}{
		{[]string{"--gateway-mac", "00:11:22:33:44:55"}, "trust", `rule "office" (`},
		{[]string{"--gateway-mac", "00:11:22:33:44:55"}, "trust", "wired network pinned by its gateway MAC 00:11:22:33:44:55"},
		{[]string{"--gateway-mac", "66:66:66:66:66:66"}, "tunnel", "gateway MAC 66:66:66:66:66:66 is not pinned"},
		{nil, "tunnel", "gateway MAC (unknown) is not pinned"},
	} {
		code, out, stderr := runCLI(t, append([]string{"explain", "--json", "--config", cfg, "--interface", "ethernet"}, tt.args...)...)
		var m map[string]string
		if code != 0 || json.Unmarshal([]byte(out), &m) != nil {
			t.Fatalf("%q: exit %d, %q %q", tt.args, code, out, stderr)
		}
		if m["action"] != tt.action || !strings.Contains(m["reason"], tt.reason) {
			t.Errorf("%q: %v", tt.args, m)
		}
	}
}
