package ppp

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
)

// CHAP packet codes (RFC 1994 §4).
const (
	chapChallenge = 1
	chapResponse  = 2
	chapSuccess   = 3
	chapFailure   = 4

	chapMaxChallenges = 10
	chapValueSize     = 16
)

// AuthError reports a failed authentication, saying which side failed and
// under which name — the two mistakes a person fixes differently.
type AuthError struct {
	// Side is "peer" when the far end failed to prove itself to us, "local"
	// when the far end refused our proof.
	Side string
	Name string // the name that was being authenticated
	Msg  string
}

func (e *AuthError) Error() string {
	if e.Side == "local" {
		return fmt.Sprintf("authentication failed: the far end refused us as %q: %s", e.Name, e.Msg)
	}
	return fmt.Sprintf("authentication failed: the far end (%q) did not prove itself: %s", e.Name, e.Msg)
}

// chap runs CHAP-MD5 in both directions at once: as authenticator when we
// require the peer to authenticate, as responder when the peer requires it of
// us. Each direction finishes on its own; the network phase waits for both.
type chap struct {
	l *Link

	// Authenticator side.
	authing    bool
	authDone   bool
	challenge  [chapValueSize]byte
	chalID     byte
	chalSent   int
	peerName   string
	timerGen   uint64
	waitingRes bool

	// Responder side.
	responding  bool
	respDone    bool
	lastChalID  byte
	lastResp    []byte
	haveLastRes bool
}

func (c *chap) reset() { *c = chap{l: c.l} }

// start begins the authentication phase with what LCP agreed.
func (c *chap) start(authenticate, respond bool) {
	c.reset()
	c.authing, c.responding = authenticate, respond
	c.authDone, c.respDone = !authenticate, !respond
	if authenticate {
		c.chalID = byte(newMagic())
		c.sendChallenge()
	}
	c.check()
}

func (c *chap) done() bool { return c.authDone && c.respDone }

func (c *chap) check() {
	if c.done() {
		c.l.authFinished()
	}
}

func (c *chap) sendChallenge() {
	if c.chalSent >= chapMaxChallenges {
		c.l.fail(&AuthError{Side: "peer", Name: c.l.cfg.RemoteName, Msg: "no CHAP response from the far end"})
		return
	}
	if c.chalSent == 0 {
		rand.Read(c.challenge[:])
	}
	c.chalSent++
	pkt := make([]byte, 0, 1+chapValueSize+len(c.l.cfg.LocalName))
	pkt = append(pkt, chapValueSize)
	pkt = append(pkt, c.challenge[:]...)
	pkt = append(pkt, c.l.cfg.LocalName...)
	c.l.sendControl(ProtoCHAP, chapChallenge, c.chalID, pkt)
	c.waitingRes = true
	c.timerGen++
	gen := c.timerGen
	c.l.afterRestart(func() {
		if gen == c.timerGen && c.waitingRes && !c.authDone {
			c.sendChallenge()
		}
	})
}

// input handles one CHAP packet; malformed ones are dropped and counted.
func (c *chap) input(data []byte) {
	if len(data) < 4 {
		c.l.countBad()
		return
	}
	code, id := data[0], data[1]
	n := int(binary.BigEndian.Uint16(data[2:]))
	if n < 4 || n > len(data) {
		c.l.countBad()
		return
	}
	data = data[4:n]
	switch code {
	case chapChallenge:
		c.rchallenge(id, data)
	case chapResponse:
		c.rresponse(id, data)
	case chapSuccess:
		if c.responding && c.haveLastRes && id == c.lastChalID && !c.respDone {
			c.respDone = true
			c.l.log.Info("authenticated to the far end", "name", c.l.cfg.LocalName)
			c.check()
		}
	case chapFailure:
		if c.responding && id == c.lastChalID {
			c.l.fail(&AuthError{Side: "local", Name: c.l.cfg.LocalName, Msg: printable(data)})
		}
	default:
		c.l.countBad()
	}
}

