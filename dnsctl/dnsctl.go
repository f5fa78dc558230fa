// Package dnsctl points the system's DNS at the tunnel's servers and puts
// the original back exactly. One small interface, three backends:
// systemd-resolved over D-Bus, resolvconf(8), and /etc/resolv.conf itself.
//
// A change is made in three steps so that a journal can record it before
// anything happens: Prepare captures the originals (and decides the
// backend), the caller journals the Change (it is JSON), Apply makes it.
// Revert undoes it, also from a Change read back by another process after a
// crash; reverting something already gone is success.
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
	"strings"

	"github.com/godbus/dbus/v5"
)

// Backends.
const (
	BackendAuto       = "auto"
	BackendResolved   = "resolved"
	BackendResolvconf = "resolvconf"
	BackendFile       = "file"
)

// Settings are what the tunnel wants.
type Settings struct {
	Link    string       // tunnel interface name, e.g. "roamtun0"
	Servers []netip.Addr // DNS servers learned from IPCP
	Domains []string     // optional search domains
}

// Options say how to reach the system's DNS configuration.
type Options struct {
	Backend    string // auto (""), resolved, resolvconf, file
	StateDir   string // where originals are kept (created 0700)
	ResolvConf string // default /etc/resolv.conf
	Resolvconf string // path of resolvconf(8); default looked up in PATH
	// SystemBus connects to the system bus; default dbus.ConnectSystemBus.
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
	return o.Log
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

// Change is one DNS change: what Apply does and Revert undoes.
type Change struct {
	Backend string       `json:"backend"`
	Link    string       `json:"link"`
	Servers []netip.Addr `json:"servers"`
	Domains []string     `json:"domains,omitempty"`

	// file
	Path     string `json:"path,omitempty"`     // the resolv.conf changed
	Original string `json:"original,omitempty"` // copy of its original bytes
	Symlink  string `json:"symlink,omitempty"`  // it was a symlink to this
	Missing  bool   `json:"missing,omitempty"`  // there was none
	Mode     uint32 `json:"mode,omitempty"`     // its permission bits

	// resolvconf
	Record     string `json:"record,omitempty"` // e.g. "roamtun0.roamtun"
	Openresolv bool   `json:"openresolv,omitempty"`

	// resolved
	IfIndex int `json:"ifindex,omitempty"`
}

func (s Settings) validate() error {
	if s.Link == "" {
		return errors.New("dns settings: link is empty")
	}
	if len(s.Servers) == 0 {
		return errors.New("dns settings: servers: none given")
	}
	for i, a := range s.Servers {
		if !a.IsValid() || a.IsUnspecified() {
			return fmt.Errorf("dns settings: servers[%d]: %q is not a usable address", i, a)
		}
	}
	for i, d := range s.Domains {
		if d == "" || strings.ContainsAny(d, " \t\n#;") {
			return fmt.Errorf("dns settings: domains[%d]: %q is not a domain", i, d)
		}
	}
	return nil
}

// Prepare decides the backend and captures what Revert needs. It changes
// nothing but files in StateDir.
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
		o.log().Debug("dns backend detected", "backend", b, "why", why)
		backend = b
	}
	c := Change{Backend: backend, Link: s.Link, Servers: s.Servers, Domains: s.Domains}
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
	return c, fmt.Errorf("dns: unknown backend %q (auto, resolved, resolvconf, file)", backend)
}

// Apply makes the change.
func Apply(ctx context.Context, o Options, c Change) error {
	switch c.Backend {
	case BackendFile:
		return applyFile(o, c)
	case BackendResolvconf:
		return applyResolvconf(ctx, o, c)
	case BackendResolved:
		return applyResolved(ctx, o, c)
	}
	return fmt.Errorf("dns: unknown backend %q", c.Backend)
}

// Revert undoes the change; one already undone (or never made) is done.
func Revert(ctx context.Context, o Options, c Change) error {
	switch c.Backend {
	case BackendFile:
		return revertFile(o, c)
	case BackendResolvconf:
		return revertResolvconf(ctx, o, c)
	case BackendResolved:
		return revertResolved(ctx, o, c)
	}
	return fmt.Errorf("dns: unknown backend %q", c.Backend)
}

// Keep holds the change in place until ctx is done: if something rewrites
// resolv.conf while the tunnel is up (a DHCP client, NetworkManager), ours
// is put back, with backoff, and that is logged. Backends whose manager
// keeps our settings itself return at once.
func Keep(ctx context.Context, o Options, c Change) error {
	if c.Backend != BackendFile {
		return nil
	}
	return keepFile(ctx, o, c)
}

// Detect says which backend "auto" picks, and why, looking at the system
// the way mature VPN clients do: who manages resolv.conf?
func Detect(ctx context.Context, o Options) (backend, why string, err error) {
	path := o.resolvConf()
	target, _ := os.Readlink(path)
	head := firstLines(path, 5)
	stub := strings.Contains(target, "/run/systemd/resolve/") || strings.Contains(head, "systemd-resolved") ||
		strings.Contains(head, "nameserver 127.0.0.53")
	if stub {
		if ok, berr := resolvedOnBus(ctx, o); ok {
			return BackendResolved, fmt.Sprintf("%s is systemd-resolved's and resolve1 answers on the system bus", path), nil
		} else if berr != nil {
			o.log().Debug("systemd-resolved not reachable", "err", berr)
		}
	}
	if bin, lerr := o.resolvconfBin(); lerr == nil {
		managed := strings.Contains(target, "/run/resolvconf/") || strings.Contains(target, "/etc/resolvconf/") ||
			strings.Contains(head, "resolvconf")
		if managed {
			return BackendResolvconf, fmt.Sprintf("%s is managed by resolvconf (%s)", path, bin), nil
		}
	}
	if stub {
		return BackendFile, fmt.Sprintf("%s points at systemd-resolved's stub but resolve1 does not answer: writing the file", path), nil
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
