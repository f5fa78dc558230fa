// Package serve is the far end's side of roamtun: what `roamtun
// server-setup` installs (a restricted account, CHAP secrets, the capable
// copy of roamtun, an address pool per laptop key, revocation), and the
// claims by which a new `roamtun serve` session takes its peer address
// over from a stale one.
package serve

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
)

// ServerSetup describes the server side of the classic setup.
type ServerSetup struct {
	User       string       // the dedicated account (default "ppp-link")
	From       netip.Prefix // optional: only from these addresses (authorized_keys from=)
	FarEnd     string       // "pppd" (stock pppd) or "roamtun" (roamtun serve)
	PubKey     string       // the laptop's public key line
	Local      netip.Addr   // server's address on the link
	Peer       netip.Addr   // laptop's address on the link
	DNS        netip.Addr   // DNS offered (default: Local)
	ClientName string       // CHAP names (default client/server)
	ServerName string
	Roamtun    string // path of roamtun on the server (default /usr/bin/roamtun)
	// ServeBinary is where the capable copy of roamtun goes (--far-end
	// roamtun): mode 0750, group LinkGroup, cap_net_admin. Default
	// /usr/lib/roamtun/roamtun-serve.
	ServeBinary string
	HostKeyPub  string // the server's host key line ("ssh-ed25519 AAAA..."), for the laptop to pin
	Host        string // the server's name as the laptop dials it
	Port        int
	// ID, when set, names this laptop's own pppd peers file
	// (/etc/ppp/peers/roamtun-ID), so that each laptop of a pool gets its
	// own address. Letters and digits.
	ID string
	// The CHAP secrets, the laptop's (client to server) and the server's;
	// fresh random ones when empty.
	ClientSecret, ServerSecret string
}

// LaptopSetup is what the laptop needs from an applied server setup
// (`server-setup --apply --json`).
type LaptopSetup struct {
	User        string      `json:"user"`        // the link account to log in as
	Name        string      `json:"name"`        // the laptop's CHAP name
	RemoteName  string      `json:"remote_name"` // the server's
	Secrets     CHAPSecrets `json:"secrets"`
	Local       string      `json:"local"` // the server's address on the link
	Peer        string      `json:"peer"`  // the laptop's
	DNS         string      `json:"dns"`
	HostKey     string      `json:"host_key,omitempty"` // the host key line read on the server
	Fingerprint string      `json:"fingerprint"`        // of the laptop's key
}

// CHAPSecrets are the two secrets of a link, one each way.
type CHAPSecrets struct {
	Client string `json:"client"` // the laptop proves itself with this
	Server string `json:"server"` // the server proves itself with this
}

// Laptop returns the laptop's part of a prepared setup (see Prepare).
func (s ServerSetup) Laptop() LaptopSetup {
	fp, _ := Fingerprint(s.PubKey)
	return LaptopSetup{User: s.User, Name: s.ClientName, RemoteName: s.ServerName,
		Secrets: CHAPSecrets{Client: s.ClientSecret, Server: s.ServerSecret},
		Local:   s.Local.String(), Peer: s.Peer.String(), DNS: s.DNS.String(),
		HostKey: s.HostKeyPub, Fingerprint: fp}
}

// PeersFile is the pppd peers file the setup writes (--far-end pppd).
func (s ServerSetup) PeersFile() string {
	if s.ID == "" {
		return "/etc/ppp/peers/roamtun"
	}
	return "/etc/ppp/peers/roamtun-" + s.ID
}

// SecretsFile is the chap-secrets file on the server the setup appends to.
func (s ServerSetup) SecretsFile() string {
	if s.FarEnd == "pppd" {
		return "/etc/ppp/chap-secrets"
	}
	return "/etc/roamtun/chap-secrets"
}

// LinkGroup holds the link accounts: only they may run the capable copy of
// roamtun that `roamtun serve` runs as.
const LinkGroup = "roamtun-link"

