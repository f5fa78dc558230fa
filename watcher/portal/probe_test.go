package portal

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/roamtun/roamtun/watcher"
)

// TestProbeClassification: each kind of answer a network can give the
// probe, from a real HTTP server (the probe's protocol boundary).
func TestProbeClassification(t *testing.T) {
	for _, c := range []struct {
		name    string
		handler http.HandlerFunc
		reset   bool // the server resets the connection
		want    watcher.Connectivity
		portal  string // want PortalURL ("" none; "PROBE": the probe URL itself)
	}{
		{name: "200 with the expected answer", want: watcher.ConnectivityFull,
			handler: func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(DefaultAnswer + "\n")) }},
		{name: "200 with another body", want: watcher.ConnectivityPortal, portal: "PROBE",
			handler: func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("<html>Welcome to Cafe WiFi</html>")) }},
		{name: "204 No Content", want: watcher.ConnectivityFull,
			handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }},
		{name: "302 with Location", want: watcher.ConnectivityPortal, portal: "http://portal.cafe.example/login?from=probe",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://portal.cafe.example/login?from=probe", http.StatusFound)
			}},
		{name: "302 with a relative Location", want: watcher.ConnectivityPortal, portal: "RELATIVE",
			handler: func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/splash", http.StatusFound) }},
		{name: "302 to a non-http scheme", want: watcher.ConnectivityPortal, portal: "PROBE",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Location", "file:///etc/shadow")
				w.WriteHeader(http.StatusFound)
			}},
		{name: "511 Network Authentication Required", want: watcher.ConnectivityPortal, portal: "PROBE",
			handler: func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNetworkAuthenticationRequired) }},
		{name: "timeout", want: watcher.ConnectivityLimited,
			handler: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }},
		{name: "reset", want: watcher.ConnectivityLimited, reset: true},
		{name: "oversized body that starts with the answer", want: watcher.ConnectivityPortal, portal: "PROBE",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Write([]byte(DefaultAnswer + "\n" + strings.Repeat("x", 1<<20)))
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var srv *httptest.Server
			var sawUA, sawCookie atomic.Value
			if c.reset {
				srv = httptest.NewUnstartedServer(nil)
				srv.Config.ConnState = func(conn net.Conn, s http.ConnState) {
					if s == http.StateNew {
						conn.(*net.TCPConn).SetLinger(0)
						conn.Close()
					}
				}
				srv.Start()
			} else {
				srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					sawUA.Store(r.UserAgent())
					sawCookie.Store(r.Header.Get("Cookie"))
					http.SetCookie(w, &http.Cookie{Name: "session", Value: "x"})
					c.handler(w, r)
				}))
			}
			defer srv.Close()
			probeURL := srv.URL + "/check_network_status.txt"
			p, err := NewProber(probeURL, DefaultAnswer)
			if err != nil {
				t.Fatal(err)
			}
			p.Timeout = 500 * time.Millisecond
			if c.name != "timeout" {
				p.Timeout = 20 * time.Second // generous: a loaded machine must not turn an answer into "limited"
			}
			r := p.Probe(context.Background(), Target{})
			if r.Connectivity != c.want {
				t.Fatalf("connectivity %q (%s), want %q", r.Connectivity, r.Why, c.want)
			}
			want := c.portal
			switch want {
			case "PROBE":
				want = probeURL
			case "RELATIVE":
				want = srv.URL + "/splash"
			}
			if r.PortalURL != want {
				t.Errorf("portal URL %q, want %q", r.PortalURL, want)
			}
			if ua, _ := sawUA.Load().(string); !c.reset && !strings.HasPrefix(ua, "roamtun-portal-check/") {
				t.Errorf("User-Agent %q", ua)
			}
			if ck, _ := sawCookie.Load().(string); ck != "" {
				t.Errorf("the probe sent a cookie: %q", ck)
			}
		})
	}
}

