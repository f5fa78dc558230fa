package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/daemon"
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

// TestSignInURL: "Sign in" opens the portal's own address when the daemon
// knows one and it is a web address; anything else the network sent is
// not handed to the desktop's opener.
func TestSignInURL(t *testing.T) {
	for _, c := range []struct {
		portal, want string
	}{
		{"", fallbackPortalURL},
		{"http://10.200.1.1:8080/portal?x=1", "http://10.200.1.1:8080/portal?x=1"},
		{"https://login.cafe.example/", "https://login.cafe.example/"},
		{"file:///etc/passwd", fallbackPortalURL},
		{"--help", fallbackPortalURL},
		{"javascript:alert(1)", fallbackPortalURL},
	} {
		s := daemon.Status{State: daemon.StatePortal, Network: &daemon.NetworkStatus{PortalURL: c.portal}}
		if got := signInURL(s); got != c.want {
			t.Errorf("portal %q: opens %q, want %q", c.portal, got, c.want)
		}
	}
	if got := signInURL(daemon.Status{State: daemon.StateIdle}); got != fallbackPortalURL {
		t.Errorf("no network: %q", got)
	}
}
