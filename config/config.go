// Package config loads roamtun's configuration file: strict TOML (unknown keys
// are errors), decoded into a raw form and then validated into typed values.
// Every problem names the file and line.
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/roamtun/roamtun/internal/tomlfile"
	"github.com/roamtun/roamtun/watcher/portal"
)

// DefaultPath is where the daemon and every subcommand look for the config.
const DefaultPath = "/etc/roamtun/roamtun.toml"

// DefaultPolicyDir is policy_dir when the config does not set it.
const DefaultPolicyDir = "/etc/roamtun/networks.d"

// DNS backends.
const (
	DNSAuto       = "auto"
	DNSResolved   = "resolved"
	DNSResolvconf = "resolvconf"
	DNSFile       = "file"
)

// IPv6Mode says what a profile does with IPv6 on an untrusted network.
type IPv6Mode string

// IPv6 modes.
const (
	IPv6Block  IPv6Mode = "block"  // unreachable: never leaks, never works
	IPv6Tunnel IPv6Mode = "tunnel" // through the link (IPv6CP)
)

// Engine is what runs a profile's PPP link on the laptop.
type Engine string

// Engines.
const (
	EngineBuiltin Engine = "builtin" // roamtun's own PPP (tunnel/ppp) over a TUN
	EnginePPPD    Engine = "pppd"    // the system pppd, the dial command as its pty
)

// Sources the watcher knows; the default list leaves out "portal" (its
// probe goes out on every new network: opt in).
var (
	knownSources   = []string{"nl80211", "networkmanager", "netlink", "dhcp", "portal"}
	defaultSources = []string{"nl80211", "networkmanager", "netlink", "dhcp"}
)

// DefaultPortalProbe is NetworkManager's connectivity check, and
// DefaultPortalAnswer its answer (watcher/portal).
const (
	DefaultPortalProbe  = portal.DefaultURL
	DefaultPortalAnswer = portal.DefaultAnswer
)

// Config is the validated configuration.
type Config struct {
	Path     string
	Daemon   Daemon
	Profiles map[string]*Profile

	doc *tomlfile.Doc // where each key was written, for Check's messages
}

// Daemon is the [daemon] table.
type Daemon struct {
	PolicyDir   string
	StateDir    string
	Socket      string
	SocketGroup string
	DNS         string
	Sources     []string
	// PortalWindow: on a captive portal with lockdown on, how long direct
	// traffic is allowed so the user can sign in (then the tunnel dials).
	PortalWindow time.Duration
	// PortalProbe is the page the "portal" source fetches over plain HTTP
	// to find captive portals ("" disables the source), and
	// PortalProbeAnswer the body it must get (a 204 is always right).
	PortalProbe       string
	PortalProbeAnswer string
}

// Profile is one [profile.NAME] table: how to reach one server.
type Profile struct {
	Name          string
	Host          string
	Port          int
	User          string
	IdentityFile  string
	AgentSocket   string
	KnownHosts    string
	SSHOptions    []string
	RemoteCommand string
	DialCommand   []string
	Interface     string
	LocalName     string // CHAP name of this end ("name")
	RemoteName    string // CHAP name of the far end ("remote_name")
	Secrets       string
	RequireCHAP   bool
	MTU           int
	Keepalive     time.Duration
	IPv6          IPv6Mode
	Engine        Engine
	Lockdown      bool
	HooksDir      string
	// Addresses, when set, pin the server's addresses outright instead of
	// resolving Host (which still names it in known_hosts).
	Addresses []netip.Addr
}

// Profile returns the named profile or an error listing the known ones.
func (c *Config) Profile(name string) (*Profile, error) {
	if p, ok := c.Profiles[name]; ok {
		return p, nil
	}
	names := make([]string, 0, len(c.Profiles))
	for n := range c.Profiles {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("%s: no profile %q: the file defines no [profile.NAME]", c.Path, name)
	}
	return nil, fmt.Errorf("%s: no profile %q (have: %s)", c.Path, name, strings.Join(names, ", "))
}

type rawConfig struct {
	Daemon  rawDaemon              `toml:"daemon"`
	Profile map[string]*rawProfile `toml:"profile"`
}

