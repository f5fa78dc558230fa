package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/control"
	"github.com/roamtun/roamtun/daemon"
	"github.com/roamtun/roamtun/policy"
	"github.com/roamtun/roamtun/watcher"
)

func init() {
	register(&command{name: "trust",
		usage: "[--bssid[=MAC]] [--gateway[=MAC]] [--security KINDS] [--verify HOST:PORT] [--profile PROFILE] [SSID]",
		help:  "trust the current or named network", run: runTrust})
	register(&command{name: "untrust", usage: "[SSID]",
		help: "stop trusting the current or named network", run: runUntrust})
	register(&command{name: "networks", usage: "[--json] [--config FILE]",
		help: "list the policy's rules and default", run: runNetworks})
}

// pinFlag is --bssid / --gateway: alone it means "pin the current one"
// (DESIGN.md); with a value (--bssid=MAC or --bssid MAC) it pins that MAC.
// It may be repeated.
type pinFlag struct {
	current bool
	macs    []string
}

func (p *pinFlag) String() string   { return strings.Join(p.macs, ",") }
func (p *pinFlag) IsBoolFlag() bool { return true }
func (p *pinFlag) Set(s string) error {
	switch s {
	case "true":
		p.current = true
	case "false":
		p.current = false
	default:
		p.macs = append(p.macs, strings.ToLower(s))
	}
	return nil
}

// joinPinValues turns "--bssid MAC" into "--bssid=MAC" when the next
// argument looks like a MAC (glob): the flag is boolean for "pin the current".
func joinPinValues(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		if (name == "bssid" || name == "gateway") && strings.HasPrefix(a, "-") && i+1 < len(args) && looksLikeMAC(args[i+1]) {
			out = append(out, a+"="+args[i+1])
			i++
			continue
		}
		if a == "--" {
			return append(out, args[i:]...)
		}
		out = append(out, a)
	}
	return out
}

func looksLikeMAC(s string) bool {
	if strings.Count(s, ":") < 2 {
		return false
	}
	for _, c := range strings.ToLower(s) {
		if !strings.ContainsRune("0123456789abcdef:*?", c) {
			return false
		}
	}
	return true
}

func runTrust(e *env, args []string) error {
	fs, cfgPath := newFlags(e, commands["trust"])
	var bssid, gw pinFlag
	fs.Var(&bssid, "bssid", "pin the BSSID: alone the current one, or `MAC` (glob; repeatable)")
	fs.Var(&gw, "gateway", "pin the gateway MAC: alone the current one, or `MAC` (glob; repeatable)")
	sec := fs.String("security", "wpa2,wpa3", "accepted security `KINDS`, comma-separated")
	verify := fs.String("verify", "", "trust only if `HOST:PORT` answers with the profile's pinned host key")
	profile := fs.String("profile", "", "`PROFILE` whose known_hosts verify uses (default: the policy default's)")
	if err := parseFlags(fs, joinPinValues(args)); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("at most one SSID, got %d arguments", fs.NArg())
	}
	if fs.NArg() == 0 {
		if len(bssid.macs) > 0 || len(gw.macs) > 0 {
			return usagef("explicit --bssid=MAC / --gateway=MAC go with a named SSID")
		}
		// The current network is the daemon's to know; without --security
		// it picks the default for the network's kind (Wi-Fi: wpa2, wpa3;
		// wired: none, 8021x).
		var kinds []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "security" {
				kinds = splitList(*sec)
			}
		})
		return simpleCall(e, *cfgPath, control.Request{Cmd: "trust", PinBSSID: bssid.current, PinGateway: gw.current,
			Security: kinds, Verify: *verify, Profile: *profile})
	}
	if bssid.current || gw.current {
		return usagef("--bssid / --gateway without a MAC pin the current network's: name no SSID, or give the MAC")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	spec := policy.TrustSpec{SSID: fs.Arg(0), BSSID: bssid.macs, GatewayMAC: gw.macs,
		Security: splitList(*sec), Verify: *verify, Profile: *profile}
	if err := policy.Trust(cfg.Daemon.PolicyDir, spec, policyProfiles(cfg)); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "trusting %s (in %s/%s)\n", watcher.EscapeSSID(spec.SSID), cfg.Daemon.PolicyDir, policy.ManagedFile)
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func runUntrust(e *env, args []string) error {
	fs, cfgPath := newFlags(e, commands["untrust"])
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("at most one SSID, got %d arguments", fs.NArg())
	}
	if fs.NArg() == 0 {
		return simpleCall(e, *cfgPath, control.Request{Cmd: "untrust"})
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	ssid := fs.Arg(0)
	removed, err := policy.Untrust(cfg.Daemon.PolicyDir, ssid, policyProfiles(cfg))
	if removed {
		fmt.Fprintf(e.stdout, "removed the trust rule for %s\n", watcher.EscapeSSID(ssid))
	} else if err == nil {
		fmt.Fprintf(e.stdout, "no rule trusts %s\n", watcher.EscapeSSID(ssid))
	}
	return err
}

