package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"
)

// refusedCases holds, for every range of specialRanges, addresses inside it
// (first, last or middle) and the reason a refusal must give.
var refusedCases = []struct {
	addr   string
	reason string
}{
	// IPv4 Special-Purpose Address Registry.
	{"0.0.0.1", `"this network" (RFC 791)`},
	{"0.255.255.255", `"this network" (RFC 791)`},
	{"0.0.0.0", `"this host on this network" (RFC 1122)`},
	{"10.0.0.0", "private-use (RFC 1918)"},
	{"10.255.255.255", "private-use (RFC 1918)"},
	{"100.64.0.0", "shared address space, carrier-grade NAT (RFC 6598)"},
	{"100.127.255.255", "shared address space, carrier-grade NAT (RFC 6598)"},
	{"127.0.0.1", "loopback (RFC 1122)"},
	{"127.255.255.254", "loopback (RFC 1122)"},
	{"169.254.169.254", "link-local (RFC 3927)"},
	{"169.254.255.255", "link-local (RFC 3927)"},
	{"172.16.0.0", "private-use (RFC 1918)"},
	{"172.31.255.255", "private-use (RFC 1918)"},
	{"192.0.0.11", "IETF protocol assignments (RFC 6890)"},
	{"192.0.0.255", "IETF protocol assignments (RFC 6890)"},
	{"192.0.0.0", "IPv4 service continuity prefix (RFC 7335)"},
	{"192.0.0.7", "IPv4 service continuity prefix (RFC 7335)"},
	{"192.0.0.8", "IPv4 dummy address (RFC 7600)"},
	{"192.0.0.9", "Port Control Protocol anycast (RFC 7723)"},
	{"192.0.0.10", "TURN anycast (RFC 8155)"},
	{"192.0.0.170", "NAT64/DNS64 discovery (RFC 8880)"},
	{"192.0.0.171", "NAT64/DNS64 discovery (RFC 8880)"},
	{"192.0.2.0", "documentation, TEST-NET-1 (RFC 5737)"},
	{"192.0.2.255", "documentation, TEST-NET-1 (RFC 5737)"},
	{"192.31.196.1", "AS112-v4 (RFC 7535)"},
	{"192.52.193.255", "AMT (RFC 7450)"},
	{"192.88.99.1", "deprecated 6to4 relay anycast (RFC 7526)"},
	{"192.88.99.255", "deprecated 6to4 relay anycast (RFC 7526)"},
	{"192.88.99.2", "6a44 relay anycast (RFC 6751)"},
	{"192.168.0.0", "private-use (RFC 1918)"},
	{"192.168.255.255", "private-use (RFC 1918)"},
	{"192.175.48.6", "direct delegation AS112 service (RFC 7534)"},
	{"198.18.0.0", "benchmarking (RFC 2544)"},
	{"198.19.255.255", "benchmarking (RFC 2544)"},
	{"198.51.100.7", "documentation, TEST-NET-2 (RFC 5737)"},
	{"203.0.113.0", "documentation, TEST-NET-3 (RFC 5737)"},
	{"203.0.113.255", "documentation, TEST-NET-3 (RFC 5737)"},
	{"240.0.0.0", "reserved (RFC 1112)"},
	{"255.255.255.254", "reserved (RFC 1112)"},
	{"255.255.255.255", "limited broadcast (RFC 919)"},
	{"224.0.0.1", "multicast (RFC 5771)"},
	{"239.255.255.255", "multicast (RFC 5771)"},

	// IPv6 Special-Purpose Address Registry.
	{"::1", "loopback (RFC 4291)"},
	{"::", "unspecified (RFC 4291)"},
	{"::ffff:127.0.0.1", "IPv4-mapped address (RFC 4291) of loopback (RFC 1122)"},
	{"64:ff9b::7f00:1", "NAT64 well-known-prefix address (RFC 6052) of loopback (RFC 1122)"},
	{"64:ff9b:1::", "local-use NAT64 (RFC 8215)"},
	{"64:ff9b:1::808:808", "local-use NAT64 (RFC 8215)"},
	{"64:ff9b:1:ffff:ffff:ffff:ffff:ffff", "local-use NAT64 (RFC 8215)"},
	{"100::", "discard-only (RFC 6666)"},
	{"100::ffff:ffff:ffff:ffff", "discard-only (RFC 6666)"},
	{"100:0:0:1::1", "dummy IPv6 prefix (RFC 9780)"},
	{"100:0:0:1:ffff:ffff:ffff:ffff", "dummy IPv6 prefix (RFC 9780)"},
	{"2001:1::4", "IETF protocol assignments (RFC 2928)"},
	{"2001:5::1", "IETF protocol assignments (RFC 2928)"},
	{"2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", "IETF protocol assignments (RFC 2928)"},
	{"2001::", "Teredo (RFC 4380)"},
	{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo (RFC 4380)"}, // client 192.0.2.45
	{"2001:0:4136:e378:8000:63bf:f7f7:f7f7", "Teredo (RFC 4380)"}, // client 8.8.8.8: refused all the same
	{"2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo (RFC 4380)"}, // client 127.0.0.1
	{"2001:0:ffff:ffff:ffff:ffff:ffff:ffff", "Teredo (RFC 4380)"}, // last
	{"2001:1::1", "Port Control Protocol anycast (RFC 7723)"},
	{"2001:1::2", "TURN anycast (RFC 8155)"},
	{"2001:1::3", "DNS-SD service registration protocol anycast (RFC 9665)"},
	{"2001:2::1", "benchmarking (RFC 5180)"},
	{"2001:2:0:ffff:ffff:ffff:ffff:ffff", "benchmarking (RFC 5180)"},
	{"2001:3::1", "AMT (RFC 7450)"},
	{"2001:4:112::1", "AS112-v6 (RFC 7535)"},
	{"2001:10::1", "deprecated ORCHID (RFC 4843)"},
	{"2001:1f:ffff:ffff:ffff:ffff:ffff:ffff", "deprecated ORCHID (RFC 4843)"},
	{"2001:20::1", "ORCHIDv2 (RFC 7343)"},
	{"2001:2f:ffff:ffff:ffff:ffff:ffff:ffff", "ORCHIDv2 (RFC 7343)"},
	{"2001:30::1", "drone remote ID entity tags (RFC 9374)"},
	{"2001:3f:ffff:ffff:ffff:ffff:ffff:ffff", "drone remote ID entity tags (RFC 9374)"},
	{"2001:db8::", "documentation (RFC 3849)"},
	{"2001:db8::1", "documentation (RFC 3849)"},
	{"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "documentation (RFC 3849)"},
	{"2002::", "6to4 (RFC 3056)"},
	{"2002:808:808::1", "6to4 (RFC 3056)"},  // embeds 8.8.8.8: refused all the same
	{"2002:c0a8:101::1", "6to4 (RFC 3056)"}, // embeds 192.168.1.1
	{"2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "6to4 (RFC 3056)"},
	{"2620:4f:8000::1", "direct delegation AS112 service (RFC 7534)"},
	{"2620:4f:8000:ffff:ffff:ffff:ffff:ffff", "direct delegation AS112 service (RFC 7534)"},
	{"3fff::", "documentation (RFC 9637)"},
	{"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", "documentation (RFC 9637)"},
	{"5f00::", "SRv6 segment identifiers (RFC 9602)"},
	{"5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "SRv6 segment identifiers (RFC 9602)"},
	{"fc00::", "unique local (RFC 4193)"},
	{"fd12:3456:789a::1", "unique local (RFC 4193)"},
	{"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique local (RFC 4193)"},
	{"fe80::1", "link-local (RFC 4291)"},
	{"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local (RFC 4291)"},
	{"ff00::", "multicast (RFC 4291)"},
	{"ff02::1", "multicast (RFC 4291)"},
	{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "multicast (RFC 4291)"},
	{"::2", "deprecated IPv4-compatible address (RFC 4291)"},
	{"::808:808", "deprecated IPv4-compatible address (RFC 4291)"},
	{"::ffff:ffff", "deprecated IPv4-compatible address (RFC 4291)"},
	{"fec0::1", "deprecated site-local (RFC 3879)"},
	{"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "deprecated site-local (RFC 3879)"},
	{"::ffff:0:0:0", "deprecated IPv4-translated address (RFC 2765)"},
	{"::ffff:0:808:808", "deprecated IPv4-translated address (RFC 2765)"}, // embeds 8.8.8.8: refused all the same
	{"::ffff:0:7f00:1", "deprecated IPv4-translated address (RFC 2765)"},
	{"::ffff:0:ffff:ffff", "deprecated IPv4-translated address (RFC 2765)"},
}

// embeddedCases are the translation prefixes judged by the IPv4 address
// they carry: refused with both names when it is special-purpose, allowed
// (reason "") when it is ordinary global unicast.
var embeddedCases = []struct {
	addr   string
	reason string
}{
	{"::ffff:8.8.8.8", ""},
	{"::ffff:1.1.1.1", ""},
	{"::ffff:0.0.0.0", `IPv4-mapped address (RFC 4291) of "this host on this network" (RFC 1122)`},
	{"::ffff:10.1.2.3", "IPv4-mapped address (RFC 4291) of private-use (RFC 1918)"},
	{"::ffff:127.0.0.1", "IPv4-mapped address (RFC 4291) of loopback (RFC 1122)"},
	{"::ffff:169.254.169.254", "IPv4-mapped address (RFC 4291) of link-local (RFC 3927)"},
	{"::ffff:192.0.0.9", "IPv4-mapped address (RFC 4291) of Port Control Protocol anycast (RFC 7723)"},
	{"::ffff:224.0.0.1", "IPv4-mapped address (RFC 4291) of multicast (RFC 5771)"},
	{"::ffff:255.255.255.255", "IPv4-mapped address (RFC 4291) of limited broadcast (RFC 919)"},
	{"64:ff9b::808:808", ""},
	{"64:ff9b::101:101", ""},
	{"64:ff9b::", `NAT64 well-known-prefix address (RFC 6052) of "this host on this network" (RFC 1122)`},
	{"64:ff9b::a00:1", "NAT64 well-known-prefix address (RFC 6052) of private-use (RFC 1918)"},
	{"64:ff9b::7f00:1", "NAT64 well-known-prefix address (RFC 6052) of loopback (RFC 1122)"},
	{"64:ff9b::a9fe:a9fe", "NAT64 well-known-prefix address (RFC 6052) of link-local (RFC 3927)"},
	{"64:ff9b::c000:aa", "NAT64 well-known-prefix address (RFC 6052) of NAT64/DNS64 discovery (RFC 8880)"},
	{"64:ff9b::c0a8:101", "NAT64 well-known-prefix address (RFC 6052) of private-use (RFC 1918)"},
	{"64:ff9b::ffff:ffff", "NAT64 well-known-prefix address (RFC 6052) of limited broadcast (RFC 919)"},
}

// allowedAddrs are ordinary global unicast addresses, many of them just
// outside a special-purpose range.
var allowedAddrs = []string{
	"1.1.1.1", "8.8.8.8", "9.255.255.255", "11.0.0.0",
	"100.63.255.255", "100.128.0.0", "126.255.255.255", "128.0.0.0",
	"169.253.255.255", "169.255.0.0", "172.15.255.255", "172.32.0.0",
	"191.255.255.255", "192.0.1.0", "192.0.3.0", "192.31.195.255", "192.31.197.0",
	"192.52.192.255", "192.52.194.0", "192.88.98.255", "192.88.100.0",
	"192.167.255.255", "192.169.0.0", "192.175.47.255", "192.175.49.0",
	"198.17.255.255", "198.20.0.0", "198.51.99.255", "198.51.101.0",
	"203.0.112.255", "203.0.114.0", "223.255.255.255",
	"2606:4700::1111", "2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450::1",
	"2001:200::", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db9::",
	"2003::", "2620:4f:7fff:ffff:ffff:ffff:ffff:ffff", "2620:4f:8001::",
	"3fff:1000::",
}

func reasonOf(t *testing.T, err error) string {
	t.Helper()
	var r *RefusedError
	require.True(t, errors.As(err, &r), "want a *RefusedError, got %T %v", err, err)
	return r.Reason
}

// TestGuardRefusesSpecialPurpose checks every range at each place the guard
// stands: the dialer's check of resolved addresses, the socket's Control
// hook, and CheckTarget at registration.
func TestGuardRefusesSpecialPurpose(t *testing.T) {
	for _, tc := range refusedCases {
		t.Run(tc.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			want := fmt.Sprintf("refused to connect to %s: %s", a, tc.reason)
			assertRefused(t, a, Config{}, want)
			require.EqualError(t, CheckTarget(targetURL(a), Config{}),
				fmt.Sprintf("webhook url: %s is %s; allow-list the range in webhooks.allow_cidrs if it is really wanted", a, tc.reason))

			// Allow-listing the range that names it lets it through.
			r, _ := lookup(a)
			assertAllowed(t, a, Config{AllowCIDRs: []netip.Prefix{r.prefix}})
		})
	}
}

// TestGuardCoversEveryRange keeps "a test per range" true: every entry of
// the table names at least one case of refusedCases, and the table holds
// each prefix once, in canonical form.
func TestGuardCoversEveryRange(t *testing.T) {
	covered := map[netip.Prefix]bool{}
	for _, tc := range refusedCases {
		r, ok := lookup(netip.MustParseAddr(tc.addr))
		require.True(t, ok, tc.addr)
		covered[r.prefix] = true
	}
	seen := map[netip.Prefix]bool{}
	for _, r := range specialRanges {
		require.Equal(t, r.prefix.Masked(), r.prefix, "%s is not in canonical form", r.prefix)
		require.False(t, seen[r.prefix], "%s is listed twice", r.prefix)
		seen[r.prefix] = true
		require.True(t, covered[r.prefix], "no test case for %s (%s)", r.prefix, r.reason())
	}
}

func TestGuardEmbeddedIPv4(t *testing.T) {
	for _, tc := range embeddedCases {
		t.Run(tc.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			if tc.reason == "" {
				assertAllowed(t, a, Config{})
				return
			}
			assertRefused(t, a, Config{}, fmt.Sprintf("refused to connect to %s: %s", a, tc.reason))
		})
	}
}

func TestGuardAllowsOrdinaryAddresses(t *testing.T) {
	for _, s := range allowedAddrs {
		t.Run(s, func(t *testing.T) {
			a := netip.MustParseAddr(s)
			if _, special := lookup(a); special {
				t.Fatalf("%s is special-purpose: the case list is wrong", s)
			}
			assertAllowed(t, a, Config{})
		})
	}
}

func TestGuardAllowances(t *testing.T) {
	loopback := Config{AllowInsecureLoopback: true}
	allow := func(cidrs ...string) Config {
		var c Config
		for _, s := range cidrs {
			c.AllowCIDRs = append(c.AllowCIDRs, netip.MustParsePrefix(s))
		}
		return c
	}
	tests := []struct {
		name   string
		addr   string
		cfg    Config
		reason string // "" when allowed
	}{
		{"allow-listed private range", "10.1.2.3", allow("10.0.0.0/8"), ""},
		{"allow-listed range, IPv4-mapped form", "::ffff:10.1.2.3", allow("10.0.0.0/8"), ""},
		{"allow-listed narrower range", "10.0.0.7", allow("10.0.0.0/29"), ""},
		{"outside the allow-listed range", "10.0.0.8", allow("10.0.0.0/29"), "private-use (RFC 1918)"},
		{"another range allow-listed", "192.168.1.1", allow("10.0.0.0/8"), "private-use (RFC 1918)"},
		{"allow-listed documentation range", "2001:db8::1", allow("2001:db8::/32"), ""},
		{"allow-listed anycast service", "192.0.0.9", allow("192.0.0.9/32"), ""},
		{"allow-listed 6to4", "2002:808:808::1", allow("2002::/16"), ""},
		{"allow-listed NAT64 prefix", "64:ff9b::a00:1", allow("64:ff9b::/96"), ""},
		{"allow-listed IPv4 range does not reach NAT64", "64:ff9b::a00:1", allow("10.0.0.0/8"),
			"NAT64 well-known-prefix address (RFC 6052) of private-use (RFC 1918)"},
		{"allow-listed IPv4-translated prefix", "::ffff:0:a00:1", allow("::ffff:0:0:0/96"), ""},
		{"allow-listed IPv4 range does not reach IPv4-translated", "::ffff:0:a00:1", allow("10.0.0.0/8"),
			"deprecated IPv4-translated address (RFC 2765)"},
		{"allow-listed loopback", "127.0.0.1", allow("127.0.0.0/8"), ""},
		{"loopback refused by default", "127.0.0.1", Config{}, "loopback (RFC 1122)"},
		{"insecure loopback allows IPv4 loopback", "127.0.0.1", loopback, ""},
		{"insecure loopback allows all of 127/8", "127.255.255.254", loopback, ""},
		{"insecure loopback allows IPv6 loopback", "::1", loopback, ""},
		{"insecure loopback allows IPv4-mapped loopback", "::ffff:127.0.0.1", loopback, ""},
		{"insecure loopback is not link-local", "169.254.169.254", loopback, "link-local (RFC 3927)"},
		{"insecure loopback is not this-host", "0.0.0.0", loopback, `"this host on this network" (RFC 1122)`},
		{"insecure loopback is not unspecified", "::", loopback, "unspecified (RFC 4291)"},
		{"insecure loopback is not the IPv4-compatible form", "::7f00:1", loopback, "deprecated IPv4-compatible address (RFC 4291)"},
		{"insecure loopback is not a translator's loopback", "64:ff9b::7f00:1", loopback,
			"NAT64 well-known-prefix address (RFC 6052) of loopback (RFC 1122)"},
		{"insecure loopback is not IPv4-translated loopback", "::ffff:0:7f00:1", loopback,
			"deprecated IPv4-translated address (RFC 2765)"},
		{"insecure loopback is not 6to4 loopback", "2002:7f00:1::1", loopback, "6to4 (RFC 3056)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := netip.MustParseAddr(tt.addr)
			if tt.reason == "" {
				assertAllowed(t, a, tt.cfg)
				return
			}
			assertRefused(t, a, tt.cfg, fmt.Sprintf("refused to connect to %s: %s", a, tt.reason))
			require.ErrorContains(t, CheckTarget(targetURL(a), tt.cfg), fmt.Sprintf("%s is %s;", a, tt.reason))
		})
	}
}

// TestGuardPlainHTTP: a plain-http client reaches loopback only, whatever
// else is allow-listed.
func TestGuardPlainHTTP(t *testing.T) {
	cfg := Config{AllowInsecureLoopback: true, AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}
	g := newGuard(cfg, true)
	for _, s := range []string{"127.0.0.1", "::1", "::ffff:127.0.0.1"} {
		require.NoError(t, g.check(netip.MustParseAddr(s)), s)
	}
	for _, s := range []string{"8.8.8.8", "10.0.0.1", "2606:4700::1111", "64:ff9b::7f00:1"} {
		a := netip.MustParseAddr(s)
		require.EqualError(t, g.check(a), fmt.Sprintf("refused to connect to %s: plain http is allowed only to loopback", a))
	}
}

func TestGuardZoneAndInvalid(t *testing.T) {
	g := newGuard(Config{}, false)
	require.EqualError(t, g.check(netip.MustParseAddr("fe80::1%eth0")), "refused to connect to fe80::1: link-local (RFC 4291)")
	require.EqualError(t, g.check(netip.Addr{}), "refused: not an IP address")
	require.EqualError(t, CheckTarget("https://[fe80::1%25eth0]/h", Config{}),
		"webhook url: fe80::1%eth0 is link-local (RFC 4291); allow-list the range in webhooks.allow_cidrs if it is really wanted")
}

// assertRefused checks that a is refused with message want by the dialer
// (a name resolving to a; no connection is attempted), by the Control
// hook, and by CheckTarget.
func assertRefused(t *testing.T, a netip.Addr, cfg Config, want string) {
	t.Helper()
	g := newGuard(cfg, false)
	require.EqualError(t, g.check(a), want)

	cfg.LookupIP = func(context.Context, string) ([]netip.Addr, error) { return []netip.Addr{a}, nil }
	conn, err := newDialer(g, cfg).DialContext(context.Background(), "tcp", "partner.test:443")
	if conn != nil {
		conn.Close()
	}
	require.EqualError(t, err, want)
	reasonOf(t, err)

	err = g.control("tcp", netip.AddrPortFrom(a, 443).String(), nil)
	require.EqualError(t, err, want)
	reasonOf(t, err)

	require.Error(t, CheckTarget(targetURL(a), cfg))
}

// assertAllowed checks that the guard and CheckTarget let a through. It
// never dials: these are real addresses on the Internet.
func assertAllowed(t *testing.T, a netip.Addr, cfg Config) {
	t.Helper()
	g := newGuard(cfg, false)
	require.NoError(t, g.check(a))
	require.NoError(t, g.control("tcp", netip.AddrPortFrom(a, 443).String(), nil))
	require.NoError(t, CheckTarget(targetURL(a), cfg))
}

// targetURL is an https webhook URL with a as its literal host.
func targetURL(a netip.Addr) string {
	return "https://" + netip.AddrPortFrom(a, 443).String() + "/h"
}
