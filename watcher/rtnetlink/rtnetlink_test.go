package rtnetlink

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strings"
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

// TestCannotSubscribeWarns: a source that cannot subscribe at all (here: its
// namespace handle is not a network namespace) says so once at warning
// level while it keeps retrying, instead of a debug line every 100 ms.
func TestCannotSubscribeWarns(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bad := netns.NsHandle(f.Fd())
	var log lab.SyncBuffer
	s := &Source{Netns: &bad, Log: slog.New(slog.NewTextHandler(&log, nil))}
	var renewed atomic.Int32
	s.Resubscribed = func() { renewed.Add(1) }
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func() {}) }()
	for renewed.Load() < 3 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if renewed.Load() < 3 {
		t.Fatalf("retried %d times", renewed.Load())
	}
	if c := strings.Count(log.String(), "level=WARN"); c != 1 || !strings.Contains(log.String(), "cannot subscribe") {
		t.Errorf("want one warning over %d attempts; log:\n%s", renewed.Load(), log.String())
	}
	if _, err := s.Observe(context.Background()); err == nil {
		t.Error("Observe in a namespace that is not one succeeded")
	}
}