// parseValue splits a Challenge or Response body into value and name.
func parseValue(data []byte) (value []byte, name string, ok bool) {
	if len(data) < 1 || int(data[0]) == 0 || 1+int(data[0]) > len(data) {
		return nil, "", false
	}
	return data[1 : 1+data[0]], string(data[1+data[0]:]), true
}

func (c *chap) rchallenge(id byte, data []byte) {
	if !c.responding {
		// We did not agree to authenticate; a challenge now is out of place.
		c.l.countBad()
		return
	}
	value, name, ok := parseValue(data)
	if !ok {
		c.l.countBad()
		return
	}
	if c.haveLastRes && id == c.lastChalID {
		// A retransmitted challenge: our response was lost. Send it again.
		c.l.sendControl(ProtoCHAP, chapResponse, id, c.lastResp)
		return
	}
	secret, found := c.l.secretFor(c.l.cfg.LocalName, name)
	if !found {
		c.l.fail(&AuthError{Side: "local", Name: c.l.cfg.LocalName,
			Msg: fmt.Sprintf("no secret for %q to authenticate to %q in the secrets file", c.l.cfg.LocalName, name)})
		return
	}
	sum := chapDigest(id, secret, value)
	resp := make([]byte, 0, 1+len(sum)+len(c.l.cfg.LocalName))
	resp = append(resp, byte(len(sum)))
	resp = append(resp, sum[:]...)
	resp = append(resp, c.l.cfg.LocalName...)
	c.lastChalID, c.lastResp, c.haveLastRes = id, resp, true
	// A re-challenge after success (pppd's chap-interval) needs a new Success.
	c.respDone = false
	c.l.sendControl(ProtoCHAP, chapResponse, id, resp)
}

func (c *chap) rresponse(id byte, data []byte) {
	if !c.authing {
		c.l.countBad()
		return
	}
	if id != c.chalID {
		return // a late answer to an older challenge
	}
	if c.authDone {
		// The peer did not see our Success: repeat it (RFC 1994 §4.2).
		c.l.sendControl(ProtoCHAP, chapSuccess, id, []byte("Welcome"))
		return
	}
	value, name, ok := parseValue(data)
	if !ok {
		c.l.countBad()
		return
	}
	c.waitingRes = false
	c.peerName = name
	secret, found := c.l.secretFor(name, c.l.cfg.LocalName)
	if found && len(value) == md5.Size {
		want := chapDigest(id, secret, c.challenge[:])
		if subtle.ConstantTimeCompare(want[:], value) == 1 {
			c.authDone = true
			c.l.sendControl(ProtoCHAP, chapSuccess, id, []byte("Welcome"))
			c.l.log.Info("the far end authenticated", "name", name)
			c.l.setPeerName(name)
			c.check()
			return
		}
	}
	c.l.sendControl(ProtoCHAP, chapFailure, id, []byte("Access denied"))
	msg := "wrong secret"
	if !found {
		msg = fmt.Sprintf("no secret for %q authenticating to %q in the secrets file", name, c.l.cfg.LocalName)
	}
	c.l.fail(&AuthError{Side: "peer", Name: name, Msg: msg})
}

// chapDigest is MD5(Identifier || secret || challenge), RFC 1994 §4.1.
func chapDigest(id byte, secret string, challenge []byte) [md5.Size]byte {
	h := md5.New()
	h.Write([]byte{id})
	h.Write([]byte(secret))
	h.Write(challenge)
	var out [md5.Size]byte
	h.Sum(out[:0])
	return out
}

// printable keeps a peer's message readable in logs and errors.
func printable(b []byte) string {
	out := make([]rune, 0, len(b))
	for _, c := range b {
		if c >= 0x20 && c < 0x7f {
			out = append(out, rune(c))
		} else {
			out = append(out, '?')
		}
	}
	if len(out) == 0 {
		return "(no message)"
	}
	return string(out)
}
