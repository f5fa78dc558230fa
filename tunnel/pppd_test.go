package tunnel

import (
	"errors"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roamtun/roamtun/internal/dial"

	"github.com/roamtun/roamtun/tunnel/ppp"
)

func TestPPPDArgs(t *testing.T) {
	setup := pppdSetup{Linkname: "roamtun-home", Hook: "/run/h", Events: "/run/h/events"}
	base := SessionOptions{Interface: "roamtun0", MTU: 1200,
		Link: ppp.Config{LocalName: "client", RemoteName: "server", RequireCHAP: true, MRU: 1200,
			EchoInterval: time.Second, EchoFailures: 3, RequestDNS: true}}
	for _, tc := range []struct {
		name     string
		argv     []string
		env      []string
		edit     func(*SessionOptions)
		want     []string // consecutive words that must appear
		wantNot  []string
		wantFail string
	}{
		{name: "classic", argv: []string{"ssh", "-l", "ppp", "--", "vpn"},
			want: []string{"nodetach logfd 2", "pty exec 'ssh' '-l' 'ppp' '--' 'vpn'", "name client remotename server",
				"require-chap refuse-pap refuse-eap refuse-mschap refuse-mschap-v2",
				"noipdefault nodefaultroute usepeerdns noipv6", "mtu 1200 mru 1200",
				"lcp-echo-interval 1 lcp-echo-failure 3", "ifname roamtun0", "linkname roamtun-home",
				"ipparam /run/h/events ip-up-script /run/h/ip-up ip-down-script /run/h/ip-down"},
			wantNot: []string{"noauth", "refuse-chap", "defaultroute", "notty"}},
		{name: "no chap from the far end, none to give",
			argv: []string{"cat"},
			edit: func(o *SessionOptions) { o.Link.RequireCHAP, o.Link.RefuseAuth = false, true },
			want: []string{"noauth refuse-pap refuse-eap refuse-mschap refuse-mschap-v2 refuse-chap"}, wantNot: []string{"require-chap"}},
		{name: "keepalive rounds up to whole seconds", argv: []string{"cat"},
			edit: func(o *SessionOptions) { o.Link.EchoInterval, o.Link.EchoFailures = 1500*time.Millisecond, 0 },
			want: []string{"lcp-echo-interval 2 lcp-echo-failure 3"}},
		{name: "short keepalive is one second", argv: []string{"cat"},
			edit: func(o *SessionOptions) { o.Link.EchoInterval = 100 * time.Millisecond },
			want: []string{"lcp-echo-interval 1"}},
		{name: "no keepalive", argv: []string{"cat"},
			edit: func(o *SessionOptions) { o.Link.EchoInterval = 0 }, wantNot: []string{"lcp-echo-interval"}},
		{name: "mtu", argv: []string{"cat"},
			edit: func(o *SessionOptions) { o.MTU, o.Link.MRU = 1400, 1400 }, want: []string{"mtu 1400 mru 1400"}},
		{name: "agent socket and hostile words stay words",
			argv: []string{"ssh", "-o", "ProxyCommand=x; rm -rf /", "host'$(id)`id`"}, env: []string{"SSH_AUTH_SOCK=/run/a b'c"},
			want: []string{`pty export 'SSH_AUTH_SOCK=/run/a b'\''c'; exec 'ssh' '-o' 'ProxyCommand=x; rm -rf /' 'host'\''$(id)` + "`id`'"}},
		{name: "bad environment", argv: []string{"ssh"}, env: []string{"A B=c"}, wantFail: "not NAME=VALUE"},
		{name: "empty command", argv: nil, wantFail: "dial command is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			if tc.edit != nil {
				tc.edit(&o)
			}
			args, err := pppdArgs(tc.argv, tc.env, o, setup)
			if tc.wantFail != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantFail) {
					t.Fatalf("err = %v, want %q", err, tc.wantFail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			line := " " + strings.Join(args, " ") + " "
			for _, w := range tc.want {
				if !strings.Contains(line, " "+w+" ") {
					t.Errorf("command line lacks %q:\n%s", w, line)
				}
			}
			for _, w := range tc.wantNot {
				if slices.Contains(args, w) {
					t.Errorf("command line has %q:\n%s", w, line)
				}
			}
		})
	}
}

