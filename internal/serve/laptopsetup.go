package serve

import (
	"errors"
	"fmt"
	"net/netip"
)

// ValidHost reports whether h is a DNS name or an IP address (nothing a
// config file or a shell line would read as more).
func ValidHost(h string) bool { return validHost(h) }

// Validate checks what a server sent back from `server-setup --apply
// --json` before any of it goes into the laptop's files: names, secrets
// and addresses of the shapes server-setup makes.
func (l LaptopSetup) Validate() error {
	switch {
	case !userRE.MatchString(l.User):
		return fmt.Errorf("user %q is not an account name", l.User)
	case !chapNameRE.MatchString(l.Name) || !chapNameRE.MatchString(l.RemoteName):
		return fmt.Errorf("CHAP names %q, %q: want letters, digits and . _ @ -", l.Name, l.RemoteName)
	case !secretRE.MatchString(l.Secrets.Client) || !secretRE.MatchString(l.Secrets.Server) || l.Secrets.Client == l.Secrets.Server:
		return errors.New("CHAP secrets: want two different ones of 16-128 letters, digits, - and _")
	}
	for _, a := range []string{l.Local, l.Peer, l.DNS} {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
			return fmt.Errorf("address %q: want IPv4", a)
		}
	}
	if l.HostKey != "" {
		if _, err := ParsePubKey(l.HostKey); err != nil {
			return fmt.Errorf("host key: %w", err)
		}
	}
	return nil
}