func runNetworks(e *env, args []string) error {
	fs, cfgPath := newFlags(e, commands["networks"])
	asJSON := fs.Bool("json", false, `print {"rules":[RULE...],"default":RULE,"seen":[NETWORK...]}, each RULE {"file","line","rule","match","action","profile"}, each NETWORK as in status with "last_seen"`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	cfg, pol, err := loadPolicy(*cfgPath)
	if err != nil {
		return err
	}
	// The networks the daemon judged recently, when it runs.
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	resp, seenErr := control.Call(ctx, cfg.Daemon.Socket, control.Request{Cmd: "seen"})
	if *asJSON {
		return writeNetworksJSON(e.stdout, pol, resp.Seen)
	}
	w := tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "WHERE\tRULE\tMATCH\tACTION")
	for i := range pol.Rules {
		r := &pol.Rules[i]
		act := string(r.Action)
		if r.Profile != "" {
			act += " (" + r.Profile + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.Where(), r.Name, r.Describe(), act)
	}
	where := "built-in"
	if pol.Default.File != "" {
		where = fmt.Sprintf("%s:%d", pol.Default.File, pol.Default.Line)
	}
	act := string(pol.Default.Action)
	if pol.Default.Profile != "" {
		act += " (" + pol.Default.Profile + ")"
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", where, policy.DefaultRule, "anything else", act)
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if seenErr != nil {
		fmt.Fprintf(e.stdout, "\n(no recently seen networks: %v)\n", seenErr)
		return nil
	}
	fmt.Fprintln(e.stdout, "\nRECENTLY SEEN")
	w = tabwriter.NewWriter(e.stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(w, "LAST SEEN\tINTERFACE\tNETWORK\tSECURITY\tRULE\tACTION")
	for _, n := range resp.Seen {
		name := n.SSID
		if n.Kind != "wifi" {
			name = "gateway " + n.GatewayMAC
		} else if n.BSSID != "" {
			name += " (" + n.BSSID + ")"
		}
		sec := n.Security
		if sec == "" {
			sec = "none"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.LastSeen, n.Interface, name, sec, n.Rule, n.Action)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	return nil
}

// networkRuleJSON is one rule in the --json output of networks. The
// default has rule "default", match "anything else", and no file or line
// when it is the built-in one.
type networkRuleJSON struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Rule    string `json:"rule"`
	Match   string `json:"match"`
	Action  string `json:"action"`
	Profile string `json:"profile"`
}

func writeNetworksJSON(w io.Writer, pol *policy.Policy, seen []daemon.SeenNetwork) error {
	out := struct {
		Rules   []networkRuleJSON    `json:"rules"`
		Default networkRuleJSON      `json:"default"`
		Seen    []daemon.SeenNetwork `json:"seen"`
	}{Rules: []networkRuleJSON{}, Seen: seen}
	if out.Seen == nil {
		out.Seen = []daemon.SeenNetwork{}
	}
	for i := range pol.Rules {
		r := &pol.Rules[i]
		out.Rules = append(out.Rules, networkRuleJSON{File: r.File, Line: r.Line, Rule: r.Name,
			Match: r.Describe(), Action: string(r.Action), Profile: r.Profile})
	}
	d := pol.Default
	out.Default = networkRuleJSON{File: d.File, Line: d.Line, Rule: policy.DefaultRule,
		Match: "anything else", Action: string(d.Action), Profile: d.Profile}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}
