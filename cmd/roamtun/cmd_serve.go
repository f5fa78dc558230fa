package main

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/roamtun/roamtun/internal/serve"

	"github.com/roamtun/roamtun/tunnel"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

var serveCmd = &command{
	name:  "serve",
	usage: "--local IP --peer IP [--dns IP[,IP]] [--name NAME] [--secrets FILE] [--require-chap] [--mtu N] [--interface NAME] [--keepalive DURATION] [--prefix6 PREFIX/64 [--dns6 IP6[,IP6]]]",
	help:  "be the far end of a link on stdin/stdout (an ssh forced command)",
}

func init() {
	serveCmd.run = runServe
	register(serveCmd)
}

// stdio is the PPP stream of a forced command: stdin and stdout.
type stdio struct {
	in  io.ReadCloser
	out io.WriteCloser
}

func (s stdio) Read(p []byte) (int, error)  { return s.in.Read(p) }
func (s stdio) Write(p []byte) (int, error) { return s.out.Write(p) }
func (s stdio) Close() error                { s.out.Close(); return s.in.Close() }

func runServe(e *env, args []string) error {
	fs, _ := newFlags(e, serveCmd)
	local := fs.String("local", "", "our address on the link (`IP`)")
	peer := fs.String("peer", "", "the address to assign to the far end (`IP`)")
	dns := fs.String("dns", "", "DNS servers to offer, comma-separated (`IP[,IP]`)")
	name := fs.String("name", "server", "our CHAP `NAME`")
	secrets := fs.String("secrets", "/etc/ppp/chap-secrets", "chap-secrets `FILE`")
	requireCHAP := fs.Bool("require-chap", false, "the far end must authenticate with CHAP")
	mtu := fs.Int("mtu", 1200, "MTU/MRU of the link")
	ifname := fs.String("interface", "", "TUN device `NAME` (default rtserve<pid>)")
	// The laptop's own keepalive finds a dead link; here it only ends the
	// session of a laptop that vanished (and a new session of that laptop
	// evicts it at once): a long interval keeps an idle server asleep.
	keepalive := fs.Duration("keepalive", 10*time.Second, "LCP echo `INTERVAL` when nothing arrives; 3 unanswered end the session")
	prefix6 := fs.String("prefix6", "", "IPv6 prefix for the far end, advertised down the link and routed to it (`PREFIX/64`)")
	dns6 := fs.String("dns6", "", "IPv6 DNS servers to advertise with --prefix6, comma-separated (`IP6[,IP6]`)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg := ppp.Config{LocalName: *name, RequireCHAP: *requireCHAP, MRU: *mtu, Passive: true,
		EchoInterval: *keepalive, EchoFailures: 3, Logger: e.log}
	var err error
	if cfg.LocalIP, err = flagAddr("--local", *local); err != nil {
		return err
	}
	if cfg.PeerIP, err = flagAddr("--peer", *peer); err != nil {
		return err
	}
	if cfg.LocalIP == cfg.PeerIP {
		return usagef("--local and --peer must differ")
	}
	if *dns != "" {
		for _, s := range strings.Split(*dns, ",") {
			a, err := flagAddr("--dns", strings.TrimSpace(s))
			if err != nil {
				return err
			}
			cfg.DNS = append(cfg.DNS, a)
		}
		if len(cfg.DNS) > 2 {
			return usagef("--dns takes at most two servers (IPCP has a primary and a secondary)")
		}
	}
	if *keepalive < time.Second {
		return usagef("--keepalive must be at least 1s")
	}
	p6, d6, err := flagsIPv6(*prefix6, *dns6)
	if err != nil {
		return err
	}
	cfg.IPv6 = p6.IsValid() // IPv6CP only with something to give over it
	if *mtu < 576 || *mtu > 16384 {
		return usagef("--mtu must be 576..16384")
	}
	if cfg.IPv6 && *mtu < 1280 {
		return usagef("--prefix6 needs --mtu 1280 or more (IPv6's minimum MTU)")
	}
	if *ifname == "" {
		*ifname = "rtserve" + strconv.Itoa(os.Getpid())
	} else if !ifnameRE.MatchString(*ifname) {
		return usagef("--interface: not a valid interface name (1-15 of A-Z a-z 0-9 _ . -): %q", *ifname)
	}
	switch s, err := ppp.LoadSecrets(*secrets); {
	case err == nil:
		cfg.Secrets = s
		if s.TooOpen() {
			e.log.Warn("secrets file is readable by group or others", "file", *secrets)
		}
	case *requireCHAP || !errors.Is(err, os.ErrNotExist):
		return err
	default:
		cfg.RefuseAuth = true // no secrets: we cannot prove ourselves
	}
	in, out, restore := pollableStdio()
	defer restore()
	start := time.Now()
	var wasUp bool
	var claim *serve.PeerClaim
	defer func() { claim.Release() }()
	err = tunnel.RunSession(e.ctx, tunnel.SessionOptions{
		Stream: stdio{in, out}, Link: cfg, Interface: *ifname, MTU: *mtu, Log: e.log,
		Prefix6: p6, DNS6: d6,
		// Authenticated and up: an older session for the same peer (a
		// laptop that roamed away without closing it) goes, before our TUN
		// is made — with --interface it holds the name we need. Its peer
		// is gone: it gets little time to end cleanly before it is killed
		// (its TUN goes with it).
		Claim: func(s ppp.Session) {
			c, old, err := serve.ClaimPeer(s.PeerIP, 300*time.Millisecond)
			switch {
			case err != nil:
				e.log.Warn("could not claim the peer address; an older session may shadow this one", "err", err)
			case old != 0:
				e.log.Info("replaced the stale session for this peer", "pid", old, "peer", s.PeerIP)
			}
			claim = c
		},
		OnUp: func(s ppp.Session, ifname string, _ func() ppp.Stats) {
			wasUp = true
			e.log.Info("link up", "interface", ifname, "local", s.LocalIP, "peer", s.PeerIP,
				"peer_name", s.PeerName, "after", time.Since(start).Round(time.Millisecond))
		},
	})
	switch {
	case tunnel.CleanEnd(err), wasUp && errors.Is(err, io.EOF):
		e.log.Info("link ended", "reason", err)
		return nil
	default:
		return err
	}
}

