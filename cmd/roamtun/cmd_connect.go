package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/tunnel"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

var connectCmd = &command{
	name:  "connect",
	usage: "[--config FILE] [--once] PROFILE",
	help:  "run one tunnel in the foreground, redialing when it drops; SIGINT/SIGTERM ends it cleanly",
}

func init() {
	connectCmd.run = runConnect
	register(connectCmd)
}

func runConnect(e *env, args []string) error {
	fs, cfgPath := newFlags(e, connectCmd)
	once := fs.Bool("once", false, "one session: exit when the link ends instead of redialing")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want exactly one PROFILE")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	p, err := cfg.Profile(fs.Arg(0))
	if err != nil {
		return err
	}
	lc, err := linkConfig(p, e)
	if err != nil {
		return err
	}
	argv, env, prefix := p.DialCommand, []string(nil), "dial"
	if len(argv) == 0 {
		argv, env = tunnel.SSHCommand(p)
		prefix = "ssh"
	}
	start := time.Now()
	// A network change (link up, new route) makes a waiting redial happen
	// at once instead of after the backoff.
	kick := make(chan struct{}, 1)
	wctx, stopWatch := context.WithCancel(e.ctx)
	defer stopWatch()
	go tunnel.WatchNetwork(wctx, kick, p.Interface, 100*time.Millisecond, e.log)
	err = tunnel.Supervise(e.ctx, tunnel.SuperviseOptions{
		Argv: argv, Env: env, LogPrefix: prefix, Once: *once, Log: e.log, Kick: kick,
		Session: tunnel.SessionOptions{Link: lc, Interface: p.Interface, MTU: p.MTU, Log: e.log},
		OnEvent: func(ev tunnel.Event) {
			switch ev.Kind {
			case "dialing":
				start = ev.Time
				e.log.Info("dialing", "profile", p.Name, "attempt", ev.Attempt)
			case "up":
				fmt.Fprintf(e.stdout, "up: %s %s -> %s dns %s mtu %d in %s\n", ev.Ifname, ev.Session.LocalIP,
					ev.Session.PeerIP, joinAddrs(ev.Session.DNS), ev.Session.MTU, ev.Time.Sub(start).Round(time.Millisecond))
			case "down":
				if ev.Reason != nil && !errors.Is(ev.Reason, ppp.ErrClosed) {
					e.log.Warn("link down", "reason", ev.Reason)
				}
			case "waiting":
				e.log.Info("redialing", "in", ev.Wait.Round(time.Millisecond), "attempt", ev.Attempt+1)
			}
		},
	})
	if errors.Is(err, ppp.ErrClosed) {
		return nil // we were asked to stop
	}
	return err
}

// linkConfig is the client end of a profile's link.
func linkConfig(p *config.Profile, e *env) (ppp.Config, error) {
	lc := ppp.Config{LocalName: p.LocalName, RemoteName: p.RemoteName, RequireCHAP: p.RequireCHAP,
		MRU: p.MTU, EchoInterval: p.Keepalive, EchoFailures: 3, RequestDNS: true,
		IPv6: p.IPv6 == config.IPv6Tunnel, Logger: e.log}
	s, err := ppp.LoadSecrets(p.Secrets)
	switch {
	case err == nil:
		lc.Secrets = s
		if s.TooOpen() {
			e.log.Warn("secrets file is readable by group or others", "file", p.Secrets)
		}
	case errors.Is(err, os.ErrNotExist) && !p.RequireCHAP:
		lc.RefuseAuth = true
	default:
		return lc, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	return lc, nil
}

func joinAddrs(as []netip.Addr) string {
	if len(as) == 0 {
		return "none"
	}
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}