type rawDaemon struct {
	PolicyDir    *string  `toml:"policy_dir"`
	StateDir     *string  `toml:"state_dir"`
	Socket       *string  `toml:"socket"`
	SocketGroup  *string  `toml:"socket_group"`
	DNS          *string  `toml:"dns"`
	Sources      []string `toml:"sources"`
	PortalWindow *string  `toml:"portal_window"`
	PortalProbe  *string  `toml:"portal_probe"`
	// PortalProbeAnswer is portal_probe_answer.
	PortalProbeAnswer *string `toml:"portal_probe_answer"`
}

type rawProfile struct {
	Host          string   `toml:"host"`
	Port          *int     `toml:"port"`
	User          string   `toml:"user"`
	IdentityFile  string   `toml:"identity_file"`
	AgentSocket   string   `toml:"agent_socket"`
	KnownHosts    *string  `toml:"known_hosts"`
	SSHOptions    []string `toml:"ssh_options"`
	RemoteCommand *string  `toml:"remote_command"`
	DialCommand   []string `toml:"dial_command"`
	Interface     *string  `toml:"interface"`
	Name          *string  `toml:"name"`
	RemoteName    *string  `toml:"remote_name"`
	Secrets       *string  `toml:"secrets"`
	RequireCHAP   *bool    `toml:"require_chap"`
	MTU           *int     `toml:"mtu"`
	Keepalive     *string  `toml:"keepalive"`
	IPv6          *string  `toml:"ipv6"`
	Engine        *string  `toml:"engine"`
	Lockdown      *bool    `toml:"lockdown"`
	HooksDir      *string  `toml:"hooks_dir"`
	Addresses     []string `toml:"addresses"`
}