// TestProbeDoesNotFollowRedirects: the portal page is never fetched.
func TestProbeDoesNotFollowRedirects(t *testing.T) {
	var portalHits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/portal" {
			portalHits.Add(1)
			w.Write([]byte(DefaultAnswer))
			return
		}
		http.Redirect(w, r, "/portal", http.StatusFound)
	}))
	defer srv.Close()
	p, _ := NewProber(srv.URL+"/check", DefaultAnswer)
	if r := p.Probe(context.Background(), Target{}); r.Connectivity != watcher.ConnectivityPortal {
		t.Errorf("%+v", r)
	}
	if n := portalHits.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

// TestProbeResolvesThroughTheNetworksDNS: a probe URL naming a host is
// resolved by one query to the network's own resolver, not the system's,
// and the probe connects to that answer.
func TestProbeResolvesThroughTheNetworksDNS(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "check.portal.test:"+strings.Split(r.Host, ":")[1] {
			t.Errorf("Host %q", r.Host)
		}
		w.Write([]byte(DefaultAnswer))
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	dns, queries := fakeDNS(t, netip.MustParseAddr("127.0.0.1"))
	p, _ := NewProber("http://check.portal.test:"+strconv.Itoa(port)+"/x", DefaultAnswer)
	p.Timeout = 20 * time.Second
	p.dnsPort = dns // port 53 would need root
	r := p.Probe(context.Background(), Target{DNS: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	if r.Connectivity != watcher.ConnectivityFull {
		t.Fatalf("%+v", r)
	}
	if n := queries.Load(); n != 1 {
		t.Errorf("%d DNS queries, want 1", n)
	}
	if r := p.Probe(context.Background(), Target{}); r.Connectivity != watcher.ConnectivityLimited || !strings.Contains(r.Why, "no DNS server") {
		t.Errorf("no resolver known: %+v", r)
	}
}

// fakeDNS answers every A query with addr, on a loopback UDP port it
// returns; it counts the queries.
func fakeDNS(t *testing.T, addr netip.Addr) (uint16, *atomic.Int32) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var n atomic.Int32
	go func() {
		buf := make([]byte, 1500)
		for {
			k, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			n.Add(1)
			var m dnsmessage.Message
			if m.Unpack(buf[:k]) != nil || len(m.Questions) != 1 {
				continue
			}
			m.Header.Response = true
			m.Answers = []dnsmessage.Resource{{Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name, Type: dnsmessage.TypeA,
				Class: dnsmessage.ClassINET, TTL: 1}, Body: &dnsmessage.AResource{A: addr.As4()}}}
			out, _ := m.Pack()
			c.WriteTo(out, from)
		}
	}()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port), &n
}

func TestCheckURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		DefaultURL:                     true,
		"http://10.0.0.1:8080/x":       true,
		"https://nmcheck.gnome.org/":   false,
		"http:///nohost":               false,
		"http://user:pw@example.org/":  false,
		"ftp://example.org/":           false,
		"http://example.org:0/":        false,
		"http://example.org:99999/":    false,
		"http://connectivity.test/204": true,
	} {
		if _, err := CheckURL(raw); (err == nil) != ok {
			t.Errorf("CheckURL(%q): %v", raw, err)
		}
	}
}

func TestSignInURL(t *testing.T) {
	base, _ := CheckURL(DefaultURL)
	for loc, want := range map[string]string{
		"http://10.0.0.1/login":                 "http://10.0.0.1/login",
		"https://portal.example/a?b=c":          "https://portal.example/a?b=c",
		"/splash":                               "http://nmcheck.gnome.org/splash",
		"javascript:alert(1)":                   "",
		"file:///etc/passwd":                    "",
		"http://a/\x00b":                        "",
		"http://a/" + strings.Repeat("x", 3000): "",
	} {
		got, err := SignInURL(base, loc)
		if want == "" {
			if err == nil {
				t.Errorf("SignInURL(%q) = %q, want refused", loc, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("SignInURL(%q) = %q, %v; want %q", loc, got, err, want)
		}
	}
}
