package lab

import (
	"bufio"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed wifi_init.sh
var wifiInit []byte

// The Wi-Fi kernel: user-mode-linux with cfg80211, mac80211 and
// mac80211_hwsim built in, shipped xz-compressed beside the repository (CI
// copies /work/shared to ../shared relative to the module root).
const wifiKernelRel = "shared/lab/uml-wifi/linux-wifi.xz"

// WifiKernel returns the path of an executable Wi-Fi UML kernel, unpacking
// linux-wifi.xz into a cache directory under os.TempDir on first use. It
// takes $ROAMTUN_UML_WIFI (the kernel or its .xz) if set, else
// ../shared/lab/uml-wifi/linux-wifi.xz beside the module root. The error
// wraps os.ErrNotExist when there is no such kernel.
func WifiKernel() (string, error) {
	src := os.Getenv("ROAMTUN_UML_WIFI")
	if src == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", err
		}
		src = filepath.Join(filepath.Dir(root), wifiKernelRel)
	}
	if _, err := os.Stat(src); err != nil {
		return "", fmt.Errorf("Wi-Fi UML kernel: %w", err)
	}
	if !strings.HasSuffix(src, ".xz") {
		return src, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), "roamtun-uml-wifi-"+hex.EncodeToString(h.Sum(nil))[:16])
	kernel := filepath.Join(dir, "linux-wifi")
	if st, err := os.Stat(kernel); err == nil && st.Mode()&0o100 != 0 {
		return kernel, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "linux-wifi.*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // after the rename: a no-op
	cmd := exec.Command("xz", "-dc", src)
	cmd.Stdout = tmp
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("unpacking %s: %v %s", src, err, strings.TrimSpace(stderr.String()))
	}
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return "", err
	}
	// Parallel tests may race here; rename is atomic and either copy is good.
	if err := os.Rename(tmp.Name(), kernel); err != nil {
		return "", err
	}
	return kernel, nil
}

// moduleRoot is the directory holding go.mod, from the working directory
// up (tests run in their package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: %w", dir, os.ErrNotExist)
		}
	}
}