// Load reads and validates the config file at path. It only reads that
// file: whether the files it names exist is for Check.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// Parse validates config text that was read from path. All problems are
// reported at once, one "FILE:LINE: ..." per line (a tomlfile.Errors).
func Parse(path string, data []byte) (*Config, error) {
	c, doc := parse(path, data)
	if err := doc.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// Inspect is Parse for `roamtun check`: it returns the configuration as far
// as it could be read (defaults in place of bad values, no profile for a
// table too broken to use), whatever was wrong, with every problem.
// complete is false when a syntax error cut the file short, so that keys
// after it (a profile, say) may be missing from the result.
func Inspect(path string, data []byte) (c *Config, problems []*tomlfile.Problem, complete bool) {
	c, doc := parse(path, data)
	return c, doc.Problems(), doc.Complete()
}

func parse(path string, data []byte) (*Config, *tomlfile.Doc) {
	var raw rawConfig
	doc, _ := tomlfile.Decode(path, data, &raw)
	c := &Config{Path: path, Profiles: map[string]*Profile{}, doc: doc}
	c.Daemon = raw.Daemon.validate(doc)
	names := make([]string, 0, len(raw.Profile))
	for n := range raw.Profile {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if p := raw.Profile[n].validate(doc, n); p != nil {
			c.Profiles[n] = p
		}
	}
	return c, doc
}

func or[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// badKey reports a problem with the value of key (a path such as "daemon",
// "dns"), prefixed with the key's dotted name.
func badKey(doc *tomlfile.Doc, key []string, format string, args ...any) {
	doc.Errorf(key, "%s: %s", doc.Name(key), fmt.Sprintf(format, args...))
}

func (r rawDaemon) validate(doc *tomlfile.Doc) Daemon {
	d := Daemon{
		PolicyDir:   or(r.PolicyDir, DefaultPolicyDir),
		StateDir:    or(r.StateDir, "/var/lib/roamtun"),
		Socket:      or(r.Socket, "/run/roamtun/roamtun.sock"),
		SocketGroup: or(r.SocketGroup, "roamtun"),
		DNS:         or(r.DNS, DNSAuto),
		Sources:     r.Sources,
	}
	if r.Sources == nil {
		d.Sources = slices.Clone(defaultSources)
	}
	key := func(k ...string) []string { return append([]string{"daemon"}, k...) }
	pw, err := time.ParseDuration(or(r.PortalWindow, "5m"))
	switch {
	case err != nil:
		badKey(doc, key("portal_window"), "not a duration (e.g. \"5m\"): %q", *r.PortalWindow)
	case pw < 0 || pw > 24*time.Hour:
		badKey(doc, key("portal_window"), "must be between 0 and 24h, not %s", pw)
	}
	d.PortalWindow = pw
	d.PortalProbe = or(r.PortalProbe, DefaultPortalProbe)
	d.PortalProbeAnswer = or(r.PortalProbeAnswer, DefaultPortalAnswer)
	if d.PortalProbe != "" {
		if _, err := portal.CheckURL(d.PortalProbe); err != nil {
			badKey(doc, key("portal_probe"), "%v", err)
			d.PortalProbe = ""
		}
	}
	for _, f := range []struct{ k, v string }{{"policy_dir", d.PolicyDir}, {"state_dir", d.StateDir}, {"socket", d.Socket}} {
		if !filepath.IsAbs(f.v) {
			badKey(doc, key(f.k), "must be an absolute path, not %q", f.v)
		}
	}
	if !slices.Contains([]string{DNSAuto, DNSResolved, DNSResolvconf, DNSFile}, d.DNS) {
		badKey(doc, key("dns"), "must be one of auto, resolved, resolvconf, file; not %q", d.DNS)
	}
	for i, s := range d.Sources {
		if !slices.Contains(knownSources, s) {
			doc.Errorf(key("sources", strconv.Itoa(i)), "daemon.sources: unknown source %q (known: %s)", s, strings.Join(knownSources, ", "))
		}
	}
	return d
}

var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

func (r *rawProfile) validate(doc *tomlfile.Doc, name string) *Profile {
	if r == nil {
		return nil
	}
	p := &Profile{
		Name:          name,
		Host:          r.Host,
		Port:          or(r.Port, 22),
		User:          r.User,
		IdentityFile:  r.IdentityFile,
		AgentSocket:   r.AgentSocket,
		KnownHosts:    or(r.KnownHosts, "/etc/roamtun/known_hosts"),
		SSHOptions:    r.SSHOptions,
		RemoteCommand: or(r.RemoteCommand, "/usr/sbin/pppd notty passive"),
		DialCommand:   r.DialCommand,
		Interface:     or(r.Interface, "roamtun0"),
		LocalName:     or(r.Name, "client"),
		RemoteName:    or(r.RemoteName, "server"),
		Secrets:       or(r.Secrets, "/etc/roamtun/chap-secrets"),
		RequireCHAP:   or(r.RequireCHAP, true),
		MTU:           or(r.MTU, 1200),
		IPv6:          IPv6Mode(or(r.IPv6, string(IPv6Block))),
		Engine:        Engine(or(r.Engine, string(EngineBuiltin))),
		Lockdown:      or(r.Lockdown, true),
		HooksDir:      or(r.HooksDir, "/etc/roamtun/hooks.d"),
	}
	bad := func(k, format string, args ...any) {
		badKey(doc, []string{"profile", name, k}, format, args...)
	}
	ka, err := time.ParseDuration(or(r.Keepalive, "1s"))
	switch {
	case err != nil:
		bad("keepalive", "not a duration (e.g. \"1s\", \"500ms\"): %q", *r.Keepalive)
	case ka < 100*time.Millisecond || ka > 10*time.Minute:
		bad("keepalive", "must be between 100ms and 10m, not %s", ka)
	}
	p.Keepalive = ka
	// A dial_command written but rejected (its type, say) still means ssh is
	// not used: do not ask for ssh's keys as well.
	dialing := len(p.DialCommand) > 0 || doc.Has("profile", name, "dial_command")
	// After a syntax error, a key missing may just be past it: only what
	// is there is judged.
	required := !dialing && doc.Complete()
	switch {
	case dialing:
		if len(p.DialCommand) > 0 && p.DialCommand[0] == "" {
			bad("dial_command", "the first element (the program) is empty")
		}
	case p.Host == "" && required:
		bad("host", "is required (or set dial_command)")
	case p.Host != "" && (strings.ContainsAny(p.Host, " \t\n'\"") || strings.HasPrefix(p.Host, "-")):
		bad("host", "not a host name or address: %q", p.Host)
	}
	switch {
	case dialing:
	case p.User == "" && required:
		bad("user", "is required (or set dial_command)")
	case p.User != "" && (strings.HasPrefix(p.User, "-") || strings.ContainsAny(p.User, " \t\n@:")):
		bad("user", "not a user name: %q", p.User)
	}
	if required && p.IdentityFile == "" && p.AgentSocket == "" {
		bad("identity_file", "is required unless agent_socket is set")
	}
	if p.Port < 1 || p.Port > 65535 {
		bad("port", "must be 1..65535, not %d", p.Port)
	}
	for _, f := range []struct{ k, v string }{{"identity_file", p.IdentityFile}, {"agent_socket", p.AgentSocket},
		{"known_hosts", p.KnownHosts}, {"secrets", p.Secrets}, {"hooks_dir", p.HooksDir}} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			bad(f.k, "must be an absolute path, not %q", f.v)
		}
	}
	for i, o := range p.SSHOptions {
		key := []string{"profile", name, "ssh_options", strconv.Itoa(i)}
		if k, _, ok := strings.Cut(o, "="); !ok || k == "" || strings.ContainsAny(k, " \t") {
			doc.Errorf(key, "profile.%s.ssh_options: %q is not Key=Value (as for ssh -o)", name, o)
		} else if strings.EqualFold(k, "StrictHostKeyChecking") && !strings.EqualFold(strings.TrimPrefix(o, k+"="), "yes") {
			doc.Errorf(key, "profile.%s.ssh_options: %q: host keys are always pinned; StrictHostKeyChecking cannot be relaxed", name, o)
		}
	}
	if !ifnameRE.MatchString(p.Interface) {
		bad("interface", "not a valid interface name (1-15 of A-Z a-z 0-9 _ . -): %q", p.Interface)
	}
	if p.LocalName == "" {
		bad("name", "must not be empty")
	}
	if p.RemoteName == "" {
		bad("remote_name", "must not be empty")
	}
	if p.MTU < 576 || p.MTU > 16384 {
		bad("mtu", "must be 576..16384, not %d", p.MTU)
	}
	if p.IPv6 != IPv6Block && p.IPv6 != IPv6Tunnel {
		bad("ipv6", "must be \"block\" or \"tunnel\", not %q", p.IPv6)
	}
	switch {
	case p.Engine != EngineBuiltin && p.Engine != EnginePPPD:
		bad("engine", "must be \"builtin\" or \"pppd\", not %q", p.Engine)
	case p.Engine == EnginePPPD && p.IPv6 == IPv6Tunnel:
		// pppd would run IPv6CP, but its ipv6-up comes apart from ip-up
		// and the routes are made once: not wired up yet.
		bad("engine", "\"pppd\" cannot be used with ipv6 = \"tunnel\" (yet): use the builtin engine or ipv6 = \"block\"")
	}
	p.Addresses = parseAddresses(doc, name, r.Addresses)
	return p
}

// parseAddresses validates the addresses key: IP literals of a host (no
// zones, networks, unspecified or multicast addresses).
func parseAddresses(doc *tomlfile.Doc, profile string, list []string) []netip.Addr {
	if list != nil && len(list) == 0 {
		badKey(doc, []string{"profile", profile, "addresses"}, "empty list; leave it out to resolve host instead")
	}
	var out []netip.Addr
	for i, s := range list {
		key := []string{"profile", profile, "addresses", strconv.Itoa(i)}
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			doc.Errorf(key, "profile.%s.addresses: not an IP address: %q", profile, s)
		case a.Zone() != "":
			doc.Errorf(key, "profile.%s.addresses: %q: an address with a zone cannot be pinned", profile, s)
		case a.IsUnspecified() || a.IsMulticast():
			doc.Errorf(key, "profile.%s.addresses: %q is not a host's address", profile, s)
		default:
			out = append(out, a.Unmap())
		}
	}
	return out
}

// ParseAddr is netip.ParseAddr with an error that names what was expected.
func ParseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("not an IP address: %q", s)
	}
	return a, nil
}

// IsNotExist reports whether err means the config file is missing.
func IsNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
