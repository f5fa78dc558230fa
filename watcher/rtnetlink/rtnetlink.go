// Package rtnetlink is the watcher's kernel source ("netlink"): links,
// addresses, default routes and the gateway's MAC from the neighbour table,
// through vishvananda/netlink.
package rtnetlink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/watcher"
)

// Source watches the kernel's networking state.
type Source struct {
	// Ignore names interfaces that are never a network (the TUN).
	Ignore []string
	// Netns, if set, is the namespace to watch (tests); default: ours.
	Netns *netns.NsHandle
	Log   *slog.Logger
	// Resubscribed counts subscriptions renewed after an error (tests).
	Resubscribed func()
}

// Name implements watcher.Source.
func (s *Source) Name() string { return "netlink" }

func (s *Source) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// handle opens a route netlink socket only. netlink.NewHandle() with no
// families also opens XFRM and netfilter sockets, and fails as a whole
// ("protocol not supported") on a kernel without xfrm_user, which this
// source never needs.
func (s *Source) handle() (*netlink.Handle, error) {
	var h *netlink.Handle
	var err error
	if s.Netns != nil {
		h, err = netlink.NewHandleAt(*s.Netns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("route netlink socket: %w", err)
	}
	return h, nil
}

// Run implements watcher.Source: it hints on every link, address, route and
// neighbour change, renewing the subscriptions when the kernel drops them
// (ENOBUFS under a flood closes them).
func (s *Source) Run(ctx context.Context, hint func()) error {
	failing := ""
	subscribed := func() {
		if failing != "" {
			s.log().Info("netlink: subscribed to kernel changes again")
			failing = ""
		}
	}
	for {
		err := s.subscribeOnce(ctx, hint, subscribed)
		if ctx.Err() != nil {
			return nil
		}
		var se subscribeError
		switch {
		case errors.As(err, &se):
			// Not listening at all: say so once per distinct failure,
			// loudly, as nothing will be seen until it works.
			if msg := err.Error(); msg != failing {
				s.log().Warn("netlink: cannot subscribe to kernel changes; retrying", "err", err)
				failing = msg
			}
		default:
			s.log().Debug("netlink subscription ended; renewing", "err", err)
		}
		if s.Resubscribed != nil {
			s.Resubscribed()
		}
		hint() // something may have been missed
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// subscribeError: subscribing failed, as opposed to a subscription that
// ended (ENOBUFS under a flood closes one).
type subscribeError struct{ error }

func (e subscribeError) Unwrap() error { return e.error }

// subscribeOnce subscribes, calls subscribed, and follows the kernel's
// changes until ctx is done or a subscription ends.
func (s *Source) subscribeOnce(ctx context.Context, hint, subscribed func()) error {
	done := make(chan struct{})
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	neighs := make(chan netlink.NeighUpdate, 64)
	errc := make(chan error, 4)
	onErr := func(err error) {
		select {
		case errc <- err:
		default:
		}
	}
	defer func() {
		close(done)
		// Each channel is closed by the library once its reader ends;
		// until then it may block sending to us: drain them all.
		go func() {
			for range links {
			}
		}()
		go func() {
			for range addrs {
			}
		}()
		go func() {
			for range routes {
			}
		}()
		go func() {
			for range neighs {
			}
		}()
	}()
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: s.Netns, ErrorCallback: onErr}); err != nil {
		close(addrs)
		close(routes)
		close(neighs)
		return subscribeError{fmt.Errorf("subscribing to links: %w", err)}
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: s.Netns, ErrorCallback: onErr}); err != nil {
		close(routes)
		close(neighs)
		return subscribeError{fmt.Errorf("subscribing to addresses: %w", err)}
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: s.Netns, ErrorCallback: onErr}); err != nil {
		close(neighs)
		return subscribeError{fmt.Errorf("subscribing to routes: %w", err)}
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{Namespace: s.Netns, ErrorCallback: onErr}); err != nil {
		return subscribeError{fmt.Errorf("subscribing to neighbours: %w", err)}
	}
	subscribed()
	hint() // listening now: whatever changed before is worth a look
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return err
		case u, ok := <-links:
			if !ok {
				return fmt.Errorf("link subscription closed")
			}
			if u.Link != nil && slices.Contains(s.Ignore, u.Link.Attrs().Name) {
				continue
			}
			hint()
		case _, ok := <-addrs:
			if !ok {
				return fmt.Errorf("address subscription closed")
			}
			hint()
		case u, ok := <-routes:
			if !ok {
				return fmt.Errorf("route subscription closed")
			}
			// Only the main table's own routes change what the network is;
			// not the kernel's clones (PMTU, ICMP) nor tables like ours.
			if u.Flags&unix.RTM_F_CLONED != 0 || u.Table != 0 && u.Table != unix.RT_TABLE_MAIN {
				continue
			}
			hint()
		case u, ok := <-neighs:
			if !ok {
				return fmt.Errorf("neighbour subscription closed")
			}
			// A gateway's MAC being learnt (or changing) matters; the
			// churn of probes does not.
			if len(u.HardwareAddr) == 0 {
				continue
			}
			hint()
		}
	}
}