// RequireWifi returns the Wi-Fi kernel, or skips the test when there is
// none or hostapd, wpa_supplicant and iw are missing (fails instead under
// ROAMTUN_REQUIRE_PRIVILEGED=1). It also needs root.
func RequireWifi(t TB) string {
	t.Helper()
	RequirePrivileged(t)
	for _, c := range []string{"hostapd", "hostapd_cli", "wpa_supplicant", "wpa_cli", "iw", "xz"} {
		RequireCommand(t, c)
	}
	k, err := WifiKernel()
	if err != nil {
		if os.Getenv("ROAMTUN_REQUIRE_PRIVILEGED") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return k
}

// WifiGuest is a user-mode-linux guest with simulated 802.11 radios
// (mac80211_hwsim; radio i is phy<i>/wlan<i>, MAC 02:00:00:00:<i>:00, all on
// one simulated medium). Its init is an agent the host drives over the
// first serial line: Run executes a shell script in the guest and returns
// its output. The host's / is the guest's read-only root, so host binaries
// (hostapd, wpa_supplicant, iw, a Go program the test built: see GuestPath)
// run there as they are; the guest's own files live in its tmpfs /run.
//
// Radio 0 (wlan0) stays in the guest's initial namespace: it is the laptop's
// Wi-Fi (see StartStation). Each access point gets the next radio, moved
// into a namespace of its own inside the guest (see StartAPs).
type WifiGuest struct {
	Name    string
	Radios  int
	Console string // file holding the guest's console output
	Dir     string

	cmd   *exec.Cmd
	done  chan struct{}
	toG   *os.File // host side of the guest's ttyS0 input
	fromG *os.File

	ready chan struct{}
	mu    sync.Mutex // one request at a time
	next  int
	pmu   sync.Mutex
	wait  map[int]chan runResult

	apMu      sync.Mutex
	nextRadio int
}

type runResult struct {
	rc  int
	out string
}

// StartWifiGuest boots a Wi-Fi guest with the given number of radios
// (2..100) and waits until its agent answers. The lab stops it at Close.
func (l *Lab) StartWifiGuest(name string, radios int) (*WifiGuest, error) {
	return l.StartWifiGuestIn(nil, name, radios)
}

// StartWifiGuestIn is StartWifiGuest with the guest process in namespace ns
// (nil: the caller's) and extra kernel parameters, e.g. a network device
// "vec0:transport=tap,ifname=TAP" — create and configure the tap in ns
// before booting (the kernel's first frame on a tap that is not up yet
// puts the device in error for good; uml-wifi's README).
func (l *Lab) StartWifiGuestIn(ns *Namespace, name string, radios int, extra ...string) (*WifiGuest, error) {
	kernel, err := WifiKernel()
	if err != nil {
		return nil, err
	}
	if radios < 2 || radios > 100 {
		return nil, fmt.Errorf("wifi guest: %d radios (2..100)", radios)
	}
	dir := filepath.Join(l.dir, "uml-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	initPath := filepath.Join(l.dir, "wifi-init.sh")
	if err := os.WriteFile(initPath, wifiInit, 0o755); err != nil {
		return nil, err
	}
	g := &WifiGuest{Name: name, Radios: radios, Console: filepath.Join(dir, "console"), Dir: dir,
		done: make(chan struct{}), ready: make(chan struct{}), wait: map[int]chan runResult{}, nextRadio: 1}
	toGuest, toHost := filepath.Join(dir, "to-guest"), filepath.Join(dir, "to-host")
	for _, f := range []string{toGuest, toHost} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			return nil, fmt.Errorf("mkfifo %s: %w", f, err)
		}
	}
	// The guest's ends, and ours. O_RDWR: no open blocks, nobody sees EOF.
	var files []*os.File
	for _, f := range []string{toGuest, toHost, toGuest, toHost} {
		fd, err := os.OpenFile(f, os.O_RDWR, 0)
		if err != nil {
			for _, o := range files {
				o.Close()
			}
			return nil, err
		}
		files = append(files, fd)
	}
	defer files[0].Close()
	defer files[1].Close()
	g.toG, g.fromG = files[2], files[3]
	console, err := os.Create(g.Console)
	if err != nil {
		g.toG.Close()
		g.fromG.Close()
		return nil, err
	}
	defer console.Close()
	argv := []string{kernel, "mem=256M", "rootfstype=hostfs", "rootflags=/", "ro",
		"init=" + initPath, "quiet", "con=null", "con0=fd:0,fd:1", "ssl=null", "ssl0=fd:3,fd:4",
		"uml_dir=" + dir, "umid=" + l.prefix + "-" + name, "mac80211_hwsim.radios=" + strconv.Itoa(radios)}
	argv = append(argv, extra...)
	if ns != nil {
		argv = ns.Exec(argv...)
	}
	g.cmd = exec.Command(argv[0], argv[1:]...)
	g.cmd.Stdin, g.cmd.Stdout, g.cmd.Stderr = nil, console, console
	g.cmd.ExtraFiles = []*os.File{files[0], files[1]}
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := g.cmd.Start(); err != nil {
		g.toG.Close()
		g.fromG.Close()
		return nil, fmt.Errorf("booting wifi guest %s: %w", name, err)
	}
	l.Track(g.cmd.Process)
	go func() {
		g.cmd.Wait()
		close(g.done)
	}()
	go g.read()
	l.Defer(g.Stop)
	select {
	case <-g.ready:
		return g, nil
	case <-g.done:
		return nil, fmt.Errorf("wifi guest %s halted while booting; console:\n%s", name, tail(g.Output(), 40))
	case <-time.After(60 * time.Second):
		g.Stop()
		return nil, fmt.Errorf("wifi guest %s: no agent after 60s; console:\n%s", name, tail(g.Output(), 40))
	}
}