// TestPTYCommandIsWhatSSHRuns: the pty command, run by sh as pppd runs it,
// gives the program exactly the argv and environment the built-in engine
// would (host-key pinning is in those words).
func TestPTYCommandIsWhatSSHRuns(t *testing.T) {
	argv := []string{"/bin/sh", "-c", `printf '%s\n' "$SSH_AUTH_SOCK" "$@"`, "sh", "-o", "UserKnownHostsFile=/k h", "it's", "$(id)", "*", ""}
	pty, err := ptyCommand(argv, []string{"SSH_AUTH_SOCK=/run/agent 1"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/sh", "-c", pty).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "/run/agent 1\n" + strings.Join(argv[4:], "\n") + "\n"
	if string(out) != want {
		t.Errorf("ran with\n%q\nwant\n%q", out, want)
	}
}

func TestParseHookLine(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		line string
		want hookEvent
		fail bool
	}{
		{line: "ip-up\tppp0\t10.9.0.2\t10.9.0.1\t10.9.0.53\t\tserver",
			want: hookEvent{Kind: "ip-up", Ifname: "ppp0", Local: a("10.9.0.2"), Remote: a("10.9.0.1"),
				DNS: []netip.Addr{a("10.9.0.53")}, PeerName: "server"}},
		{line: "ip-down\troamtun0\t10.9.0.2\t10.9.0.1\t10.9.0.53\t10.9.0.54\t\n",
			want: hookEvent{Kind: "ip-down", Ifname: "roamtun0", Local: a("10.9.0.2"), Remote: a("10.9.0.1"),
				DNS: []netip.Addr{a("10.9.0.53"), a("10.9.0.54")}}},
		{line: "ip-up\tppp0\t10.9.0.2\t10.9.0.1\t10.9.0.53\t10.9.0.53\t", want: hookEvent{Kind: "ip-up", Ifname: "ppp0",
			Local: a("10.9.0.2"), Remote: a("10.9.0.1"), DNS: []netip.Addr{a("10.9.0.53")}}},
		{line: "ip-up\tppp0\t10.9.0.2\t10.9.0.1\t\t\t", want: hookEvent{Kind: "ip-up", Ifname: "ppp0",
			Local: a("10.9.0.2"), Remote: a("10.9.0.1")}},
		{line: "ip-up\tppp0\t10.9.0.2\t10.9.0.1\t\t", fail: true},
		{line: "ipv6-up\tppp0\t10.9.0.2\t10.9.0.1\t\t\t", fail: true},
		{line: "ip-up\t../x\t10.9.0.2\t10.9.0.1\t\t\t", fail: true},
		{line: "ip-up\t..\t10.9.0.2\t10.9.0.1\t\t\t", fail: true},
		{line: "ip-up\tppp0\tnope\t10.9.0.1\t\t\t", fail: true},
		{line: "ip-up\tppp0\t10.9.0.2\t10.9.0.1\t8.8.8.8.8\t\t", fail: true},
		{line: "", fail: true},
	} {
		got, err := parseHookLine(tc.line)
		if tc.fail {
			if err == nil {
				t.Errorf("%q: parsed as %+v", tc.line, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		if got.Kind != tc.want.Kind || got.Ifname != tc.want.Ifname || got.Local != tc.want.Local ||
			got.Remote != tc.want.Remote || !slices.Equal(got.DNS, tc.want.DNS) || got.PeerName != tc.want.PeerName {
			t.Errorf("%q: got %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

func TestCheckSession(t *testing.T) {
	a := netip.MustParseAddr
	server := func() []ppp.Forbidden {
		return []ppp.Forbidden{{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Why: "the ssh server's address"},
			{Prefix: netip.MustParsePrefix("10.200.1.0/24"), Why: "the uplink's subnet"}}
	}
	ok := hookEvent{Local: a("10.9.0.2"), Remote: a("10.9.0.1"), DNS: []netip.Addr{a("10.9.0.53")}}
	for _, tc := range []struct {
		name string
		edit func(*hookEvent)
		want string
	}{
		{"fine", func(*hookEvent) {}, ""},
		{"server's address as the peer", func(e *hookEvent) { e.Remote = a("192.0.2.7") }, "its address 192.0.2.7 from the far end: the ssh server's address"},
		{"uplink DNS", func(e *hookEvent) { e.DNS = []netip.Addr{a("10.200.1.1")} }, "DNS server 10.200.1.1 from the far end: the uplink's subnet"},
		{"loopback", func(e *hookEvent) { e.Local = a("127.0.0.2") }, "our address 127.0.0.2 from the far end: a loopback address"},
		{"same both ends", func(e *hookEvent) { e.Remote = e.Local }, "both ends would be 10.9.0.2"},
	} {
		ev := ok
		tc.edit(&ev)
		err := checkSession(ev, server)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestPPPDEndReason(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		log    []string
		is     error
		want   string
	}{
		{"chap refused by the far end", 19, []string{"Connect: roamtun0 <--> /dev/pts/0", "CHAP authentication failed: bad secret", "Connection terminated."},
			nil, "pppd exited with status 19: we failed to authenticate ourselves to the far end (pppd: CHAP authentication failed: bad secret)"},
		{"far end failed chap", 11, []string{`Peer "server" failed CHAP authentication`, "Connection terminated."},
			nil, `status 11: the far end failed to authenticate itself (pppd: Peer "server" failed CHAP authentication)`},
		{"lcp timeout", 10, []string{"LCP: timeout sending Config-Requests", "Connection terminated."},
			nil, "status 10: PPP negotiation failed (pppd: LCP: timeout sending Config-Requests)"},
		{"echoes", 15, []string{"No response to 3 echo-requests", "Serial link appears to be disconnected.", "Connection terminated."},
			nil, "status 15: the far end stopped answering echo requests (pppd: No response to 3 echo-requests)"},
		{"far end killed", 16, []string{"Modem hangup", "Connection terminated."}, nil, "status 16: the transport hung up (pppd: Modem hangup)"},
		{"host key", 16, []string{"Host key verification failed.", "Modem hangup"}, dial.ErrHostKey, "ssh: Host key verification failed."},
		{"refused key", 16, []string{"roamtun-lab@10.0.0.1: Permission denied (publickey).", "Modem hangup"}, dial.ErrAuthRefused, ""},
		{"unknown status", 42, nil, nil, "pppd exited with status 42: unknown status"},
	} {
		err := pppdEndReason(tc.status, tc.log)
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("%s: %v is not %v", tc.name, err, tc.is)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %q lacks %q", tc.name, err, tc.want)
		}
		var pe *PPPDExitError
		if tc.is == nil && (!errors.As(err, &pe) || pe.Status != tc.status) {
			t.Errorf("%s: %v is not a PPPDExitError with status %d", tc.name, err, tc.status)
		}
	}
}