// Observe implements watcher.Source: one Network per usable interface
// (up, with an IPv4 address), with its default gateway and the gateway's MAC.
func (s *Source) Observe(ctx context.Context) ([]watcher.Network, error) {
	h, err := s.handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	var out []watcher.Network
	for _, l := range links {
		a := l.Attrs()
		if !usable(l) || slices.Contains(s.Ignore, a.Name) || a.Flags&net.FlagUp == 0 {
			continue
		}
		n := watcher.Network{Interface: a.Name, Kind: kindOf(a.Name)}
		addrs, err := h.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			if ad.Scope == unix.RT_SCOPE_UNIVERSE {
				if ip, ok := netip.AddrFromSlice(ad.IP.To4()); ok {
					ones, _ := ad.Mask.Size()
					n.Address = netip.PrefixFrom(ip, ones)
					break
				}
			}
		}
		if !n.Address.IsValid() {
			continue // no address: not (yet) a network
		}
		best := -1
		for i, r := range routes {
			if r.LinkIndex != a.Index || r.Gw == nil || r.Type != unix.RTN_UNICAST {
				continue
			}
			if r.Dst != nil {
				if ones, _ := r.Dst.Mask.Size(); ones != 0 {
					continue
				}
			}
			if best < 0 || r.Priority < routes[best].Priority {
				best = i
			}
		}
		if best >= 0 {
			gw, _ := netip.AddrFromSlice(routes[best].Gw.To4())
			n.Gateway, n.RouteMetric = gw, routes[best].Priority
			n.GatewayMAC = neighMAC(h, a.Index, routes[best].Gw)
		}
		out = append(out, n)
	}
	return out, nil
}

// usable: real network devices (and veth, which the labs use), not
// tunnels, bridges, loopback or the like.
func usable(l netlink.Link) bool {
	if l.Attrs().Flags&net.FlagLoopback != 0 {
		return false
	}
	switch l.Type() {
	case "device", "veth", "vlan", "bond", "macvlan":
		return true
	}
	return false
}

func kindOf(ifname string) watcher.Kind {
	for _, p := range []string{"/sys/class/net/" + ifname + "/wireless", "/sys/class/net/" + ifname + "/phy80211"} {
		if _, err := os.Stat(p); err == nil {
			return watcher.KindWifi
		}
	}
	return watcher.KindEthernet
}

func neighMAC(h *netlink.Handle, index int, gw net.IP) string {
	neighs, err := h.NeighList(index, netlink.FAMILY_V4)
	if err != nil {
		return ""
	}
	for _, n := range neighs {
		if n.IP.Equal(gw) && len(n.HardwareAddr) == 6 && n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) == 0 {
			return strings.ToLower(n.HardwareAddr.String())
		}
	}
	return ""
}
