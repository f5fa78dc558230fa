package portal

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/roamtun/roamtun/watcher"
)

// DefaultURL is NetworkManager's check (Debian's and GNOME's default): a
// plain HTTP page whose whole body is DefaultAnswer.
const DefaultURL = "http://nmcheck.gnome.org/check_network_status.txt"

// DefaultAnswer is what DefaultURL answers on an open network.
const DefaultAnswer = "NetworkManager is online"

// Limits of one probe.
const (
	// MaxBody is the most of a body read: the expected answer is a line,
	// a portal's page is not read to the end.
	MaxBody = 4 << 10
	// DefaultTimeout bounds a whole probe: DNS, connect and answer.
	DefaultTimeout = 5 * time.Second
	userAgent      = "roamtun-portal-check/1 (NetworkManager connectivity check compatible)"
)

// Prober judges a network by fetching a known page over plain HTTP, the way
// NetworkManager and browsers do: the known answer means full
// connectivity, anything else that answers means something intercepts
// (a captive portal), no answer means limited connectivity.
type Prober struct {
	URL *url.URL
	// Answer is the expected body of a 200 (surrounding white space is
	// ignored). A 204 with no body is always an open network.
	Answer  string
	Timeout time.Duration // default DefaultTimeout
	// Mark is set as SO_MARK on the probe's sockets, so that the standby
	// firewall lets them (and only them) out of an unjudged interface;
	// 0: none.
	Mark int

	dnsPort uint16 // 0: 53 (tests: a fake resolver's port)
}

// Target is the network a probe judges.
type Target struct {
	Interface string       // the probe's sockets are bound to it (SO_BINDTODEVICE); "": not bound (tests)
	DNS       []netip.Addr // the network's own resolvers (DHCP), for a probe URL that names a host
}

// Result is a probe's verdict.
type Result struct {
	Connectivity watcher.Connectivity // full, portal or limited
	PortalURL    string               // with portal: where the portal sent us, or the probe URL
	Why          string               // in words, for the log
}

// NewProber checks a probe URL: plain http, with a host.
func NewProber(raw, answer string) (*Prober, error) {
	u, err := CheckURL(raw)
	if err != nil {
		return nil, err
	}
	return &Prober{URL: u, Answer: answer}, nil
}

// CheckURL parses a probe URL: plain HTTP (a portal cannot intercept
// HTTPS without a certificate error, so HTTPS would only ever say "no
// answer"), with a host and no user info.
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	switch {
	case u.Scheme != "http":
		return nil, fmt.Errorf("%q: must be a plain http:// URL (portals intercept HTTP; HTTPS would only time out)", raw)
	case u.Hostname() == "":
		return nil, fmt.Errorf("%q: no host", raw)
	case u.User != nil:
		return nil, fmt.Errorf("%q: no user info, please", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return nil, fmt.Errorf("%q: bad port %q", raw, p)
		}
	}
	return u, nil
}

// Port is the TCP port the probe connects to.
func (p *Prober) Port() uint16 {
	if s := p.URL.Port(); s != "" {
		n, _ := strconv.ParseUint(s, 10, 16)
		return uint16(n)
	}
	return 80
}

// NeedsDNS reports whether the probe URL names a host rather than an address.
func (p *Prober) NeedsDNS() bool {
	_, err := netip.ParseAddr(p.URL.Hostname())
	return err != nil
}

