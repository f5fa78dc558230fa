package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LabUser is the dedicated account the lab's sshd lets in, as the classic
// setup has one on the server. It is created on first use (system account,
// no password, /bin/sh) and left in place for later runs.
const LabUser = "roamtun-lab"

// SSHServer is a real OpenSSH sshd running in a namespace with its own
// config, host key and authorized_keys: the server of the classic setup.
type SSHServer struct {
	Addr       string // host:port
	User       string
	ClientKey  string // private key the laptop authenticates with
	KnownHosts string // the server's host key, pinned for the laptop
	HostKeyPub string
	Log        string // sshd's log file
	proc       *Proc
	ns         *Namespace
	conf       string
}

// Triangle is the standard lab: laptop ⇄ cafe (a router) ⇄ home (server).
type Triangle struct {
	Laptop, Cafe, Home *Namespace
}

// Standard addresses of the triangle.
const (
	LaptopIP     = "10.200.1.2"
	CafeLaptopIP = "10.200.1.1"
	CafeHomeIP   = "10.200.2.1"
	HomeIP       = "10.200.2.2"
)

// Triangle builds laptop (wan0) ⇄ cafe (lan0, up0; forwarding) ⇄ home (eth0)
// with default routes towards the cafe.
func (l *Lab) Triangle() (*Triangle, error) {
	var t Triangle
	var err error
	if t.Laptop, t.Cafe, err = l.CafeLink(LaptopIP + "/24"); err != nil {
		return nil, err
	}
	if t.Home, err = l.Namespace("home"); err != nil {
		return nil, err
	}
	if err := l.Veth(t.Cafe, "up0", CafeHomeIP+"/24", t.Home, "eth0", HomeIP+"/24"); err != nil {
		return nil, err
	}
	for _, c := range [][]string{
		{t.Laptop.name, "ip", "route", "add", "default", "via", CafeLaptopIP},
		{t.Home.name, "ip", "route", "add", "default", "via", CafeHomeIP},
		{t.Cafe.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	} {
		if _, err := (&Namespace{lab: l, name: c[0]}).Run(c[1:]...); err != nil {
			return nil, err
		}
	}
	return &t, nil
}

var userMu sync.Mutex

// EnsureLabUser creates LabUser if missing and returns its uid and gid.
//
// Tests running in parallel (and other test binaries) call it at the same
// time on a fresh machine: useradd and usermod are serialised with a lock
// file, so that no caller sees the account half made.
func EnsureLabUser() (uid, gid int, err error) {
	userMu.Lock()
	defer userMu.Unlock()
	lock, err := os.OpenFile("/run/roamtun-lab-user.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return 0, 0, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return 0, 0, err
	}
	uid, gid, _, err = ensureUser(LabUser)
	return uid, gid, err
}

// ensureUser creates a system account for sshd's forced-command logins if
// it is missing, and reports whether it did.
func ensureUser(name string) (uid, gid int, created bool, err error) {
	u, err := user.Lookup(name)
	if err != nil {
		out, aerr := exec.Command("useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
			"--shell", "/bin/sh", name).CombinedOutput()
		if u, err = user.Lookup(name); err != nil { // another test may have won the race
			return 0, 0, false, fmt.Errorf("useradd %s: %v: %s", name, aerr, out)
		}
		created = aerr == nil
	}
	// sshd refuses accounts whose password field starts with "!" when PAM is off.
	if out, err := exec.Command("usermod", "-p", "*", "-d", "/", name).CombinedOutput(); err != nil {
		return 0, 0, created, fmt.Errorf("usermod: %v: %s", err, out)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, created, nil
}

// UseAccount makes the lab's sshd let in (and CapBinary serve) the account
// name instead of LabUser. If the account does not exist it is created, and
// removed again at Close: the demo leaves no account behind.
func (l *Lab) UseAccount(name string) (uid, gid int, err error) {
	userMu.Lock()
	defer userMu.Unlock()
	uid, gid, created, err := ensureUser(name)
	if err != nil {
		return 0, 0, err
	}
	l.account = name
	if created {
		l.mu.Lock()
		l.last = append(l.last, func() {
			if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "lab: userdel %s: %v: %s\n", name, err, out)
			}
		})
		l.mu.Unlock()
	}
	return uid, gid, nil
}

