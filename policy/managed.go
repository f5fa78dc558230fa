package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/roamtun/roamtun/internal/atomicfile"
	"github.com/roamtun/roamtun/internal/tomlfile"
)

// ManagedFile is the one policy file roamtun itself edits (trust/untrust);
// it never writes the user's files. Its name sorts after typical hand-written
// files (10-home.toml) so their rules come first.
const ManagedFile = "50-roamtun-cli.toml"

// managedHeader marks the file as ours; a file without it is never touched.
const managedHeader = "# Managed by roamtun (roamtun trust / untrust): hand edits may be lost.\n"

// TrustSpec is what `roamtun trust` asks for.
type TrustSpec struct {
	// Interface is "wifi" (the default: a network named by its SSID) or
	// "ethernet" (a wired network, named by its gateway's MAC).
	Interface  string
	SSID       string   // raw bytes
	Security   []string // empty: wpa2, wpa3
	BSSID      []string // pins (MAC globs)
	GatewayMAC []string
	Verify     string // "HOST:PORT" or ""
	Profile    string // for verify's known_hosts; "" = the default's
}

// Trust adds (or replaces) the trust rule for s.SSID in dir's managed file,
// atomically. The result is validated before it is written.
func Trust(dir string, s TrustSpec, profiles Profiles) error {
	rules, err := readManaged(dir)
	if err != nil {
		return err
	}
	if s.Interface == "ethernet" {
		if len(s.GatewayMAC) == 0 {
			return errors.New("trusting a wired network needs its gateway's MAC (gateway_mac)")
		}
		s.SSID, s.BSSID = "", nil
		if len(s.Security) == 0 {
			s.Security = []string{"none", "8021x"}
		}
		rules = slices.DeleteFunc(rules, func(r TrustSpec) bool { return r.Interface == "ethernet" && sharesMAC(r.GatewayMAC, s.GatewayMAC) })
	} else {
		s.Interface = "wifi"
		rules = removeSSID(rules, s.SSID)
		if len(s.Security) == 0 {
			s.Security = []string{"wpa2", "wpa3"}
		}
	}
	rules = append(rules, s)
	return writeManaged(dir, rules, profiles)
}

func sharesMAC(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, strings.ToLower(x)) {
			return true
		}
	}
	return false
}

// UntrustWired removes the managed trust rules for the wired network whose
// gateway has mac, like Untrust does for an SSID.
func UntrustWired(dir, mac string, profiles Profiles) (removed bool, err error) {
	mac = strings.ToLower(mac)
	rules, err := readManaged(dir)
	if err != nil {
		return false, err
	}
	kept := slices.DeleteFunc(slices.Clone(rules), func(r TrustSpec) bool {
		return r.Interface == "ethernet" && sharesMAC(r.GatewayMAC, []string{mac})
	})
	if removed = len(kept) != len(rules); removed {
		if err := writeManaged(dir, kept, profiles); err != nil {
			return false, err
		}
	}
	p, err := Load(dir, profiles)
	if err != nil {
		return removed, err
	}
	for _, r := range p.Rules {
		if r.Action == ActionTrust && r.Interface != "wifi" && len(r.GatewayMAC) > 0 && globAny(r.GatewayMAC, mac) {
			return removed, fmt.Errorf("rule %q at %s still trusts the network of gateway %s: edit that file", r.Name, r.Where(), mac)
		}
	}
	return removed, nil
}

// Untrust removes the managed trust rule for ssid. It reports whether there
// was one. It does not (cannot) override a user's own file: if another rule
// still trusts ssid, that is returned as an error naming FILE:LINE, for the
// user to edit.
func Untrust(dir, ssid string, profiles Profiles) (removed bool, err error) {
	rules, err := readManaged(dir)
	if err != nil {
		return false, err
	}
	kept := removeSSID(rules, ssid)
	if removed = len(kept) != len(rules); removed {
		if err := writeManaged(dir, kept, profiles); err != nil {
			return false, err
		}
	}
	p, err := Load(dir, profiles)
	if err != nil {
		return removed, err
	}
	for _, r := range p.Rules {
		if r.Action == ActionTrust && r.HasSSID && ssidMatch(&r, ssid) {
			return removed, fmt.Errorf("rule %q at %s still trusts %s: edit that file", r.Name, r.Where(), quoteSSID(ssid))
		}
	}
	return removed, nil
}

