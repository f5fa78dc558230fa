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
	// No fallback check: the change must be seen through inotify.
	go func() { done <- h.Run(ctx, 0, nil, func(p *Policy) { got <- p }) }()
	if err := os.WriteFile(filepath.Join(dir, "a.toml"), []byte("[default]\naction = \"block\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A reload may catch the file half-written (empty); the last one
	// reads it whole.
	deadline := time.After(30 * time.Second)
	for ok := false; !ok; {
		select {
		case p := <-got:
			ok = p.Default.Action == ActionBlock
		case <-deadline:
			t.Fatalf("no reload; in force: %v", h.Policy().Default)
		}
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

// TestHolderRunWatches: with no periodic check at all, Run sees a
// policy_dir that does not exist yet being created, a file replaced by
// rename (as editors do), and the directory removed and made again.
func TestHolderRunWatches(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "etc", "networks.d")
	h, err := NewHolder(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Policy, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx, 0, nil, func(p *Policy) { got <- p }) }()
	want := func(what string, a Action) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case p := <-got:
				if p.Default.Action == a {
					return
				}
			case <-deadline:
				t.Fatalf("%s: no reload to %v; in force: %v", what, a, h.Policy().Default)
			}
		}
	}
	// A change made before Run watches is read by its first look.
	policy := func(a string) []byte { return []byte("[default]\naction = \"" + a + "\"\n") }
	write := func(name string, b []byte) {
		t.Helper()
		tmp := filepath.Join(filepath.Dir(name), ".tmp")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(dir, "a.toml"), policy("block"))
	want("directory created", ActionBlock)
	write(filepath.Join(dir, "a.toml"), policy("trust"))
	want("file replaced by rename", ActionTrust)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	want("directory removed", ActionTunnel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(dir, "b.toml"), policy("block"))
	want("directory made again", ActionBlock)
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run: %v", err)
	}
}
