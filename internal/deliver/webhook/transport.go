package webhook

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/valyala/fasthttp"
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

// DialContext connects to address (host:port) as described on dialer.
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

// Transport settings.
const (
	// maxHeaderBytes bounds a response's status line and headers: the
	// size of the read buffer, which fasthttp never grows (a longer header
	// block fails the attempt, as net/http's MaxResponseHeaderBytes did).
	maxHeaderBytes = 64 << 10
	// writeBufferSize holds the request line, headers and a body of up to
	// about 15 KiB, written with one write(2).
	writeBufferSize = 16 << 10
	// idleTimeout closes a connection unused for that long.
	idleTimeout = 90 * time.Second
	// maxHosts is how many hosts' pools a pool keeps before it forgets
	// those with no connection open.
	maxHosts = 4096
)

// pool holds the connections of one kind of client (plain http to
// loopback, https, or https with one client certificate): one
// fasthttp.HostClient per host and port, each with keep-alive, no bound
// on its connections (as net/http's default), no proxy (a proxy would
// connect where the guard cannot see) and no compression. fasthttp speaks
// HTTP/1.1 only.
//
// The HostClients serve as connection pools and buffer pools; the
// exchange itself is host.do's, so that it can honour the attempt's
// context: fasthttp's Do takes none. Once a pool knows maxHosts hosts it
// forgets those with no connection open; a forgotten host never keeps a
// connection idle, and a route that holds one is prepared again, so every
// idle connection is in a host that closeIdle reaches.
type pool struct {
	dialer *dialer
	tls    *tls.Config // nil for plain http

	mu    sync.Mutex
	hosts map[string]*host // by host:port
	// forgotten is set by forget: the pool is no longer used, and every
	// host it hands out after that is forgotten from the start.
	forgotten bool
}

func newPool(cfg Config, g *guard, tlsCfg *tls.Config) *pool {
	return &pool{dialer: newDialer(g, cfg), tls: tlsCfg, hosts: map[string]*host{}}
}

// newTLS returns the client TLS configuration: verification always on,
// TLS 1.2 or later, cfg.RootCAs, and the client certificates, if any.
func newTLS(cfg Config, certs []tls.Certificate) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs, Certificates: certs}
}

// host returns the pool of u's host and port, making it on first use.
func (p *pool) host(u *url.URL) *host {
	port := u.Port()
	if port == "" {
		port = "80"
		if p.tls != nil {
			port = "443"
		}
	}
	return p.hostOf(strings.ToLower(u.Hostname()), port)
}

// hostOf returns the pool of host name (lower case) and port.
func (p *pool) hostOf(name, port string) *host {
	addr := net.JoinHostPort(name, port)
	p.mu.Lock()
	defer p.mu.Unlock()
	if h := p.hosts[addr]; h != nil {
		return h
	}
	if len(p.hosts) >= maxHosts {
		// Forget the hosts with no connection open, so that the map does
		// not grow with every host ever delivered to. A route prepared
		// earlier may still hold a forgotten host: Notifier.route prepares
		// it again, and an attempt already under way closes its
		// connection when done (host.try).
		for a, h := range p.hosts {
			if h.hc.ConnsCount() == 0 {
				h.forgotten.Store(true)
				delete(p.hosts, a)
			}
		}
	}
	h := &host{addr: addr, dialer: p.dialer}
	if p.tls != nil {
		h.tls = p.tls.Clone()
		h.tls.ServerName = name
	}
	h.hc = &fasthttp.HostClient{
		Addr: addr,
		// The connection is made by host.connect, under the attempt's
		// context; IsTLS stays false because TLS is done there too.
		Dial: func(string) (net.Conn, error) { return new(conn), nil },
		// fasthttp's zero would mean 512.
		MaxConns:            math.MaxInt32,
		MaxIdleConnDuration: idleTimeout,
		// The most recently used connection first, as net/http: the
		// least likely to have been closed by the server meanwhile.
		ConnPoolStrategy:              fasthttp.LIFO,
		ReadBufferSize:                maxHeaderBytes,
		WriteBufferSize:               writeBufferSize,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
	}
	if p.forgotten {
		// A route prepared from the pool just as it was forgotten: its
		// one delivery keeps no connection idle, and the route is
		// prepared again.
		h.forgotten.Store(true)
		return h
	}
	p.hosts[addr] = h
	return h
}

