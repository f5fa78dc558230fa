package dial

import (
	"math/rand/v2"
	"time"
)

// Backoff paces redials: the first attempt after a drop is immediate (a link
// that just died is most often back at once — the far end restarted, a roam
// finished), later ones wait exponentially longer up to a cap, so a server
// that is down costs a few attempts a minute, never a busy loop. A link that
// stayed up for StableAfter resets the sequence.
type Backoff struct {
	Initial     time.Duration // wait before the second attempt (default 500ms)
	Max         time.Duration // cap (default 30s)
	StableAfter time.Duration // a session this long resets the backoff (default 30s)
	Jitter      float64       // ± fraction of each wait (default 0.1); spreads herds

	attempt int
}

// Next returns how long to wait before the next attempt, given how long the
// previous session stayed up (0 if it never came up).
func (b *Backoff) Next(lastUp time.Duration) time.Duration {
	initial, max, stable := b.Initial, b.Max, b.StableAfter
	if initial <= 0 {
		initial = 500 * time.Millisecond
	}
	if max <= 0 {
		max = 30 * time.Second
	}
	if stable <= 0 {
		stable = 30 * time.Second
	}
	if lastUp >= stable {
		b.attempt = 0
	}
	b.attempt++
	if b.attempt == 1 {
		return 0
	}
	d := initial
	for i := 2; i < b.attempt && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	j := b.Jitter
	if j == 0 {
		j = 0.1
	}
	if j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*rand.Float64()-1)))
	}
	return min(d, max)
}

// Reset makes the next attempt immediate, e.g. when the network changed and
// the old reasons to wait no longer hold.
func (b *Backoff) Reset() { b.attempt = 0 }
