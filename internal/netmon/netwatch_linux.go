// Package netmon watches rtnetlink for the changes that matter to a
// supervised tunnel (links coming up, routes, addresses) and tells whether
// the address a link came up over is still the one the server is reached
// from.
package netmon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// WatchNetwork sends on kick (without blocking) whenever links, routes or
// addresses change in the caller's network namespace — a cable plugged,
// Wi-Fi reassociated, a DHCP lease with a new gateway or address — so that
// a supervisor waiting to redial tries at once, and one whose link runs
// over an address that went away redials at once (SuperviseOptions.Stale). Changes to the tunnel's own device
// (ignore) are left out. Bursts are coalesced for settle. It returns when
// ctx is done; subscriptions that fail (ENOBUFS closes them) are renewed.
func WatchNetwork(ctx context.Context, kick chan<- struct{}, ignore string, settle time.Duration, log *slog.Logger) {
	for ctx.Err() == nil {
		watchOnce(ctx, kick, ignore, settle, log)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second): // resubscribe after a failed subscription
		}
	}
}

func watchOnce(ctx context.Context, kick chan<- struct{}, ignore string, settle time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	links := make(chan netlink.LinkUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	defer func() {
		close(done)
		// The library closes each channel when its reader ends; until then
		// it may be blocked sending to us: drain them.
		go func() {
			for range links {
			}
		}()
		go func() {
			for range routes {
			}
		}()
		go func() {
			for range addrs {
			}
		}()
	}()
	onErr := func(err error) { log.Debug("netlink subscription", "err", err) }
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		log.Warn("watching links", "err", err)
		return
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: onErr}); err != nil {
		log.Warn("watching routes", "err", err)
		return
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		log.Warn("watching addresses", "err", err)
		return
	}
	var timer <-chan time.Time
	// The tunnel's device comes and goes with each session; the events of
	// one that just went (its addresses deleted after it) are still its.
	lastIgnore := -1
	ignoreIndex := func() int {
		if l, err := netlink.LinkByName(ignore); err == nil {
			lastIgnore = l.Attrs().Index
		}
		return lastIgnore
	}
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-links:
			if !ok {
				return
			}
			// Only something coming up can make a redial succeed; a link
			// going down is the echoes' business.
			if u.Link == nil || u.Link.Attrs().Name == ignore || u.Header.Type != unix.RTM_NEWLINK ||
				u.IfInfomsg.Flags&unix.IFF_UP == 0 || u.IfInfomsg.Flags&unix.IFF_RUNNING == 0 {
				continue
			}
			timer = time.After(settle)
		case u, ok := <-routes:
			if !ok {
				return
			}
			// New routes only, and not the cache entries the kernel clones
			// for ICMP errors and PMTU: those come with every failed attempt
			// and would otherwise keep "changing the network".
			if u.Type != unix.RTM_NEWROUTE || u.Flags&unix.RTM_F_CLONED != 0 ||
				(u.Table != 0 && u.Table != unix.RT_TABLE_MAIN) || u.LinkIndex == ignoreIndex() {
				continue
			}
			timer = time.After(settle)
		case u, ok := <-addrs:
			if !ok {
				return
			}
			// An address of the uplink gone or new (a new lease): a link
			// running over the old one is dead.
			if u.LinkIndex == ignoreIndex() || u.LinkAddress.IP.IsLinkLocalUnicast() {
				continue
			}
			timer = time.After(settle)
		case <-timer:
			timer = nil
			select {
			case kick <- struct{}{}:
			default:
			}
		}
	}
}

// SourceFor is the local address the kernel uses now to reach server (the
// address a new ssh connection would have), or an error when there is no
// route to it.
func SourceFor(server netip.Addr) (netip.Addr, error) {
	rs, err := netlink.RouteGet(server.AsSlice())
	if err != nil {
		return netip.Addr{}, fmt.Errorf("route to %s: %w", server, err)
	}
	for _, r := range rs {
		if a, ok := netip.AddrFromSlice(r.Src); ok && a.IsValid() {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("route to %s: no source address", server)
}

// SourceWatch remembers the local address a link came up over and tells
// when it is gone — a new DHCP lease, another network — for
// SuperviseOptions.Stale: the ssh connection under the link is dead then,
// whatever its echoes say yet.
type SourceWatch struct {
	mu          sync.Mutex
	server, src netip.Addr
}

// Up notes the source address used now to reach server (call it when the
// link comes up).
func (w *SourceWatch) Up(server netip.Addr) {
	src, _ := SourceFor(server)
	w.mu.Lock()
	w.server, w.src = server, src
	w.mu.Unlock()
}

// Stale reports whether the source address noted by Up is no longer the one
// the server is reached from.
func (w *SourceWatch) Stale() bool {
	w.mu.Lock()
	server, src := w.server, w.src
	w.mu.Unlock()
	if !src.IsValid() {
		return false
	}
	cur, err := SourceFor(server)
	return err != nil || cur != src
}