// read dispatches the agent's answers.
func (g *WifiGuest) read() {
	sc := bufio.NewScanner(g.fromG)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	readyOnce := sync.Once{}
	for sc.Scan() {
		f := strings.Fields(strings.TrimRight(sc.Text(), "\r"))
		switch {
		case len(f) >= 1 && f[0] == "RT-READY":
			readyOnce.Do(func() { close(g.ready) })
		case len(f) >= 3 && f[0] == "RT-DONE":
			id, err1 := strconv.Atoi(f[1])
			rc, err2 := strconv.Atoi(f[2])
			if err1 != nil || err2 != nil {
				continue
			}
			var out []byte
			if len(f) >= 4 {
				out, _ = base64.StdEncoding.DecodeString(f[3])
			}
			g.pmu.Lock()
			ch := g.wait[id]
			delete(g.wait, id)
			g.pmu.Unlock()
			if ch != nil {
				ch <- runResult{rc: rc, out: string(out)}
			}
		}
	}
}

// Done is closed when the guest has halted.
func (g *WifiGuest) Done() <-chan struct{} { return g.done }

// Stop halts the guest (all of its host processes) and waits for it.
func (g *WifiGuest) Stop() {
	select {
	case <-g.done:
	default:
		syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-g.done:
		case <-time.After(5 * time.Second):
		}
	}
	g.toG.Close()
	g.fromG.Close()
}

// GuestPath is where the guest sees a host file: the host's / is its
// root, but its /tmp is its own (the host's is at /run/host-tmp).
func (g *WifiGuest) GuestPath(host string) string {
	if rest, ok := strings.CutPrefix(filepath.Clean(host), "/tmp/"); ok {
		return "/run/host-tmp/" + rest
	}
	return host
}

// Output returns the guest's console output so far.
func (g *WifiGuest) Output() string {
	b, _ := os.ReadFile(g.Console)
	return string(b)
}

// ExitError is a guest script's failure: its exit code and output.
type ExitError struct {
	Code   int
	Output string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("exit %d: %s", e.Code, strings.TrimSpace(e.Output))
}

// maxRequest bounds a request line. The host→guest direction of the serial
// line is slow (~20 KB/s) and a line longer than the guest tty's 4 KiB
// buffer was seen to stall for good.
const maxRequest = 4000

// Run runs script with sh in the guest and returns its output (stdout and
// stderr). A non-zero exit is an *ExitError carrying the output. Requests
// are served one at a time; a script may be about 2.9 KB at most (its
// base64 must fit maxRequest). Output may be large (the guest→host
// direction carries megabytes per second).
func (g *WifiGuest) Run(timeout time.Duration, script string) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.next++
	id := g.next
	ch := make(chan runResult, 1)
	g.pmu.Lock()
	g.wait[id] = ch
	g.pmu.Unlock()
	defer func() {
		g.pmu.Lock()
		delete(g.wait, id)
		g.pmu.Unlock()
	}()
	req := strconv.Itoa(id) + " " + base64.StdEncoding.EncodeToString([]byte(script)) + "\n"
	if len(req) > maxRequest {
		return "", fmt.Errorf("wifi guest %s: script of %d bytes is too long for the serial line (%d bytes encoded, at most %d): use WriteFile",
			g.Name, len(script), len(req), maxRequest)
	}
	if _, err := io.WriteString(g.toG, req); err != nil {
		return "", fmt.Errorf("wifi guest %s: sending request: %w", g.Name, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.rc != 0 {
			return r.out, &ExitError{Code: r.rc, Output: r.out}
		}
		return r.out, nil
	case <-g.done:
		return "", fmt.Errorf("wifi guest %s halted running %q; console:\n%s", g.Name, firstLine(script), tail(g.Output(), 20))
	case <-t.C:
		// The agent is still busy with it: later requests would queue
		// behind it, so this guest is of no further use.
		g.Stop()
		return "", fmt.Errorf("wifi guest %s: %q did not finish within %s (guest stopped)", g.Name, firstLine(script), timeout)
	}
}

