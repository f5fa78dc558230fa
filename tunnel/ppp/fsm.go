package ppp

import (
	"encoding/binary"
	"time"
)

// The option negotiation automaton of RFC 1661 §4, shared by LCP, IPCP and
// IPv6CP. It runs only on the link's event loop goroutine.

type fsmState int

// RFC 1661 §4.2 states.
const (
	stInitial fsmState = iota
	stStarting
	stClosed
	stStopped
	stClosing
	stStopping
	stReqSent
	stAckRcvd
	stAckSent
	stOpened
)

var stateNames = [...]string{"Initial", "Starting", "Closed", "Stopped", "Closing", "Stopping",
	"Req-Sent", "Ack-Rcvd", "Ack-Sent", "Opened"}

func (s fsmState) String() string { return stateNames[s] }

// Packet codes common to the control protocols (RFC 1661 §5).
const (
	codeConfReq  = 1
	codeConfAck  = 2
	codeConfNak  = 3
	codeConfRej  = 4
	codeTermReq  = 5
	codeTermAck  = 6
	codeCodeRej  = 7
	codeProtoRej = 8  // LCP only
	codeEchoReq  = 9  // LCP only
	codeEchoRep  = 10 // LCP only
	codeDiscard  = 11 // LCP only
)

// Defaults of RFC 1661 §4.6.
const (
	defaultRestart      = 3 * time.Second
	defaultMaxConfigure = 10
	defaultMaxTerminate = 2
	defaultMaxFailure   = 5
)

// protocol is what a control protocol adds to the automaton: its options and
// what it does when the layer goes up or down.
type protocol interface {
	// resetCI starts a negotiation afresh: what we will ask for.
	resetCI()
	// addCI appends the options of our Configure-Request.
	addCI(dst []byte) []byte
	// ackCI checks a Configure-Ack against what we sent; false = bogus, ignore it.
	ackCI(opts []byte) bool
	// nakCI / rejCI adjust what we ask for; false = bogus, ignore the packet.
	nakCI(opts []byte) bool
	rejCI(opts []byte) bool
	// reqCI judges the peer's Configure-Request. It returns the reply code
	// (Ack, Nak or Rej) and appends the reply's options to dst. rejectIfDisagree
	// turns Naks into Rejects once max-failure Naks were sent (§4.6).
	reqCI(opts []byte, dst []byte, rejectIfDisagree bool) (byte, []byte)
	up()
	down()
	finished() // the layer is done (Closed/Stopped after negotiation or termination)
	// extCode handles codes beyond 7 (LCP's echo and friends); false = unknown.
	extCode(code, id byte, data []byte) bool
}

// fsm is one instance of the automaton.
type fsm struct {
	l     *Link
	proto uint16
	name  string
	p     protocol
	state fsmState

	id      byte // identifier of the last packet we sent
	reqID   byte // identifier of our outstanding Configure-Request
	seenAck bool // an Ack for reqID arrived already
	restart int  // restart counter
	nakLoop int  // Naks sent in a row (max-failure)
	passive bool // wait for the peer's Configure-Request instead of timing out

	timer    func() bool // stops the restart timer; nil when none runs
	timerGen uint64
	scratch  []byte
}

func newFSM(l *Link, proto uint16, name string, p protocol) *fsm {
	return &fsm{l: l, proto: proto, name: name, p: p}
}

func (f *fsm) setState(s fsmState) {
	if f.state != s {
		f.l.log.Debug("state", "proto", f.name, "from", f.state, "to", s)
	}
	f.state = s
}

// lowerUp: the layer below is ready (RFC 1661 "Up" event).
func (f *fsm) lowerUp() {
	switch f.state {
	case stInitial:
		f.setState(stClosed)
	case stStarting:
		f.begin()
	}
}

// begin starts negotiating (irc, scr → Req-Sent), or in passive mode waits
// in Stopped for the peer's Configure-Request.
func (f *fsm) begin() {
	if f.passive {
		f.setState(stStopped)
		return
	}
	f.restart = f.l.maxConfigure
	f.sendConfReq(false)
	f.setState(stReqSent)
}

// lowerDown: the layer below went away ("Down" event).
func (f *fsm) lowerDown() {
	f.stopTimer()
	switch f.state {
	case stClosed:
		f.setState(stInitial)
	case stStopped:
		f.setState(stStarting)
	case stClosing:
		f.setState(stInitial)
	case stStopping, stReqSent, stAckRcvd, stAckSent:
		f.setState(stStarting)
	case stOpened:
		f.p.down()
		f.setState(stStarting)
	}
}

// open is the administrative Open event.
func (f *fsm) open() {
	switch f.state {
	case stInitial:
		f.setState(stStarting)
	case stClosed:
		f.begin()
	case stClosing:
		f.setState(stStopping)
	}
}

