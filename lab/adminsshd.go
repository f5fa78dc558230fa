package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// AdminSSHD is an sshd on a lab server that its administrator (root, with
// a key) may log in to and run anything on, as `roamtun init` does to
// set the server up. It runs in a private mount namespace of its own: its
// /etc is a copy (Etc, with fresh host keys in place of the host's), its
// /home is Home, /root, /var/log and /run are empty tmpfs. So the accounts,
// authorized_keys, secrets and pool a session makes stay in the lab, and
// the link accounts it makes log in through the same sshd.
type AdminSSHD struct {
	Addr       string // host:port
	User       string // "root"
	Key        string // the admin's private key
	HostKeyPub string // the server's host key ("ssh-ed25519 AAAA…"), as /etc/ssh/ssh_host_ed25519_key.pub there
	Etc, Home  string // the server's /etc and /home, seen from the host
	Log        string
	proc       *Proc
}

// StartAdminSSHD copies /etc, makes host and admin keys and runs sshd in ns
// on ip:port with root login by key (prohibit-password).
func (l *Lab) StartAdminSSHD(ns *Namespace, ip string, port int) (*AdminSSHD, error) {
	dir := filepath.Join(l.dir, fmt.Sprintf("admin-sshd-%d", port))
	s := &AdminSSHD{Addr: net.JoinHostPort(ip, strconv.Itoa(port)), User: "root", Key: filepath.Join(dir, "admin_ed25519"),
		Etc: filepath.Join(dir, "etc"), Home: filepath.Join(dir, "home"), Log: filepath.Join(dir, "sshd.log")}
	for _, d := range []string{s.Etc, s.Home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if out, err := exec.Command("cp", "-a", "/etc/.", s.Etc+"/").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copying /etc: %v: %s", err, out)
	}
	// Never a copy of the host's own host keys in the lab.
	old, _ := filepath.Glob(filepath.Join(s.Etc, "ssh", "ssh_host_*"))
	for _, f := range old {
		os.Remove(f)
	}
	var err error
	if s.HostKeyPub, err = Keygen(filepath.Join(s.Etc, "ssh", "ssh_host_ed25519_key"), "roamtun-lab-server"); err != nil {
		return nil, err
	}
	adminPub, err := Keygen(s.Key, "roamtun-lab-admin")
	if err != nil {
		return nil, err
	}
	adminKeys := filepath.Join(dir, "admin_authorized_keys")
	if err := os.WriteFile(adminKeys, []byte(adminPub+"\n"), 0o644); err != nil {
		return nil, err
	}
	conf := filepath.Join(s.Etc, "ssh", "roamtun-lab-sshd_config")
	if err := os.WriteFile(conf, []byte(SSHDConfig(port, ip, "/etc/ssh/ssh_host_ed25519_key", ".ssh/authorized_keys",
		"PermitRootLogin prohibit-password", "Match User root", "\tAuthorizedKeysFile "+adminKeys)), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(s.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// ip netns exec gives the process a mount namespace of its own (a
	// slave of the host's): these mounts never reach the host.
	script := `set -e
mount --bind "$0/etc" /etc
mount --bind "$0/home" /home
mount -t tmpfs -o mode=0700 roamtun-lab-root /root
mount -t tmpfs roamtun-lab-log /var/log
mount -t tmpfs -o mode=0755 roamtun-lab-run /run
mkdir -m 0755 /run/sshd
usermod -p '*' root
/usr/sbin/sshd -t -f /etc/ssh/roamtun-lab-sshd_config
exec /usr/sbin/sshd -D -e -f /etc/ssh/roamtun-lab-sshd_config`
	if s.proc, err = ns.StartProc(func(c *exec.Cmd) { c.Stdout, c.Stderr = logf, logf }, "/bin/sh", "-c", script, dir); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ns.Do(func() error {
			c, err := net.DialTimeout("tcp", s.Addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return s, nil
		}
		select {
		case <-s.proc.Done():
			b, _ := os.ReadFile(s.Log)
			return nil, fmt.Errorf("admin sshd exited: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(s.Log)
			return nil, errors.Join(fmt.Errorf("admin sshd not accepting on %s", s.Addr), err, errors.New(string(b)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SSHArgs runs a command as the admin: the pinned host key, the admin key,
// batch mode. Append the command.
func (s *AdminSSHD) SSHArgs(knownHosts string) []string {
	host, port, _ := net.SplitHostPort(s.Addr)
	return []string{"ssh", "-F", "/dev/null", "-T", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", s.Key,
		"-o", "UserKnownHostsFile=" + knownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR",
		"-p", port, "-l", s.User, host}
}
