// Package webhooktest runs webhook receivers (internal/sink) for tests:
// plain or TLS with HTTP/2 and optional client-certificate authentication,
// recording every request and answering from a script (fail N times then
// succeed, a fixed status, Retry-After, hang, slow-drip or endless bodies,
// redirects), closed when the test ends. It also makes certificates, a
// resolver that maps names to chosen addresses, and an OpenPGP detached
// signer for the notifier under test.
package webhooktest

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"testing"

	"github.com/herald-alerts/herald/internal/sink"
)

// Receiver is a recording webhook endpoint (sink.Receiver).
type Receiver = sink.Receiver

// Request is one request a Receiver got.
type Request = sink.Request

// Step answers one request (see sink.Step).
type Step = sink.Step

// Steps: see the functions of the same names in internal/sink.
var (
	Status     = sink.Status
	RetryAfter = sink.RetryAfter
	Body       = sink.Body
	Redirect   = sink.Redirect
	Hang       = sink.Hang
	SlowDrip   = sink.SlowDrip
	Endless    = sink.Endless
)

// Option configures a Receiver.
type Option func(*options)

type options struct {
	sink.ReceiverOptions
	tls12 bool
}

// TLS serves https with HTTP/2 enabled, with a certificate from ca for
// localhost, *.partner.test, 127.0.0.1 and ::1.
func TLS(ca *CA) Option {
	return func(o *options) { o.TLS, o.HTTP2 = ca.ServerTLS(), true }
}

// RequireClientCert demands a client certificate issued by ca (mutual
// TLS). Implies TLS(ca) unless TLS was given.
func RequireClientCert(ca *CA) Option {
	return func(o *options) {
		if o.TLS == nil {
			TLS(ca)(o)
		}
		o.TLS.ClientCAs, o.TLS.ClientAuth = ca.Pool(), tls.RequireAndVerifyClientCert
	}
}

// MaxTLS12 caps the receiver at TLS 1.2, where a rejected client
// certificate fails the client's handshake itself.
func MaxTLS12() Option { return func(o *options) { o.tls12 = true } }

// New starts a receiver on 127.0.0.1:0 that answers 204 until Script says
// otherwise. It is closed when the test ends.
func New(t testing.TB, opts ...Option) *Receiver {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	if o.tls12 && o.TLS != nil {
		o.TLS.MaxVersion = tls.VersionTLS12
	}
	rc, err := sink.StartReceiver(o.ReceiverOptions)
	if err != nil {
		t.Fatalf("webhooktest: %v", err)
	}
	t.Cleanup(rc.Close)
	return rc
}

// Resolver returns a LookupIP function that resolves the names in m to the
// given addresses and fails for every other name, so no test ever asks
// real DNS.
func Resolver(m map[string][]string) func(ctx context.Context, host string) ([]netip.Addr, error) {
	parsed := map[string][]netip.Addr{}
	for name, addrs := range m {
		for _, a := range addrs {
			parsed[name] = append(parsed[name], netip.MustParseAddr(a))
		}
	}
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if addrs, ok := parsed[host]; ok {
			return addrs, nil
		}
		return nil, &net.DNSError{Err: "no such host (webhooktest resolver)", Name: host, IsNotFound: true}
	}
}
