package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// zombies counts this process's children that exited and were not reaped.
func zombies(t *testing.T) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	me := strconv.Itoa(os.Getpid())
	n := 0
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces, so split after ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[0] == "Z" && f[1] == me {
			n++
		}
	}
	return n
}

// TestOpenURLReaps: "Sign in" clicks start xdg-open; each is reaped when it
// exits, so a day of clicks leaves no zombies.
func TestOpenURLReaps(t *testing.T) {
	bin := t.TempDir()
	os.WriteFile(filepath.Join(bin, "xdg-open"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	for range 20 {
		if err := openURL("http://portal.example/"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for zombies(t) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d zombie xdg-open processes after 10 s", zombies(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
