package main

import (
	"strings"
	"testing"
)

// TestServeIPv6Flags: --prefix6 and --dns6 are refused with the reason
// before anything is opened.
func TestServeIPv6Flags(t *testing.T) {
	base := []string{"serve", "--local", "10.0.0.1", "--peer", "10.0.0.2", "--secrets", "/nonexistent"}
	for _, tc := range []struct {
		args []string
		has  string
	}{
		{[]string{"--prefix6", "2001:db8::/48", "--mtu", "1280"}, "must be a /64"},
		{[]string{"--prefix6", "2001:db8::1/64", "--mtu", "1280"}, "host bits set"},
		{[]string{"--prefix6", "10.0.0.0/24", "--mtu", "1280"}, "not an IPv6 prefix"},
		{[]string{"--prefix6", "fe80::/64", "--mtu", "1280"}, "link-local"},
		{[]string{"--prefix6", "2001:db8::/64"}, "needs --mtu 1280"},
		{[]string{"--dns6", "2001:db8::53"}, "--dns6 needs --prefix6"},
		{[]string{"--prefix6", "2001:db8::/64", "--mtu", "1280", "--dns6", "ff02::1"}, "not a usable IPv6 address"},
		{[]string{"--prefix6", "2001:db8::/64", "--mtu", "1280", "--dns6", "10.0.0.53"}, "not a usable IPv6 address"},
	} {
		code, out, stderr := runCLI(t, append(append([]string{}, base...), tc.args...)...)
		if code != 2 || !strings.Contains(out+stderr, tc.has) {
			t.Errorf("roamtun serve %q: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, stderr, tc.has)
		}
	}
}
