package tunnel

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roamtun/roamtun/internal/dial"

	"github.com/roamtun/roamtun/tunnel/ppp"
)

// The system pppd as the engine (profile key engine = "pppd"): the classic
// setup's own way, `pppd pty "ssh …"` on the laptop. This file holds what
// can be judged without running anything: pppd's command line, the lines
// its ip-up/ip-down hook writes, and why pppd exited. The runner is in
// pppd_engine_linux.go.

// pppdHook is pppd's ip-up-script and ip-down-script (one file under two
// names; the event is its name). pppd calls it with the interface, tty,
// speed, local and remote address and ipparam (the FIFO roamtun reads), and
// with DNS1/DNS2 (usepeerdns) and PEERNAME in the environment — pppd's
// documented script interface, sturdier than its log's wording. The FIFO is
// opened read-write so that the open never blocks, whatever became of
// roamtun.
const pppdHook = `#!/bin/sh
# roamtun: pppd's ip-up/ip-down for a link roamtun supervises. It tells
# roamtun (through the FIFO pppd passes as ipparam) the interface and the
# addresses negotiated.
exec 3<>"$6" || exit 1
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${0##*/}" "$1" "$4" "$5" "${DNS1:-}" "${DNS2:-}" "${PEERNAME:-}" >&3
`

// pppdMounts runs pppd in a mount namespace of its own (the runner unshares
// it) where /etc/ppp is an empty tmpfs holding only the profile's secrets
// as chap-secrets: pppd has no option for another secrets file, the user's
// /etc/ppp is left untouched, its options file (Debian's says "auth",
// "lock", "modem"...) is not read, and the /etc/ppp/resolv.conf that
// usepeerdns writes vanishes with the namespace — roamtun sets DNS itself.
// $1 is the secrets file, the rest pppd's argv.
const pppdMounts = `set -e
mount -t tmpfs -o mode=0755,size=64k roamtun-pppd /etc/ppp
: >/etc/ppp/chap-secrets
mount --bind "$1" /etc/ppp/chap-secrets
shift
exec "$@"`

// pppdSetup is what the command line is made of besides the session's
// options.
type pppdSetup struct {
	Linkname string // pppd's linkname: its pid file is /run/ppp-NAME.pid
	Hook     string // the ip-up/ip-down hook's directory (ip-up, ip-down)
	Events   string // the FIFO the hook writes to (pppd's ipparam)
}

// pppdArgs is pppd's command line (after the program) for a session whose
// transport is argv with extra environment env (ssh, as the built-in engine
// runs it, or the profile's dial_command).
func pppdArgs(argv, env []string, o SessionOptions, s pppdSetup) ([]string, error) {
	pty, err := ptyCommand(argv, env)
	if err != nil {
		return nil, err
	}
	lc := o.Link
	mru := lc.MRU
	if mru == 0 {
		mru = o.MTU
	}
	if mru == 0 {
		mru = 1200
	}
	mtu := o.MTU
	if mtu == 0 {
		mtu = mru
	}
	args := []string{
		"nodetach", "logfd", "2", // log (and the pty command's stderr) to us
		"pty", pty,
		"local", "nolock", // a pty: no modem lines, no lock files
		"name", lc.LocalName, "remotename", lc.RemoteName,
	}
	if lc.RequireCHAP {
		args = append(args, "require-chap")
	} else {
		args = append(args, "noauth")
	}
	// Like the built-in engine: CHAP-MD5 only, never a secret in clear.
	args = append(args, "refuse-pap", "refuse-eap", "refuse-mschap", "refuse-mschap-v2")
	if lc.RefuseAuth {
		args = append(args, "refuse-chap")
	}
	args = append(args,
		// Our address comes from the far end; routes and DNS are roamtun's
		// (the Guard); usepeerdns only asks for the servers (the hook reads
		// DNS1/DNS2).
		"noipdefault", "nodefaultroute", "usepeerdns", "noipv6",
		"mtu", strconv.Itoa(mtu), "mru", strconv.Itoa(mru),
	)
	if lc.EchoInterval > 0 {
		failures := lc.EchoFailures
		if failures <= 0 {
			failures = 3
		}
		args = append(args, "lcp-echo-interval", strconv.Itoa(echoSeconds(lc.EchoInterval)),
			"lcp-echo-failure", strconv.Itoa(failures))
	}
	if o.Interface != "" {
		// The profile's name, so that the network watcher (which ignores
		// the tunnel's own interface) is not kicked by pppd's.
		args = append(args, "ifname", o.Interface)
	}
	if s.Linkname != "" {
		args = append(args, "linkname", s.Linkname)
	}
	return append(args,
		"ipparam", s.Events,
		"ip-up-script", s.Hook+"/ip-up", "ip-down-script", s.Hook+"/ip-down",
	), nil
}

// echoSeconds is pppd's lcp-echo-interval (whole seconds, at least 1) for
// a keepalive.
func echoSeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ptyCommand is argv with env as one sh command line, pppd's pty option
// (pppd runs it with /bin/sh -c). Every word is quoted: nothing in a
// profile is interpreted by the shell.
func ptyCommand(argv, env []string) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", errors.New("dial command is empty")
	}
	var b strings.Builder
	for _, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !envNameRE.MatchString(k) {
			return "", fmt.Errorf("dial command environment: %q is not NAME=VALUE", kv)
		}
		b.WriteString("export " + shellQuote(kv) + "; ")
	}
	b.WriteString("exec")
	for _, a := range argv {
		b.WriteString(" " + shellQuote(a))
	}
	return b.String(), nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// hookEvent is one line from pppd's ip-up or ip-down hook.