var (
	userRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	// chapNameRE: CHAP names go into chap-secrets and shell lines unquoted.
	chapNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	// hostRE: a DNS name (an IP literal is checked with netip).
	hostRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$`)
	pathRE = regexp.MustCompile(`^/[A-Za-z0-9._/+-]+$`)
	idRE   = regexp.MustCompile(`^[A-Za-z0-9]{1,32}$`)
	// secretRE: secrets go into shell lines and chap-secrets in quotes.
	secretRE = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)
)

// ReadPubKey reads a single-line OpenSSH public key file and returns it in
// canonical form (see ParsePubKey).
func ReadPubKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading public key: %w", err)
	}
	line, err := ParsePubKey(string(bytes.TrimSpace(b)))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return line, nil
}

// ParsePubKey checks that line is one OpenSSH public key ("TYPE BASE64
// [COMMENT]", no options) and returns it rebuilt from the parsed key: the
// type and key as x/crypto/ssh marshals them, then the comment. The line
// ends up in authorized_keys and in shell commands, so anything that a
// shell, echo or sshd could read as more than text is refused by name:
// control characters (a newline would start a second, unrestricted key
// line), backslashes (dash's echo turns "\n" into a newline), quotes.
func ParsePubKey(line string) (string, error) {
	if !utf8.ValidString(line) {
		return "", errors.New("the public key line is not valid UTF-8")
	}
	for i, r := range line {
		switch {
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return "", fmt.Errorf("the public key line holds a control character (%U) at byte %d; want one line: TYPE BASE64 COMMENT", r, i)
		case r == '\\':
			return "", fmt.Errorf("the public key line holds a backslash at byte %d", i)
		case r == '\'' || r == '"' || r == '`':
			return "", fmt.Errorf("the public key line holds a quote (%c) at byte %d", r, i)
		}
	}
	pub, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	switch {
	case err != nil:
		return "", fmt.Errorf("not an OpenSSH public key line (ssh-ed25519 AAAA... comment): %w", err)
	case len(options) > 0:
		return "", fmt.Errorf("the public key line carries options (%s): give the bare key, server-setup adds the restrictions", strings.Join(options, ","))
	case len(bytes.TrimSpace(rest)) > 0:
		return "", errors.New("more than one public key line")
	}
	out := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment != "" {
		out += " " + strings.Join(strings.Fields(comment), " ")
	}
	return out, nil
}

const pppdPeersFile = `notty
passive
require-chap
name %s
remotename %s
%s:%s
ms-dns %s
mtu 1200
mru 1200
lcp-echo-interval 1
lcp-echo-failure 3
noipv6
nodefaultroute
nodetach`

const recipe = `### On the server, as root ###
umask 077   # everything created below is private unless said otherwise

# 1. A dedicated account: key login only, no password, nothing but the
#    forced command below.
id -u {user} >/dev/null 2>&1 || useradd --system --create-home --shell /bin/sh {user}
usermod -p '*' {user}        # '*': no password works; '!' would lock key logins too

# 2. The laptop's key, allowed to run one command and nothing else
#    (restrict: no pty, no forwarding, no agent, no X11):
install -d -m 0700 -o {user} -g {user} ~{user}/.ssh
grep -qxF '{opts} {pubkey}' ~{user}/.ssh/authorized_keys 2>/dev/null ||
  printf '%s\n' '{opts} {pubkey}' >> ~{user}/.ssh/authorized_keys
chown {user}: ~{user}/.ssh/authorized_keys; chmod 0600 ~{user}/.ssh/authorized_keys

# 3. The right to create the link's interface:
{rights}

# 4. CHAP secrets, a different one each way, in {secrets} ({secretsmode}):
#    client  server  secret  addresses
if grep -qE '^[[:space:]]*({client}[[:space:]]+{server}|{server}[[:space:]]+{client})[[:space:]]' {secrets} 2>/dev/null; then
  echo 'roamtun: {secrets} already has secrets for {client}/{server}; remove them to set new ones' >&2; exit 1
fi
printf '%s\n' '{client} {server} "{c2s}" {peer}' >> {secrets}
printf '%s\n' '{server} {client} "{s2c}" *' >> {secrets}

### On the laptop, as root ###

# 5. The same two lines in /etc/roamtun/chap-secrets (0600):
printf '%s\n' '{client} {server} "{c2s}" *' >> /etc/roamtun/chap-secrets
printf '%s\n' '{server} {client} "{s2c}" *' >> /etc/roamtun/chap-secrets

# 6. Pin the server's host key (never accept-new) in /etc/roamtun/known_hosts:
printf '%s\n' '{hostpat} {pin}' >> /etc/roamtun/known_hosts

# 7. The profile in /etc/roamtun/roamtun.toml:
#    [profile.home]
#    host          = "{host}"
#    port          = {port}
#    user          = "{user}"
#    identity_file = "/etc/roamtun/id_ed25519"
#    name          = "{client}"
#    remote_name   = "{server}"
`

