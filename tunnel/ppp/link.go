package ppp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Why a link ended. Run returns one of these (or an *AuthError, the
// context's error, or the stream's read error such as io.EOF).
var (
	ErrTerminated  = errors.New("the far end terminated the link")
	ErrClosed      = errors.New("link closed")
	ErrEchoTimeout = errors.New("no answer to LCP echo requests: the far end is gone")
	ErrLoopback    = errors.New("the line is looped back: our own magic number keeps coming back")
	ErrNegotiation = errors.New("PPP negotiation failed")
	ErrNotUp       = errors.New("link not up")
)

func errNegotiation(msg string) error { return fmt.Errorf("%w: %s", ErrNegotiation, msg) }

// Config says how one end of a link behaves. The zero value plus a stream is
// a client that asks the far end for an address and requires nothing.
type Config struct {
	LocalName, RemoteName string   // CHAP names: ours, and the far end's
	Secrets               *Secrets // chap-secrets; needed for any CHAP
	RequireCHAP           bool     // the far end must authenticate with CHAP-MD5
	RefuseAuth            bool     // never authenticate ourselves to the far end
	MRU                   int      // our MRU, the TUN's MTU; default 1200

	EchoInterval time.Duration // LCP echo keepalive; 0 = off
	EchoFailures int           // unanswered echoes before the link is dead; default 3

	// IPCP. A client leaves LocalIP zero and is given one; RequestDNS asks
	// for DNS servers (RFC 1877). A server sets LocalIP, the PeerIP it
	// assigns, and the DNS servers it offers.
	LocalIP, PeerIP netip.Addr
	RequestDNS      bool
	DNS             []netip.Addr
	IPv6            bool // also run IPv6CP

	// Forbidden returns what the far end may not give a client: as its
	// address, as the far end's own, or as a DNS server — the ssh server's
	// address (the route to it would collapse into the TUN) and the
	// uplink's subnets (its gateway, its resolver). It is called when IPCP
	// opens, since the uplink can change between dials; nil means none
	// beyond the addresses no link may use (loopback, multicast, broadcast,
	// unspecified, link-local, reserved), which are always refused.
	Forbidden func() []Forbidden

	// Passive waits for the far end's first LCP Configure-Request instead
	// of sending one (pppd's "passive"): the server end of a dial-up.
	Passive bool

	// Protocol timers; zero means the RFC 1661 defaults (3 s, 10, 5).
	RestartTimer time.Duration
	MaxConfigure int
	MaxFailure   int

	Logger *slog.Logger // nil: discard

	// AfterFunc schedules the protocol's timers (restart, echo); nil is
	// time.AfterFunc. Tests pass a fake clock to run timeouts in virtual
	// time.
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
}

// Forbidden is a range of addresses a far end may not hand a client, and
// why (for the error that ends the link).
type Forbidden struct {
	Prefix netip.Prefix
	Why    string // e.g. "the ssh server's address"
}

// Session is what negotiation produced. It is valid once Up is closed.
type Session struct {
	LocalIP, PeerIP     netip.Addr
	DNS                 []netip.Addr
	IPv6                bool
	LocalIfID, PeerIfID [8]byte
	MTU                 int    // min(our MRU, the far end's MRU)
	PeerName            string // the name the far end authenticated as, if it did

	// Set by the session above PPP (package tunnel), not by negotiation: a
	// laptop's global IPv6 address and DNS servers from the far end's router
	// advertisement. A laptop session reports IPv6 only with Addr6.
	Addr6 netip.Addr
	DNS6  []netip.Addr
}

// Stats are a link's counters.
type Stats struct {
	RxBytes, TxBytes     uint64 // IP payload bytes
	RxPackets, TxPackets uint64 // IP packets
	RxFrames             uint64 // every good frame, control included
	BadFrames            uint64 // bad FCS, too long, runts, bad headers, malformed control packets
	Dropped              uint64 // IP packets dropped (NCP not open, queue full)
}

// Link is one end of a PPP link over a byte stream (ssh's stdio, a pty, a
// pair of FIFOs). Control protocols run on Run's goroutine; IP packets flow
// from the reader straight to the packet handler, and from WritePacket
// straight to the stream, without allocating.
type Link struct {
	rw  io.ReadWriter
	cfg Config
	log *slog.Logger

	restartTimer                           time.Duration
	maxConfigure, maxTerminate, maxFailure int

	events   chan func()
	closeReq chan struct{}
	closeMu  sync.Once
	finished chan struct{}
	upCh     chan struct{}
	upOnce   sync.Once

	// Loop-only state.
	lcp        *lcp
	ipcp       *ipcp
	ipv6cp     *ipv6cp
	chap       chap
	err        error
	done       bool
	authed     bool
	v6Off      bool // IPv6CP rejected or failed: the link is up without it
	ipcpOpen   bool
	ipv6Open   bool
	pending    [][]byte // NCP packets that arrived during authentication
	echoFails  int
	echoGen    uint64
	sess       Session
	sessMu     sync.Mutex
	terminated bool

	// handler and readDone may be set while the reader runs (the TUN is
	// made once the link is up): atomic, loaded once per packet / read.
	handler          atomic.Pointer[func(pkt []byte)]
	readDone         atomic.Pointer[func()] // nil: none (see SetReadDoneHandler)
	v4open, v6open   atomic.Bool
	wmu              sync.Mutex
	wbuf             []byte
	tx               TxOptions
	txMRU            int
	rxBytes, txBytes atomic.Uint64
	rxPkts, txPkts   atomic.Uint64
	rxFrames, bad    atomic.Uint64
	dropped          atomic.Uint64
}

// NewLink returns a link over rw. Nothing happens until Run.
func NewLink(rw io.ReadWriter, cfg Config) *Link {
	if cfg.MRU == 0 {
		cfg.MRU = 1200
	}
	if cfg.EchoFailures == 0 {
		cfg.EchoFailures = 3
	}
	l := &Link{rw: rw, cfg: cfg, log: cfg.Logger,
		restartTimer: cfg.RestartTimer, maxConfigure: cfg.MaxConfigure,
		maxTerminate: defaultMaxTerminate, maxFailure: cfg.MaxFailure,
		events: make(chan func(), 256), closeReq: make(chan struct{}),
		finished: make(chan struct{}), upCh: make(chan struct{}),
		tx: DefaultTxOptions, txMRU: defaultMRU,
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.restartTimer <= 0 {
		l.restartTimer = defaultRestart
	}
	if l.maxConfigure <= 0 {
		l.maxConfigure = defaultMaxConfigure
	}
	if l.maxFailure <= 0 {
		l.maxFailure = defaultMaxFailure
	}
	l.wbuf = make([]byte, 0, MaxEncodedLen(max(cfg.MRU, defaultMRU)+64))
	l.lcp = newLCP(l)
	l.ipcp = newIPCP(l)
	l.ipv6cp = newIPv6CP(l)
	l.chap.l = l
	l.lcp.resetCI()
	return l
}

// SetPacketHandler sets where received IP packets go (until then they are
// dropped). fn runs on the reader goroutine and must not keep pkt after it
// returns. It may be set at any time, Run included.
func (l *Link) SetPacketHandler(fn func(pkt []byte)) { l.handler.Store(&fn) }

// Up is closed once LCP, authentication and the network protocols are open.
func (l *Link) Up() <-chan struct{} { return l.upCh }

// Done is closed when Run has returned.
func (l *Link) Done() <-chan struct{} { return l.finished }

// Session returns what negotiation produced (zero before Up).
func (l *Link) Session() Session {
	l.sessMu.Lock()
	defer l.sessMu.Unlock()
	return l.sess
}

// Stats returns the counters so far.
func (l *Link) Stats() Stats {
	return Stats{RxBytes: l.rxBytes.Load(), TxBytes: l.txBytes.Load(), RxPackets: l.rxPkts.Load(),
		TxPackets: l.txPkts.Load(), RxFrames: l.rxFrames.Load(), BadFrames: l.bad.Load(), Dropped: l.dropped.Load()}
}

// Run negotiates the link and carries packets until it ends, and returns
// why. If the stream is an io.Closer, Run closes it before returning so
// that its reader stops.
func (l *Link) Run(ctx context.Context) error {
	readErr := make(chan error, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		l.reader(readErr)
	}()
	l.lcp.f.passive = l.cfg.Passive
	l.lcp.f.open()
	l.lcp.f.lowerUp()
	for !l.done {
		select {
		case <-ctx.Done():
			l.setErr(ctx.Err())
			l.done = true
		case fn := <-l.events:
			fn()
		case err := <-readErr:
			if l.terminated {
				err = ErrTerminated
			} else if errors.Is(err, io.EOF) && l.err == nil {
				err = fmt.Errorf("the far end hung up: %w", err)
			}
			l.setErr(err)
			l.done = true
		case <-l.closeReq:
			l.closeReq = nil // handled once
			l.setErr(ErrClosed)
			l.terminate()
		}
	}
	l.v4open.Store(false)
	l.v6open.Store(false)
	for _, f := range []*fsm{l.lcp.f, l.ipcp.f, l.ipv6cp.f} {
		f.stopTimer()
	}
	l.echoGen++
	if c, ok := l.rw.(io.Closer); ok {
		c.Close()
	}
	close(l.finished)
	// A blocking read that Close cannot interrupt (a tty on stdin, say)
	// would hold the reader; don't let it hold Run too.
	select {
	case <-readerDone:
	case <-time.After(time.Second):
		l.log.Debug("reader still blocked after close; leaving it")
	}
	return l.err
}

// Close ends the link cleanly: LCP Terminate-Request, a short wait for the
// far end's Ack, and Run returns ErrClosed. It waits for Run to return.
func (l *Link) Close() error {
	l.closeMu.Do(func() { close(l.closeReq) })
	select {
	case <-l.finished:
	case <-time.After(5 * time.Second):
		return errors.New("closing the link: timed out")
	}
	return nil
}

// post runs fn on the loop; after Run returned it is dropped.
func (l *Link) post(fn func()) {
	select {
	case l.events <- fn:
	case <-l.finished:
	}
}

func (l *Link) afterRestart(fn func()) { l.after(l.restartTimer, fn) }

func (l *Link) after(d time.Duration, fn func()) {
	l.afterFunc(d, func() { l.post(fn) })
}

// afterFunc runs f after d, on the configured clock.
func (l *Link) afterFunc(d time.Duration, f func()) (stop func() bool) {
	if l.cfg.AfterFunc != nil {
		return l.cfg.AfterFunc(d, f)
	}
	return time.AfterFunc(d, f).Stop
}

func (l *Link) setErr(err error) {
	if l.err == nil {
		l.err = err
	}
}

// fail ends the link with err, telling the far end with a Terminate-Request
// when LCP is up enough to hear it.
func (l *Link) fail(err error) {
	if l.done {
		return
	}
	l.log.Debug("link failing", "err", err)
	l.setErr(err)
	if errors.Is(err, ErrEchoTimeout) {
		l.done = true // nobody is listening: don't wait for an Ack
		return
	}
	l.terminate()
}

// terminate sends LCP Terminate-Request and ends the loop on the Ack or
// after a bounded wait.
func (l *Link) terminate() {
	switch l.lcp.f.state {
	case stReqSent, stAckRcvd, stAckSent, stOpened:
		l.lcp.f.close()
		l.after(time.Second, func() { l.done = true })
	case stClosing, stStopping:
	default:
		l.done = true
	}
}

func (l *Link) countBad() { l.bad.Add(1) }

// reader decodes the stream. IP packets go straight to the handler; control
// packets are copied to the loop.
func (l *Link) reader(errc chan<- error) {
	buf := make([]byte, 64<<10)
	dec := NewDecoder(max(l.cfg.MRU, defaultMRU) + 8)
	fn := l.frame
	var lastBad uint64
	for {
		n, err := l.rw.Read(buf)
		if n > 0 {
			dec.Feed(buf[:n], fn)
			if done := l.readDone.Load(); done != nil {
				(*done)()
			}
			s := dec.Stats()
			if b := s.BadFCS + s.TooLong + s.Runts + s.BadHeader + s.Aborts; b != lastBad {
				l.bad.Add(b - lastBad)
				lastBad = b
			}
		}
		if err != nil {
			errc <- err
			return
		}
	}
}

func (l *Link) frame(proto uint16, p []byte) {
	l.rxFrames.Add(1)
	if proto == ProtoIPv4 || proto == ProtoIPv6 {
		open := l.v4open.Load()
		if proto == ProtoIPv6 {
			open = l.v6open.Load()
		}
		if !open {
			l.dropped.Add(1) // its network protocol is not open (yet)
			return
		}
		h := l.handler.Load()
		if h == nil {
			l.dropped.Add(1) // nowhere to go yet: the TUN is being made
			return
		}
		l.rxPkts.Add(1)
		l.rxBytes.Add(uint64(len(p)))
		(*h)(p)
		return
	}
	pkt := append([]byte(nil), p...)
	l.post(func() { l.control(proto, pkt) })
}

// control dispatches a control packet on the loop.
func (l *Link) control(proto uint16, p []byte) {
	if proto == ProtoLCP {
		l.lcp.f.input(p)
		return
	}
	if l.lcp.f.state != stOpened {
		return // RFC 1661 §3.4: non-LCP packets before LCP is open are discarded
	}
	switch proto {
	case ProtoCHAP:
		l.chap.input(p)
	case ProtoIPCP, ProtoIPv6CP:
		if proto == ProtoIPv6CP && !l.cfg.IPv6 {
			l.lcp.sendProtocolReject(proto, p)
			return
		}
		if !l.authed {
			// The far end finished its side of authentication before ours;
			// keep its request for when we are done instead of dropping it
			// and waiting a restart period for the retransmission.
			if len(l.pending) < 8 {
				l.pending = append(l.pending, append(binary.BigEndian.AppendUint16(nil, proto), p...))
			}
			return
		}
		l.ncpFSM(proto).input(p)
	default:
		// PAP (not negotiated), CCP, VJ, IPX, ...: RFC 1661 §5.7.
		l.log.Debug("protocol rejected", "proto", fmt.Sprintf("%#04x", proto))
		l.lcp.sendProtocolReject(proto, p)
	}
}

func (l *Link) ncpFSM(proto uint16) *fsm {
	if proto == ProtoIPCP {
		return l.ipcp.f
	}
	return l.ipv6cp.f
}
