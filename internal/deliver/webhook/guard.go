package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"syscall"

	"github.com/herald-alerts/herald/subscribers"
)

// RefusedError says that Herald will not connect to an address: the SSRF
// guard's answer. Notify classifies it as a permanent ReasonRefused failure.
type RefusedError struct {
	Addr   netip.Addr // the refused address, if the refusal is about one
	Reason string     // why, in words
}

func (e *RefusedError) Error() string {
	if e.Addr.IsValid() {
		return fmt.Sprintf("refused to connect to %s: %s", e.Addr, e.Reason)
	}
	return "refused: " + e.Reason
}

// specialRange is one range of the guard's table: an address block a
// webhook may not reach unless the operator allow-lists it.
type specialRange struct {
	prefix netip.Prefix
	name   string // what the range is (the registry's name, lower case)
	rfc    string // the RFC that reserves it
	// viaIPv4 marks an address-translation prefix whose addresses exist to
	// reach ordinary IPv4 hosts: it is judged by the IPv4 address in its
	// last 32 bits, not refused as a whole.
	viaIPv4 bool
}

// reason is how a refusal names the range: "documentation (RFC 3849)".
func (r specialRange) reason() string { return r.name + " (" + r.rfc + ")" }

func refuse(prefix, name, rfc string) specialRange {
	return specialRange{prefix: netip.MustParsePrefix(prefix), name: name, rfc: rfc}
}

func translate(prefix, name, rfc string) specialRange {
	r := refuse(prefix, name, rfc)
	r.viaIPv4 = true
	return r
}

