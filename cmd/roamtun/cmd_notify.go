package main

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/roamtun/roamtun/control"
	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/notify"
	"github.com/roamtun/roamtun/watcher/portal"
)

var notifyCmd = &command{
	name:  "notify",
	usage: "[--config FILE]",
	help:  "per-user agent: the daemon's events as desktop notifications (run in your session; needs membership of socket_group)",
}

func init() {
	notifyCmd.run = runNotify
	register(notifyCmd)
}

// fallbackPortalURL is opened by "Sign in" when the daemon knows no portal
// address (NetworkManager found the portal): plain HTTP, so the portal can
// redirect it.
const fallbackPortalURL = "http://neverssl.com/"

// signInURL is what "Sign in" opens: the portal's address as the daemon
// reports it (the network chose it: only an http or https URL is handed
// to the browser), else the fallback.
func signInURL(s daemon.Status) string {
	if s.Network == nil || s.Network.PortalURL == "" {
		return fallbackPortalURL
	}
	u, err := portal.SignInURL(nil, s.Network.PortalURL)
	if err != nil {
		return fallbackPortalURL
	}
	return u
}

func runNotify(e *env, args []string) error {
	fs, cfgPath := newFlags(e, notifyCmd)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("notify takes no arguments")
	}
	sock, err := socketOf(*cfgPath)
	if err != nil {
		return err
	}
	conn, err := dbus.ConnectSessionBus(dbus.WithSignalHandler(dbus.NewSequentialSignalHandler()))
	if err != nil {
		return fmt.Errorf("session bus: %w", err)
	}
	defer conn.Close()
	call := func(req control.Request) error {
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		_, err := control.Call(ctx, sock, req)
		return err
	}
	var mu sync.Mutex
	signIn := fallbackPortalURL // of the latest status
	agent, err := notify.New(notify.Options{Conn: conn, Log: e.log, OnAction: func(action string) error {
		switch action {
		case "disconnect":
			return call(control.Request{Cmd: "down"})
		case "trust":
			return call(control.Request{Cmd: "trust", PinBSSID: true})
		case "signin":
			mu.Lock()
			u := signIn
			mu.Unlock()
			return openURL(u)
		}
		return fmt.Errorf("unknown action %q", action)
	}})
	if err != nil {
		return err
	}
	events := make(chan notify.Event, 16)
	go func() {
		defer close(events)
		warned := false
		for e.ctx.Err() == nil {
			err := control.Watch(e.ctx, sock, func(s daemon.Status) error {
				warned = false
				mu.Lock()
				signIn = signInURL(s)
				mu.Unlock()
				events <- eventOf(s)
				return nil
			})
			if e.ctx.Err() != nil {
				return
			}
			if !warned {
				e.log.Warn("daemon not reachable; retrying every 5 s", "err", err)
				warned = true
			}
			select {
			case <-e.ctx.Done():
			case <-time.After(5 * time.Second):
			}
		}
	}()
	return agent.Run(e.ctx, events)
}

func eventOf(s daemon.Status) notify.Event {
	ev := notify.Event{State: string(s.State), Reason: s.Reason}
	if n := s.Network; n != nil {
		ev.SSID, ev.Interface, ev.TunnelVision = n.SSID, n.Interface, n.TunnelVision
	}
	if t := s.Tunnel; t != nil {
		ev.Profile, ev.Local, ev.Remote = t.Profile, t.Local, t.Remote
	}
	return ev
}

// openURL starts the desktop's URL opener, and reaps it when it exits: a
// click must not leave a zombie behind.
func openURL(url string) error {
	cmd := exec.Command("xdg-open", url)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("opening %s: %w", url, err)
	}
	go cmd.Wait()
	return nil
}
