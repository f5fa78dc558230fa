package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/watcher"
	"github.com/roamtun/roamtun/watcher/dhcpsniff"
	"github.com/roamtun/roamtun/watcher/nl80211"
	"github.com/roamtun/roamtun/watcher/rtnetlink"
)

// startWatcher runs the watcher over the configured sources and returns its
// stream of primary networks.
func startWatcher(ctx context.Context, cfg *config.Config, log *slog.Logger) (<-chan watcher.Network, func(), error) {
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
		case "dhcp":
			sources = append(sources, &dhcpsniff.Source{Log: log})
		default:
			sources = append(sources, unavailable{name, "not built into this version of roamtun"})
		}
	}
	if len(sources) == 0 {
		return nil, nil, fmt.Errorf("daemon.sources: no network sources configured")
	}
	w := watcher.New(sources, watcher.Options{Log: log})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	return w.Changes(), func() { cancel(); <-done }, nil
}

// unavailable stands for a source this build cannot run: the watcher logs
// it once and carries on without it.
type unavailable struct{ name, why string }

func (u unavailable) Name() string { return u.name }
func (u unavailable) Run(context.Context, func()) error {
	return fmt.Errorf("%s: %s: %w", u.name, u.why, watcher.ErrUnavailable)
}
func (u unavailable) Observe(context.Context) ([]watcher.Network, error) {
	return nil, watcher.ErrUnavailable
}
