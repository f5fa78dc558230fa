package policy

import (
	"context"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/watcher"
)

// TestWiredTrust: a wired network has no link security; an ethernet trust
// rule that pins the gateway's MAC trusts it (the pin is its protection),
// one without the pin never does.
func TestWiredTrust(t *testing.T) {
	const pinned = "[[rule]]\nname = \"office\"\ninterface = \"ethernet\"\ngateway_mac = [\"00:11:22:33:44:*\"]\naction = \"trust\"\n"
	const unpinned = "[[rule]]\nname = \"any-wire\"\ninterface = \"ethernet\"\naction = \"trust\"\n"
	const anyIface = "[[rule]]\nname = \"any-iface\"\ngateway_mac = [\"00:11:22:33:44:55\"]\naction = \"trust\"\n"
	const explicit = "[[rule]]\nname = \"explicit\"\ninterface = \"ethernet\"\ngateway_mac = [\"00:11:22:33:44:55\"]\nsecurity = [\"8021x\"]\naction = \"trust\"\n"
	wired := func(mac string, sec watcher.Security) watcher.Network {
		return watcher.Network{Interface: "eth0", Kind: watcher.KindEthernet, GatewayMAC: mac, Security: sec}
	}
	wifi := watcher.Network{Interface: "wlan0", Kind: watcher.KindWifi, SSID: "x", GatewayMAC: "00:11:22:33:44:55", Security: watcher.SecurityOpen}
	tests := []struct {
		name   string
		policy string
		n      watcher.Network
		action Action
		reason string
	}{
		{"pinned, unprotected wire", pinned, wired("00:11:22:33:44:55", watcher.SecurityNone), ActionTrust,
			"wired network pinned by its gateway MAC 00:11:22:33:44:55"},
		{"pinned, upper-case MAC", pinned, wired("00:11:22:33:44:AB", watcher.SecurityNone), ActionTrust, "pinned by its gateway MAC"},
		{"pinned, 802.1X wire", pinned, wired("00:11:22:33:44:55", watcher.Security8021X), ActionTrust, "security 8021x, gateway_mac 00:11:22:33:44:55 pinned"},
		{"pinned, other gateway", pinned, wired("66:66:66:66:66:66", watcher.SecurityNone), ActionTunnel, "gateway MAC 66:66:66:66:66:66 is not pinned"},
		{"pinned, gateway unknown", pinned, wired("", watcher.SecurityNone), ActionTunnel, "gateway MAC (unknown) is not pinned"},
		{"pinned, open wifi with that gateway", pinned, wifi, ActionTunnel, "no rule matched"},
		{"unpinned, unprotected wire", unpinned, wired("00:11:22:33:44:55", watcher.SecurityNone), ActionTunnel,
			"an unprotected wired network is trusted only by an interface = \"ethernet\" rule that pins its gateway_mac"},
		{"unpinned, 802.1X wire", unpinned, wired("00:11:22:33:44:55", watcher.Security8021X), ActionTrust, "security 8021x"},
		{"any interface, unprotected wire", anyIface, wired("00:11:22:33:44:55", watcher.SecurityNone), ActionTunnel, "security is none"},
		{"explicit security wins", explicit, wired("00:11:22:33:44:55", watcher.SecurityNone), ActionTunnel, "security is none, rule wants 8021x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]File{{Path: "w.toml", Data: []byte(tt.policy)}}, Profiles{"home": ""})
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide(context.Background(), tt.n, nil)
			if d.Action != tt.action || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("got %s: %s; want %s: …%s…", d.Action, d.Reason, tt.action, tt.reason)
			}
		})
	}
}
