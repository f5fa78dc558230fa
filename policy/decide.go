package policy

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/roamtun/roamtun/watcher"
)

// Verifier probes addr ("HOST:PORT") for an SSH host key pinned in the
// knownHosts file; nil means the key matched. It must honour ctx.
type Verifier interface {
	Verify(ctx context.Context, addr, knownHosts string) error
}

// maxNear bounds the near misses spelled out in a Decision.
const maxNear = 5

// miss says why a rule did not match; why == "" means it did.
type miss struct {
	why      string
	nearSSID bool // interface and SSID matched: a near miss for a trust rule
}

// Decide judges n: the first rule that matches wins; else the default.
// v probes verify rules (nil: verify rules never match). Decide has no side
// effects other than calling v.
func (p *Policy) Decide(ctx context.Context, n watcher.Network, v Verifier) Decision {
	var near []string
	more := 0
	for i := range p.Rules {
		r := &p.Rules[i]
		m := r.match(&n)
		if m.why == "" && r.Verify != "" {
			m.why, m.nearSSID = p.verify(ctx, r, v), true
		}
		if m.why == "" {
			d := Decision{Action: r.Action, Rule: r.Name, Profile: p.profileFor(r),
				Reason: fmt.Sprintf("rule %q (%s) matched: %s", r.Name, r.Where(), r.matched(&n))}
			return withNear(d, near, more)
		}
		if m.nearSSID && r.Action == ActionTrust && len(near) >= maxNear {
			more++
		} else if m.nearSSID && r.Action == ActionTrust {
			near = append(near, fmt.Sprintf("trust rule %q (%s) not applied: %s", r.Name, r.Where(), m.why))
		}
	}
	d := Decision{Action: p.Default.Action, Rule: DefaultRule, Profile: p.Default.Profile}
	if p.Default.File != "" {
		d.Reason = fmt.Sprintf("no rule matched; default (%s:%d)", p.Default.File, p.Default.Line)
	} else {
		d.Reason = "no rule matched; built-in default (unknown networks are untrusted)"
	}
	return withNear(d, near, more)
}

func withNear(d Decision, near []string, more int) Decision {
	if more > 0 {
		near = append(near, fmt.Sprintf("and %d more trust rule(s) for this SSID", more))
	}
	if len(near) > 0 {
		d.NearMisses = near
		d.Reason += "; " + strings.Join(near, "; ")
	}
	return d
}

// profileFor is the profile a rule's decision uses: its own, else the default's.
func (p *Policy) profileFor(r *Rule) string {
	if r.Profile != "" {
		return r.Profile
	}
	if r.Action == ActionTrust {
		return ""
	}
	return p.Default.Profile
}

func (p *Policy) verify(ctx context.Context, r *Rule, v Verifier) string {
	prof := r.Profile
	if prof == "" {
		prof = p.Default.Profile
	}
	kh := p.hosts[prof]
	switch {
	case v == nil:
		return fmt.Sprintf("verify %s: no host-key probe available", r.Verify)
	case kh == "":
		return fmt.Sprintf("verify %s: profile %q has no known_hosts to check against", r.Verify, prof)
	}
	if err := v.Verify(ctx, r.Verify, kh); err != nil {
		return fmt.Sprintf("verify %s failed: %v", r.Verify, err)
	}
	return ""
}

// match checks everything but verify, without allocating on a miss that
// happens before the SSID test (the common case with many rules).
func (r *Rule) match(n *watcher.Network) miss {
	if !r.interfaceOK(n) {
		if r.Interface == "wifi" {
			return miss{why: "not wifi"}
		}
		return miss{why: "not ethernet"}
	}
	if r.HasSSID && !ssidMatch(r, n.SSID) {
		return miss{why: "ssid"}
	}
	if !r.securityOK(n) {
		return miss{why: r.securityMiss(n), nearSSID: true}
	}
	if len(r.BSSID) > 0 && !globAny(r.BSSID, strings.ToLower(n.BSSID)) {
		return miss{why: fmt.Sprintf("BSSID %s is not pinned (%s): possibly an evil twin", orNone(n.BSSID), strings.Join(r.BSSID, ", ")), nearSSID: true}
	}
	if len(r.GatewayMAC) > 0 && !globAny(r.GatewayMAC, strings.ToLower(n.GatewayMAC)) {
		return miss{why: fmt.Sprintf("gateway MAC %s is not pinned (%s)", orNone(n.GatewayMAC), strings.Join(r.GatewayMAC, ", ")), nearSSID: true}
	}
	return miss{}
}

// securityMiss says why n's security does not satisfy r.
func (r *Rule) securityMiss(n *watcher.Network) string {
	want := "wpa2, wpa3 or 8021x (trust rules without security never match open, WEP or unprotected networks)"
	if len(r.Security) > 0 {
		s := make([]string, len(r.Security))
		for i, k := range r.Security {
			s[i] = securityName(k)
		}
		want = strings.Join(s, ", ")
	} else if n.Kind == watcher.KindEthernet && n.Security == watcher.SecurityNone {
		want = "wpa2, wpa3 or 8021x (an unprotected wired network is trusted only by an interface = \"ethernet\" rule that pins its gateway_mac)"
	}
	return fmt.Sprintf("security is %s, rule wants %s", securityName(n.Security), want)
}

func orNone(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

func ssidMatch(r *Rule, ssid string) bool {
	if !r.SSIDGlob {
		return r.SSID == ssid
	}
	ok, _ := path.Match(r.SSID, ssid) // validated at load
	return ok
}

// securityOK: an explicit security list is taken as written; without one,
// a trust rule wants a protected link (secureKinds), or a wired one with no
// link security when it is an ethernet rule pinned to the gateway's MAC: on
// a wired network that pin is the protection (#11).
func (r *Rule) securityOK(n *watcher.Network) bool {
	if len(r.Security) > 0 {
		return slices.Contains(r.Security, n.Security)
	}
	return r.Action != ActionTrust || slices.Contains(secureKinds, n.Security) ||
		r.wiredPinned() && n.Kind == watcher.KindEthernet && n.Security == watcher.SecurityNone
}

// wiredPinned: a rule for wired networks that pins the gateway's MAC.
func (r *Rule) wiredPinned() bool { return r.Interface == "ethernet" && len(r.GatewayMAC) > 0 }

func globAny(globs []string, s string) bool {
	if s == "" {
		return false
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

// matched lists, for the reason, what of n the rule checked.
func (r *Rule) matched(n *watcher.Network) string {
	var p []string
	if r.Interface != "any" {
		p = append(p, "interface "+r.Interface)
	}
	if r.HasSSID {
		p = append(p, "ssid "+quoteSSID(n.SSID))
	}
	wired := len(r.Security) == 0 && r.Action == ActionTrust && r.wiredPinned() && n.Security == watcher.SecurityNone
	if (len(r.Security) > 0 || r.Action == ActionTrust) && !wired {
		p = append(p, "security "+securityName(n.Security))
	}
	if len(r.BSSID) > 0 {
		p = append(p, "bssid "+n.BSSID+" pinned")
	}
	switch {
	case wired:
		p = append(p, "wired network pinned by its gateway MAC "+n.GatewayMAC+
			" (no link security: the pin is what it is trusted by)")
	case len(r.GatewayMAC) > 0:
		p = append(p, "gateway_mac "+n.GatewayMAC+" pinned")
	}
	if r.Verify != "" {
		p = append(p, "verify "+r.Verify+" host key ok")
	}
	if len(p) == 0 {
		return "any network"
	}
	return strings.Join(p, ", ")
}
