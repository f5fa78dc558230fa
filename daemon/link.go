package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/roamtun/roamtun/config"
	"github.com/roamtun/roamtun/tunnel/ppp"
)

// LinkConfig is the client end of a profile's PPP link: CHAP names and
// secrets, keepalive, DNS and (ipv6 = "tunnel") IPv6CP.
func LinkConfig(p *config.Profile, log *slog.Logger) (ppp.Config, error) {
	lc := ppp.Config{LocalName: p.LocalName, RemoteName: p.RemoteName, RequireCHAP: p.RequireCHAP,
		MRU: p.MTU, EchoInterval: p.Keepalive, EchoFailures: 3, RequestDNS: true,
		IPv6: p.IPv6 == config.IPv6Tunnel, Logger: log}
	s, err := ppp.LoadSecrets(p.Secrets)
	switch {
	case err == nil:
		lc.Secrets = s
		if s.TooOpen() {
			log.Warn("secrets file is readable by group or others", "file", p.Secrets)
		}
	case errors.Is(err, os.ErrNotExist) && !p.RequireCHAP:
		lc.RefuseAuth = true
	default:
		return lc, fmt.Errorf("profile %s: %w", p.Name, err)
	}
	return lc, nil
}
