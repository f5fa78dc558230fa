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
