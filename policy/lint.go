package policy

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/roamtun/roamtun/internal/tomlfile"
	"github.com/roamtun/roamtun/watcher"
)

// linkKinds are the (interface, security) pairs a network can show: Wi-Fi
// is open, WEP, WPA… or 802.1X; a wired link has no security or 802.1X.
var linkKinds = []struct {
	kind watcher.Kind
	sec  watcher.Security
}{
	{watcher.KindWifi, watcher.SecurityOpen}, {watcher.KindWifi, watcher.SecurityWEP},
	{watcher.KindWifi, watcher.SecurityWPA}, {watcher.KindWifi, watcher.SecurityWPA2},
	{watcher.KindWifi, watcher.SecurityWPA3}, {watcher.KindWifi, watcher.Security8021X},
	{watcher.KindEthernet, watcher.SecurityNone}, {watcher.KindEthernet, watcher.Security8021X},
}

// maxShadowPairs bounds the pairs of rules compared for shadowing, so that
// a policy of thousands of rules is still checked quickly.
const maxShadowPairs = 2_000_000

// Lint returns warnings about rules that are valid but almost surely not
// what was meant: a rule that can never match (nothing has such a link, or
// an earlier rule takes every network it would), a rule that matches every
// network (the rules after it and [default] are never used), and a trust
// rule that trusts too much (every protected network, or an open one by its
// name alone). Each names the rule's file and line.
func (p *Policy) Lint() []*tomlfile.Problem {
	var out []*tomlfile.Problem
	warn := func(r *Rule, format string, args ...any) {
		out = append(out, &tomlfile.Problem{File: r.File, Line: r.Line, Severity: tomlfile.SeverityWarning,
			Message: fmt.Sprintf("rule %q: ", r.Name) + fmt.Sprintf(format, args...)})
	}
	pairs := 0
	for i := range p.Rules {
		r := &p.Rules[i]
		if why := r.never(); why != "" {
			warn(r, "can never match: %s", why)
			continue
		}
		if r.catchAll() {
			warn(r, "has no match criteria, so it matches every network: the %d rule(s) after it and [default] are never used", len(p.Rules)-i-1)
			break // all after it are unreachable: said once
		}
		if j, ok := p.shadowedBy(i, &pairs); ok {
			e := &p.Rules[j]
			warn(r, "can never match: rule %q (%s) comes first and matches every network this one does", e.Name, e.Where())
			continue
		}
		if r.Action == ActionTrust {
			if why := r.trustsTooMuch(); why != "" {
				warn(r, "%s", why)
			}
		}
	}
	return out
}

// accepts reports whether r's interface and security admit a link of kind k
// with security s (the other criteria aside).
func (r *Rule) accepts(k watcher.Kind, s watcher.Security) bool {
	n := watcher.Network{Kind: k, Security: s}
	return r.interfaceOK(&n) && r.securityOK(&n)
}

func (r *Rule) interfaceOK(n *watcher.Network) bool {
	switch r.Interface {
	case "wifi":
		return n.Kind == watcher.KindWifi
	case "ethernet":
		return n.Kind == watcher.KindEthernet
	}
	return true
}

// never says why no network can match r, or "".
func (r *Rule) never() string {
	wifi, wired := false, false
	for _, l := range linkKinds {
		if r.accepts(l.kind, l.sec) {
			wifi = wifi || l.kind == watcher.KindWifi
			wired = wired || l.kind == watcher.KindEthernet
		}
	}
	// A wired link has no SSID (it is "") and no BSSID.
	if wired && (r.HasSSID && r.SSID != "" && !r.SSIDGlob || len(r.BSSID) > 0) {
		wired = false
	}
	if wifi || wired {
		return ""
	}
	switch {
	case r.Interface == "ethernet" && (r.HasSSID || len(r.BSSID) > 0):
		return "a wired network has no SSID or BSSID"
	case len(r.Security) > 0:
		return fmt.Sprintf("no %s network has security %s", ifaceWords(r.Interface), r.securityWords())
	}
	return fmt.Sprintf("a %s trust rule without security accepts only %s", ifaceWords(r.Interface), r.securityWords())
}