// accountIDs ensures the lab's account and returns its uid and gid.
func (l *Lab) accountIDs() (uid, gid int, err error) {
	if l.account == LabUser {
		return EnsureLabUser()
	}
	u, err := user.Lookup(l.account)
	if err != nil {
		return 0, 0, err
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// CapBinary copies bin into the lab dir with the file capability
// cap_net_admin, runnable only by root and the lab user's group (mode 0750),
// so that the unprivileged lab user may create a TUN — the way `roamtun
// server-setup` deploys `roamtun serve`.
func (l *Lab) CapBinary(bin string) (string, error) {
	_, gid, err := l.accountIDs()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	dst := filepath.Join(l.dir, "roamtun-serve")
	if err := os.WriteFile(dst, data, 0o750); err != nil {
		return "", err
	}
	if err := os.Chown(dst, 0, gid); err != nil {
		return "", err
	}
	if out, err := exec.Command("setcap", "cap_net_admin+ep", dst).CombinedOutput(); err != nil {
		return "", fmt.Errorf("setcap: %v: %s", err, out)
	}
	return dst, nil
}

// StartSSHD runs sshd in ns on ip:port. Only the lab's account (LabUser
// unless UseAccount) may log in, with the returned client key, and only to
// run forced (authorized_keys options "restrict,command=..."). Files the
// forced command reads must be readable by that account.
func (l *Lab) StartSSHD(ns *Namespace, ip string, port int, forced string) (*SSHServer, error) {
	if _, _, err := l.accountIDs(); err != nil {
		return nil, err
	}
	dir := filepath.Join(l.dir, fmt.Sprintf("sshd-%d", port))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &SSHServer{Addr: net.JoinHostPort(ip, strconv.Itoa(port)), User: l.account,
		ClientKey: filepath.Join(dir, "id_ed25519"), KnownHosts: filepath.Join(dir, "known_hosts"),
		Log: filepath.Join(dir, "sshd.log")}
	hostKey, hostPub, ak, err := sshdKeys(dir, "roamtun-lab", forced, ip, port)
	if err != nil {
		return nil, err
	}
	s.HostKeyPub = hostPub
	conf := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(conf, []byte(SSHDConfig(port, ip, hostKey, ak, "AllowUsers "+l.account,
		// Only keys whose authorized_keys line allows it may open tunnels
		// (ssh -w), for the benchmark's comparison; the forced-command key
		// has "restrict".
		"PermitTunnel point-to-point")), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
		`mount -t tmpfs -o mode=0755 roamtun-lab-run /run && mkdir -m 0755 /run/sshd && exec /usr/sbin/sshd -t -f "$0"`,
		conf).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sshd -t: %v: %s", err, out)
	}
	s.ns, s.conf = ns, conf
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// AddKey makes a new client key and authorizes it with the given
// authorized_keys options (sshd reads the file at each login).
func (s *SSHServer) AddKey(name, opts string) (string, error) {
	key := filepath.Join(filepath.Dir(s.ClientKey), name)
	pub, err := Keygen(key, name)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(filepath.Join(filepath.Dir(s.ClientKey), "authorized_keys"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s %s\n", opts, pub)
	return key, err
}

// SSHArgs are the client options for this server: pinned host key, the
// given identity, batch mode. Append the command.
func (s *SSHServer) SSHArgs(key string) []string {
	host, port, _ := net.SplitHostPort(s.Addr)
	return []string{"ssh", "-F", "/dev/null", "-T", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", key,
		"-o", "UserKnownHostsFile=" + s.KnownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
		"-p", port, "-l", s.User, host}
}

// Keygen makes an unencrypted ed25519 key pair at path (and path.pub) and
// returns the public key as "TYPE BASE64", the form known_hosts and
// authorized_keys take.
func Keygen(path, comment string) (string, error) {
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		return "", err
	}
	return strings.Join(strings.Fields(string(pub))[:2], " "), nil
}

// Start (re)starts sshd with its config and waits until it accepts.
func (s *SSHServer) Start() error {
	logf, err := os.OpenFile(s.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// Debian's sshd needs its privilege separation directory, /run/sshd.
	// ip netns exec runs it in a mount namespace of its own: a tmpfs on /run
	// there holds the directory, and the host's /run is left as it was.
	if s.proc, err = s.ns.StartProc(func(c *exec.Cmd) { c.Stdout, c.Stderr = logf, logf },
		"/bin/sh", "-c", `mount -t tmpfs -o mode=0755 roamtun-lab-run /run && mkdir -m 0755 /run/sshd && exec /usr/sbin/sshd -D -e -f "$0"`,
		s.conf); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := s.ns.Do(func() error {
			c, err := net.DialTimeout("tcp", s.Addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(s.Log)
			return errors.Join(fmt.Errorf("sshd not accepting on %s", s.Addr), err, errors.New(string(b)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends sshd and every session it runs (they share its process group).
func (s *SSHServer) Stop() {
	syscall.Kill(-s.proc.Cmd.Process.Pid, syscall.SIGKILL)
	s.proc.Wait(5 * time.Second)
}

// CafeLink builds the two namespaces most tests start from: a laptop whose
// wan0 is on a café router's link (lan0, 10.200.1.1/24). laptopAddr is
// wan0's address ("" to leave it for DHCP).
func (l *Lab) CafeLink(laptopAddr string) (laptop, cafe *Namespace, err error) {
	if laptop, err = l.Namespace("laptop"); err != nil {
		return nil, nil, err
	}
	if cafe, err = l.Namespace("cafe"); err != nil {
		return nil, nil, err
	}
	if err := l.Veth(laptop, "wan0", laptopAddr, cafe, "lan0", CafeLaptopIP+"/24"); err != nil {
		return nil, nil, err
	}
	return laptop, cafe, nil
}

// SSHDConfig is the lab's sshd_config: one port and address, one host key,
// keys only (no passwords, no PAM), no DNS lookups, a verbose log; extra
// lines follow (AllowUsers, PermitRootLogin, Match blocks last).
func SSHDConfig(port int, listen, hostKey, authorizedKeys string, extra ...string) string {
	return fmt.Sprintf(`Port %d
ListenAddress %s
HostKey %s
PidFile none
AuthorizedKeysFile %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
LogLevel VERBOSE
`, port, listen, hostKey, authorizedKeys) + strings.Join(append(extra, ""), "\n")
}

// sshdKeys makes, in dir, a host key (host_ed25519) and a client key
// (id_ed25519) named after name, authorizes the client key for forced only
// (authorized_keys) and pins the host key at ip:port (known_hosts). It
// returns the host key's path, its public half and authorized_keys' path.
func sshdKeys(dir, name, forced, ip string, port int) (hostKey, hostPub, ak string, err error) {
	hostKey, ak = filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "authorized_keys")
	if hostPub, err = Keygen(hostKey, name+"-host"); err != nil {
		return "", "", "", err
	}
	pub, err := Keygen(filepath.Join(dir, "id_ed25519"), name)
	if err != nil {
		return "", "", "", err
	}
	if err := os.WriteFile(ak, []byte(fmt.Sprintf("restrict,command=%q %s\n", forced, pub)), 0o644); err != nil {
		return "", "", "", err
	}
	known := fmt.Sprintf("[%s]:%d %s\n", ip, port, hostPub)
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), []byte(known), 0o644); err != nil {
		return "", "", "", err
	}
	return hostKey, hostPub, ak, nil
}
