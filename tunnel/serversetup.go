package tunnel

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
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
	Roamtun    string // path of roamtun on the server (default /usr/local/bin/roamtun)
	HostKeyPub string // the server's host key line ("ssh-ed25519 AAAA..."), for the laptop to pin
	Host       string // the server's name as the laptop dials it
	Port       int
}

var (
	userRE   = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	pubKeyRE = regexp.MustCompile(`^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/=]+( .*)?$`)
)

// ReadPubKey reads a single-line OpenSSH public key file.
func ReadPubKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading public key: %w", err)
	}
	line := strings.TrimSpace(string(b))
	if strings.Contains(line, "\n") || !pubKeyRE.MatchString(line) {
		return "", fmt.Errorf("%s: not a single OpenSSH public key line (ssh-ed25519 AAAA... comment)", path)
	}
	return line, nil
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
  echo '{opts} {pubkey}' >> ~{user}/.ssh/authorized_keys
chown {user}: ~{user}/.ssh/authorized_keys; chmod 0600 ~{user}/.ssh/authorized_keys

# 3. The right to create the link's interface:
{rights}

# 4. CHAP secrets, a different one each way, in {secrets} ({secretsmode}):
#    client  server  secret  addresses
if grep -qE '^[[:space:]]*({client}[[:space:]]+{server}|{server}[[:space:]]+{client})[[:space:]]' {secrets} 2>/dev/null; then
  echo 'roamtun: {secrets} already has secrets for {client}/{server}; remove them to set new ones' >&2; exit 1
fi
echo '{client} {server} "{c2s}" {peer}' >> {secrets}
echo '{server} {client} "{s2c}" *' >> {secrets}

### On the laptop, as root ###

# 5. The same two lines in /etc/roamtun/chap-secrets (0600):
echo '{client} {server} "{c2s}" *' >> /etc/roamtun/chap-secrets
echo '{server} {client} "{s2c}" *' >> /etc/roamtun/chap-secrets

# 6. Pin the server's host key (never accept-new) in /etc/roamtun/known_hosts:
echo '{hostpat} {pin}' >> /etc/roamtun/known_hosts

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
		s.Roamtun = "/usr/local/bin/roamtun"
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
	switch {
	case !userRE.MatchString(s.User):
		return "", fmt.Errorf("--user: %q is not a valid account name", s.User)
	case s.FarEnd != "pppd" && s.FarEnd != "roamtun":
		return "", fmt.Errorf("--far-end: want pppd or roamtun, not %q", s.FarEnd)
	case !pubKeyRE.MatchString(s.PubKey) || strings.ContainsAny(s.PubKey, "'\n"):
		return "", fmt.Errorf("not an OpenSSH public key line")
	case !s.Local.Is4() || !s.Peer.Is4() || s.Local == s.Peer:
		return "", fmt.Errorf("--local and --peer must be two different IPv4 addresses")
	}
	var forced, rights, secrets, mode string
	if s.FarEnd == "pppd" {
		forced = "/usr/sbin/pppd call roamtun"
		secrets, mode = "/etc/ppp/chap-secrets", "root, 0600: pppd reads it as root"
		rights = "# pppd is setuid root and runnable by group dip; its privileged options live\n" +
			"# in /etc/ppp/peers/roamtun (read as root by \"pppd call\"), not on the command line.\n" +
			"usermod -aG dip " + s.User + "\n" +
			"cat > /etc/ppp/peers/roamtun <<'ROAMTUN'\n" +
			fmt.Sprintf(pppdPeersFile, s.ServerName, s.ClientName, s.Local, s.Peer, s.DNS) + "\nROAMTUN"
	} else {
		forced = fmt.Sprintf("%s serve --local %s --peer %s --dns %s --require-chap --name %s --secrets /etc/roamtun/chap-secrets",
			s.Roamtun, s.Local, s.Peer, s.DNS, s.ServerName)
		secrets, mode = "/etc/roamtun/chap-secrets", "root:"+s.User+", 0640"
		rights = "# roamtun serve needs CAP_NET_ADMIN (to create its TUN), not root:\n" +
			"setcap cap_net_admin+ep " + s.Roamtun + "\n" +
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
		"{c2s}", secret(), "{s2c}", secret(), "{peer}", s.Peer.String(), "{hostpat}", hostPat,
		"{pin}", pin, "{host}", s.Host, "{port}", fmt.Sprint(s.Port))
	return r.Replace(recipe), nil
}

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