// forget forgets every host of a pool that is no longer used (a renewed
// client certificate's old pool) and closes their idle connections; an
// attempt still under way closes its connection when done. A host asked
// of the pool afterwards is forgotten from the start.
func (p *pool) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgotten = true
	for a, h := range p.hosts {
		h.forgotten.Store(true)
		h.hc.CloseIdleConnections()
		delete(p.hosts, a)
	}
}

// closeIdle closes the idle connections of every host.
func (p *pool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.hosts {
		h.hc.CloseIdleConnections()
	}
}

// host is the connection pool of one host and port.
type host struct {
	addr   string // host:port, the URL's host in its ASCII form
	dialer *dialer
	tls    *tls.Config // with ServerName; nil for plain http
	hc     *fasthttp.HostClient
	// forgotten is set when the pool drops the host (pool.hostOf,
	// pool.forget), or makes it after it was forgotten itself: it keeps no
	// connection idle any more, since closeIdle no longer sees it.
	forgotten atomic.Bool
}

// conn is a connection of a host's pool. The HostClient makes it
// unconnected, with a nil Conn; the attempt that takes it first connects
// it (host.connect), and nothing reads, writes or sets a deadline before
// then, so only Close, which the HostClient calls on a conn whose connect
// failed, minds a nil Conn. A connected conn in the pool has carried a
// whole exchange: every attempt that fails closes its conn. An attempt
// has it to itself, so its fields need no lock.
type conn struct {
	net.Conn     // nil until connected
	got      int // bytes read in the current exchange
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.got += n
	return n, err
}

func (c *conn) Close() error {
	if c.Conn == nil {
		return nil
	}
	return c.Conn.Close()
}

