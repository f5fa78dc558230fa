package lab

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// ProbeLine is one JSON line of the watch probe (lab/watchprobe), a program
// that runs roamtun's watcher sources where the lab puts it (inside a Wi-Fi
// guest, against the guest's kernel) and prints what they report.
type ProbeLine struct {
	T      string `json:"t"` // start, event, networks, error, unavailable, merged, log
	MS     int64  `json:"ms"`
	Source string `json:"source,omitempty"`
	// event: one nl80211 mlme event
	Event *ProbeEvent `json:"event,omitempty"`
	// networks (one source's Observe), merged (the watcher's Current)
	Networks []ProbeNetwork `json:"networks,omitempty"`
	// error, unavailable, log
	Err   string `json:"err,omitempty"`
	Level string `json:"level,omitempty"` // log: slog's level (DEBUG, INFO, WARN, ERROR)
	Msg   string `json:"msg,omitempty"`   // log
	Raw   string `json:"-"`
}

// ProbeEvent is an nl80211 association event.
type ProbeEvent struct {
	Cmd       string `json:"cmd"` // connect, roam, disconnect
	IfIndex   uint32 `json:"ifindex"`
	BSSID     string `json:"bssid,omitempty"`
	SSIDHex   string `json:"ssid_hex,omitempty"`
	HasSSID   bool   `json:"has_ssid,omitempty"`
	Status    uint16 `json:"status,omitempty"`
	Reason    uint16 `json:"reason,omitempty"`
	ByAP      bool   `json:"by_ap,omitempty"`
	Frequency uint32 `json:"freq,omitempty"`
}

// SSID returns the event's SSID bytes.
func (e *ProbeEvent) SSID() []byte { b, _ := hex.DecodeString(e.SSIDHex); return b }

// ProbeNetwork is a watcher.Network as the probe prints it: the SSID in hex,
// because JSON strings cannot carry arbitrary bytes.
type ProbeNetwork struct {
	Interface  string `json:"interface"`
	Kind       string `json:"kind"`
	SSIDHex    string `json:"ssid_hex,omitempty"`
	BSSID      string `json:"bssid,omitempty"`
	Security   string `json:"security,omitempty"`
	Frequency  int    `json:"frequency,omitempty"`
	Address    string `json:"address,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
	GatewayMAC string `json:"gateway_mac,omitempty"`
	Connection string `json:"connection,omitempty"` // networkmanager: the profile's id
}

// SSID returns the network's SSID bytes.
func (n ProbeNetwork) SSID() []byte { b, _ := hex.DecodeString(n.SSIDHex); return b }

// ParseProbe parses the probe's output; lines that are not JSON are kept
// with T "text".
func ParseProbe(out string) []ProbeLine {
	var ls []ProbeLine
	for _, s := range strings.Split(out, "\n") {
		if strings.TrimSpace(s) == "" {
			continue
		}
		var l ProbeLine
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			l = ProbeLine{T: "text", Msg: s}
		}
		l.Raw = s
		ls = append(ls, l)
	}
	return ls
}

// BuildWatchProbe builds the watch probe into dir (statically: it runs in
// guests) and returns its path.
func BuildWatchProbe(dir string) (string, error) {
	return BuildStatic(dir, "github.com/roamtun/roamtun/lab/watchprobe")
}

// BuildStatic builds the command pkg into dir (named as pkg's last element)
// without cgo, so that it runs in guests, and returns its path.
func BuildStatic(dir, pkg string) (string, error) {
	bin := filepath.Join(dir, path.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// Probe is a watch probe running in a Wi-Fi guest.
type Probe struct {
	g   *WifiGuest
	out string // its output file in the guest
}

// StartProbe runs the watch probe (host path bin) in the guest's initial
// namespace with args; its output goes to /run/<name>.out in the guest.
func (g *WifiGuest) StartProbe(name, bin string, args ...string) (*Probe, error) {
	q := []string{ShellQuote(g.GuestPath(bin))}
	for _, a := range args {
		q = append(q, ShellQuote(a))
	}
	p := &Probe{g: g, out: "/run/" + name + ".out"}
	if _, err := g.Run(10*time.Second, strings.Join(q, " ")+" > "+p.out+" 2>&1 &"); err != nil {
		return nil, err
	}
	return p, nil
}

// Lines returns everything the probe printed so far.
func (p *Probe) Lines() ([]ProbeLine, error) {
	out, err := p.g.Run(10*time.Second, "cat "+p.out)
	if err != nil {
		return nil, err
	}
	return ParseProbe(out), nil
}

// Wait polls the probe's output until ok finds what it wants in the lines
// printed since from (an index into Lines), and returns all lines.
func (p *Probe) Wait(timeout time.Duration, from int, ok func([]ProbeLine) bool) ([]ProbeLine, error) {
	deadline := time.Now().Add(timeout)
	for {
		ls, err := p.Lines()
		if err != nil {
			return ls, err
		}
		if from <= len(ls) && ok(ls[from:]) {
			return ls, nil
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, l := range ls[min(from, len(ls)):] {
				b.WriteString(l.Raw + "\n")
			}
			return ls, fmt.Errorf("watch probe: not seen within %s; its output since line %d:\n%s", timeout, from, b.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
