// Command watchprobe runs roamtun's watcher sources and prints what they
// report as JSON lines (lab.ProbeLine), so that a test can run the real
// watcher code where the host cannot: inside a user-mode-linux guest with
// simulated Wi-Fi, against that kernel's nl80211 and rtnetlink.
//
//	watchprobe [-sources nl80211,netlink,networkmanager] [-nm-bus ADDRESS] [-merged]
//
// Each source runs on its own: its nl80211 events are printed as they come
// ("event"), and after every hint it is observed again and its networks are
// printed when they changed ("networks"); failures are "error" lines. With
// -merged, a watcher.Watcher over fresh instances of the same sources runs
// too: its merged view is printed on every change ("merged") and its log
// as "log" lines. SIGTERM or SIGINT ends it.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/roamtun/roamtun/lab"
	"github.com/roamtun/roamtun/watcher"
	"github.com/roamtun/roamtun/watcher/networkmanager"
	"github.com/roamtun/roamtun/watcher/nl80211"
	"github.com/roamtun/roamtun/watcher/rtnetlink"
)

var (
	start = time.Now()
	outMu sync.Mutex
	out   io.Writer = os.Stdout
)

// lineWriter serialises whole lines from the slog handler and emit.
type lineWriter struct{}

func (lineWriter) Write(p []byte) (int, error) {
	outMu.Lock()
	defer outMu.Unlock()
	return out.Write(p)
}

func emit(l lab.ProbeLine) {
	l.MS = time.Since(start).Milliseconds()
	b, err := json.Marshal(l)
	if err != nil {
		b, _ = json.Marshal(lab.ProbeLine{T: "error", Err: err.Error()})
	}
	lineWriter{}.Write(append(b, '\n'))
}

func netsOf(ns []watcher.Network) []lab.ProbeNetwork {
	out := make([]lab.ProbeNetwork, 0, len(ns))
	for _, n := range ns {
		p := lab.ProbeNetwork{Interface: n.Interface, Kind: string(n.Kind), SSIDHex: hex.EncodeToString([]byte(n.SSID)),
			BSSID: n.BSSID, Security: string(n.Security), Frequency: n.Frequency, GatewayMAC: n.GatewayMAC, Connection: n.Connection}
		if n.Address.IsValid() {
			p.Address = n.Address.String()
		}
		if n.Gateway.IsValid() {
			p.Gateway = n.Gateway.String()
		}
		out = append(out, p)
	}
	return out
}

func cmdName(c uint8) string {
	switch c {
	case unix.NL80211_CMD_CONNECT:
		return "connect"
	case unix.NL80211_CMD_ROAM:
		return "roam"
	case unix.NL80211_CMD_DISCONNECT:
		return "disconnect"
	}
	return fmt.Sprint(c)
}

// nmBus is the networkmanager source's system bus ("": the default one).
var nmBus string

func newSources(names []string, onEvent func(nl80211.Event), log *slog.Logger) ([]watcher.Source, error) {
	var ss []watcher.Source
	for _, n := range names {
		switch n {
		case "nl80211":
			ss = append(ss, &nl80211.Source{OnEvent: onEvent, Log: log})
		case "netlink":
			ss = append(ss, &rtnetlink.Source{Ignore: []string{"roamtun0"}, Log: log})
		case "networkmanager":
			ss = append(ss, &networkmanager.Source{BusAddress: nmBus, Log: log})
		default:
			return nil, fmt.Errorf("unknown source %q (nl80211, netlink, networkmanager)", n)
		}
	}
	return ss, nil
}

// follow runs one source and prints its events, networks and failures.
func follow(ctx context.Context, s watcher.Source) {
	hints := make(chan struct{}, 1)
	hint := func() {
		select {
		case hints <- struct{}{}:
		default:
		}
	}
	go func() {
		for ctx.Err() == nil {
			err := s.Run(ctx, hint)
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, watcher.ErrUnavailable) {
				emit(lab.ProbeLine{T: "unavailable", Source: s.Name(), Err: err.Error()})
				return
			}
			emit(lab.ProbeLine{T: "error", Source: s.Name(), Err: fmt.Sprint("run: ", err)})
			time.Sleep(time.Second)
		}
	}()
	emit(lab.ProbeLine{T: "start", Source: s.Name()})
	last, lastErr := "", ""
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-hints:
			}
			time.Sleep(30 * time.Millisecond) // a burst is one change
			select {
			case <-hints:
			default:
			}
		}
		octx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ns, err := s.Observe(octx)
		cancel()
		if err != nil {
			if e := err.Error(); e != lastErr {
				emit(lab.ProbeLine{T: "error", Source: s.Name(), Err: "observe: " + e})
				lastErr = e
			}
			continue
		}
		lastErr = ""
		l := lab.ProbeLine{T: "networks", Source: s.Name(), Networks: netsOf(ns)}
		b, _ := json.Marshal(l.Networks)
		if string(b) != last || first {
			last = string(b)
			emit(l)
		}
	}
}

func main() {
	sources := flag.String("sources", "nl80211,netlink", "comma-separated sources to run")
	flag.StringVar(&nmBus, "nm-bus", "", "the networkmanager source's system bus address (default: the system bus)")
	merged := flag.Bool("merged", false, "also run a watcher.Watcher over the sources and print its merged view")
	flag.Parse()
	names := strings.Split(*sources, ",")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger := slog.New(slog.NewJSONHandler(lineWriter{}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("t", "log")
	onEvent := func(ev nl80211.Event) {
		pe := &lab.ProbeEvent{Cmd: cmdName(ev.Cmd), IfIndex: ev.IfIndex, HasSSID: ev.HasSSID, Status: ev.Status,
			Reason: ev.Reason, ByAP: ev.ByAP, Frequency: ev.Frequency, SSIDHex: hex.EncodeToString([]byte(ev.SSID))}
		if ev.BSSID != nil {
			pe.BSSID = strings.ToLower(ev.BSSID.String())
		}
		emit(lab.ProbeLine{T: "event", Source: "nl80211", Event: pe})
	}
	ss, err := newSources(names, onEvent, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "watchprobe:", err)
		os.Exit(2)
	}
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			follow(ctx, s)
		}()
	}
	if *merged {
		ms, _ := newSources(names, nil, logger)
		w := watcher.New(ms, watcher.Options{Log: logger})
		wg.Add(2)
		go func() {
			defer wg.Done()
			w.Run(ctx)
		}()
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-w.Changes():
					_, all := w.Current()
					emit(lab.ProbeLine{T: "merged", Networks: netsOf(all)})
				}
			}
		}()
	}
	<-ctx.Done()
	wg.Wait()
}