// flagsIPv6 parses --prefix6 (a /64: SLAAC forms addresses only in one)
// and --dns6, which needs it.
func flagsIPv6(prefix, dns string) (netip.Prefix, []netip.Addr, error) {
	if prefix == "" {
		if dns != "" {
			return netip.Prefix{}, nil, usagef("--dns6 needs --prefix6")
		}
		return netip.Prefix{}, nil, nil
	}
	p, err := netip.ParsePrefix(prefix)
	switch {
	case err != nil || !p.Addr().Is6() || p.Addr().Is4In6():
		return p, nil, usagef("--prefix6: not an IPv6 prefix: %q", prefix)
	case p.Bits() != 64:
		return p, nil, usagef("--prefix6: must be a /64 (addresses are formed from it by SLAAC), not /%d", p.Bits())
	case p != p.Masked():
		return p, nil, usagef("--prefix6: host bits set: %s (did you mean %s?)", p, p.Masked())
	case ppp.Unusable(p.Addr(), nil) != "":
		return p, nil, usagef("--prefix6: %s is %s", p, ppp.Unusable(p.Addr(), nil))
	}
	var servers []netip.Addr
	if dns != "" {
		for _, s := range strings.Split(dns, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil || !a.Is6() || a.Is4In6() || ppp.Unusable(a, nil) != "" {
				return p, nil, usagef("--dns6: not a usable IPv6 address: %q", s)
			}
			servers = append(servers, a)
		}
	}
	return p, servers, nil
}

var ifnameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)

// flagAddr parses an IPv4 address flag.
func flagAddr(flag, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, usagef("%s is required", flag)
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, usagef("%s: not an IPv4 address: %q", flag, s)
	}
	return a, nil
}

// pollableStdio returns stdin and stdout in Go's poller when they are pipes
// or sockets (sshd's, for a forced command), non-blocking for as long as
// serve runs. Read in a blocking system call instead, stdin keeps the Go
// runtime's monitor thread polling for ~10 ms after every frame, which on
// an idle link is most of serve's wake-ups. A terminal, or a file, is left
// as it is. restore puts the blocking mode back (the far end of a pipe may
// be shared with whoever started us).
func pollableStdio() (in, out *os.File, restore func()) {
	var undo []int
	wrap := func(fd int, f *os.File) *os.File {
		var st syscall.Stat_t
		if syscall.Fstat(fd, &st) != nil {
			return f
		}
		if t := st.Mode & syscall.S_IFMT; t != syscall.S_IFIFO && t != syscall.S_IFSOCK {
			return f
		}
		// A duplicate, so that the link closing its stream leaves fd 0
		// and 1 open for restore (the mode belongs to the open file,
		// which both share).
		nfd, err := syscall.Dup(fd)
		if err != nil {
			return f
		}
		syscall.CloseOnExec(nfd)
		if syscall.SetNonblock(nfd, true) != nil {
			syscall.Close(nfd)
			return f
		}
		undo = append(undo, fd)
		return os.NewFile(uintptr(nfd), f.Name()) // non-blocking: it joins the poller
	}
	in, out = wrap(0, os.Stdin), wrap(1, os.Stdout)
	return in, out, func() {
		for _, fd := range undo {
			syscall.SetNonblock(fd, false)
		}
	}
}