// connect connects through the guarded dialer and, for https, completes
// the TLS handshake, both under ctx.
func (h *host) connect(ctx context.Context) (net.Conn, error) {
	c, err := h.dialer.DialContext(ctx, "tcp", h.addr)
	if err != nil || h.tls == nil {
		return c, err
	}
	tc := tls.Client(c, h.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// response is what an exchange learnt of the response: its status, its
// Retry-After and reason phrase, and a printable excerpt of its body.
type response struct {
	status     int
	reason     string
	retryAfter string
	excerpt    string
}

// do sends req and reads the response, its body up to limit bytes
// (discarded), all before deadline. Cancelling ctx ends it at once: the
// connect is made under ctx, and the connection's deadline is moved to
// the past when ctx ends. A request on a kept-alive connection that the
// server had closed, so that nothing at all came back, is sent once more,
// on a new connection: the host's other idle connections are closed first,
// since the pool hands out the most recently used one, and one the server
// closed for idleness means the older ones are closed too. A partner that
// read the request before dropping the connection gets it twice at most,
// and drops the duplicate by its webhook-id.
func (h *host) do(ctx context.Context, deadline time.Time, req *fasthttp.Request, resp *fasthttp.Response, limit int64) (response, error) {
	r, stale, err := h.try(ctx, deadline, req, resp, limit)
	if !stale || ctx.Err() != nil || !time.Now().Before(deadline) {
		return r, err
	}
	h.hc.CloseIdleConnections()
	r, _, err = h.try(ctx, deadline, req, resp, limit)
	return r, err
}

// interrupted is a deadline in the past: it makes every blocked and future
// read and write of a connection fail at once.
var interrupted = time.Unix(1, 0)

// try makes one exchange on one connection. stale reports a failure on a
// reused connection before any byte of a response came back.
func (h *host) try(ctx context.Context, deadline time.Time, req *fasthttp.Request, resp *fasthttp.Response, limit int64) (r response, stale bool, err error) {
	left := time.Until(deadline)
	if left <= 0 {
		return r, false, fasthttp.ErrTimeout
	}
	cc, err := h.hc.AcquireConn(left, false)
	if err != nil {
		return r, false, err
	}
	c := cc.Conn().(*conn)
	reused := c.Conn != nil
	if !reused {
		cctx, cancel := context.WithDeadline(ctx, deadline)
		c.Conn, err = h.connect(cctx)
		cancel()
		if err != nil {
			h.hc.CloseConn(cc)
			return r, false, err
		}
	}
	c.got = 0
	nc := c.Conn
	if err := nc.SetDeadline(deadline); err != nil {
		h.hc.CloseConn(cc)
		return r, reused, err
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(interrupted) })
	r, keep, err := h.exchange(c, req, resp, limit)
	if !stop() {
		keep = false // the deadline is spoilt
	}
	if err != nil {
		stale = reused && c.got == 0 && !isTimeout(err)
	}
	if keep {
		h.hc.ReleaseConn(cc)
		if h.forgotten.Load() {
			// A forgotten host keeps no connection idle: its pool's
			// closeIdle no longer reaches it. Checked after the release,
			// so that a host forgotten meanwhile (pool.forget) is caught.
			h.hc.CloseIdleConnections()
		}
	} else {
		h.hc.CloseConn(cc)
	}
	return r, stale, err
}

// exchange writes req to c and reads the response; keep reports whether c
// may carry another request.
func (h *host) exchange(c *conn, req *fasthttp.Request, resp *fasthttp.Response, limit int64) (r response, keep bool, err error) {
	bw := h.hc.AcquireWriter(c)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	h.hc.ReleaseWriter(bw)
	if err != nil {
		return r, false, err
	}
	br := h.hc.AcquireReader(c)
	defer h.hc.ReleaseReader(br)
	resp.StreamBody = true
	if err := resp.Read(br); err != nil {
		if errors.Is(err, io.EOF) {
			err = fasthttp.ErrConnectionClosed
		}
		return r, false, err
	}
	r.status = resp.StatusCode()
	r.reason = string(resp.Header.StatusMessage())
	r.retryAfter = string(resp.Header.Peek("Retry-After"))
	complete := true
	if body := resp.BodyStream(); body != nil {
		r.excerpt, complete = drain(body, limit)
		// A body that lasts until the connection closes leaves nothing
		// to reuse.
		complete = complete && resp.Header.ContentLength() != -2
		_ = resp.CloseBodyStream()
	}
	return r, complete && !resp.ConnectionClose(), nil
}

// isTimeout reports whether err is a deadline's.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// maxCertNames bounds the pairs of client certificate names (an
// endpoint's client_cert and client_key) whose files clients remembers,
// and so the client-certificate pools, at most one per pair. A pair
// forgotten and used again has its files read and its key pair loaded
// again (about 0.1 ms for ECDSA P-256, 0.25 ms for RSA-2048), gets a new
// pool and so a new TLS handshake, and its old pool's idle connections
// are closed.
//
// The bound holds a pair for every partner of the largest registry
// Herald is measured with (docs/BENCHMARKS.md: 100,000; PRODUCT.md sets
// no limit), each with a certificate of its own, with a third more for
// partners with several and for pairs no longer in use: an alert's deliveries reach partners in the same order
// every time, so with more pairs in use than the bound the LRU would find
// none remembered and every delivery would pay all of the above. A pair
// with its own certificate costs about 6.5 KiB of heap (ECDSA P-256) to
// 10.5 KiB (RSA-2048), measured with its pool and one host but no
// connection, so the bound is reached at about 0.8 to 1.3 GiB; pairs that
// name the same bytes share a pool and cost a few hundred bytes each.
const maxCertNames = 1 << 17 // 131,072

// clients holds the shared pools: one for https, one for plain http to
// loopback (when enabled), and one per client certificate in use.
//
// A client certificate's pool is keyed by what it presents, a digest of
// the certificate's and key's bytes, never by the paths that name them:
// endpoints whose files hold the same bytes share a pool whatever their
// paths; a renewal (new bytes) makes a new pool; the same bytes at a new
// path (a secret volume's ..data link swapped to a new directory) keep
// it. A pool is dropped once no names lead to it (clients.release).
type clients struct {
	cfg   Config
	https *pool
	plain *pool // nil unless AllowInsecureLoopback

	mu sync.Mutex
	// names remembers, for up to maxCertNames pairs of names, the files
	// each led to when last looked at and the pool of what they held, so
	// that the files are read only when they change, and so that the pool
	// a pair has moved away from (a renewal) is known to be unused.
	names *simplelru.LRU[certNames, *certFiles]
	mtls  map[[sha256.Size]byte]*mtlsPool // by certDigest
}

// certNames are an endpoint's client_cert and client_key as configured.
type certNames struct{ cert, key string }

// certFiles is where a pair of certNames led when last looked at.
type certFiles struct {
	seen  string // the resolved certificate and key paths and their stamp
	quick string // namesStamp of the names, taken before seen was checked
	pool  *mtlsPool
}

// mtlsPool is the pool of one client certificate.
type mtlsPool struct {
	digest [sha256.Size]byte // certDigest of the bytes it presents
	pool   *pool
	names  int // the pairs of names that lead to it, in clients.names
}

func newClients(cfg Config) *clients {
	c := &clients{
		cfg:   cfg,
		https: newPool(cfg, newGuard(cfg, false), newTLS(cfg, nil)),
		mtls:  map[[sha256.Size]byte]*mtlsPool{},
	}
	c.names = newNames(maxCertNames, c.evicted)
	if cfg.AllowInsecureLoopback {
		c.plain = newPool(cfg, newGuard(cfg, true), nil)
	}
	return c
}

// newNames returns an LRU of size pairs of names (at least one) that
// calls evicted, under clients.mu, for each pair it forgets.
func newNames(size int, evicted simplelru.EvictCallback[certNames, *certFiles]) *simplelru.LRU[certNames, *certFiles] {
	l, err := simplelru.NewLRU(max(size, 1), evicted)
	if err != nil {
		panic(err) // only for a size below one
	}
	return l
}

// evicted releases the pool of a pair of names clients.names forgot.
func (c *clients) evicted(_ certNames, f *certFiles) { c.release(f.pool) }

var errPlainHTTP = errors.New("plain http is not enabled (webhooks.allow_insecure_loopback)")

// get returns the pool for a scheme and an endpoint's client certificate
// (nil for none; from clients.cert).
func (c *clients) get(scheme string, cert *mtlsPool) (*pool, error) {
	switch {
	case scheme == "http":
		if c.plain == nil {
			return nil, &RefusedError{Reason: errPlainHTTP.Error()}
		}
		return c.plain, nil // no TLS, so no client certificate
	case cert == nil:
		return c.https, nil
	}
	return cert.pool, nil
}

// cert returns the pool of the client certificate that an endpoint's
// names lead to: the files certFile and keyFile, resolved and stamped
// (fileStamp) just before. The files are read again only when the names
// lead to other paths or the stamp has changed, so a renewal is used from
// the next delivery on, without a restart; the stamp is taken before the
// bytes are read, so the stamp remembered is never newer than the bytes.
// Bytes no pool presents yet make a new pool. The pool the names led to
// before is released (clients.release).
//
// quick is the names' namesStamp taken before certFile and keyFile were
// resolved and stamped ("" for none): while the names stamp alike, the
// pool is used without resolving them again (clients.unchanged). It
// counts only when it equals stamp, that is when the names led to the
// very files checked: a swap between the two (a renewal, or a link led
// out of the directory) would otherwise tie the stamp of files never
// checked to this pool, and a swap back to them would skip the check.
func (c *clients) cert(names certNames, certFile, keyFile, stamp, quick string) (*mtlsPool, error) {
	if quick != stamp {
		quick = ""
	}
	seen := certFile + "\x00" + keyFile + "\x00" + stamp
	c.mu.Lock()
	defer c.mu.Unlock()
	known, ok := c.names.Get(names)
	if ok && known.seen == seen {
		known.quick = quick
		return known.pool, nil
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	d := certDigest(certPEM, keyPEM)
	m := c.mtls[d]
	if m == nil {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load client certificate %s: %w", certFile, err)
		}
		m = &mtlsPool{digest: d, pool: newPool(c.cfg, newGuard(c.cfg, false), newTLS(c.cfg, []tls.Certificate{cert}))}
		c.mtls[d] = m
	}
	if !ok {
		m.names++ // before Add, so that the pair Add may evict cannot drop m
		c.names.Add(names, &certFiles{seen: seen, quick: quick, pool: m})
		return m, nil
	}
	if known.pool != m {
		m.names++
		c.release(known.pool)
		known.pool = m
	}
	known.seen, known.quick = seen, quick
	return m, nil
}

// unchanged returns the pool of names when they stamp as quick did when
// their files were last checked and read (clients.cert), or nil.
func (c *clients) unchanged(names certNames, quick string) *mtlsPool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if known, ok := c.names.Get(names); ok && known.quick != "" && known.quick == quick {
		return known.pool
	}
	return nil
}

// release drops m once no names lead to it: it is forgotten
// (pool.forget), so its idle connections are closed, a route that holds
// it is prepared again, and a delivery under way on it finishes and then
// closes its connection. Called with c.mu held.
func (c *clients) release(m *mtlsPool) {
	if m.names--; m.names > 0 {
		return
	}
	delete(c.mtls, m.digest)
	m.pool.forget()
}

// certDigest is the SHA-256 of a client certificate's and its key's
// bytes, each preceded by its length (8 bytes, big-endian): what a pool
// of clients presents.
func certDigest(certPEM, keyPEM []byte) [sha256.Size]byte {
	h := sha256.New()
	for _, b := range [][]byte{certPEM, keyPEM} {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}

// closeIdle closes the idle connections of every pool.
func (c *clients) closeIdle() {
	c.https.closeIdle()
	if c.plain != nil {
		c.plain.closeIdle()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.mtls {
		m.pool.closeIdle()
	}
}
