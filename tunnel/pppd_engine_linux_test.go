package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roamtun/roamtun/tunnel/ppp"
)

// fakePPPD stands in for pppd (the host has no kernel PPP; the real one
// runs in user-mode-linux, see pppd_engine_uml_test.go): it shows what it
// sees of /etc/ppp, runs its ip-up hook as pppd would, then does what its
// case says.
const fakePPPD = `#!/bin/sh
while [ $# -gt 0 ]; do
    case $1 in
    ipparam) ipparam=$2; shift ;;
    ip-up-script) up=$2; shift ;;
    esac
    shift
done
echo "etc-ppp: $(ls /etc/ppp | tr '\n' ' ')"
echo "secrets: $(cat /etc/ppp/chap-secrets)"
echo "Using interface ppp9"
`

func TestPPPDRunner(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("ROAMTUN_REQUIRE_PRIVILEGED") == "1" {
			t.Fatal("this test needs root (a mount namespace for pppd); ROAMTUN_REQUIRE_PRIVILEGED=1 forbids skipping")
		}
		t.Skip("needs root (a mount namespace for pppd)")
	}
	hostPPP, _ := os.ReadDir("/etc/ppp")
	dir := t.TempDir()
	secrets := filepath.Join(dir, "chap-secrets")
	if err := os.WriteFile(secrets, []byte("client server not-a-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitTerm := `trap 'echo "Terminating on signal 15"; exit 5' TERM
while :; do sleep 0.05; done
`
	for _, tc := range []struct {
		name   string
		script string
		cancel bool // cancel once up
		want   string
		is     error
		up     bool
	}{
		{name: "up, then stopped", script: `DNS1=10.9.0.53 PEERNAME=server "$up" ppp9 /dev/pts/9 38400 10.9.0.2 10.9.0.1 "$ipparam"
` + waitTerm, cancel: true, is: ppp.ErrClosed, up: true},
		{name: "chap failure", script: "echo 'CHAP authentication failed'\necho 'Connection terminated.'\nexit 19\n",
			want: "status 19: we failed to authenticate ourselves to the far end (pppd: CHAP authentication failed)"},
		{name: "server's address handed over", script: `"$up" ppp9 /dev/pts/9 38400 10.9.0.2 192.0.2.7 "$ipparam"
` + waitTerm, want: "refusing its address 192.0.2.7 from the far end: the ssh server's address"},
		{name: "far end gone", script: `"$up" ppp9 /dev/pts/9 38400 10.9.0.2 10.9.0.1 "$ipparam"
sleep 0.3; echo 'Modem hangup'; exit 16
`, want: "status 16: the transport hung up (pppd: Modem hangup)", up: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog := filepath.Join(t.TempDir(), "pppd")
			if err := os.WriteFile(prog, []byte(fakePPPD+tc.script), 0o755); err != nil {
				t.Fatal(err)
			}
			var logMu sync.Mutex
			var logs strings.Builder
			log := slog.New(slog.NewTextHandler(syncWriter{&logMu, &logs}, nil))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var got []ppp.Session
			var gotIf string
			e := &PPPD{Program: prog, Secrets: secrets, Linkname: "roamtun-test"}
			o := SessionOptions{Interface: "ppp9", MTU: 1200, Log: log,
				Link: ppp.Config{LocalName: "client", RemoteName: "server", RequireCHAP: true,
					Forbidden: func() []ppp.Forbidden {
						return []ppp.Forbidden{{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Why: "the ssh server's address"}}
					}},
				OnUp: func(s ppp.Session, ifname string, stats func() ppp.Stats) {
					got, gotIf = append(got, s), ifname
					_ = stats()
					if tc.cancel {
						cancel()
					}
				}}
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx, []string{"ssh", "-l", "u", "host"}, nil, o) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("Run did not return")
			}
			logMu.Lock()
			out := logs.String()
			logMu.Unlock()
			switch {
			case tc.is != nil && !errors.Is(err, tc.is):
				t.Errorf("err = %v, want %v", err, tc.is)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if tc.up {
				want := ppp.Session{LocalIP: netip.MustParseAddr("10.9.0.2"), PeerIP: netip.MustParseAddr("10.9.0.1")}
				if len(got) != 1 || gotIf != "ppp9" || got[0].LocalIP != want.LocalIP || got[0].PeerIP != want.PeerIP {
					t.Errorf("up: %v %+v", gotIf, got)
				} else if tc.cancel && (len(got[0].DNS) != 1 || got[0].DNS[0] != netip.MustParseAddr("10.9.0.53") || got[0].PeerName != "server") {
					t.Errorf("up: DNS %v, peer name %q", got[0].DNS, got[0].PeerName)
				}
			} else if len(got) != 0 {
				t.Errorf("reported up: %+v", got)
			}
			// pppd saw only what roamtun gave it, in a namespace of its own.
			for _, w := range []string{"etc-ppp: chap-secrets \"", "secrets: client server not-a-secret", "pppd: Using interface ppp9"} {
				if !strings.Contains(out, w) {
					t.Errorf("log lacks %q:\n%s", w, out)
				}
			}
			if now, _ := os.ReadDir("/etc/ppp"); len(now) != len(hostPPP) {
				t.Errorf("the host's /etc/ppp changed: %v -> %v", hostPPP, now)
			}
		})
	}
}

type syncWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
