package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/roamtun/roamtun/policy"
	"github.com/roamtun/roamtun/watcher"
)

func init() {
	register(&command{name: "explain",
		usage: "[--json] [--interface wifi|ethernet] [--ssid SSID] [--bssid MAC] [--security KIND] [--gateway-mac MAC]",
		help:  "show the policy's verdict for such a network", run: runExplain})
}

// explainJSON is the --json output: exactly these four keys.
type explainJSON struct {
	Action  string `json:"action"`
	Rule    string `json:"rule"`
	Profile string `json:"profile"`
	Reason  string `json:"reason"`
}

func runExplain(e *env, args []string) error {
	fs, cfgPath := newFlags(e, commands["explain"])
	asJSON := fs.Bool("json", false, "print {\"action\",\"rule\",\"profile\",\"reason\"}")
	kind := fs.String("interface", "wifi", "kind of link: `wifi|ethernet`")
	ssid := fs.String("ssid", "", "`SSID` (raw bytes as given)")
	bssid := fs.String("bssid", "", "BSSID, a `MAC` such as aa:bb:cc:dd:ee:ff")
	sec := fs.String("security", "", "security `KIND`: none, open, wep, wpa, wpa2, wpa3, 8021x (default wpa2 on wifi, none on ethernet)")
	gwmac := fs.String("gateway-mac", "", "gateway `MAC` address")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	n := watcher.Network{Interface: "explain", SSID: *ssid,
		BSSID: strings.ToLower(*bssid), GatewayMAC: strings.ToLower(*gwmac)}
	switch *kind {
	case "wifi":
		n.Kind, n.Security = watcher.KindWifi, watcher.SecurityWPA2
	case "ethernet":
		n.Kind = watcher.KindEthernet
	default:
		return usagef("--interface must be wifi or ethernet, not %q", *kind)
	}
	if *sec != "" {
		s, ok := parseSecurity(*sec)
		if !ok {
			return usagef("--security: unknown kind %q (none, open, wep, wpa, wpa2, wpa3, 8021x)", *sec)
		}
		n.Security = s
	}
	_, pol, err := loadPolicy(*cfgPath)
	if err != nil {
		return err
	}
	d := pol.Decide(e.ctx, n, policy.SSHVerifier{})
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		return enc.Encode(explainJSON{string(d.Action), d.Rule, d.Profile, d.Reason})
	}
	fmt.Fprintf(e.stdout, "%s (rule %s", d.Action, d.Rule)
	if d.Profile != "" {
		fmt.Fprintf(e.stdout, ", profile %s", d.Profile)
	}
	fmt.Fprintf(e.stdout, ")\n%s\n", d.Reason)
	return nil
}

func parseSecurity(s string) (watcher.Security, bool) {
	switch s = strings.ToLower(s); s {
	case "none":
		return watcher.SecurityNone, true
	case "open", "wep", "wpa", "wpa2", "wpa3", "8021x":
		return watcher.Security(s), true
	}
	return "", false
}