// Recipe returns what the server needs, as shell lines a person can read
// and paste: the account, the authorized_keys line with its restrictions,
// the chap-secrets lines (fresh random secrets, one each way), how the far
// end gets the right to create its interface, and the laptop's side
// (secrets, known_hosts pin, profile). The secrets exist only in this text.
func (s ServerSetup) Recipe() (string, error) {
	if err := s.Prepare(); err != nil {
		return "", err
	}
	return s.recipe(), nil
}

// Prepare fills in the defaults and fresh secrets, and validates: after
// it, Recipe and Laptop describe the same setup.
func (s *ServerSetup) Prepare() error {
	if s.User == "" {
		s.User = "ppp-link"
	}
	if s.ClientName == "" {
		s.ClientName = "client"
	}
	if s.ServerName == "" {
		s.ServerName = "server"
	}
	if s.Roamtun == "" {
		s.Roamtun = "/usr/bin/roamtun"
	}
	if s.ServeBinary == "" {
		s.ServeBinary = "/usr/lib/roamtun/roamtun-serve"
	}
	if !s.DNS.IsValid() {
		s.DNS = s.Local
	}
	if s.Port == 0 {
		s.Port = 22
	}
	if s.Host == "" {
		s.Host = "vpn.example.net"
	}
	if s.ClientSecret == "" {
		s.ClientSecret = secret()
	}
	if s.ServerSecret == "" {
		s.ServerSecret = secret()
	}
	return s.validate()
}

func (s ServerSetup) recipe() string {
	var forced, rights, secrets, mode string
	if s.FarEnd == "pppd" {
		forced = "/usr/sbin/pppd call " + filepath.Base(s.PeersFile())
		secrets, mode = s.SecretsFile(), "root, 0600: pppd reads it as root"
		rights = "# pppd is setuid root and runnable by group dip; its privileged options live\n" +
			"# in " + s.PeersFile() + " (read as root by \"pppd call\"), not on the command line.\n" +
			"usermod -aG dip " + s.User + "\n" +
			"cat > " + s.PeersFile() + " <<'ROAMTUN'\n" +
			fmt.Sprintf(pppdPeersFile, s.ServerName, s.ClientName, s.Local, s.Peer, s.DNS) + "\nROAMTUN"
	} else {
		forced = fmt.Sprintf("%s serve --local %s --peer %s --dns %s --require-chap --name %s --secrets /etc/roamtun/chap-secrets",
			s.ServeBinary, s.Local, s.Peer, s.DNS, s.ServerName)
		secrets, mode = s.SecretsFile(), "root:"+s.User+", 0640"
		rights = "# roamtun serve needs CAP_NET_ADMIN (to create its TUN), not root. The capable\n" +
			"# copy may be run only by the link accounts (group " + LinkGroup + "): any other\n" +
			"# local user could use the capability on this server's routes. A roamtun that\n" +
			"# holds capabilities and is not root refuses every subcommand but serve.\n" +
			"getent group " + LinkGroup + " >/dev/null || groupadd --system " + LinkGroup + "\n" +
			"usermod -aG " + LinkGroup + " " + s.User + "\n" +
			"install -d -m 0755 " + dirOf(s.ServeBinary) + "\n" +
			"install -m 0750 -o root -g " + LinkGroup + " " + s.Roamtun + " " + s.ServeBinary + "\n" +
			"setcap cap_net_admin+ep " + s.ServeBinary + "    # again after each upgrade of " + s.Roamtun + "\n" +
			"ls -l /dev/net/tun        # must be crw-rw-rw- (Debian's default)\n" +
			"install -d -m 0750 -o root -g " + s.User + " /etc/roamtun\n" +
			"touch /etc/roamtun/chap-secrets; chown root:" + s.User + " /etc/roamtun/chap-secrets; chmod 0640 /etc/roamtun/chap-secrets"
	}
	opts := "restrict"
	if s.From.IsValid() {
		opts += fmt.Sprintf(`,from="%s"`, s.From)
	}
	opts += fmt.Sprintf(`,command="%s"`, forced)
	pin := "<the line of /etc/ssh/ssh_host_ed25519_key.pub on the server>"
	if s.HostKeyPub != "" {
		pin = s.HostKeyPub
	}
	hostPat := s.Host
	if s.Port != 22 {
		hostPat = fmt.Sprintf("[%s]:%d", s.Host, s.Port)
	}
	r := strings.NewReplacer(
		"{user}", s.User, "{opts}", opts, "{pubkey}", s.PubKey, "{rights}", rights,
		"{secrets}", secrets, "{secretsmode}", mode, "{client}", s.ClientName, "{server}", s.ServerName,
		"{c2s}", s.ClientSecret, "{s2c}", s.ServerSecret, "{peer}", s.Peer.String(), "{hostpat}", hostPat,
		"{pin}", pin, "{host}", s.Host, "{port}", fmt.Sprint(s.Port))
	return r.Replace(recipe)
}

