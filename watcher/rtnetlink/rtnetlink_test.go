package rtnetlink

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/roamtun/roamtun/lab"
	"github.com/roamtun/roamtun/watcher"
)

// TestRealKernel: a laptop namespace with a veth to a café router: the
// source sees the address, the default gateway and (once ARP resolved it)
// the gateway's MAC; route and link changes hint; a link going down takes
// the network away.
func TestRealKernel(t *testing.T) {
	l := lab.NewT(t)
	laptop, cafe, err := l.CafeLink("10.200.1.2/24")
	if err != nil {
		t.Fatal(err)
	}
	h, err := netns.GetFromName(laptop.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var hints atomic.Int32
	s := &Source{Netns: &h, Ignore: []string{"roamtun0"}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func() { hints.Add(1) }) }()
	defer func() { cancel(); <-done }()

	observe := func() []watcher.Network {
		t.Helper()
		ns, err := s.Observe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	waitHint := func(what string, from int32) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for hints.Load() == from {
			if time.Now().After(deadline) {
				t.Fatalf("no hint after %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitHint("subscribing", 0) // the source hints once it listens
	h0 := hints.Load()
	if _, err := laptop.Run("ip", "route", "add", "default", "via", "10.200.1.1"); err != nil {
		t.Fatal(err)
	}
	waitHint("adding the default route", h0)
	ns := observe()
	if len(ns) != 1 {
		t.Fatalf("networks: %+v", ns)
	}
	n := ns[0]
	if n.Interface != "wan0" || n.Kind != watcher.KindEthernet || n.Gateway != netip.MustParseAddr("10.200.1.1") ||
		n.Address != netip.MustParsePrefix("10.200.1.2/24") {
		t.Errorf("observed %+v", n)
	}
	// The gateway's MAC, once ARP has it.
	mac, _ := cafe.Run("cat", "/sys/class/net/lan0/address")
	h1 := hints.Load()
	laptop.Run("ping", "-c", "1", "-W", "2", "10.200.1.1")
	waitHint("ARP learning the gateway", h1)
	if got := observe()[0].GatewayMAC; got == "" || got+"\n" != mac {
		t.Errorf("gateway MAC %q, want %q", got, mac)
	}
	// The cable is pulled (the link goes down): no network.
	h2 := hints.Load()
	laptop.Run("ip", "link", "set", "wan0", "down")
	waitHint("link down", h2)
	if ns := observe(); len(ns) != 0 {
		t.Errorf("after link down: %+v", ns)
	}
}