// Poll runs script every interval until it exits 0 (its output is returned)
// or timeout passes (the last failure is returned). The host keeps time, so
// a guest whose clock stalls cannot stretch the wait.
func (g *WifiGuest) Poll(timeout, interval time.Duration, script string) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		out, err := g.Run(timeout, script)
		if err == nil {
			return out, nil
		}
		var ee *ExitError
		if !errors.As(err, &ee) {
			return out, err
		}
		if time.Now().After(deadline) {
			return out, fmt.Errorf("wifi guest %s: %q still failing after %s: %w", g.Name, firstLine(script), timeout, err)
		}
		time.Sleep(interval)
	}
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return s
}

// ShellQuote quotes s for sh, whatever bytes it holds.
func ShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// WriteFile writes a file in the guest (in chunks the serial line carries).
func (g *WifiGuest) WriteFile(path string, data []byte, mode os.FileMode) error {
	const chunk = 1536
	op := ">"
	for i := 0; i == 0 || i < len(data); i += chunk {
		part := data[i:min(i+chunk, len(data))]
		if _, err := g.Run(10*time.Second, fmt.Sprintf("printf %%s %s | base64 -d %s %s",
			base64.StdEncoding.EncodeToString(part), op, ShellQuote(path))); err != nil {
			return fmt.Errorf("writing %s in the guest: %w", path, err)
		}
		op = ">>"
	}
	_, err := g.Run(10*time.Second, fmt.Sprintf("chmod %o %s", mode.Perm(), ShellQuote(path)))
	return err
}

// Security of a simulated access point.
const (
	WifiOpen = "open"
	WifiWPA2 = "wpa2" // WPA2-PSK, CCMP
	WifiWPA3 = "wpa3" // WPA3-SAE, CCMP, management frame protection required
)

// AccessPoint is one simulated access point: hostapd on a radio of its own,
// in a network namespace "ap-<Name>" inside the guest.
type AccessPoint struct {
	Name       string // a short word: names the namespace and files
	SSID       []byte // any bytes (1..32)
	Channel    int    // 2.4 GHz, 1..11 (the guest has the world regulatory domain)
	Security   string // WifiOpen, WifiWPA2 or WifiWPA3
	Passphrase string
	Hidden     bool // beacons carry an empty SSID

	// Set by StartAPs.
	Radio     int
	BSSID     string // lower-case aa:bb:cc:dd:ee:ff
	Frequency int    // MHz
}

func (ap *AccessPoint) hostapdConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "interface=wlan%d\ndriver=nl80211\nctrl_interface=/run/hostapd-%s\n", ap.Radio, ap.Name)
	fmt.Fprintf(&b, "ssid2=%x\nhw_mode=g\nchannel=%d\nieee80211n=1\nwmm_enabled=1\n", ap.SSID, ap.Channel)
	if ap.Hidden {
		b.WriteString("ignore_broadcast_ssid=1\n")
	}
	switch ap.Security {
	case WifiWPA2:
		fmt.Fprintf(&b, "wpa=2\nwpa_key_mgmt=WPA-PSK\nrsn_pairwise=CCMP\nwpa_passphrase=%s\n", ap.Passphrase)
	case WifiWPA3:
		fmt.Fprintf(&b, "wpa=2\nwpa_key_mgmt=SAE\nrsn_pairwise=CCMP\nieee80211w=2\nsae_password=%s\n", ap.Passphrase)
	}
	return b.String()
}

// StartAPs gives each access point the next free radio, moves it into its
// namespace, starts hostapd there and waits until every one beacons.
func (g *WifiGuest) StartAPs(aps ...*AccessPoint) error {
	return g.startAPs("", "", aps)
}