// close is the administrative Close event: terminate the layer.
func (f *fsm) close() {
	switch f.state {
	case stStarting:
		f.setState(stInitial)
		f.p.finished()
	case stStopped:
		f.setState(stClosed)
	case stStopping:
		f.setState(stClosing)
	case stReqSent, stAckRcvd, stAckSent, stOpened:
		if f.state == stOpened {
			f.p.down()
		}
		f.restart = f.l.maxTerminate
		f.sendTermReq()
		f.setState(stClosing)
	}
}

func (f *fsm) startTimer() {
	f.stopTimer()
	gen := f.timerGen
	f.timer = f.l.afterFunc(f.l.restartTimer, func() {
		f.l.post(func() {
			if gen == f.timerGen {
				f.timeout()
			}
		})
	})
}

func (f *fsm) stopTimer() {
	f.timerGen++
	if f.timer != nil {
		f.timer()
		f.timer = nil
	}
}

// timeout handles TO+ and TO- (§4.1).
func (f *fsm) timeout() {
	f.timer = nil
	switch f.state {
	case stClosing, stStopping:
		if f.restart <= 0 {
			if f.state == stClosing {
				f.setState(stClosed)
			} else {
				f.setState(stStopped)
			}
			f.p.finished()
			return
		}
		f.sendTermReq()
	case stReqSent, stAckRcvd, stAckSent:
		if f.restart <= 0 {
			f.l.log.Debug("max-configure reached", "proto", f.name)
			f.setState(stStopped)
			if !f.passive {
				f.p.finished()
			}
			return
		}
		f.sendConfReq(true)
		if f.state == stAckRcvd {
			f.setState(stReqSent)
		}
	}
}

// input handles one packet of this protocol. Malformed packets are dropped:
// RFC 1661 §5 says a packet whose Length exceeds what arrived is discarded.
func (f *fsm) input(data []byte) {
	if len(data) < 4 {
		f.l.countBad()
		return
	}
	code, id := data[0], data[1]
	n := int(binary.BigEndian.Uint16(data[2:]))
	if n < 4 || n > len(data) {
		f.l.countBad()
		return
	}
	data = data[4:n] // octets beyond Length are padding (§5)
	switch code {
	case codeConfReq:
		f.rconfReq(id, data)
	case codeConfAck:
		f.rconfAck(id, data)
	case codeConfNak, codeConfRej:
		f.rconfNakRej(code, id, data)
	case codeTermReq:
		f.rtermReq(id)
	case codeTermAck:
		f.rtermAck()
	case codeCodeRej:
		f.rcodeRej(data)
	default:
		if !f.p.extCode(code, id, data) {
			// RUC: Code-Reject carries the rejected packet, truncated to the peer's MRU.
			f.sendCodeReject(code, id, data)
		}
	}
}

func (f *fsm) rconfReq(id byte, opts []byte) {
	switch f.state {
	case stClosed:
		f.send(codeTermAck, id, nil)
		return
	case stClosing, stStopping:
		return
	case stOpened:
		f.p.down()
		f.sendConfReq(false)
		f.setState(stReqSent)
	case stStopped:
		f.restart = f.l.maxConfigure
		f.sendConfReq(false)
		f.setState(stReqSent)
	}
	code, reply := f.p.reqCI(opts, f.scratch[:0], f.nakLoop >= f.l.maxFailure)
	f.scratch = reply[:0]
	f.send(code, id, reply)
	if code == codeConfAck {
		if f.state == stAckRcvd {
			f.stopTimer()
			f.setState(stOpened)
			f.p.up()
		} else {
			f.setState(stAckSent)
		}
		f.nakLoop = 0
		return
	}
	if f.state != stAckRcvd {
		f.setState(stReqSent)
	}
	if code == codeConfNak {
		f.nakLoop++
	}
}

func (f *fsm) rconfAck(id byte, opts []byte) {
	if id != f.reqID || f.seenAck {
		return // not an answer to our current request
	}
	if !f.p.ackCI(opts) {
		f.l.log.Debug("bogus Configure-Ack ignored", "proto", f.name)
		f.l.countBad()
		return
	}
	f.seenAck = true
	switch f.state {
	case stClosed, stStopped:
		f.send(codeTermAck, id, nil)
	case stReqSent:
		f.setState(stAckRcvd)
		f.restart = f.l.maxConfigure
	case stAckRcvd:
		f.stopTimer()
		f.sendConfReq(false)
		f.setState(stReqSent)
	case stAckSent:
		f.stopTimer()
		f.setState(stOpened)
		f.restart = f.l.maxConfigure
		f.p.up()
	case stOpened:
		f.p.down()
		f.sendConfReq(false)
		f.setState(stReqSent)
	}
}