func removeSSID(rules []TrustSpec, ssid string) []TrustSpec {
	out := rules[:0:0]
	for _, r := range rules {
		if r.Interface == "ethernet" || r.SSID != ssid {
			out = append(out, r)
		}
	}
	return out
}

// readManaged parses our own file back into specs.
func readManaged(dir string) ([]TrustSpec, error) {
	name := filepath.Join(dir, ManagedFile)
	data, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading managed policy: %w", err)
	}
	if !strings.HasPrefix(string(data), managedHeader) {
		return nil, fmt.Errorf("%s is not managed by roamtun (no header line): refusing to edit it", name)
	}
	p, err := Parse([]File{{Path: name, Data: data}}, nil)
	if err != nil {
		return nil, fmt.Errorf("reading managed policy: %w", err)
	}
	var out []TrustSpec
	for _, r := range p.Rules {
		s := TrustSpec{Interface: r.Interface, SSID: r.SSID, BSSID: r.BSSID, GatewayMAC: r.GatewayMAC, Verify: r.Verify, Profile: r.Profile}
		for _, k := range r.Security {
			s.Security = append(s.Security, securityName(k))
		}
		out = append(out, s)
	}
	return out, nil
}

// render writes specs as TOML; non-UTF-8 SSIDs go in ssid_hex, and glob
// metacharacters in an SSID are escaped so that it matches only itself.
func render(rules []TrustSpec) []byte {
	var b strings.Builder
	b.WriteString(managedHeader)
	for _, r := range rules {
		b.WriteString("\n[[rule]]\n")
		if r.Interface == "ethernet" {
			fmt.Fprintf(&b, "name = %s\n", tomlfile.Quote("cli: wired, gateway "+strings.Join(r.GatewayMAC, ",")))
			b.WriteString("interface = \"ethernet\"\n")
		} else {
			fmt.Fprintf(&b, "name = %s\n", tomlfile.Quote("cli: "+quoteSSID(r.SSID)))
			b.WriteString("interface = \"wifi\"\n")
		}
		if r.Interface == "ethernet" {
			// named by the gateway's MAC alone
		} else if utf8.ValidString(r.SSID) && !strings.ContainsAny(r.SSID, `*?[\`) {
			fmt.Fprintf(&b, "ssid = %s\n", tomlfile.Quote(r.SSID))
		} else {
			fmt.Fprintf(&b, "ssid_hex = %q\n", hex.EncodeToString([]byte(r.SSID)))
		}
		writeList(&b, "bssid", r.BSSID)
		writeList(&b, "security", r.Security)
		writeList(&b, "gateway_mac", r.GatewayMAC)
		if r.Verify != "" {
			fmt.Fprintf(&b, "verify = %s\n", tomlfile.Quote(r.Verify))
		}
		b.WriteString("action = \"trust\"\n")
		if r.Profile != "" {
			fmt.Fprintf(&b, "profile = %s\n", tomlfile.Quote(r.Profile))
		}
	}
	return []byte(b.String())
}

func writeList(b *strings.Builder, key string, vals []string) {
	if len(vals) == 0 {
		return
	}
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = tomlfile.Quote(v)
	}
	fmt.Fprintf(b, "%s = [%s]\n", key, strings.Join(q, ", "))
}

func writeManaged(dir string, rules []TrustSpec, profiles Profiles) error {
	name := filepath.Join(dir, ManagedFile)
	data := render(rules)
	if _, err := Parse([]File{{Path: name, Data: data}}, profiles); err != nil {
		return fmt.Errorf("checking new policy: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating policy dir: %w", err)
	}
	return writeAtomic(name, data)
}

// writeAtomic writes via a temp file, fsync, rename and a directory fsync,
// so a crash leaves either the old file or the new one.
func writeAtomic(name string, data []byte) error {
	if err := atomicfile.WriteFile(name, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}
