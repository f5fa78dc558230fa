package dial

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Jitter: -1} // no jitter: exact sequence
	want := []time.Duration{0, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second,
		8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := b.Next(0); got != w {
			t.Fatalf("attempt %d: wait %v, want %v", i+1, got, w)
		}
	}
	if got := b.Next(time.Minute); got != 0 {
		t.Errorf("after a stable session: wait %v, want 0", got)
	}
	if got := b.Next(0); got != 500*time.Millisecond {
		t.Errorf("second attempt after reset-by-stability: %v", got)
	}
	b.Reset()
	if got := b.Next(0); got != 0 {
		t.Errorf("after Reset: %v", got)
	}
}

func TestBackoffJitterBounded(t *testing.T) {
	b := Backoff{Max: 10 * time.Second}
	for i := 0; i < 200; i++ {
		d := b.Next(0)
		if d < 0 || d > 10*time.Second {
			t.Fatalf("attempt %d: wait %v out of [0, 10s]", i+1, d)
		}
	}
}