func (f *fsm) rconfNakRej(code, id byte, opts []byte) {
	if id != f.reqID || f.seenAck {
		return
	}
	ok := false
	if code == codeConfNak {
		ok = f.p.nakCI(opts)
	} else {
		ok = f.p.rejCI(opts)
	}
	if !ok {
		f.l.log.Debug("bogus Configure-Nak/Reject ignored", "proto", f.name)
		f.l.countBad()
		return
	}
	f.seenAck = true
	switch f.state {
	case stClosed, stStopped:
		f.send(codeTermAck, id, nil)
	case stReqSent, stAckSent:
		f.stopTimer()
		f.sendConfReq(false)
	case stAckRcvd:
		f.stopTimer()
		f.sendConfReq(false)
		f.setState(stReqSent)
	case stOpened:
		f.p.down()
		f.sendConfReq(false)
		f.setState(stReqSent)
	}
}

func (f *fsm) rtermReq(id byte) {
	switch f.state {
	case stAckRcvd, stAckSent:
		f.setState(stReqSent)
	case stOpened:
		f.p.down()
		f.restart = 0
		f.startTimer()
		f.setState(stStopping)
	}
	f.send(codeTermAck, id, nil)
	if f.proto == ProtoLCP {
		f.l.peerTerminated()
	}
}

func (f *fsm) rtermAck() {
	switch f.state {
	case stClosing:
		f.stopTimer()
		f.setState(stClosed)
		f.p.finished()
	case stStopping:
		f.stopTimer()
		f.setState(stStopped)
		f.p.finished()
	case stAckRcvd:
		f.setState(stReqSent)
	case stOpened:
		f.p.down()
		f.sendConfReq(false)
		f.setState(stReqSent)
	}
}

// rcodeRej: the peer does not know a code we sent. Rejecting one of the
// codes every implementation must know (1–7) is catastrophic (RXJ-).
func (f *fsm) rcodeRej(data []byte) {
	if len(data) < 1 {
		f.l.countBad()
		return
	}
	f.l.log.Warn("peer rejected a code", "proto", f.name, "code", data[0])
	if data[0] >= codeConfReq && data[0] <= codeCodeRej {
		f.stopTimer()
		f.setState(stStopped)
		f.p.finished()
	}
}

// sendConfReq sends our Configure-Request; retransmit keeps the options.
func (f *fsm) sendConfReq(retransmit bool) {
	if f.state != stReqSent && f.state != stAckRcvd && f.state != stAckSent {
		f.p.resetCI()
		f.nakLoop = 0
	}
	if !retransmit {
		f.restart = f.l.maxConfigure
	}
	opts := f.p.addCI(f.scratch[:0])
	f.scratch = opts[:0]
	f.id++
	f.reqID = f.id
	f.seenAck = false
	f.send(codeConfReq, f.reqID, opts)
	f.restart--
	f.startTimer()
}

func (f *fsm) sendTermReq() {
	f.id++
	f.send(codeTermReq, f.id, []byte("roamtun closing"))
	f.restart--
	f.startTimer()
}

func (f *fsm) sendCodeReject(code, id byte, data []byte) {
	pkt := make([]byte, 0, 4+len(data))
	pkt = append(pkt, code, id, 0, 0)
	pkt = append(pkt, data...)
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	if max := f.l.peerMRU() - 4; len(pkt) > max {
		pkt = pkt[:max]
	}
	f.id++
	f.send(codeCodeRej, f.id, pkt)
}

// send builds and writes one control packet.
func (f *fsm) send(code, id byte, data []byte) {
	f.l.sendControl(f.proto, code, id, data)
}

// reply picks the answer to a Configure-Request from what the protocol
// made of its options (RFC 1661 §5.2–5.4): a malformed list is rejected
// whole; else any Rejects go alone; else Naks (turned into Rejects after
// max-failure, §4.6); else the request is acked as it came. acked says
// whether the caller should adopt what it parsed.
func reply(ok bool, opts, rejs, naks, dst []byte, rejectIfDisagree bool) (code byte, out []byte, acked bool) {
	switch {
	case !ok:
		return codeConfRej, append(dst, opts...), false
	case len(rejs) > 0:
		return codeConfRej, append(dst, rejs...), false
	case len(naks) > 0 && rejectIfDisagree:
		return codeConfRej, append(dst, naks...), false
	case len(naks) > 0:
		return codeConfNak, append(dst, naks...), false
	}
	return codeConfAck, append(dst, opts...), true
}

// forOptions walks a Type-Length-Value option list (RFC 1661 §6). It returns
// false, having called fn for none of them, if the list is malformed.
func forOptions(opts []byte, fn func(typ byte, val []byte, raw []byte)) bool {
	for p := opts; len(p) > 0; {
		if len(p) < 2 || p[1] < 2 || int(p[1]) > len(p) {
			return false
		}
		p = p[p[1]:]
	}
	for len(opts) > 0 {
		n := int(opts[1])
		fn(opts[0], opts[2:n], opts[:n])
		opts = opts[n:]
	}
	return true
}
