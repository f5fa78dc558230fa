package dial

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/roamtun/roamtun/config"
)

// DefaultCiphers are offered to the server in this order: both are AEADs that
// OpenSSH runs fast on any CPU (chacha20 without AES-NI, AES-GCM with it).
const DefaultCiphers = "chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com"

// SSHCommand returns the argv and extra environment that run the system
// OpenSSH client for a profile, its stdin/stdout carrying the PPP stream.
//
// Host keys are pinned: only the profile's known_hosts file is consulted and
// StrictHostKeyChecking is always yes, because an untrusted network is exactly
// where a man in the middle sits (config validation refuses to relax it).
// The user's ~/.ssh/config is not read (-F /dev/null) so that what runs is what
// the profile says; ssh_options add to it.
func SSHCommand(p *config.Profile) (argv, env []string) {
	// ssh takes the FIRST value given for an option. So: what must not be
	// overridden comes first, then the profile's ssh_options, then defaults
	// that ssh_options may change (ciphers, timeouts, ...).
	argv = []string{"ssh", "-F", "/dev/null", "-T", "-e", "none",
		"-o", "BatchMode=yes",
		"-o", "UserKnownHostsFile=" + p.KnownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UpdateHostKeys=no",
		"-o", "PermitLocalCommand=no",
		"-o", "ForwardAgent=no",
		"-o", "ForwardX11=no",
		"-o", "ClearAllForwardings=yes",
	}
	for _, o := range p.SSHOptions {
		argv = append(argv, "-o", o)
	}
	argv = append(argv,
		"-o", "CheckHostIP=no",
		"-o", "ConnectTimeout=10",
		"-o", "ServerAliveInterval=5",
		"-o", "ServerAliveCountMax=3",
		"-o", "Ciphers="+DefaultCiphers,
		"-o", "Compression=no",
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
		"-o", "LogLevel=ERROR",
	)
	switch {
	case p.AgentSocket != "":
		// A passphrase-protected key held by an agent, as in the classic
		// setup. identity_file, if set, selects which of the agent's keys.
		argv = append(argv, "-o", "IdentityAgent="+p.AgentSocket)
		env = append(env, "SSH_AUTH_SOCK="+p.AgentSocket)
		if p.IdentityFile != "" {
			argv = append(argv, "-o", "IdentitiesOnly=yes", "-i", p.IdentityFile)
		}
	default:
		argv = append(argv, "-o", "IdentityAgent=none", "-o", "IdentitiesOnly=yes", "-i", p.IdentityFile)
	}
	argv = append(argv, "-p", strconv.Itoa(p.Port), "-l", p.User, "--", p.Host)
	if p.RemoteCommand != "" {
		argv = append(argv, p.RemoteCommand)
	}
	return argv, env
}

// Errors recognised in ssh's diagnostics. They are reported in these words,
// not as a generic failure, because each needs a different fix.
var (
	// ErrHostKey: the server's key does not match the pinned one, or none is pinned.
	ErrHostKey = errors.New("host key verification failed: the server's host key is not the pinned one")
	// ErrAuthRefused: the server refused our key (or the account).
	ErrAuthRefused = errors.New("the server refused authentication")
	// ErrUnreachable: no TCP connection to the server.
	ErrUnreachable = errors.New("server unreachable")
)

// ClassifySSH maps ssh's stderr lines to one of the errors above, wrapping the
// most telling line. It returns nil when nothing is recognised.
func ClassifySSH(stderr []string) error {
	for _, c := range []struct {
		err     error
		markers []string
	}{
		{ErrHostKey, []string{"Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
			"host key is known for", "No matching host key", "Host key for", "has changed and you have requested strict checking"}},
		{ErrAuthRefused, []string{"Permission denied", "Too many authentication failures", "no mutual signature"}},
		{ErrUnreachable, []string{"Connection refused", "Connection timed out", "No route to host",
			"Network is unreachable", "Could not resolve hostname", "Connection reset", "Connection closed by"}},
	} {
		for _, line := range stderr {
			for _, m := range c.markers {
				if strings.Contains(line, m) {
					return fmt.Errorf("%w (ssh: %s)", c.err, strings.TrimSpace(line))
				}
			}
		}
	}
	return nil
}

// SSHCommandTo is SSHCommand dialing exactly addr (the address routes were
// made for) while still checking the host key pinned under the profile's
// host name.
func SSHCommandTo(p *config.Profile, addr netip.Addr) (argv, env []string) {
	if a, err := netip.ParseAddr(p.Host); err == nil && a.Unmap() == addr {
		return SSHCommand(p)
	}
	q := *p
	// ssh takes the first value given: HostName before the profile's
	// options (routing depends on it), HostKeyAlias after them.
	q.SSHOptions = append([]string{"HostName=" + addr.String()}, p.SSHOptions...)
	// The alias is looked up verbatim, so it carries the port the way
	// known_hosts writes one that is not 22.
	alias := p.Host
	if p.Port != 22 {
		alias = "[" + p.Host + "]:" + strconv.Itoa(p.Port)
	}
	q.SSHOptions = append(q.SSHOptions, "HostKeyAlias="+alias)
	return SSHCommand(&q)
}
