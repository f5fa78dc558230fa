package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/watcher"
)

func TestHolderKeepsLastGood(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.toml": "[[rule]]\nname = \"one\"\nssid = \"X\"\naction = \"block\"\n"})
	h, err := NewHolder(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := watcher.Network{Interface: "w", Kind: watcher.KindWifi, SSID: "X", Security: "wpa2"}
	rule := func() string { return h.Policy().Decide(context.Background(), n, nil).Rule }
	if rule() != "one" {
		t.Fatalf("rule %q", rule())
	}
	if changed, err := h.Reload(); changed || err != nil {
		t.Fatalf("unchanged files: changed=%v err=%v", changed, err)
	}
	write := func(s string, mtime time.Time) {
		p := filepath.Join(dir, "a.toml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		// Set mtimes explicitly: coarse file system clocks must not hide a change.
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(time.Hour)
	write("[[rule]]\nname = \"two\"\nssid = \"X\"\naction = \"bogus\"\n", base)
	changed, err := h.Reload()
	if changed || err == nil || !strings.Contains(err.Error(), "a.toml:4: action") {
		t.Fatalf("bad file: changed=%v err=%v", changed, err)
	}
	if rule() != "one" || h.Err() == nil {
		t.Fatalf("last good policy not kept: %q, %v", rule(), h.Err())
	}
	if changed, err := h.Reload(); changed || err != nil {
		t.Fatalf("same bad file reported twice: %v %v", changed, err)
	}
	write("[[rule]]\nname = \"three\"\nssid = \"X\"\naction = \"tunnel\"\n", base.Add(time.Second))
	if changed, err := h.Reload(); !changed || err != nil {
		t.Fatalf("good file: changed=%v err=%v", changed, err)
	}
	if rule() != "three" || h.Err() != nil {
		t.Fatalf("rule %q err %v", rule(), h.Err())
	}
	if err := os.Remove(filepath.Join(dir, "a.toml")); err != nil {
		t.Fatal(err)
	}
	if changed, _ := h.Reload(); !changed || rule() != DefaultRule {
		t.Fatalf("removed file: changed=%v rule=%q", changed, rule())
	}
}

func TestHolderRun(t *testing.T) {
	dir := t.TempDir()
	h, err := NewHolder(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Policy, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- h.Run(ctx, 10*time.Millisecond, nil, func(p *Policy) { got <- p }) }()
	if err := os.WriteFile(filepath.Join(dir, "a.toml"), []byte("[default]\naction = \"block\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p.Default.Action != ActionBlock {
			t.Fatalf("default %v", p.Default)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no reload")
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run: %v", err)
	}
}

func TestNewHolderBad(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.toml": "[[rule]]\naction = 1\n"})
	if _, err := NewHolder(dir, nil); err == nil {
		t.Fatal("bad initial policy accepted")
	}
}
