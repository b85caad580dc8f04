package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// dialer resolves a host itself, drops the addresses the guard forbids,
// and connects to the rest through a net.Dialer whose Control hook checks
// the socket's address once more just before connect(2).
type dialer struct {
	guard  *guard
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	net    net.Dialer
}

func newDialer(g *guard, cfg Config) *dialer {
	lookup := cfg.LookupIP
	if lookup == nil {
		lookup = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	return &dialer{
		guard:  g,
		lookup: lookup,
		net:    net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second, Control: g.control},
	}
}

// maxAddrs bounds the addresses tried for one name.
const maxAddrs = 4

// DialContext is http.Transport's DialContext.
func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dial %s: bad port: %w", address, err)
	}
	var addrs []netip.Addr
	if a, ok := parseHost(host); ok {
		addrs = []netip.Addr{a}
	} else {
		addrs, err = d.lookup(ctx, host)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("resolve %s: %w", host, err)}
		}
	}
	var refused, last error
	tried := 0
	for _, a := range addrs {
		if err := d.guard.check(a); err != nil {
			if refused == nil {
				refused = err
			}
			continue
		}
		if tried == maxAddrs {
			break
		}
		tried++
		conn, err := d.net.DialContext(ctx, network, netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	switch {
	case last != nil:
		return nil, last
	case refused != nil:
		return nil, refused
	}
	return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("resolve %s: no addresses", host)}
}

// newTransport returns a transport with keep-alive, HTTP/2, verification
// always on, no proxy (a proxy would connect where the guard cannot see),
// and the guarded dialer.
func newTransport(cfg Config, g *guard, certs []tls.Certificate) *http.Transport {
	return &http.Transport{
		Proxy:       nil,
		DialContext: newDialer(g, cfg).DialContext,
		TLSClientConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			RootCAs:      cfg.RootCAs,
			Certificates: certs,
		},
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    64,
		MaxConnsPerHost:        cfg.MaxConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    cfg.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true,
	}
}

// noRedirect makes the client hand a 3xx back instead of following it.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// clients holds the shared clients: one for https, one for plain http to
// loopback (when enabled), and one per distinct client certificate.
type clients struct {
	cfg   Config
	https *http.Client
	plain *http.Client // nil unless AllowInsecureLoopback

	mu   sync.Mutex
	mtls map[string]*mtlsClient
}

type mtlsClient struct {
	stamp  string // modification times and sizes of the files when loaded
	client *http.Client
}

func newClients(cfg Config) *clients {
	c := &clients{
		cfg:   cfg,
		https: &http.Client{Transport: newTransport(cfg, newGuard(cfg, false), nil), CheckRedirect: noRedirect},
		mtls:  map[string]*mtlsClient{},
	}
	if cfg.AllowInsecureLoopback {
		c.plain = &http.Client{Transport: newTransport(cfg, newGuard(cfg, true), nil), CheckRedirect: noRedirect}
	}
	return c
}

var errPlainHTTP = errors.New("plain http is not enabled (webhooks.allow_insecure_loopback)")

// get returns the client for a scheme and an endpoint's client certificate
// files (both empty for none), whose stamp says when they last changed. A
// certificate is loaded once and reloaded when its stamp changes, so a
// partner's renewed certificate is picked up without a restart.
func (c *clients) get(scheme, certFile, keyFile, stamp string) (*http.Client, error) {
	if scheme == "http" {
		if c.plain == nil {
			return nil, &RefusedError{Reason: errPlainHTTP.Error()}
		}
		return c.plain, nil // no TLS, so no client certificate
	}
	if certFile == "" && keyFile == "" {
		return c.https, nil
	}
	key := certFile + "\x00" + keyFile
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.mtls[key]; m != nil && m.stamp == stamp {
		return m.client, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load client certificate %s: %w", certFile, err)
	}
	if old := c.mtls[key]; old != nil {
		old.client.CloseIdleConnections()
	}
	cl := &http.Client{Transport: newTransport(c.cfg, newGuard(c.cfg, false), []tls.Certificate{cert}), CheckRedirect: noRedirect}
	c.mtls[key] = &mtlsClient{stamp: stamp, client: cl}
	return cl, nil
}

// closeIdle closes the idle connections of every client.
func (c *clients) closeIdle() {
	c.https.CloseIdleConnections()
	if c.plain != nil {
		c.plain.CloseIdleConnections()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.mtls {
		m.client.CloseIdleConnections()
	}
}