func ifaceWords(i string) string {
	switch i {
	case "wifi":
		return "Wi-Fi"
	case "ethernet":
		return "wired"
	}
	return ""
}

func (r *Rule) securityWords() string {
	if len(r.Security) == 0 {
		return "wpa2, wpa3, 8021x"
	}
	s := make([]string, len(r.Security))
	for i, k := range r.Security {
		s[i] = fmt.Sprintf("%q", securityName(k))
	}
	return strings.Join(s, ", ")
}

// catchAll: nothing but the action, so every network matches.
func (r *Rule) catchAll() bool {
	return r.Action != ActionTrust && r.Interface == "any" && !r.HasSSID && len(r.BSSID) == 0 &&
		len(r.Security) == 0 && len(r.GatewayMAC) == 0 && r.Verify == ""
}

// trustsTooMuch says how a trust rule trusts networks anyone can set up.
func (r *Rule) trustsTooMuch() string {
	if r.Verify != "" || len(r.GatewayMAC) > 0 || len(r.BSSID) > 0 {
		return "" // pinned to the network's router or access points, or to the server's key
	}
	anySSID := !r.HasSSID || r.SSIDGlob && r.SSID == "*"
	if r.accepts(watcher.KindEthernet, watcher.SecurityNone) && (anySSID || r.SSID == "") {
		return "trusts every unprotected wired network: pin its gateway_mac"
	}
	for _, k := range []watcher.Security{watcher.SecurityOpen, watcher.SecurityWEP} {
		switch {
		case !slices.Contains(r.Security, k):
		case anySSID:
			return fmt.Sprintf("trusts every network with security %q: pin its bssid or gateway_mac", securityName(k))
		default:
			return fmt.Sprintf("trusts a network with security %q by its name alone: anyone can set up one called %s; pin its bssid or gateway_mac",
				securityName(k), quoteSSID(r.SSID))
		}
	}
	if anySSID {
		return "matches every protected network (no ssid, bssid or gateway_mac pin): " +
			"the password of any network anywhere, a café's say, makes it trusted"
	}
	return ""
}

// shadowedBy finds an earlier rule that matches every network rule i does
// (so that i is never reached). pairs counts comparisons against a budget.
func (p *Policy) shadowedBy(i int, pairs *int) (int, bool) {
	r := &p.Rules[i]
	for j := range i {
		if *pairs >= maxShadowPairs {
			return 0, false
		}
		*pairs++
		if p.Rules[j].covers(r) {
			return j, true
		}
	}
	return 0, false
}

// covers reports whether every network that b matches is matched by a
// first (it answers only when that is simple to see).
func (a *Rule) covers(b *Rule) bool {
	if a.Verify != "" {
		return false // a failed probe falls through to b
	}
	if !ssidCovers(a, b) || !pinsCover(a.BSSID, b.BSSID) || !pinsCover(a.GatewayMAC, b.GatewayMAC) {
		return false
	}
	for _, l := range linkKinds {
		if b.accepts(l.kind, l.sec) && !a.accepts(l.kind, l.sec) {
			return false
		}
	}
	return true
}

func ssidCovers(a, b *Rule) bool {
	switch {
	case !a.HasSSID:
		return true
	case !b.HasSSID:
		return false
	case !a.SSIDGlob && !b.SSIDGlob:
		return a.SSID == b.SSID
	case a.SSIDGlob && !b.SSIDGlob:
		ok, _ := path.Match(a.SSID, b.SSID)
		return ok
	}
	return a.SSIDGlob && a.SSID == b.SSID
}

// pinsCover: every address b's pins allow is allowed by a's.
func pinsCover(a, b []string) bool {
	if len(a) == 0 {
		return true
	}
	if len(b) == 0 {
		return false
	}
	for _, g := range b {
		if !slices.Contains(a, g) && (strings.ContainsAny(g, "*?") || !globAny(a, g)) {
			return false
		}
	}
	return true
}
