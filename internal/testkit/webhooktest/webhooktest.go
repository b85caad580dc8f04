// Package webhooktest provides webhook receivers for tests: httptest
// servers, plain or TLS with HTTP/2 and optional client-certificate
// authentication, that record every request and answer from a script
// (fail N times then succeed, a fixed status, Retry-After, hang, slow-drip
// or endless bodies, redirects). It also makes certificates, a resolver
// that maps names to chosen addresses, and an OpenPGP detached signer for
// the notifier under test.
package webhooktest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Request is one request a Receiver got.
type Request struct {
	Method     string
	Path       string
	Proto      string
	Header     http.Header
	Body       []byte
	RemoteAddr string
	// ClientCN is the common name of the client certificate, if any.
	ClientCN string
	At       time.Time
}

// Step answers one request. Steps are taken in order; the last one
// answers every request after it.
type Step func(w http.ResponseWriter, r *http.Request, release <-chan struct{})

// Status answers with code and an empty body.
func Status(code int) Step {
	return func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) { w.WriteHeader(code) }
}

// RetryAfter answers with code and a Retry-After header.
func RetryAfter(code int, value string) Step {
	return func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		w.Header().Set("Retry-After", value)
		w.WriteHeader(code)
	}
}

// Body answers with code and body.
func Body(code int, body string) Step {
	return func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// Redirect answers with code (a 3xx) and a Location header.
func Redirect(code int, location string) Step {
	return func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
		w.Header().Set("Location", location)
		w.WriteHeader(code)
	}
}

// Hang sends nothing until the client goes away or the receiver closes.
func Hang() Step {
	return func(_ http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
}

// SlowDrip answers 200 at once, then one byte of body every interval until
// the client goes away or the receiver closes.
func SlowDrip(interval time.Duration) Step {
	return func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if _, err := w.Write([]byte{'.'}); err != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-release:
				return
			case <-t.C:
			}
		}
	}
}

// Endless answers code with a body that never ends; the receiver's
// EndlessDone reports when the client stopped reading it.
func Endless(code int) Step {
	return func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
		w.WriteHeader(code)
		chunk := make([]byte, 32<<10)
		for {
			select {
			case <-r.Context().Done():
				return
			case <-release:
				return
			default:
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}
}

// Receiver is a recording webhook endpoint.
type Receiver struct {
	// Server is the underlying httptest server.
	Server *httptest.Server

	mu      sync.Mutex
	reqs    []Request
	steps   []Step
	next    int
	release chan struct{}
	conns   atomic.Int64
	active  atomic.Int64
}

// Option configures a Receiver.
type Option func(*options)

type options struct {
	tls        bool
	clientCA   *x509.CertPool
	serverCert *tls.Certificate
	listen     string
	tls12      bool
}

// TLS serves https with HTTP/2 enabled, with a certificate from ca (see
// NewCA) for localhost, *.partner.test, 127.0.0.1 and ::1.
func TLS(ca *CA) Option {
	return func(o *options) {
		o.tls = true
		c := ca.serverCert()
		o.serverCert = &c
	}
}

// RequireClientCert demands a client certificate issued by ca (mutual
// TLS). Implies TLS(ca) unless TLS was given.
func RequireClientCert(ca *CA) Option {
	return func(o *options) {
		if !o.tls {
			TLS(ca)(o)
		}
		o.clientCA = ca.Pool()
	}
}

// MaxTLS12 caps the receiver at TLS 1.2, where a rejected client
// certificate fails the client's handshake itself.
func MaxTLS12() Option { return func(o *options) { o.tls12 = true } }

// Listen sets the listen address (default 127.0.0.1:0).
func Listen(addr string) Option { return func(o *options) { o.listen = addr } }

// New starts a receiver that answers 204 until Script says otherwise. It
// is closed when the test ends.
func New(t testing.TB, opts ...Option) *Receiver {
	t.Helper()
	var o options
	for _, f := range opts {
		f(&o)
	}
	rc := &Receiver{release: make(chan struct{}), steps: []Step{Status(http.StatusNoContent)}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(rc.serve))
	if o.listen != "" {
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			t.Fatalf("webhooktest: listen %s: %v", o.listen, err)
		}
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			rc.conns.Add(1)
			rc.active.Add(1)
		case http.StateClosed, http.StateHijacked:
			rc.active.Add(-1)
		}
	}
	srv.Config.ReadHeaderTimeout = 10 * time.Second
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are what some tests provoke
	if o.tls {
		srv.EnableHTTP2 = true
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{*o.serverCert}, MinVersion: tls.VersionTLS12}
		if o.tls12 {
			srv.TLS.MaxVersion = tls.VersionTLS12
		}
		if o.clientCA != nil {
			srv.TLS.ClientCAs = o.clientCA
			srv.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	rc.Server = srv
	t.Cleanup(rc.Close)
	return rc
}

// Close releases hanging handlers and stops the server. It is idempotent.
func (rc *Receiver) Close() {
	rc.mu.Lock()
	select {
	case <-rc.release:
	default:
		close(rc.release)
	}
	rc.mu.Unlock()
	rc.Server.CloseClientConnections()
	rc.Server.Close()
}

// Script replaces the receiver's answers: each request takes the next step,
// and the last step answers every request after it.
func (rc *Receiver) Script(steps ...Step) {
	if len(steps) == 0 {
		steps = []Step{Status(http.StatusNoContent)}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.steps, rc.next = steps, 0
}

// FailThenSucceed scripts n answers of code, then 200.
func (rc *Receiver) FailThenSucceed(n, code int) {
	steps := make([]Step, 0, n+1)
	for range n {
		steps = append(steps, Status(code))
	}
	rc.Script(append(steps, Status(http.StatusOK))...)
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	req := Request{
		Method: r.Method, Path: r.URL.RequestURI(), Proto: r.Proto, Header: r.Header.Clone(),
		Body: body, RemoteAddr: r.RemoteAddr, At: time.Now(),
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		req.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, req)
	step := rc.steps[min(rc.next, len(rc.steps)-1)]
	rc.next++
	rc.mu.Unlock()
	step(w, r, rc.release)
}

// Requests returns a copy of the requests received so far.
func (rc *Receiver) Requests() []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Request(nil), rc.reqs...)
}

// Count returns how many requests were received.
func (rc *Receiver) Count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

// Conns returns how many connections were accepted.
func (rc *Receiver) Conns() int64 { return rc.conns.Load() }

// ActiveConns returns how many connections are open now.
func (rc *Receiver) ActiveConns() int64 { return rc.active.Load() }

// URL returns the receiver's base URL joined with path.
func (rc *Receiver) URL(path string) string { return rc.Server.URL + path }

// Port returns the receiver's port.
func (rc *Receiver) Port() int {
	ap := netip.MustParseAddrPort(rc.Server.Listener.Addr().String())
	return int(ap.Port())
}

// URLFor returns scheme://host:port/path for the receiver's port, for use
// with a name that Resolver maps to the receiver's address.
func (rc *Receiver) URLFor(host, path string) string {
	scheme := "http"
	if rc.Server.TLS != nil {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(rc.Port())), path)
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
