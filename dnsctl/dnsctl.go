// Package dnsctl points the system's DNS at the tunnel's servers and puts
// the original back exactly. One small interface, three backends:
// systemd-resolved over D-Bus, resolvconf(8), and /etc/resolv.conf itself.
//
// A change is made in steps so that a journal can record it before anything
// happens: Prepare decides the backend and captures the originals, the
// caller journals the Change (it is JSON) and fsyncs, Apply makes it, Keep
// holds it while the tunnel is up. Revert undoes it, also from a Change read
// back by another process after a crash; reverting something already gone
// is success.
package dnsctl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"
)

// Backends.
const (
	BackendAuto       = "auto"
	BackendResolved   = "resolved"
	BackendResolvconf = "resolvconf"
	BackendFile       = "file"
)

// callTimeout bounds every external call (D-Bus, resolvconf) whose context
// has no earlier deadline: a stuck resolver manager must not block the next
// roam.
const callTimeout = 15 * time.Second

// Settings are what the tunnel wants.
type Settings struct {
	Link    string       // tunnel interface name, e.g. "roamtun0"
	Servers []netip.Addr // DNS servers learned from IPCP
	Domains []string     // optional search domains
}

// Options say how to reach the system's DNS configuration. The zero value
// works on a real system (auto detection, /etc/resolv.conf, the system
// bus), except that the file backend needs a StateDir.
type Options struct {
	Backend    string // "auto" | "resolved" | "resolvconf" | "file"; "" means auto
	StateDir   string // where originals are kept (created 0700 if missing)
	ResolvConf string // default "/etc/resolv.conf"; tests point elsewhere
	Resolvconf string // path of resolvconf(8); default looked up in PATH
	// SystemBus connects to the system bus; default dbus.ConnectSystemBus
	// (a private connection, closed after each use).
	SystemBus func() (*dbus.Conn, error)
	Log       *slog.Logger
}

func (o Options) resolvConf() string {
	if o.ResolvConf != "" {
		return o.ResolvConf
	}
	return "/etc/resolv.conf"
}

func (o Options) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log.With("component", "dnsctl")
}

func (o Options) bus() (*dbus.Conn, error) {
	if o.SystemBus != nil {
		return o.SystemBus()
	}
	return dbus.ConnectSystemBus()
}

func (o Options) resolvconfBin() (string, error) {
	if o.Resolvconf != "" {
		return exec.LookPath(o.Resolvconf) // checks it is there and executable
	}
	return exec.LookPath("resolvconf")
}

// Change is one DNS change: what Apply does and Revert undoes. It carries
// everything Revert needs (no state is kept in memory), so a Change stored
// as JSON and read back by another process reverts the same.
type Change struct {
	Backend string       `json:"backend"` // resolved, resolvconf or file
	Link    string       `json:"link"`
	Servers []netip.Addr `json:"servers"`
	Domains []string     `json:"domains,omitempty"`

	// file: what resolv.conf was before. Exactly one of Missing, Symlink,
	// Original describes it.
	Path     string `json:"path,omitempty"`     // the resolv.conf changed (absolute)
	Missing  bool   `json:"missing,omitempty"`  // there was none
	Symlink  string `json:"symlink,omitempty"`  // it was a symlink to this (as read, relative or not)
	Original string `json:"original,omitempty"` // a regular file: copy of its bytes, in StateDir
	Mode     uint32 `json:"mode,omitempty"`     // its permission bits
	UID      int    `json:"uid,omitempty"`      // its owner
	GID      int    `json:"gid,omitempty"`

	// resolvconf
	Record         string `json:"record,omitempty"`         // e.g. "roamtun0.roamtun"
	Implementation string `json:"implementation,omitempty"` // openresolv, systemd or debian

	// resolved
	IfIndex int `json:"ifindex,omitempty"` // the link's index when prepared
}

func (s Settings) validate() error {
	if err := validLink(s.Link); err != nil {
		return err
	}
	if len(s.Servers) == 0 {
		return errors.New("dns settings: servers: none given")
	}
	for i, a := range s.Servers {
		switch {
		case !a.IsValid() || a.IsUnspecified():
			return fmt.Errorf("dns settings: servers[%d]: %q is not a usable address", i, a)
		case a.Zone() != "":
			return fmt.Errorf("dns settings: servers[%d]: %s has a zone; the server is reached on the link itself", i, a)
		}
	}
	for i, d := range s.Domains {
		if d == "" || len(d) > 253 || strings.ContainsAny(d, " \t\r\n#;") {
			return fmt.Errorf("dns settings: domains[%d]: %q is not a domain", i, d)
		}
	}
	return nil
}

