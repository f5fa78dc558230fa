package policy

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Holder keeps the current policy and reloads it when the files change. A
// bad edit never replaces a good policy: the last good one stays in force
// and the error is returned (and logged by Run). Safe for concurrent use.
type Holder struct {
	dir      string
	profiles Profiles

	mu      sync.Mutex
	cur     *Policy
	sig     string // signature of the files the last attempt read
	lastErr error
}

// NewHolder loads dir; it fails if the policy is bad from the start (there
// is no last good policy to keep).
func NewHolder(dir string, profiles Profiles) (*Holder, error) {
	h := &Holder{dir: dir, profiles: profiles}
	if _, err := h.Reload(); err != nil {
		return nil, err
	}
	return h, nil
}

// Policy returns the policy in force.
func (h *Holder) Policy() *Policy {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cur
}

// Err returns the error of the last reload attempt (nil if it was good).
func (h *Holder) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastErr
}

// Reload re-reads the files if their names or contents changed since the
// last attempt. It reports whether a new policy is in
// force; on error the previous policy stays.
func (h *Holder) Reload() (changed bool, err error) {
	sig, err := signature(h.dir)
	if err != nil {
		return false, h.fail(sig, err)
	}
	h.mu.Lock()
	same := h.cur != nil && sig == h.sig || h.lastErr != nil && sig == h.sig
	h.mu.Unlock()
	if same {
		return false, nil // a bad version is reported once, not on every poll
	}
	p, err := Load(h.dir, h.profiles)
	if err != nil {
		return false, h.fail(sig, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur, h.sig, h.lastErr = p, sig, nil
	return true, nil
}

func (h *Holder) fail(sig string, err error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sig, h.lastErr = sig, err
	return fmt.Errorf("reloading policy (keeping the last good one): %w", err)
}

// settle is how long Run waits after the last change it was told of
// before reloading: an editor's or a package manager's burst of writes,
// renames and chmods is read once, when it is over.
const settle = 200 * time.Millisecond

// Run reloads the policy when its files change, until ctx ends, calling
// onChange (may be nil) after each successful reload. It does not poll: it
// is woken by inotify on policy_dir (or, while policy_dir does not exist,
// on its nearest existing ancestor, so that creating it is seen), and
// reloads settle after the last event. Editors that replace files by
// rename, removed and recreated directories and new files all show up as
// events. What inotify cannot see — a file that is a symlink whose target
// changes elsewhere, a directory on a network file system — is caught by a
// check every fallback (e.g. a minute; 0: none); if inotify is unavailable
// altogether, that check is all there is.
func (h *Holder) Run(ctx context.Context, fallback time.Duration, log *slog.Logger, onChange func(*Policy)) error {
	reload := func() {
		changed, err := h.Reload()
		if err != nil && log != nil {
			log.Error("policy reload failed", "component", "policy", "err", err)
		}
		if changed {
			if log != nil {
				log.Info("policy reloaded", "component", "policy", "dir", h.dir)
			}
			if onChange != nil {
				onChange(h.Policy())
			}
		}
	}
	var poll <-chan time.Time
	if fallback > 0 {
		t := time.NewTicker(fallback)
		defer t.Stop()
		poll = t.C
	}
	dw, err := newDirWatch(h.dir)
	if err != nil {
		if log != nil {
			log.Warn("cannot watch the policy directory; checking it for changes periodically only",
				"component", "policy", "dir", h.dir, "every", fallback, "err", err)
		}
		if poll == nil {
			t := time.NewTicker(2 * time.Second)
			defer t.Stop()
			poll = t.C
		}
	} else {
		defer dw.close()
	}
	// Anything that changed between NewHolder and the watch is read once
	// the watch is in place, after the same settling as any change.
	timer := time.NewTimer(settle)
	defer timer.Stop()
	fire := timer.C
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-poll:
			reload()
		case <-dw.events():
			dw.rewatch() // the directory may have appeared or gone
			timer.Reset(settle)
			fire = timer.C
		case err := <-dw.errors():
			if log != nil {
				log.Warn("watching the policy directory", "component", "policy", "dir", h.dir, "err", err)
			}
			// Events may have been lost (queue overflow): look now.
			dw.rewatch()
			reload()
		case <-fire:
			fire = nil
			reload()
		}
	}
}

// signature identifies the current set of files by name and contents (a
// hash): sizes and modification times could miss an edit that keeps the
// size within one tick of a coarse file system clock.
func signature(dir string) (string, error) {
	names, err := policyFiles(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return "", fmt.Errorf("reading policy: %w", err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return string(h.Sum(nil)), nil
}
