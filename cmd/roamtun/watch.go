package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/internal/route"
	"github.com/roamtun/roamtun/watcher"
	"github.com/roamtun/roamtun/watcher/dhcpsniff"
	"github.com/roamtun/roamtun/watcher/networkmanager"
	"github.com/roamtun/roamtun/watcher/nl80211"
	"github.com/roamtun/roamtun/watcher/portal"
	"github.com/roamtun/roamtun/watcher/rtnetlink"
)

// startWatcher runs the watcher over the configured sources and returns its
// stream of primary networks.
func startWatcher(ctx context.Context, cfg *config.Config, log *slog.Logger) (*watcher.Watcher, func(), error) {
	var ignore []string
	for _, p := range cfg.Profiles {
		ignore = append(ignore, p.Interface)
	}
	var sources []watcher.Source
	for _, name := range cfg.Daemon.Sources {
		switch name {
		case "netlink":
			sources = append(sources, &rtnetlink.Source{Ignore: ignore, Log: log})
		case "nl80211":
			sources = append(sources, &nl80211.Source{Log: log})
		case "networkmanager":
			sources = append(sources, &networkmanager.Source{Log: log})
		case "dhcp":
			sources = append(sources, &dhcpsniff.Source{Log: log})
		case "portal":
			p := portalProber(cfg)
			if p == nil {
				log.Info("network source off: daemon.portal_probe is empty", "source", name)
				continue
			}
			if p.NeedsDNS() && !slices.Contains(cfg.Daemon.Sources, "dhcp") && !slices.Contains(cfg.Daemon.Sources, "networkmanager") {
				log.Warn("portal_probe names a host, but no source learns the network's DNS servers (dhcp, networkmanager): "+
					"the probe cannot run; add \"dhcp\" to sources or use an IP address", "portal_probe", cfg.Daemon.PortalProbe)
			}
			sources = append(sources, portal.New(p, portal.Options{Log: log}))
		default: // config validation knows the same names
			return nil, nil, fmt.Errorf("daemon.sources: unknown source %q", name)
		}
	}
	if len(sources) == 0 {
		return nil, nil, fmt.Errorf("daemon.sources: no network sources configured")
	}
	w := watcher.New(sources, watcher.Options{Log: log})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	return w, func() { cancel(); <-done }, nil
}

// portalProber is the portal source's prober, nil when the source is off
// (not in sources, or portal_probe = ""). Its sockets carry the mark the
// standby firewall lets out.
func portalProber(cfg *config.Config) *portal.Prober {
	if cfg.Daemon.PortalProbe == "" || !slices.Contains(cfg.Daemon.Sources, "portal") {
		return nil
	}
	p, err := portal.NewProber(cfg.Daemon.PortalProbe, cfg.Daemon.PortalProbeAnswer)
	if err != nil { // config validation checked it
		return nil
	}
	p.Mark = route.PortalProbeMark
	return p
}

// portalCheck tells the daemon about the portal source: the probe's port
// for the standby firewall, and how long to hold a new network for its
// verdict (a whole probe, and the watcher's reads on either side).
func portalCheck(cfg *config.Config) daemon.PortalCheck {
	p := portalProber(cfg)
	if p == nil {
		return daemon.PortalCheck{}
	}
	return daemon.PortalCheck{Port: p.Port(), Wait: portal.DefaultTimeout + 3*time.Second}
}