// validLink accepts what the kernel accepts as an interface name: the name
// ends up in file contents, a resolvconf record and log lines.
func validLink(link string) error {
	switch {
	case link == "":
		return errors.New("dns settings: link is empty")
	case len(link) > 15:
		return fmt.Errorf("dns settings: link %q is longer than 15 bytes", link)
	case link == "." || link == ".." || strings.ContainsAny(link, "/: \t\r\n"):
		return fmt.Errorf("dns settings: link %q is not an interface name", link)
	}
	return nil
}

// Prepare decides the backend and captures what Revert needs. It changes
// nothing but files in StateDir. The caller journals the Change before
// Apply.
func Prepare(ctx context.Context, o Options, s Settings) (Change, error) {
	if err := s.validate(); err != nil {
		return Change{}, err
	}
	backend := o.Backend
	if backend == "" || backend == BackendAuto {
		b, why, err := Detect(ctx, o)
		if err != nil {
			return Change{}, err
		}
		o.log().Info("dns backend detected", "backend", b, "why", why)
		backend = b
	}
	c := Change{Backend: backend, Link: s.Link, Domains: s.Domains}
	for _, a := range s.Servers {
		c.Servers = append(c.Servers, a.Unmap()) // ::ffff:a.b.c.d is an IPv4 server
	}
	switch backend {
	case BackendFile:
		return c, prepareFile(o, &c)
	case BackendResolvconf:
		return c, prepareResolvconf(ctx, o, &c)
	case BackendResolved:
		ifi, err := net.InterfaceByName(s.Link)
		if err != nil {
			return c, fmt.Errorf("dns: link %s: %w", s.Link, err)
		}
		c.IfIndex = ifi.Index
		return c, nil
	}
	return c, unknownBackend(backend)
}

func unknownBackend(b string) error {
	return fmt.Errorf("dns: unknown backend %q (auto, resolved, resolvconf, file)", b)
}

// Apply makes the change. Applying the same Change again is harmless.
func Apply(ctx context.Context, o Options, c Change) error {
	if err := validLink(c.Link); err != nil {
		return fmt.Errorf("dns change: %w", err)
	}
	switch c.Backend {
	case BackendFile:
		return applyFile(o, c)
	case BackendResolvconf:
		return applyResolvconf(ctx, o, c)
	case BackendResolved:
		return applyResolved(ctx, o, c)
	}
	return unknownBackend(c.Backend)
}

// Revert undoes the change; one already undone (or never applied) is done.
// It needs nothing but the Change (and the files it names), so it works in
// a new process after a crash.
func Revert(ctx context.Context, o Options, c Change) error {
	switch c.Backend {
	case BackendFile:
		return revertFile(o, c)
	case BackendResolvconf:
		return revertResolvconf(ctx, o, c)
	case BackendResolved:
		return revertResolved(ctx, o, c)
	}
	return unknownBackend(c.Backend)
}

// Keep holds the change in place until ctx is done: if something rewrites
// resolv.conf while the tunnel is up (a DHCP client, NetworkManager), ours
// is put back, with backoff, and that is logged. Backends whose manager
// keeps our settings itself return nil at once.
func Keep(ctx context.Context, o Options, c Change) error {
	if c.Backend != BackendFile {
		return nil
	}
	return keepFile(ctx, o, c)
}

