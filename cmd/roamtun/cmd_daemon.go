package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/control"
	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/internal/serveraddr"
	"github.com/roamtun/roamtun/policy"
	"github.com/roamtun/roamtun/watcher"
)

var daemonCmd = &command{
	name:  "daemon",
	usage: "[--config FILE]",
	help:  "the background service: watch networks, tunnel on untrusted ones, restore on the way out",
}

func init() {
	daemonCmd.run = runDaemon
	register(daemonCmd)
}

func runDaemon(e *env, args []string) error {
	// SIGHUP reloads (as `roamtun reload` does); caught from the start, as
	// its default action would end the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg, err := configOnly(e, daemonCmd, args)
	if err != nil {
		return err
	}
	// A crashed or killed daemon's routes, firewall and DNS go first; what
	// cannot be undone now stays in the journal for the next try.
	sys, err := daemon.Recover(e.ctx, cfg.Daemon, e.log)
	if sys == nil {
		return err
	}
	defer sys.Close()
	if err != nil {
		e.log.Error("could not undo everything an earlier run left; roamtun cleanup retries", "err", err)
	}
	addrs, err := serveraddr.Open(cfg.Daemon.StateDir)
	if err != nil {
		e.log.Warn("server addresses learnt earlier are not used", "err", err)
	}
	holder, err := policy.NewHolder(cfg.Daemon.PolicyDir, policyProfiles(cfg))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	w, stopWatch, err := startWatcher(ctx, cfg, e.log)
	if err != nil {
		return err
	}
	defer stopWatch()
	hooks := &daemon.Hooks{Log: e.log}
	standby := false
	for _, p := range cfg.Profiles {
		standby = standby || p.Lockdown
	}
	d := daemon.New(daemon.Options{Config: cfg, Host: sys, Policy: holder, Networks: w.Changes(), Uplinks: func() []watcher.Network { _, all := w.Current(); return watcher.Uplinks(all) }, Hooks: hooks, Standby: standby,
		Verify: policy.NewVerifyCache(policy.SSHVerifier{}, 10*time.Minute), Addrs: addrs, Log: e.log,
		PortalCheck: portalCheck(cfg)})
	ctl := &control.Server{Daemon: d, PolicyDir: cfg.Daemon.PolicyDir, Profiles: policyProfiles(cfg),
		Group: cfg.Daemon.SocketGroup, Log: e.log,
		Reload: func(ctx context.Context) error { return reload(ctx, d, "control socket", e.log) }}
	if err := ctl.Listen(cfg.Daemon.Socket); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	// The control socket and the policy watcher live as long as the state
	// machine: each is joined before the daemon returns, and an early end
	// is logged rather than dropped.
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := ctl.Serve(ctx); err != nil {
			e.log.Error("control socket stopped; status/up/down are unavailable", "err", err)
		}
	})
	wg.Go(func() { holder.Run(ctx, time.Minute, e.log, func(*policy.Policy) { d.Reload(ctx) }) })
	wg.Go(func() { reportStatus(ctx, d, e.log) })
	running := make(chan error, 1)
	wg.Go(func() { running <- d.Run(ctx) })
	err = supervise(ctx, d, running, hup, cfg, e.log)
	cancel()
	wg.Wait()
	hooks.Close()
	return err
}

// supervise keeps systemd told how the daemon fares while Run goes, and
// returns Run's error: READY=1 once the state machine answers (so after the
// standby firewall is up: units ordered after network-pre.target start on
// a closed network), watchdog pings proven by a round trip through the state
// machine, a reload on SIGHUP, STOPPING=1 as the teardown begins.
func supervise(ctx context.Context, d *daemon.Daemon, running <-chan error, hup <-chan os.Signal, cfg *config.Config, log *slog.Logger) error {
	if ended, err := waitRunning(ctx, d, running); ended {
		return err
	}
	tellSystemd(log, "READY=1")
	log.Info("roamtun daemon running", "socket", cfg.Daemon.Socket, "state_dir", cfg.Daemon.StateDir)
	if every, ok := watchdogInterval(); ok {
		wctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); runWatchdog(wctx, every, d.Ping, log) }()
		defer func() { stop(); <-done }()
	}
	for {
		select {
		case <-hup:
			reload(ctx, d, "SIGHUP", log)
		case <-ctx.Done():
			tellSystemd(log, "STOPPING=1")
			return <-running
		case err := <-running:
			tellSystemd(log, "STOPPING=1")
			return err
		}
	}
}

// waitRunning waits until Run's loop answers a ping, or Run ends (then
// ended is true and err is Run's error): the standby firewall failed, or
// the daemon was stopped while starting.
func waitRunning(ctx context.Context, d *daemon.Daemon, running <-chan error) (ended bool, err error) {
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pinged := make(chan error, 1)
	go func() { pinged <- d.Ping(pctx) }()
	select {
	case err := <-pinged:
		if err == nil {
			return false, nil
		}
		return true, <-running // ctx ended: Run returns too
	case err := <-running:
		cancel()
		<-pinged
		return true, err
	}
}

// reload re-reads the policy in the daemon, bracketed by RELOADING=1 and
// READY=1 for systemd (253+ waits for READY=1 after its SIGHUP with
// Type=notify-reload).
func reload(ctx context.Context, d *daemon.Daemon, by string, log *slog.Logger) error {
	tellSystemd(log, sdReloading())
	err := d.Reload(ctx)
	if err != nil {
		log.Error("policy not reloaded, the last good one stays", "by", by, "err", err)
	} else {
		log.Info("policy reloaded", "by", by)
	}
	tellSystemd(log, "READY=1\n"+sdStatus(d.Status()))
	return err
}

// tellSystemd is sdNotify whose failure is logged: systemd asked for the
// message (NOTIFY_SOCKET) but cannot be told.
func tellSystemd(log *slog.Logger, state string) {
	if err := sdNotify(state); err != nil {
		log.Warn("cannot tell systemd", "state", strings.SplitN(state, "\n", 2)[0], "err", err)
	}
}
