// Package policy judges a network against the user's trust policy: ordered
// [[rule]] tables from policy_dir/*.toml, first match wins, unmatched networks
// get [default]. It is pure apart from reading those files and the host-key
// probe (Verifier) it is handed; it never touches the system.
package policy

import (
	"fmt"
	"strings"

	"github.com/roamtun/roamtun/watcher"
)

// Action is what to do on a network.
type Action string

// Actions a rule may take.
const (
	ActionTrust  Action = "trust"  // use the network directly
	ActionTunnel Action = "tunnel" // carry everything through a profile's tunnel
	ActionBlock  Action = "block"  // let nothing out
)

// DefaultRule is the Rule name a Decision carries when no rule matched.
const DefaultRule = "default"

// Rule is one validated [[rule]] table.
type Rule struct {
	Name string
	File string // path of the file it came from
	Line int    // line of its [[rule]] header

	Interface  string // "wifi", "ethernet" or "any"
	SSID       string // raw bytes (glob when HasGlob)
	HasSSID    bool   // false: any SSID
	SSIDGlob   bool   // SSID holds path.Match metacharacters
	BSSID      []string
	Security   []watcher.Security // empty: any, except for trust rules (see secureKinds)
	GatewayMAC []string
	Verify     string // "HOST:PORT" or ""
	Action     Action
	Profile    string
}

// Where returns "FILE:LINE" for messages.
func (r *Rule) Where() string { return fmt.Sprintf("%s:%d", r.File, r.Line) }

// Default is the policy for networks no rule matches.
type Default struct {
	Action  Action
	Profile string
	File    string // "" for the built-in default
	Line    int
}

// Policy is a loaded, validated policy. It is immutable once loaded, so one
// value may be shared by any number of goroutines.
type Policy struct {
	Rules   []Rule
	Default Default
	Files   []string          // the files read, in order
	hosts   map[string]string // profile → known_hosts path, for verify
}

// Profiles describes the configured profiles to the loader: name → the
// profile's known_hosts file (used by verify). A nil Profiles disables the
// check that rules name existing profiles.
type Profiles map[string]string

// Decision is the verdict on one network.
type Decision struct {
	Action  Action
	Rule    string // rule name, or DefaultRule
	Profile string
	Reason  string // in words, including trust rules that nearly matched
	// NearMisses explains each trust rule that matched the network's SSID
	// but was refused on security, a BSSID or gateway pin or verify: what
	// the user needs to see when an evil twin shows up.
	NearMisses []string
}

// secureKinds is what a trust rule without `security` accepts. Open, WEP
// (as good as open: its key is recovered in minutes) and none (unprotected
// wired) never match implicitly, nor does WPA1/TKIP; a user who wants to
// trust such a network must say so with an explicit security list.
var secureKinds = []watcher.Security{watcher.SecurityWPA2, watcher.SecurityWPA3, watcher.Security8021X}

// knownKinds are the valid security values in rules ("none" is the wired
// network without 802.1X, watcher.SecurityNone).
var knownKinds = map[string]watcher.Security{
	"none": watcher.SecurityNone, "open": watcher.SecurityOpen, "wep": watcher.SecurityWEP,
	"wpa": watcher.SecurityWPA, "wpa2": watcher.SecurityWPA2, "wpa3": watcher.SecurityWPA3,
	"8021x": watcher.Security8021X,
}

func securityName(s watcher.Security) string {
	if s == watcher.SecurityNone {
		return "none"
	}
	return string(s)
}

// describe is the rule's match in words, for `roamtun networks`.
func (r *Rule) describe() string {
	var p []string
	if r.Interface != "any" {
		p = append(p, "interface "+r.Interface)
	}
	if r.HasSSID {
		p = append(p, "ssid "+quoteSSID(r.SSID))
	}
	if len(r.BSSID) > 0 {
		p = append(p, "bssid "+strings.Join(r.BSSID, ","))
	}
	if len(r.Security) > 0 {
		s := make([]string, len(r.Security))
		for i, k := range r.Security {
			s[i] = securityName(k)
		}
		p = append(p, "security "+strings.Join(s, ","))
	} else if r.Action == ActionTrust {
		p = append(p, "security wpa2,wpa3,8021x (implicit)")
	}
	if len(r.GatewayMAC) > 0 {
		p = append(p, "gateway_mac "+strings.Join(r.GatewayMAC, ","))
	}
	if r.Verify != "" {
		p = append(p, "verify "+r.Verify)
	}
	if len(p) == 0 {
		return "any network"
	}
	return strings.Join(p, ", ")
}

// Describe returns the rule's match conditions in words.
func (r *Rule) Describe() string { return r.describe() }

func quoteSSID(s string) string {
	if s == "" {
		return `"" (hidden)`
	}
	return watcher.EscapeSSID(s)
}