// startAPs is StartAPs with every radio in namespace ns (which exists), or
// when ns is "" each in a namespace of its own, ap-<name>; if bridge is set,
// hostapd adds its interface to that bridge.
func (g *WifiGuest) startAPs(ns, bridge string, aps []*AccessPoint) error {
	g.apMu.Lock()
	defer g.apMu.Unlock()
	var ready []string
	for _, ap := range aps {
		switch ap.Security {
		case WifiOpen, WifiWPA2, WifiWPA3:
		default:
			return fmt.Errorf("access point %s: security %q", ap.Name, ap.Security)
		}
		if ap.Channel < 1 || ap.Channel > 11 {
			return fmt.Errorf("access point %s: channel %d", ap.Name, ap.Channel)
		}
		if len(ap.SSID) < 1 || len(ap.SSID) > 32 {
			return fmt.Errorf("access point %s: SSID of %d bytes", ap.Name, len(ap.SSID))
		}
		if g.nextRadio >= g.Radios {
			return fmt.Errorf("access point %s: all %d radios in use", ap.Name, g.Radios)
		}
		ap.Radio = g.nextRadio
		g.nextRadio++
		ap.Frequency = 2407 + 5*ap.Channel
		conf := ap.hostapdConf()
		if bridge != "" {
			conf += "bridge=" + bridge + "\n"
		}
		apNS, create := ns, ""
		if ns == "" {
			apNS = "ap-" + ap.Name
			create = fmt.Sprintf("ip netns add %[1]s\nip netns exec %[1]s ip link set lo up\n", apNS)
		}
		out, err := g.Run(30*time.Second, fmt.Sprintf(`set -e
printf %%s %[4]s | base64 -d > /run/hostapd-%[1]s.conf
cat /sys/class/net/wlan%[2]d/address
%[5]siw phy phy%[2]d set netns name %[3]s
ip netns exec %[3]s hostapd -t /run/hostapd-%[1]s.conf > /run/hostapd-%[1]s.log 2>&1 &
`, ap.Name, ap.Radio, apNS, base64.StdEncoding.EncodeToString([]byte(conf)), create))
		if err != nil {
			return fmt.Errorf("starting access point %s: %w", ap.Name, err)
		}
		ap.BSSID = strings.ToLower(strings.TrimSpace(out))
		if len(ap.BSSID) != 17 {
			return fmt.Errorf("access point %s: MAC of wlan%d: %q", ap.Name, ap.Radio, out)
		}
		ready = append(ready, fmt.Sprintf(
			"ip netns exec %[3]s hostapd_cli -p /run/hostapd-%[1]s -i wlan%[2]d status | grep -qx state=ENABLED || { echo %[1]s; exit 1; }",
			ap.Name, ap.Radio, apNS))
	}
	if out, err := g.Poll(30*time.Second, 100*time.Millisecond, strings.Join(ready, "\n")); err != nil {
		name := strings.TrimSpace(out)
		log, _ := g.Run(5*time.Second, "tail -n 30 /run/hostapd-"+name+".log")
		return fmt.Errorf("access point %s: %w\nhostapd:\n%s", name, err, log)
	}
	return nil
}

// StationIface is the laptop's Wi-Fi interface in the guest.
const StationIface = "wlan0"

// StartStation runs wpa_supplicant on wlan0 (the guest's initial
// namespace) with no networks configured; see Associate.
func (g *WifiGuest) StartStation() error {
	conf := "ctrl_interface=/run/wpa_supplicant\nap_scan=1\n"
	if err := g.WriteFile("/run/wpa_supplicant.conf", []byte(conf), 0o600); err != nil {
		return err
	}
	if _, err := g.Run(10*time.Second, "wpa_supplicant -t -D nl80211 -i "+StationIface+
		" -c /run/wpa_supplicant.conf > /run/wpa_supplicant.log 2>&1 &"); err != nil {
		return err
	}
	_, err := g.Poll(20*time.Second, 100*time.Millisecond, "wpa_cli -p /run/wpa_supplicant -i "+StationIface+" ping | grep -qx PONG")
	return err
}

