package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/watcher"
	"github.com/roamtun/roamtun/watcher/dhcpsniff"
	"github.com/roamtun/roamtun/watcher/networkmanager"
	"github.com/roamtun/roamtun/watcher/nl80211"
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