// specialRanges is every range a webhook may not reach: the whole IANA
// IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890, updated by
// RFC 8190), plus the multicast blocks and the deprecated IPv6 forms the
// registries leave out. An address is named by the most specific range
// that holds it (2001:1::1 is PCP anycast, not just an IETF protocol
// assignment).
//
// Registry snapshot: the CSVs published at
// https://www.iana.org/assignments/iana-ipv4-special-registry/ and
// https://www.iana.org/assignments/iana-ipv6-special-registry/ as fetched
// on 2026-07-18 (newest entry 100:0:0:1::/64, RFC 9780, 2025-04; the IPv6
// registry's XML carries "updated 2025-10-09"), compared line by line on
// 2026-11-30. Re-check both registries when this table is next touched:
// a range IANA adds later is not refused until it is listed here.
//
// Every entry is refused, including those the registry marks "globally
// reachable" (PCP, TURN and DNS-SD anycast, AMT, AS112, ORCHIDv2, DRIP
// entity tags): those are protocol service addresses, never a partner's
// webhook endpoint, so refusing them costs nothing and an operator who
// really needs one lists it in webhooks.allow_cidrs.
//
// Address translation, decided per prefix:
//   - ::ffff:0:0/96 (IPv4-mapped) is judged by its IPv4 address. It is not
//     an IPv6 destination at all: the kernel sends to the embedded IPv4
//     address over IPv4, so ::ffff:8.8.8.8 is 8.8.8.8 and
//     ::ffff:127.0.0.1 is loopback.
//   - 64:ff9b::/96 (the NAT64 well-known prefix) is judged by its IPv4
//     address. On an IPv6-only host, DNS64 answers for an IPv4-only
//     partner with this prefix, and the registry calls it globally
//     reachable, so refusing it would cut such hosts off from ordinary
//     partners. The translator, not this host, connects to the embedded
//     address, and RFC 6052 §3.1 forbids the prefix for non-global IPv4
//     addresses, so an embedded special-purpose address is refused.
//   - ::ffff:0:0:0/96 (IPv4-translated, RFC 2765 SIIT) is refused outright.
//     It is not in the registries; RFC 6145 dropped the format in favour of
//     RFC 6052 prefixes and no DNS64 synthesises it, so no ordinary
//     partner resolves to one. The kernel sends it as IPv6 to whatever
//     stateless translator routes the prefix, which then reaches that
//     translator's IPv4 networks: judging the embedded address would only
//     open a path to places this host cannot see.
//   - 64:ff9b:1::/48 (local-use NAT64) is refused outright: the registry
//     says it is not globally reachable, and its translator serves one
//     network's own IPv4 space.
//
// 6to4 (2002::/16) and Teredo (2001::/32, inside 2001::/23) are refused
// outright, whatever IPv4 address they embed. Herald used to judge them
// by the embedded address like NAT64; the registry gives them no global
// reachability ("N/A"), RFC 7526 deprecated 6to4's anycast relays, and
// the relay that finally carries the packet is chosen by routing, not by
// the partner. A partner's webhook is not published on either.
var specialRanges = []specialRange{
	// IPv4 Special-Purpose Address Registry.
	refuse("0.0.0.0/8", `"this network"`, "RFC 791"),
	refuse("0.0.0.0/32", `"this host on this network"`, "RFC 1122"),
	refuse("10.0.0.0/8", "private-use", "RFC 1918"),
	refuse("100.64.0.0/10", "shared address space, carrier-grade NAT", "RFC 6598"),
	refuse("127.0.0.0/8", "loopback", "RFC 1122"),
	refuse("169.254.0.0/16", "link-local", "RFC 3927"),
	refuse("172.16.0.0/12", "private-use", "RFC 1918"),
	refuse("192.0.0.0/24", "IETF protocol assignments", "RFC 6890"),
	refuse("192.0.0.0/29", "IPv4 service continuity prefix", "RFC 7335"),
	refuse("192.0.0.8/32", "IPv4 dummy address", "RFC 7600"),
	refuse("192.0.0.9/32", "Port Control Protocol anycast", "RFC 7723"),
	refuse("192.0.0.10/32", "TURN anycast", "RFC 8155"),
	refuse("192.0.0.170/32", "NAT64/DNS64 discovery", "RFC 8880"),
	refuse("192.0.0.171/32", "NAT64/DNS64 discovery", "RFC 8880"),
	refuse("192.0.2.0/24", "documentation, TEST-NET-1", "RFC 5737"),
	refuse("192.31.196.0/24", "AS112-v4", "RFC 7535"),
	refuse("192.52.193.0/24", "AMT", "RFC 7450"),
	refuse("192.88.99.0/24", "deprecated 6to4 relay anycast", "RFC 7526"),
	refuse("192.88.99.2/32", "6a44 relay anycast", "RFC 6751"),
	refuse("192.168.0.0/16", "private-use", "RFC 1918"),
	refuse("192.175.48.0/24", "direct delegation AS112 service", "RFC 7534"),
	refuse("198.18.0.0/15", "benchmarking", "RFC 2544"),
	refuse("198.51.100.0/24", "documentation, TEST-NET-2", "RFC 5737"),
	refuse("203.0.113.0/24", "documentation, TEST-NET-3", "RFC 5737"),
	refuse("240.0.0.0/4", "reserved", "RFC 1112"),
	refuse("255.255.255.255/32", "limited broadcast", "RFC 919"),
	// Not in the registry: IPv4 Multicast Address Space.
	refuse("224.0.0.0/4", "multicast", "RFC 5771"),

	// IPv6 Special-Purpose Address Registry.
	refuse("::1/128", "loopback", "RFC 4291"),
	refuse("::/128", "unspecified", "RFC 4291"),
	translate("::ffff:0:0/96", "IPv4-mapped address", "RFC 4291"),
	translate("64:ff9b::/96", "NAT64 well-known-prefix address", "RFC 6052"),
	refuse("64:ff9b:1::/48", "local-use NAT64", "RFC 8215"),
	refuse("100::/64", "discard-only", "RFC 6666"),
	refuse("100:0:0:1::/64", "dummy IPv6 prefix", "RFC 9780"),
	refuse("2001::/23", "IETF protocol assignments", "RFC 2928"),
	refuse("2001::/32", "Teredo", "RFC 4380"),
	refuse("2001:1::1/128", "Port Control Protocol anycast", "RFC 7723"),
	refuse("2001:1::2/128", "TURN anycast", "RFC 8155"),
	refuse("2001:1::3/128", "DNS-SD service registration protocol anycast", "RFC 9665"),
	refuse("2001:2::/48", "benchmarking", "RFC 5180"),
	refuse("2001:3::/32", "AMT", "RFC 7450"),
	refuse("2001:4:112::/48", "AS112-v6", "RFC 7535"),
	refuse("2001:10::/28", "deprecated ORCHID", "RFC 4843"),
	refuse("2001:20::/28", "ORCHIDv2", "RFC 7343"),
	refuse("2001:30::/28", "drone remote ID entity tags", "RFC 9374"),
	refuse("2001:db8::/32", "documentation", "RFC 3849"),
	refuse("2002::/16", "6to4", "RFC 3056"),
	refuse("2620:4f:8000::/48", "direct delegation AS112 service", "RFC 7534"),
	refuse("3fff::/20", "documentation", "RFC 9637"),
	refuse("5f00::/16", "SRv6 segment identifiers", "RFC 9602"),
	refuse("fc00::/7", "unique local", "RFC 4193"),
	refuse("fe80::/10", "link-local", "RFC 4291"),
	// Not in the registry: multicast, and forms the IETF deprecated.
	refuse("ff00::/8", "multicast", "RFC 4291"),
	refuse("::/96", "deprecated IPv4-compatible address", "RFC 4291"),
	refuse("fec0::/10", "deprecated site-local", "RFC 3879"),
	refuse("::ffff:0:0:0/96", "deprecated IPv4-translated address", "RFC 2765"),
}

