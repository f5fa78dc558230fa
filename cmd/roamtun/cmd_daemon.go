package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/internal/serveraddr"
	"github.com/roamtun/roamtun/policy"
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
	nets, stopWatch, err := startWatcher(ctx, cfg, e.log)
	if err != nil {
		return err
	}
	defer stopWatch()
	hooks := &daemon.Hooks{Log: e.log}
	standby := false
	for _, p := range cfg.Profiles {
		standby = standby || p.Lockdown
	}
	d := daemon.New(daemon.Options{Config: cfg, System: sys, Policy: holder, Networks: nets, Hooks: hooks, Standby: standby,
		Verify: policy.NewVerifyCache(policy.SSHVerifier{}, 10*time.Minute), Addrs: addrs, Log: e.log})
	ctl := &daemon.Control{D: d, PolicyDir: cfg.Daemon.PolicyDir, Profiles: policyProfiles(cfg),
		Group: cfg.Daemon.SocketGroup, Log: e.log}
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
	sdNotify("READY=1\nSTATUS=watching networks")
	e.log.Info("roamtun daemon running", "socket", cfg.Daemon.Socket, "state_dir", cfg.Daemon.StateDir)
	err = d.Run(ctx)
	sdNotify("STOPPING=1")
	cancel()
	wg.Wait()
	hooks.Close()
	return err
}

// sdNotify tells systemd (Type=notify) about the service, if it listens.
func sdNotify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}
