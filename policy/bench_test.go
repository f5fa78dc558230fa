package policy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/roamtun/roamtun/watcher"
)

// BenchmarkDecide10k decides against 10,000 rules (a mix of exact SSIDs,
// globs and pinned rules), none of which matches: the worst case, ending at
// the default after visiting every rule.
func BenchmarkDecide10k(b *testing.B) {
	var src strings.Builder
	for i := range 10000 {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&src, "[[rule]]\nssid = \"net-%d\"\naction = \"trust\"\n", i)
		case 1:
			fmt.Fprintf(&src, "[[rule]]\nssid = \"cafe-%d-*\"\naction = \"block\"\n", i)
		case 2:
			fmt.Fprintf(&src, "[[rule]]\ninterface = \"ethernet\"\ngateway_mac = [\"00:11:22:33:44:*\"]\naction = \"trust\"\nsecurity = [\"none\"]\n")
		case 3:
			fmt.Fprintf(&src, "[[rule]]\nssid = \"Home\"\nbssid = [\"aa:bb:cc:dd:ee:%02x\"]\naction = \"trust\"\n", i%256)
		}
	}
	src.WriteString("[default]\naction = \"tunnel\"\n")
	p, err := Parse([]File{{Path: "bench.toml", Data: []byte(src.String())}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if len(p.Rules) != 10000 {
		b.Fatalf("%d rules", len(p.Rules))
	}
	n := watcher.Network{Interface: "wlan0", Kind: watcher.KindWifi, SSID: "Elsewhere", BSSID: "66:66:66:66:66:66", Security: "wpa2"}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if d := p.Decide(ctx, n, nil); d.Action != ActionTunnel {
			b.Fatal(d)
		}
	}
}
