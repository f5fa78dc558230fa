package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/roamtun/roamtun/internal/dial"
	"github.com/roamtun/roamtun/internal/netmon"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/internal/serveraddr"
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

func runConnect(e *env, args []string) (rerr error) {
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
	lc, err := daemon.LinkConfig(p, e.log)
	if err != nil {
		return err
	}
	argv, prefix := p.DialCommand, "dial"
	// Routes, lockdown and DNS: set up before the first dial, undone on
	// the way out (and by roamtun cleanup if we are killed).
	var guard daemon.Guard
	var rot *serveraddr.Rotation
	var book *serveraddr.Book
	if p.Host == "" {
		e.log.Warn("profile has no host: routes, lockdown and DNS are left alone", "profile", p.Name)
	} else {
		sys, err := daemon.Recover(e.ctx, cfg.Daemon, e.log)
		if sys != nil {
			defer sys.Close()
		}
		if err != nil {
			return err
		}
		if book, err = serveraddr.Open(cfg.Daemon.StateDir); err != nil {
			e.log.Warn("server addresses learnt earlier are not used", "err", err)
		}
		servers, err := serveraddr.Candidates(e.ctx, p.Host, p.Addresses, book, nil)
		if err != nil {
			return err
		}
		rot = serveraddr.NewRotation(servers)
		rot.Refresh(e.ctx, p.Host, p.Addresses, nil, func(err error) {
			e.log.Debug("looking the server up again", "host", p.Host, "err", err)
		})
		if guard, err = sys.Protect(e.ctx, p, servers[0]); err != nil {
			return err
		}
		lc.Forbidden = guard.Forbidden
		defer func() {
			if cerr := guard.Close(context.WithoutCancel(e.ctx)); cerr != nil {
				rerr = errors.Join(rerr, cerr)
			} else {
				e.log.Info("routes and DNS restored")
			}
		}()
	}
	if len(p.DialCommand) == 0 {
		prefix = "ssh"
	}
	// With a guard, each attempt dials one of the server's addresses,
	// moving on after one that never came up.
	var addr netip.Addr
	var src netmon.SourceWatch // the uplink address the link came up over
	dial := func(attempt int) ([]string, []string, error) {
		if rot == nil {
			if len(argv) > 0 {
				return argv, nil, nil
			}
			a, en := dial.SSHCommand(p)
			return a, en, nil
		}
		addr = rot.Next(attempt)
		if err := guard.UseServer(addr); err != nil {
			return nil, nil, err
		}
		if len(argv) > 0 {
			return argv, nil, nil
		}
		a, en := dial.SSHCommandTo(p, addr)
		return a, en, nil
	}
	start := time.Now()
	// A network change (link up, new route) makes a waiting redial happen
	// at once instead of after the backoff.
	kick := make(chan struct{}, 1)
	wctx, stopWatch := context.WithCancel(e.ctx)
	defer stopWatch()
	go netmon.WatchNetwork(wctx, kick, p.Interface, 100*time.Millisecond, e.log)
	so := tunnel.SuperviseOptions{
		Dial: dial, LogPrefix: prefix, Once: *once, Log: e.log, Kick: kick, Stale: src.Stale,
		Session: tunnel.SessionOptions{Link: lc, Interface: p.Interface, MTU: p.MTU, Log: e.log},
		OnEvent: func(ev tunnel.Event) {
			switch ev.Kind {
			case tunnel.EventDialing:
				start = ev.Time
				if guard != nil {
					if err := guard.Refresh(); err != nil {
						e.log.Debug("no path to the server yet", "err", err)
					}
				}
				e.log.Info("dialing", "profile", p.Name, "attempt", ev.Attempt, "cause", ev.Cause)
			case tunnel.EventUp:
				if guard != nil {
					if err := guard.Up(e.ctx, ev.Ifname, ev.Session); err != nil {
						e.log.Error("routing through the tunnel failed", "err", err)
					}
				}
				if len(p.DialCommand) == 0 && addr.IsValid() {
					book.Remember(p.Host, addr) // the pinned host key answered there
				}
				if addr.IsValid() {
					src.Up(addr)
				}
				v6 := ""
				if ev.Session.IPv6 && ev.Session.Addr6.IsValid() {
					v6 = fmt.Sprintf(" ipv6 %s dns6 %s", ev.Session.Addr6, joinAddrs(ev.Session.DNS6))
				}
				fmt.Fprintf(e.stdout, "up: %s %s -> %s dns %s mtu %d in %s%s\n", ev.Ifname, ev.Session.LocalIP,
					ev.Session.PeerIP, joinAddrs(ev.Session.DNS), ev.Session.MTU, ev.Time.Sub(start).Round(time.Millisecond), v6)
			case tunnel.EventDown:
				if guard != nil {
					guard.Down()
				}
				if ev.Reason != nil && !errors.Is(ev.Reason, ppp.ErrClosed) {
					e.log.Warn("link down", "reason", ev.Reason)
				}
			case tunnel.EventWaiting:
				e.log.Info("redialing", "in", ev.Wait.Round(time.Millisecond), "attempt", ev.Attempt+1)
			}
		},
	}
	if p.Engine == config.EnginePPPD {
		so.Engine = tunnel.NewPPPD(p).Run
	}
	err = tunnel.Supervise(e.ctx, so)
	if errors.Is(err, ppp.ErrClosed) {
		return nil // we were asked to stop
	}
	return err
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