var (
	loopV4 = netip.MustParsePrefix("127.0.0.0/8")
	loopV6 = netip.MustParsePrefix("::1/128")
)

// guard decides which addresses Herald may connect to.
type guard struct {
	allow         []netip.Prefix
	allowLoopback bool // AllowInsecureLoopback: loopback is allowed for https too
	loopbackOnly  bool // plain http: nothing but loopback
}

// isLoopback reports whether a is a loopback address in any form,
// IPv4-mapped included.
func isLoopback(a netip.Addr) bool {
	a = a.Unmap()
	return loopV4.Contains(a) || loopV6.Contains(a)
}

// check returns a *RefusedError if the guard forbids a.
func (g *guard) check(a netip.Addr) error {
	if !a.IsValid() {
		return &RefusedError{Reason: "not an IP address"}
	}
	a = a.WithZone("")
	if g.loopbackOnly {
		if isLoopback(a) {
			return nil
		}
		return &RefusedError{Addr: a, Reason: "plain http is allowed only to loopback"}
	}
	for _, p := range g.allow {
		if p.Contains(a) || p.Contains(a.Unmap()) {
			return nil
		}
	}
	if g.allowLoopback && isLoopback(a) {
		return nil
	}
	if what := classify(a); what != "" {
		return &RefusedError{Addr: a, Reason: what}
	}
	return nil
}

// classify names the special-purpose range a falls in, or returns "" when
// a is an ordinary address. An IPv4-mapped or NAT64 address is named by
// the range of the IPv4 address it carries: "IPv4-mapped address
// (RFC 4291) of loopback (RFC 1122)".
func classify(a netip.Addr) string {
	r, ok := lookup(a)
	switch {
	case !ok:
		return ""
	case r.viaIPv4:
		b := a.As16()
		inner, ok := lookup(netip.AddrFrom4([4]byte(b[12:16])))
		if !ok {
			return ""
		}
		return r.reason() + " of " + inner.reason()
	}
	return r.reason()
}

// lookup finds the most specific range of specialRanges that holds a.
func lookup(a netip.Addr) (specialRange, bool) {
	var best specialRange
	found := false
	for _, r := range specialRanges {
		if r.prefix.Contains(a) && (!found || r.prefix.Bits() > best.prefix.Bits()) {
			best, found = r, true
		}
	}
	return best, found
}

// control is the net.Dialer Control hook: it checks the address the socket
// is about to connect to, after DNS resolution, so a name that resolves
// (or re-resolves) to a forbidden address is refused at connection time.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Reason: fmt.Sprintf("cannot parse dial address %q", address)}
	}
	return g.check(ap.Addr())
}

// CheckTarget checks a webhook URL against the operator's settings: the
// webhook URL rule (subscribers.WebhookURL, with
// cfg.AllowInsecureLoopback), then, when the host is a literal IP address,
// the SSRF guard. A host name passes here; its addresses are checked at
// every connection (and a plain-http localhost must resolve to loopback).
// It runs when a record is registered and when a delivery first prepares
// the endpoint's route (Notifier.route, cached by URL: the settings it
// reads do not change while Herald runs).
func CheckTarget(rawURL string, cfg Config) error {
	_, err := checkTarget(rawURL, cfg)
	return err
}

// checkTarget is CheckTarget; it also returns the URL it checked, with its
// host in ASCII form (subscribers.WebhookURL), so a route parses it once.
func checkTarget(rawURL string, cfg Config) (*url.URL, error) {
	u, plain, err := subscribers.WebhookURL(rawURL, cfg.AllowInsecureLoopback)
	if err != nil {
		return nil, fmt.Errorf("webhook url: %w", err)
	}
	var r *RefusedError
	if addr, literal := parseHost(u.Hostname()); literal && !plain && errors.As(newGuard(cfg, false).check(addr), &r) {
		return nil, fmt.Errorf("webhook url: %s is %s; allow-list the range in webhooks.allow_cidrs if it is really wanted", addr, r.Reason)
	}
	return u, nil
}

// parseHost parses a URL host (brackets already removed) as an IP address.
func parseHost(host string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a, true
}

func newGuard(cfg Config, plain bool) *guard {
	return &guard{allow: cfg.AllowCIDRs, allowLoopback: cfg.AllowInsecureLoopback, loopbackOnly: plain}
}
