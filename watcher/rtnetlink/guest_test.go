package rtnetlink

import (
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/lab"
)

// TestGuestWithoutXFRM (issue #15): in the Wi-Fi lab's guest kernel, which
// has no xfrm_user (and no modules to load it from), this source failed
// every read with "protocol not supported": netlink.NewHandle() with no
// families opens XFRM and netfilter sockets too. It must see the address,
// the default route and the gateway's MAC there, and the watcher must log
// no warning.
func TestGuestWithoutXFRM(t *testing.T) {
	lab.RequireWifi(t)
	l := lab.NewT(t)
	bin, err := lab.BuildWatchProbe(l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	g, err := l.StartWifiGuest("rtnl", 2)
	if err != nil {
		t.Fatal(err)
	}
	// The premise: this kernel refuses NETLINK_XFRM sockets.
	if out, err := g.Run(10*time.Second, "ip xfrm state"); err == nil || !strings.Contains(out, "not supported") {
		t.Logf("note: this guest kernel has XFRM netlink now (ip xfrm state: %v %q); the test no longer reproduces issue #15", err, out)
	}
	p, err := g.StartProbe("probe", bin, "-sources", "netlink", "-merged")
	if err != nil {
		t.Fatal(err)
	}
	// wan0 ⇄ lan0 (a router in a namespace of the guest), then a default route.
	if _, err := g.Run(20*time.Second, `set -e
ip netns add router
ip link add wan0 type veth peer name lan0 netns router
ip netns exec router ip addr add 10.77.9.1/24 dev lan0
ip netns exec router ip link set lan0 up
ip addr add 10.77.9.2/24 dev wan0
ip link set wan0 up
ip route add default via 10.77.9.1
ping -c 1 -W 5 10.77.9.1 >/dev/null`); err != nil {
		t.Fatal(err)
	}
	mac, err := g.Run(5*time.Second, "ip netns exec router cat /sys/class/net/lan0/address")
	if err != nil {
		t.Fatal(err)
	}
	mac = strings.TrimSpace(mac)
	want := lab.ProbeNetwork{Interface: "wan0", Kind: "ethernet", Address: "10.77.9.2/24", Gateway: "10.77.9.1", GatewayMAC: mac}
	seen := func(kind string) func([]lab.ProbeLine) bool {
		return func(ls []lab.ProbeLine) bool {
			for _, l := range ls {
				if l.T == kind && (kind == "merged" || l.Source == "netlink") && len(l.Networks) == 1 && l.Networks[0] == want {
					return true
				}
			}
			return false
		}
	}
	ls, err := p.Wait(20*time.Second, 0, func(ls []lab.ProbeLine) bool { return seen("networks")(ls) && seen("merged")(ls) })
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.T == "error" || l.T == "unavailable" || l.T == "log" && (l.Level == "WARN" || l.Level == "ERROR") {
			t.Errorf("probe: %s", l.Raw)
		}
	}
}