// Probe judges t once, within the prober's timeout.
func (p *Prober) Probe(ctx context.Context, t Target) Result {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dialer := &net.Dialer{Control: control(t.Interface, p.Mark)}
	addr, err := p.resolve(ctx, dialer, t)
	if err != nil {
		return Result{Connectivity: watcher.ConnectivityLimited, Why: err.Error()}
	}
	target := netip.AddrPortFrom(addr, p.Port()).String()
	tr := &http.Transport{
		Proxy: nil, // never a proxy from the environment
		// Whatever the URL names, connect to the address resolved
		// through the network's own DNS.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "tcp4", target)
		},
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 16 << 10,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, // no Jar: no cookies
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL.String(), nil)
	if err != nil {
		return Result{Connectivity: watcher.ConnectivityLimited, Why: err.Error()}
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := client.Do(req)
	if err != nil {
		return Result{Connectivity: watcher.ConnectivityLimited, Why: "no answer: " + reason(err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil && len(body) <= MaxBody {
		// Cut short before the limit: nothing to judge by.
		return Result{Connectivity: watcher.ConnectivityLimited, Why: "answer cut short: " + reason(err)}
	}
	return p.classify(resp.StatusCode, resp.Header.Get("Location"), body)
}

// classify judges one answer (body holds at most MaxBody+1 bytes).
func (p *Prober) classify(status int, location string, body []byte) Result {
	switch {
	case status == http.StatusNoContent && len(body) == 0:
		return Result{Connectivity: watcher.ConnectivityFull, Why: "204 No Content"}
	case status == http.StatusOK && len(body) <= MaxBody && strings.TrimSpace(string(body)) == strings.TrimSpace(p.Answer):
		return Result{Connectivity: watcher.ConnectivityFull, Why: "the expected answer"}
	case status >= 300 && status < 400 && location != "":
		return Result{Connectivity: watcher.ConnectivityPortal, PortalURL: p.signIn(location),
			Why: fmt.Sprintf("redirected (%d)", status)}
	}
	why := fmt.Sprintf("another answer (%d, %d bytes)", status, len(body))
	if len(body) > MaxBody {
		why = fmt.Sprintf("another answer (%d, over %d bytes)", status, MaxBody)
	}
	return Result{Connectivity: watcher.ConnectivityPortal, PortalURL: p.URL.String(), Why: why}
}

// signIn resolves a redirect's Location against the probe URL. What the
// network sent is kept only if it is a plain http(s) URL; otherwise the
// probe URL itself (which the portal intercepts) is where to sign in.
func (p *Prober) signIn(location string) string {
	if u, err := SignInURL(p.URL, location); err == nil {
		return u
	}
	return p.URL.String()
}

// SignInURL returns location (relative to base) if it is fit to hand to a
// browser: http or https, a host, no control characters, at most 2 KiB.
// The network chose it: it is never followed by roamtun itself.
func SignInURL(base *url.URL, location string) (string, error) {
	if len(location) > 2048 {
		return "", errors.New("longer than 2048 bytes")
	}
	for _, r := range location {
		if r < 0x20 || r == 0x7f {
			return "", errors.New("control characters")
		}
	}
	u, err := url.Parse(location)
	if err != nil {
		return "", err
	}
	if base != nil {
		u = base.ResolveReference(u)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("not an http(s) URL: %q", location)
	}
	return u.String(), nil
}

// reason shortens a transport error for the log.
func reason(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EPERM):
		return "not let out (firewall)"
	}
	return err.Error()
}

// resolve finds the probe host's IPv4 address: the URL's literal, or one A
// query to each of the network's own resolvers in turn (never the
// system's: its resolv.conf may point into a tunnel, and search domains
// would say more than the probe needs to).
func (p *Prober) resolve(ctx context.Context, d *net.Dialer, t Target) (netip.Addr, error) {
	host := p.URL.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap(), nil
	}
	if len(t.DNS) == 0 {
		return netip.Addr{}, fmt.Errorf("%s: the network gave no DNS server", host)
	}
	var errs []error
	for _, srv := range t.DNS {
		port := p.dnsPort
		if port == 0 {
			port = 53
		}
		a, err := lookupA(ctx, d, netip.AddrPortFrom(srv, port), host)
		if err == nil {
			return a, nil
		}
		errs = append(errs, fmt.Errorf("resolving %s at %s: %w", host, srv, err))
		if ctx.Err() != nil {
			break
		}
	}
	return netip.Addr{}, errors.Join(errs...)
}

// lookupA sends one A query for host to server over UDP and returns the
// first address of the answer.
func lookupA(ctx context.Context, d *net.Dialer, server netip.AddrPort, host string) (netip.Addr, error) {
	name, err := dnsmessage.NewName(strings.TrimSuffix(host, ".") + ".")
	if err != nil {
		return netip.Addr{}, err
	}
	var idb [2]byte
	rand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	q := dnsmessage.Question{Name: name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	msg, err := (&dnsmessage.Message{Header: dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{q}}).Pack()
	if err != nil {
		return netip.Addr{}, err
	}
	c, err := d.DialContext(ctx, "udp4", server.String())
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write(msg); err != nil {
		return netip.Addr{}, err
	}
	buf := make([]byte, 1232)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return netip.Addr{}, err
		}
		a, ok, err := answerA(buf[:n], id, q)
		if !ok {
			continue // not the answer to our question: keep waiting
		}
		return a, err
	}
}

// answerA reads a DNS response: ok is false if it does not answer q under
// id (then it is ignored).
func answerA(b []byte, id uint16, q dnsmessage.Question) (netip.Addr, bool, error) {
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil || h.ID != id || !h.Response {
		return netip.Addr{}, false, nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 || !strings.EqualFold(qs[0].Name.String(), q.Name.String()) || qs[0].Type != q.Type {
		return netip.Addr{}, false, nil
	}
	if h.RCode != dnsmessage.RCodeSuccess {
		return netip.Addr{}, true, fmt.Errorf("answer %s", h.RCode)
	}
	for {
		rh, err := p.AnswerHeader()
		if err != nil {
			return netip.Addr{}, true, errors.New("no address in the answer")
		}
		if rh.Type != dnsmessage.TypeA {
			if err := p.SkipAnswer(); err != nil {
				return netip.Addr{}, true, err
			}
			continue
		}
		r, err := p.AResource()
		if err != nil {
			return netip.Addr{}, true, err
		}
		return netip.AddrFrom4(r.A), true, nil
	}
}
