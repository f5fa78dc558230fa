package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/control"
	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/watcher/portal"
)

func init() {
	register(&command{name: "status", usage: "[--config FILE] [--json] [--watch]",
		help: "the daemon's state; --watch streams one line (JSON object with --json) per change", run: runStatus})
	register(&command{name: "up", usage: "[--config FILE] [PROFILE]",
		help: "tunnel the current network until it changes, whatever the policy says", run: runUp})
	register(&command{name: "down", usage: "[--config FILE]",
		help: "use the current network directly until it changes", run: runDown})
}

// socketOf reads only what it needs from the config: the daemon's socket.
func socketOf(path string) (string, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return "", err
	}
	return cfg.Daemon.Socket, nil
}

func runStatus(e *env, args []string) error {
	fs, cfgPath := newFlags(e, commands["status"])
	asJSON := fs.Bool("json", false, "print JSON (DESIGN.md's status object)")
	watch := fs.Bool("watch", false, "keep printing on every change")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("status takes no arguments")
	}
	sock, err := socketOf(*cfgPath)
	if err != nil {
		return err
	}
	print := func(s daemon.Status) error {
		if *asJSON {
			return json.NewEncoder(e.stdout).Encode(s)
		}
		writeStatus(e.stdout, s)
		if *watch {
			fmt.Fprintln(e.stdout)
		}
		return nil
	}
	if *watch {
		return control.Watch(e.ctx, sock, print)
	}
	resp, err := control.Call(e.ctx, sock, control.Request{Cmd: "status"})
	if err != nil {
		return err
	}
	return print(*resp.Status)
}

// writeStatus is the status for people.
func writeStatus(w io.Writer, s daemon.Status) {
	fmt.Fprintf(w, "state:    %s — %s\n", s.State, s.Reason)
	if n := s.Network; n != nil {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s", n.Interface, n.Kind)
		if n.Kind == "wifi" {
			fmt.Fprintf(&b, " %q", n.SSID)
			if n.Security != "" {
				fmt.Fprintf(&b, " (%s)", n.Security)
			}
			if n.BSSID != "" {
				fmt.Fprintf(&b, " bssid %s", n.BSSID)
			}
		}
		if n.Gateway != "" {
			fmt.Fprintf(&b, " gateway %s", n.Gateway)
			if n.GatewayMAC != "" {
				fmt.Fprintf(&b, " (%s)", n.GatewayMAC)
			}
		}
		fmt.Fprintf(&b, ", rule %s → %s", n.Rule, n.Action)
		fmt.Fprintf(w, "network:  %s\n", b.String())
		if n.Connectivity != "" {
			fmt.Fprintf(w, "reach:    %s\n", n.Connectivity)
		}
		// The network chose the portal's address: only a clean web
		// address reaches the terminal.
		if u, err := portal.SignInURL(nil, n.PortalURL); n.PortalURL != "" && err == nil {
			fmt.Fprintf(w, "sign in:  %s\n", u)
		}
		if n.TunnelVision {
			fmt.Fprintf(w, "warning:  this network's DHCP pushes routes over the default route (TunnelVision); the tunnel is not affected\n")
		}
	}
	if t := s.Tunnel; t != nil {
		fmt.Fprintf(w, "tunnel:   profile %s on %s", t.Profile, t.Interface)
		if t.Local != "" {
			fmt.Fprintf(w, " %s → %s, dns %s", t.Local, t.Remote, strings.Join(t.DNS, ","))
		}
		if up, err := time.Parse(time.RFC3339, t.UpSince); err == nil {
			fmt.Fprintf(w, ", up %s", time.Since(up).Round(time.Second))
		}
		fmt.Fprintf(w, ", %d reconnects, rx %s tx %s\n", t.Reconnects, bytesHuman(t.RxBytes), bytesHuman(t.TxBytes))
	}
	if s.Override != "" {
		fmt.Fprintf(w, "override: roamtun %s (until the network changes)\n", s.Override)
	}
}

func bytesHuman(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func runUp(e *env, args []string) error {
	fs, cfgPath := newFlags(e, commands["up"])
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("at most one PROFILE")
	}
	return simpleCall(e, *cfgPath, control.Request{Cmd: "up", Profile: fs.Arg(0)})
}

func runDown(e *env, args []string) error {
	fs, cfgPath := newFlags(e, commands["down"])
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("down takes no arguments")
	}
	return simpleCall(e, *cfgPath, control.Request{Cmd: "down"})
}

func simpleCall(e *env, cfgPath string, req control.Request) error {
	sock, err := socketOf(cfgPath)
	if err != nil {
		return err
	}
	resp, err := control.Call(e.ctx, sock, req)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, resp.Message)
	return nil
}