// Detect says which backend "auto" picks, and why, by looking at who
// manages resolv.conf — the way wg-quick, NetworkManager and openvpn's
// update-resolv-conf scripts decide. It changes nothing.
//
//   - resolv.conf is systemd-resolved's (a link into /run/systemd/resolve/,
//     or its stub server) and org.freedesktop.resolve1 has an owner on the
//     system bus: resolved.
//   - resolvconf(8) is installed and resolv.conf is its output (a link into
//     /run/resolvconf/, or its "generated by resolvconf" header): resolvconf.
//     Installed alone is not enough: openresolv rewrites resolv.conf from
//     its records only, so a record added over a hand-written file would
//     lose that file on revert.
//   - otherwise: file.
func Detect(ctx context.Context, o Options) (backend, why string, err error) {
	path := o.resolvConf()
	target, _ := os.Readlink(path)
	head := firstLines(path, 5)
	if target == "" && isOurs([]byte(head)) {
		return BackendFile, fmt.Sprintf("%s is roamtun's own, left by an earlier run: only the file backend can put the original back", path), nil
	}
	stub := strings.Contains(target, "/run/systemd/resolve/") || strings.Contains(head, "systemd-resolved") ||
		strings.Contains(head, "nameserver 127.0.0.53")
	if stub {
		ok, berr := resolvedOnBus(ctx, o)
		if ok {
			return BackendResolved, fmt.Sprintf("%s is systemd-resolved's and org.freedesktop.resolve1 answers on the system bus", path), nil
		}
		o.log().Debug("systemd-resolved not on the bus", "err", berr)
	}
	if bin, lerr := o.resolvconfBin(); lerr == nil {
		if strings.Contains(target, "/run/resolvconf/") || strings.Contains(target, "/etc/resolvconf/") {
			return BackendResolvconf, fmt.Sprintf("%s links to resolvconf's %s and %s is installed", path, target, bin), nil
		}
		if target == "" && strings.Contains(strings.ToLower(head), "resolvconf") {
			return BackendResolvconf, fmt.Sprintf("%s was generated by resolvconf and %s is installed", path, bin), nil
		}
	}
	switch {
	case stub:
		return BackendFile, fmt.Sprintf("%s points at systemd-resolved but org.freedesktop.resolve1 is not on the system bus: writing the file", path), nil
	case target != "":
		return BackendFile, fmt.Sprintf("%s links to %s, which no resolver manager here owns: replacing the link with a file while up", path, target), nil
	}
	return BackendFile, fmt.Sprintf("nothing manages %s: writing it directly", path), nil
}

func firstLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.SplitN(string(b), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// withDeadline gives ctx a deadline if it has none.
func withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, callTimeout)
}

// CheckJournaled checks, before a crash recovery replays it, that a Change
// read back from the journal describes only what roamtun's DNS backends
// change: the configured resolv.conf (with copies of originals in StateDir,
// plain permission bits), a resolvconf record of roamtun's link, or the
// per-link settings of a TUN device. The journal is root's own, so this is a
// second line: an entry that passes it still cannot reach another file or
// another link's DNS.
func CheckJournaled(o Options, c Change) error {
	if err := validLink(c.Link); err != nil {
		return err
	}
	switch c.Backend {
	case BackendFile:
		want, err := filepath.Abs(o.resolvConf())
		if err != nil {
			return err
		}
		switch {
		case filepath.Clean(c.Path) != want:
			return fmt.Errorf("dns change: path %q is not the resolv.conf roamtun manages (%s)", c.Path, want)
		case c.Original != "" && (o.StateDir == "" || filepath.Dir(c.Original) != filepath.Clean(o.StateDir) ||
			!strings.HasPrefix(filepath.Base(c.Original), originalPrefix)):
			return fmt.Errorf("dns change: original %q is not a copy in state_dir %s", c.Original, o.StateDir)
		case c.Mode&^0o777 != 0:
			return fmt.Errorf("dns change: mode %04o is more than permission bits", c.Mode)
		}
	case BackendResolvconf:
		if c.Record != c.Link+recordSuffix && c.Record != debianPrefix(debianInterfaceOrder)+c.Link+recordSuffix {
			return fmt.Errorf("dns change: resolvconf record %q is not roamtun's for link %s", c.Record, c.Link)
		}
	case BackendResolved:
		// RevertLink must never reach the uplink's (or any other) settings:
		// only a TUN device is roamtun's.
		if ifi, err := net.InterfaceByIndex(c.IfIndex); err == nil && ifi.Name == c.Link && !isTUN(c.Link) {
			return fmt.Errorf("dns change: link %s (ifindex %d) is not a TUN device", c.Link, c.IfIndex)
		}
	default:
		return unknownBackend(c.Backend)
	}
	return nil
}

// isTUN reports whether the named link is a TUN/TAP device.
func isTUN(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name, "tun_flags"))
	return err == nil
}
