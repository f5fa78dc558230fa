package policy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
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

// Reload re-reads the files if their names, sizes or modification times
// changed since the last attempt. It reports whether a new policy is in
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

// Run polls for changes every interval until ctx ends, calling onChange
// (may be nil) after each successful reload. Polling, not inotify: editors
// replace files by rename and policy_dir may not exist yet, both of which
// a stat every few seconds handles without special cases.
func (h *Holder) Run(ctx context.Context, interval time.Duration, log *slog.Logger, onChange func(*Policy)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
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
}

// signature identifies the current set of files by name, size and mtime.
func signature(dir string) (string, error) {
	names, err := policyFiles(dir)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, n := range names {
		fi, err := os.Stat(n)
		if err != nil {
			return "", fmt.Errorf("reading policy: %w", err)
		}
		fmt.Fprintf(&b, "%s\x00%d\x00%d\n", n, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}
