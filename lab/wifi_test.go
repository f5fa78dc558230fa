package lab

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWifiGuestAgent: the Wi-Fi guest boots with its radios, and its agent
// runs scripts with their exit codes and exact output, takes files in
// chunks, and refuses a request too long for the serial line.
func TestWifiGuestAgent(t *testing.T) {
	RequireWifi(t)
	l := NewT(t)
	t0 := time.Now()
	g, err := l.StartWifiGuest("agent", 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("booted in %s", time.Since(t0).Round(time.Millisecond))
	if out, err := g.Run(10*time.Second, "uname -r; ls /sys/class/net"); err != nil ||
		!strings.Contains(out, "umlwifi") || !strings.Contains(out, "wlan2") {
		t.Fatalf("%q %v", out, err)
	}
	out, err := g.Run(10*time.Second, `printf 'a\001\377\n' ; echo oops >&2; exit 3`)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || out != "a\x01\xff\noops\n" {
		t.Fatalf("exit: %q %v", out, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef\x00\xff"), 400) // 7200 bytes: three chunks
	if err := g.WriteFile("/run/big", big, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(big)
	if out, err := g.Run(10*time.Second, "sha256sum /run/big; stat -c %a /run/big"); err != nil ||
		out != hex.EncodeToString(sum[:])+"  /run/big\n600\n" {
		t.Fatalf("written file: %q %v", out, err)
	}
	if out, err := g.Run(10*time.Second, "head -c 1000000 /dev/zero"); err != nil || len(out) != 1000000 {
		t.Fatalf("1 MB of output: %d bytes, %v", len(out), err)
	}
	if _, err := g.Run(10*time.Second, strings.Repeat("#", 5000)); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Fatalf("a 5000-byte script: %v", err)
	}
	// Host files under /tmp are where GuestPath says.
	f := filepath.Join(l.Dir(), "hello")
	if err := os.WriteFile(f, []byte("from the host"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := g.Run(10*time.Second, "cat "+ShellQuote(g.GuestPath(f))); err != nil || out != "from the host" {
		t.Fatalf("host file in the guest: %q %v", out, err)
	}
	t0 = time.Now()
	for range 10 {
		if _, err := g.Run(10*time.Second, "true"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("round trip %s", (time.Since(t0) / 10).Round(time.Millisecond))
}