// WPACli runs wpa_cli on the station with the given (unquoted) arguments
// and returns its output; "FAIL" from wpa_cli is an error.
func (g *WifiGuest) WPACli(args ...string) (string, error) {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = ShellQuote(a)
	}
	out, err := g.Run(20*time.Second, "wpa_cli -p /run/wpa_supplicant -i "+StationIface+" "+strings.Join(q, " "))
	if err == nil && strings.TrimSpace(out) == "FAIL" {
		err = fmt.Errorf("wpa_cli %s: FAIL", strings.Join(args, " "))
	}
	return out, err
}

// WPAStatus returns `wpa_cli status` as a map.
func (g *WifiGuest) WPAStatus() (map[string]string, error) {
	out, err := g.WPACli("status")
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			m[k] = v
		}
	}
	return m, nil
}

// Associate replaces the station's configured networks with one for ap
// (pinned to bssid if given) and waits until wpa_supplicant completes the
// association. It scans only the channels of the lab's access points.
func (g *WifiGuest) Associate(ap *AccessPoint, bssid string, scanFreqs []int, timeout time.Duration) (map[string]string, error) {
	set := [][]string{{"ssid", hex.EncodeToString(ap.SSID)}}
	switch ap.Security {
	case WifiOpen:
		set = append(set, []string{"key_mgmt", "NONE"})
	case WifiWPA2:
		set = append(set, []string{"key_mgmt", "WPA-PSK"}, []string{"psk", strconv.Quote(ap.Passphrase)})
	case WifiWPA3:
		set = append(set, []string{"key_mgmt", "SAE"}, []string{"ieee80211w", "2"}, []string{"sae_password", strconv.Quote(ap.Passphrase)})
	}
	if ap.Hidden {
		set = append(set, []string{"scan_ssid", "1"})
	}
	if bssid != "" {
		set = append(set, []string{"bssid", bssid})
	}
	if len(scanFreqs) > 0 {
		fs := make([]string, len(scanFreqs))
		for i, f := range scanFreqs {
			fs[i] = strconv.Itoa(f)
		}
		set = append(set, []string{"scan_freq", strings.Join(fs, " ")})
	}
	// One request: each round trip over the serial line costs ~50 ms.
	var b strings.Builder
	b.WriteString(`set -e
w() { out=$(wpa_cli -p /run/wpa_supplicant -i ` + StationIface + ` "$@"); case $out in FAIL*) echo "wpa_cli $1 $2 $3: $out"; exit 1;; esac; echo "$out"; }
w remove_network all >/dev/null
id=$(w add_network)
`)
	for _, kv := range set {
		fmt.Fprintf(&b, "w set_network \"$id\" %s %s >/dev/null\n", kv[0], ShellQuote(kv[1]))
	}
	b.WriteString("w select_network \"$id\" >/dev/null\n")
	if _, err := g.Run(20*time.Second, b.String()); err != nil {
		return nil, fmt.Errorf("configuring wpa_supplicant: %w", err)
	}
	return g.WaitWPA(timeout, func(st map[string]string) bool {
		return st["wpa_state"] == "COMPLETED" && (bssid == "" || st["bssid"] == bssid)
	})
}

// WaitWPA polls `wpa_cli status` until ok accepts it.
func (g *WifiGuest) WaitWPA(timeout time.Duration, ok func(map[string]string) bool) (map[string]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := g.WPAStatus()
		if err != nil {
			return nil, err
		}
		if ok(st) {
			return st, nil
		}
		if time.Now().After(deadline) {
			log, _ := g.Run(5*time.Second, "tail -n 25 /run/wpa_supplicant.log")
			return st, fmt.Errorf("wpa_supplicant: state %q bssid %q after %s\n%s", st["wpa_state"], st["bssid"], timeout, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
