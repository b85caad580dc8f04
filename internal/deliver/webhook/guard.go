package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"syscall"
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

// rangeRule names a forbidden range.
type rangeRule struct {
	prefix netip.Prefix
	what   string
}

func mustRules(pairs ...string) []rangeRule {
	out := make([]rangeRule, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, rangeRule{netip.MustParsePrefix(pairs[i]), pairs[i+1]})
	}
	return out
}

// forbidden lists the ranges a webhook may not reach unless the operator
// allow-lists them: everything that is not globally routable unicast
// (IANA special-purpose registries, RFC 6890).
var forbidden = mustRules(
	"0.0.0.0/8", "the \"this network\" range",
	"10.0.0.0/8", "private (RFC 1918)",
	"100.64.0.0/10", "shared address space (carrier-grade NAT, RFC 6598)",
	"127.0.0.0/8", "loopback",
	"169.254.0.0/16", "link-local (cloud metadata lives here)",
	"172.16.0.0/12", "private (RFC 1918)",
	"192.0.0.0/24", "IETF protocol assignments",
	"192.0.2.0/24", "documentation (TEST-NET-1)",
	"192.88.99.0/24", "6to4 relay anycast",
	"192.168.0.0/16", "private (RFC 1918)",
	"198.18.0.0/15", "benchmarking",
	"198.51.100.0/24", "documentation (TEST-NET-2)",
	"203.0.113.0/24", "documentation (TEST-NET-3)",
	"224.0.0.0/4", "multicast",
	"255.255.255.255/32", "broadcast",
	"240.0.0.0/4", "reserved",
	"::/128", "unspecified",
	"::1/128", "loopback",
	"::/96", "IPv4-compatible IPv6 (deprecated)",
	"100::/64", "discard-only",
	"64:ff9b:1::/48", "local-use NAT64 (RFC 8215)",
	"2001:db8::/32", "documentation",
	"fc00::/7", "unique local (private)",
	"fe80::/10", "link-local",
	"fec0::/10", "site-local (deprecated)",
	"ff00::/8", "multicast",
)

var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")  // RFC 6052 well-known prefix
	sixTo4 = netip.MustParsePrefix("2002::/16")     // RFC 3056
	teredo = netip.MustParsePrefix("2001::/32")     // RFC 4380
	mapped = netip.MustParsePrefix("::ffff:0:0/96") // IPv4-mapped
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

// classify names the forbidden range a falls in, or returns "".
func classify(a netip.Addr) string {
	if mapped.Contains(a) {
		if what := classify(a.Unmap()); what != "" {
			return "IPv4-mapped " + what
		}
		return ""
	}
	for _, r := range forbidden {
		if r.prefix.Contains(a) {
			return r.what
		}
	}
	if a.Is6() {
		b := a.As16()
		var v4 [4]byte
		var how string
		switch {
		case nat64.Contains(a):
			copy(v4[:], b[12:16])
			how = "NAT64"
		case sixTo4.Contains(a):
			copy(v4[:], b[2:6])
			how = "6to4"
		case teredo.Contains(a):
			for i := range v4 {
				v4[i] = b[12+i] ^ 0xff // the client address is stored inverted
			}
			how = "Teredo"
		}
		if how != "" {
			if what := classify(netip.AddrFrom4(v4)); what != "" {
				return how + "-embedded " + what
			}
		}
	}
	return ""
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

// CheckTarget validates a webhook URL at registration time: an absolute
// https URL (http only when cfg.AllowInsecureLoopback, and then to a
// loopback address: a literal one, or a name that must resolve to one at
// connection time), no credentials, no fragment, and, when
// the host is a literal IP address, one the SSRF guard allows. A host name
// passes here; its addresses are checked again at every connection.
func CheckTarget(rawURL string, cfg Config) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("webhook url: not a URL: %w", err)
	}
	if u.User != nil {
		return errors.New("webhook url: must not carry credentials")
	}
	if u.Fragment != "" {
		return errors.New("webhook url: must not have a fragment")
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("webhook url: has no host")
	}
	addr, literal := parseHost(host)
	switch u.Scheme {
	case "https":
	case "http":
		if !cfg.AllowInsecureLoopback {
			return errors.New("webhook url: must use https (plain http is allowed only to loopback, when webhooks.allow_insecure_loopback is on)")
		}
		if literal && !isLoopback(addr) {
			return fmt.Errorf("webhook url: plain http is allowed only to loopback, not %s", addr)
		}
		return nil // a name must resolve to loopback at connection time
	default:
		return fmt.Errorf("webhook url: scheme must be https, not %q", u.Scheme)
	}
	if literal {
		g := newGuard(cfg, false)
		if err := g.check(addr); err != nil {
			var r *RefusedError
			if errors.As(err, &r) {
				return fmt.Errorf("webhook url: %s is %s; allow-list the range in webhooks.allow_cidrs if it is really wanted", addr, r.Reason)
			}
			return fmt.Errorf("webhook url: %w", err)
		}
	}
	return nil
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
