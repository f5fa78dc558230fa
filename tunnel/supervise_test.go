package tunnel

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roamtun/roamtun/internal/dial"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

// TestSuperviseWithFakeEngine: supervision without a kernel or a far end —
// an engine that fails twice, then comes up; a kick during a wait redials at
// once; a stale uplink under a link that is up ends it (ErrUplinkChanged) and
// redials at once; every dial says why; nothing is left running after.
func TestSuperviseWithFakeEngine(t *testing.T) {
	base := runtime.NumGoroutine()
	var (
		mu     sync.Mutex
		events []Event
		calls  atomic.Int32
		stale  atomic.Bool
	)
	upped := make(chan struct{}, 8)
	engine := func(ctx context.Context, argv, env []string, o SessionOptions) error {
		switch n := calls.Add(1); n {
		case 1, 2:
			return errors.New("far end unreachable")
		default:
			o.OnUp(ppp.Session{}, "fake0", func() ppp.Stats { return ppp.Stats{} })
			upped <- struct{}{}
			<-ctx.Done() // up until the supervisor ends it
			return ppp.ErrClosed
		}
	}
	kick := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Supervise(ctx, SuperviseOptions{
			Argv: []string{"fake"}, Engine: engine, Kick: kick, Stale: stale.Load,
			Backoff: dial.Backoff{Initial: 20 * time.Millisecond, Max: 40 * time.Millisecond, Jitter: -1},
			OnEvent: func(e Event) {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			},
		})
	}()
	<-upped // third attempt: up
	stale.Store(true)
	kick <- struct{}{} // the uplink changed under the link
	<-upped            // redialed and up again
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Supervise: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	var causes []DialCause
	var downs []error
	for _, e := range events {
		switch e.Kind {
		case EventDialing:
			causes = append(causes, e.Cause)
		case EventDown:
			downs = append(downs, e.Reason)
		}
	}
	want := []DialCause{CauseFirst, CauseBackoff, CauseBackoff, CauseNetwork}
	if len(causes) != len(want) {
		t.Fatalf("dial causes %v, want %v", causes, want)
	}
	for i := range want {
		if causes[i] != want[i] {
			t.Fatalf("dial causes %v, want %v", causes, want)
		}
	}
	if len(downs) < 3 || !errors.Is(downs[2], ErrUplinkChanged) {
		t.Errorf("downs %v: the third should be ErrUplinkChanged", downs)
	}
	// Every goroutine Supervise started has been joined.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines %d > %d after Supervise returned:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