// validate refuses anything that would not be plain text in the recipe's
// shell lines and files, naming the flag.
func (s ServerSetup) validate() error {
	switch {
	case !userRE.MatchString(s.User):
		return fmt.Errorf("--user: %q is not a valid account name", s.User)
	case s.FarEnd != "pppd" && s.FarEnd != "roamtun":
		return fmt.Errorf("--far-end: want pppd or roamtun, not %q", s.FarEnd)
	case !chapNameRE.MatchString(s.ClientName) || !chapNameRE.MatchString(s.ServerName):
		return fmt.Errorf("CHAP names %q, %q: want letters, digits and . _ @ -", s.ClientName, s.ServerName)
	case !s.Local.Is4() || !s.Peer.Is4() || s.Local == s.Peer:
		return fmt.Errorf("--local and --peer must be two different IPv4 addresses")
	case !s.DNS.Is4():
		return fmt.Errorf("--dns: want an IPv4 address")
	case !validHost(s.Host):
		return fmt.Errorf("--host: %q is neither a DNS name nor an IP address", s.Host)
	case s.ID != "" && !idRE.MatchString(s.ID):
		return fmt.Errorf("laptop ID %q: want 1-32 letters and digits", s.ID)
	case !secretRE.MatchString(s.ClientSecret) || !secretRE.MatchString(s.ServerSecret):
		return errors.New("CHAP secrets: want 16-128 letters, digits, - and _")
	case s.Port < 1 || s.Port > 65535:
		return fmt.Errorf("--port: %d is not a port", s.Port)
	case !pathRE.MatchString(s.Roamtun) || strings.Contains(s.Roamtun, ".."):
		return fmt.Errorf("--roamtun: %q: want an absolute path of letters, digits and . _ / + -", s.Roamtun)
	case !pathRE.MatchString(s.ServeBinary) || strings.Contains(s.ServeBinary, ".."):
		return fmt.Errorf("--serve-binary: %q: want an absolute path of letters, digits and . _ / + -", s.ServeBinary)
	}
	if k, err := ParsePubKey(s.PubKey); err != nil {
		return fmt.Errorf("the laptop's public key: %w", err)
	} else if k != s.PubKey {
		return errors.New("the laptop's public key is not in canonical form (read it with ReadPubKey)")
	}
	if s.HostKeyPub != "" {
		if _, err := ParsePubKey(s.HostKeyPub); err != nil {
			return fmt.Errorf("the server's host key: %w", err)
		}
	}
	return nil
}

func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return len(h) <= 253 && hostRE.MatchString(h)
}

func dirOf(path string) string { return path[:strings.LastIndexByte(path, '/')+1] }

// laptopMarker starts the part of the recipe that is for the laptop.
const laptopMarker = "### On the laptop, as root ###"

// Split returns the server's part of a recipe (a shell script) and the
// laptop's part (for the person to carry over).
func Split(recipe string) (server, laptop string) {
	i := strings.Index(recipe, laptopMarker)
	if i < 0 {
		return recipe, ""
	}
	return recipe[:i], recipe[i:]
}

// secret returns 24 random bytes as URL-safe base64: nothing to quote.
func secret() string {
	var b [24]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
