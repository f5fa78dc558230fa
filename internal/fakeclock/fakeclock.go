// Package fakeclock is a clock for tests that moves only when told: timers
// scheduled with AfterFunc run, in order, when Advance passes their time.
// It stands in for the real clock wherever roamtun takes one (the daemon's
// portal window, the PPP engine's restart and echo timers).
package fakeclock

import (
	"slices"
	"sync"
	"time"
)

// Clock is a fake clock. The zero value starts at the zero time.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

type timer struct {
	at      time.Time
	f       func()
	stopped bool
}

// New returns a clock at start.
func New(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f to run (on the goroutine calling Advance) once the
// clock has moved d on; stop cancels it and reports whether it was pending.
func (c *Clock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Pending is how many timers wait to run.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped {
			n++
		}
	}
	return n
}

// Advance moves the clock on by d and runs the timers that came due, in
// the order of their times.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*timer
	c.timers = slices.DeleteFunc(c.timers, func(t *timer) bool {
		if !t.stopped && !t.at.After(c.now) {
			t.stopped = true
			due = append(due, t)
			return true
		}
		return t.stopped
	})
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b *timer) int { return a.at.Compare(b.at) })
	for _, t := range due {
		t.f()
	}
}
