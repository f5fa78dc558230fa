package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// streamOf is JOURNAL_STREAM as systemd would set it for f.
func streamOf(t *testing.T, f *os.File) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func TestLoggerJournalFormat(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stream  func(f, other *os.File) string
		journal bool
	}{
		{"stderr is the journal's stream", func(f, _ *os.File) string { return streamOf(t, f) }, true},
		{"JOURNAL_STREAM names another file", func(_, o *os.File) string { return streamOf(t, o) }, false},
		{"no JOURNAL_STREAM", func(_, _ *os.File) string { return "" }, false},
		{"JOURNAL_STREAM garbled", func(_, _ *os.File) string { return "not:a:stream" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f, err := os.Create(filepath.Join(dir, "stderr"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			other, err := os.Create(filepath.Join(dir, "other"))
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			t.Setenv("JOURNAL_STREAM", tc.stream(f, other))
			log := newLogger(f, slog.LevelDebug).With("component", "test")
			log.Error("an error", "err", "multi\nline")
			log.Warn("a warning")
			log.WithGroup("g").Info("some info", "k", 1)
			log.Debug("a detail")
			b, err := os.ReadFile(f.Name())
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			if len(lines) != 4 {
				t.Fatalf("%d lines, want 4 (one per record):\n%s", len(lines), b)
			}
			for i, prio := range []string{"<3>", "<4>", "<6>", "<7>"} {
				l := lines[i]
				if got := strings.HasPrefix(l, prio); got != tc.journal {
					t.Errorf("line %q: priority prefix %s: %v, want %v", l, prio, got, tc.journal)
				}
				if got := strings.Contains(l, "time="); got == tc.journal {
					t.Errorf("line %q: timestamp %v, want %v", l, got, !tc.journal)
				}
				if !strings.Contains(l, "component=test") {
					t.Errorf("line %q: attributes lost", l)
				}
			}
		})
	}
}

func TestLoggerLevel(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Setenv("JOURNAL_STREAM", streamOf(t, f))
	log := newLogger(f, slog.LevelInfo)
	log.Debug("hidden")
	log.Info("shown")
	b, _ := os.ReadFile(f.Name())
	if got := string(b); got != "<6>level=INFO msg=shown\n" {
		t.Errorf("got %q", got)
	}
}