type hookEvent struct {
	Kind          string // "ip-up" or "ip-down"
	Ifname        string
	Local, Remote netip.Addr
	DNS           []netip.Addr
	PeerName      string // the name the far end authenticated as, if it did
}

// parseHookLine reads a line pppdHook wrote.
func parseHookLine(line string) (hookEvent, error) {
	f := strings.Split(strings.TrimRight(line, "\r\n"), "\t")
	if len(f) != 7 || (f[0] != "ip-up" && f[0] != "ip-down") {
		return hookEvent{}, fmt.Errorf("pppd hook: malformed line %q", line)
	}
	ev := hookEvent{Kind: f[0], Ifname: f[1], PeerName: f[6]}
	if !ifnameOK(ev.Ifname) {
		return hookEvent{}, fmt.Errorf("pppd hook: bad interface name %q", ev.Ifname)
	}
	var err error
	if ev.Local, err = netip.ParseAddr(f[2]); err != nil {
		return hookEvent{}, fmt.Errorf("pppd hook: local address: %w", err)
	}
	if ev.Remote, err = netip.ParseAddr(f[3]); err != nil {
		return hookEvent{}, fmt.Errorf("pppd hook: remote address: %w", err)
	}
	for _, d := range f[4:6] {
		if d == "" {
			continue
		}
		a, err := netip.ParseAddr(d)
		if err != nil {
			return hookEvent{}, fmt.Errorf("pppd hook: DNS server: %w", err)
		}
		// pppd with one ms-dns answers it for both: once is enough.
		if !slices.Contains(ev.DNS, a) {
			ev.DNS = append(ev.DNS, a)
		}
	}
	return ev, nil
}

func ifnameOK(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c == '/' || c == ':' || c > '~' {
			return false
		}
	}
	return true
}

// checkSession refuses what the far end may not hand us — the same check
// the built-in engine's IPCP makes (ppp.Unusable), made here once pppd has
// negotiated: an address that would pull the server's route or the uplink
// into the link ends the session before any route is made.
func checkSession(ev hookEvent, forbidden func() []ppp.Forbidden) error {
	var fb []ppp.Forbidden
	if forbidden != nil {
		fb = forbidden()
	}
	check := func(what string, a netip.Addr) error {
		if why := ppp.Unusable(a, fb); why != "" {
			return fmt.Errorf("pppd: refusing %s %s from the far end: %s", what, a, why)
		}
		return nil
	}
	if err := check("our address", ev.Local); err != nil {
		return err
	}
	if err := check("its address", ev.Remote); err != nil {
		return err
	}
	if ev.Local == ev.Remote {
		return fmt.Errorf("pppd: refusing addresses from the far end: both ends would be %s", ev.Local)
	}
	for _, d := range ev.DNS {
		if err := check("DNS server", d); err != nil {
			return err
		}
	}
	return nil
}

// PPPDExitError is why pppd ended a session: its exit status (pppd(8),
// EXIT STATUS) in words, and the log line that tells most.
type PPPDExitError struct {
	Status int
	Line   string // from pppd's log; may be empty
}

// pppdStatusWords are pppd(8)'s exit statuses.
var pppdStatusWords = map[int]string{
	0:  "the far end ended the link",
	1:  "fatal error",
	2:  "bad option",
	3:  "not run as root",
	4:  "no PPP support in the kernel",
	5:  "stopped by a signal",
	6:  "could not lock the serial port",
	7:  "could not open the serial port",
	8:  "the connect script failed",
	9:  "the pty command could not be run",
	10: "PPP negotiation failed",
	11: "the far end failed to authenticate itself",
	12: "idle timeout",
	13: "connect time limit",
	14: "callback",
	15: "the far end stopped answering echo requests",
	16: "the transport hung up",
	17: "the link is looped back",
	18: "the init script failed",
	19: "we failed to authenticate ourselves to the far end",
}

func (e *PPPDExitError) Error() string {
	words := pppdStatusWords[e.Status]
	if words == "" {
		words = "unknown status"
	}
	msg := fmt.Sprintf("pppd exited with status %d: %s", e.Status, words)
	if e.Line != "" {
		msg += " (pppd: " + e.Line + ")"
	}
	return msg
}

// pppdTelling are log lines that explain an end, most telling first.
var pppdTelling = []string{
	"authentication failed", "failed CHAP", "No CHAP secret", "failed to authenticate", "refused to authenticate",
	"No response to", "timeout sending Config-Requests", "looped back",
	"terminated by peer", "Modem hangup",
	"must be root", "unrecognized option", "Couldn't", "Can't", "not supported", "In file",
	"Connection terminated",
}

// pppdEndReason is why a pppd session ended: ssh's own words first (host
// key, authentication, reachability: each needs a different fix), else the
// exit status with its most telling log line.
func pppdEndReason(status int, log []string) error {
	if err := dial.ClassifySSH(log); err != nil {
		return err
	}
	e := &PPPDExitError{Status: status}
	for _, m := range pppdTelling {
		for i := len(log) - 1; i >= 0 && e.Line == ""; i-- {
			if strings.Contains(log[i], m) {
				e.Line = strings.TrimSpace(log[i])
			}
		}
	}
	return e
}
