package webhook

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/valyala/fasthttp"
)

// maxRoutes bounds the prepared routes kept, one per endpoint URL and
// client certificate. Every partner usually has endpoints of its own, so
// the bound is well above the endpoints one alert reaches: a cache smaller
// than the working set would be emptied by every alert. A route holds two
// short strings and a pointer.
const maxRoutes = 1 << 16

// route is what every delivery to one endpoint shares, prepared once from
// the checked URL: its Host header and request target, and the connection
// pool of its host (with the endpoint's client certificate, if any). Never
// modified after it is built.
type route struct {
	host       *host
	hostHeader string // the URL's host (and port), in its ASCII form
	target     string // the URL's RequestURI(): path and query
}

// route returns the endpoint's route, preparing it on first use. Routes
// are keyed by the URL and the digest of the client certificate's bytes
// (certDigest), so a renewed certificate makes a new route and the same
// bytes at another path keep it; a route whose host its pool has
// forgotten (a pool dropped, clients.release) is prepared again.
func (n *Notifier) route(ep *subscribers.Webhook) (*route, *delivery.Failure) {
	cert, f := n.clientCert(ep)
	if f != nil {
		return nil, f
	}
	key := ep.URL
	if cert != nil {
		key += "\x00" + string(cert.digest[:])
	}
	if rt, ok := n.routes.Get(key); ok && !rt.host.forgotten.Load() {
		return rt, nil
	}
	u, err := checkTarget(ep.URL, n.cfg)
	if err != nil {
		return nil, delivery.Permanent(delivery.ReasonRefused, err)
	}
	p, err := n.clients.get(u.Scheme, cert)
	if err != nil {
		return nil, delivery.Permanent(delivery.ReasonRefused, err)
	}
	// The parsed URL is not kept: a route is kept per endpoint (up to
	// maxRoutes), and the request needs only its Host and target.
	rt := &route{host: p.host(u), hostHeader: u.Host, target: u.RequestURI()}
	n.routes.Add(key, rt)
	return rt, nil
}

// request fills req, a request from fasthttp.AcquireRequest, for one
// attempt: POST of the body with its Content-Type to the route's request
// target and Host, the User-Agent, and this delivery's Standard Webhooks
// and OpenPGP signature headers, with their names as written here (no
// normalising). The body is shared, not copied: fasthttp never modifies
// it.
func (rt *route) request(req *fasthttp.Request, userAgent string, sb *signedBody, id, ts, sig string) {
	h := &req.Header
	h.DisableNormalizing()
	h.SetMethod(fasthttp.MethodPost)
	h.SetRequestURI(rt.target)
	h.SetHost(rt.hostHeader)
	h.SetUserAgent(userAgent)
	h.SetContentType(sb.contentType)
	h.Set(whsig.HeaderID, id)
	h.Set(whsig.HeaderTimestamp, ts)
	h.Set(whsig.HeaderSignature, sig)
	h.Set(whsig.HeaderPGPSignature, sb.sigB64)
	req.SetBodyRaw(sb.body)
}

// clientCert resolves an endpoint's client certificate and key in
// ClientCertDir, stamps them with their modification times and sizes, and
// returns the pool of what they hold (clients.cert); nil when the
// endpoint has none. The names are resolved and the files stamped at
// every delivery, so a renewal, by replacing the files or by swapping a
// symbolic link, is seen by the next delivery.
func (n *Notifier) clientCert(ep *subscribers.Webhook) (*mtlsPool, *delivery.Failure) {
	if (ep.ClientCert == "" && ep.ClientKey == "") || plainHTTP(ep.URL) {
		// Plain http (loopback, development only) has no TLS to present
		// a certificate in: its files are never read.
		return nil, nil
	}
	names := certNames{ep.ClientCert, ep.ClientKey}
	// The names as configured, stamped with what they lead to now: while
	// they lead to the very files checked and read before, unchanged,
	// those files are still inside the directory and hold the same
	// bytes, and nothing needs resolving again (two stat calls where a
	// full check takes about twenty). Taken before the full check, and
	// remembered only when it equals the stamp of the files the check
	// found (clients.cert), so it never stands for files not checked.
	quick, quickErr := namesStamp(n.cfg.ClientCertDir, names)
	if quickErr == nil {
		if m := n.clients.unchanged(names, quick); m != nil {
			return m, nil
		}
	}
	certFile, err := ClientCertPath(n.cfg.ClientCertDir, ep.ClientCert)
	if err != nil {
		return nil, delivery.Permanent(delivery.ReasonConfig, fmt.Errorf("client_cert: %w", err))
	}
	keyFile, err := ClientCertPath(n.cfg.ClientCertDir, ep.ClientKey)
	if err != nil {
		return nil, delivery.Permanent(delivery.ReasonConfig, fmt.Errorf("client_key: %w", err))
	}
	// A file missing now, or files that do not load as a key pair, may be
	// mid-renewal (the old one removed and the new not yet copied, the
	// certificate written and the key not yet): try again later, where a
	// path outside the directory is wrong for good.
	stamp, err := fileStamp(certFile, keyFile)
	if err != nil {
		return nil, delivery.Temporary(delivery.ReasonConfig, err)
	}
	cert, err := n.clients.cert(names, certFile, keyFile, stamp, quick)
	if err != nil {
		return nil, delivery.Temporary(delivery.ReasonConfig, err)
	}
	return cert, nil
}

// namesStamp stamps the files an endpoint's certificate and key names
// lead to, following links (os.Stat), when both names are lexically
// inside dir (ClientCertPath's first rule, which touches no file); ""
// and an error otherwise, or when a file cannot be stamped.
func namesStamp(dir string, names certNames) (string, error) {
	abs, err := filepath.Abs(dir)
	if dir == "" || err != nil {
		return "", errOutsideCertDir
	}
	var files [2]string
	for i, name := range []string{names.cert, names.key} {
		p := filepath.Clean(name)
		if !filepath.IsAbs(p) {
			p = filepath.Join(abs, p)
		}
		if name == "" || !inside(abs, p) {
			return "", errOutsideCertDir
		}
		files[i] = p
	}
	return fileStamp(files[:]...)
}

// plainHTTP reports whether raw names the http scheme (in any case, as
// url.Parse reads it), without parsing the whole URL on every delivery.
func plainHTTP(raw string) bool {
	return len(raw) >= len("http://") && strings.EqualFold(raw[:len("http://")], "http://")
}

func fileStamp(files ...string) (string, error) {
	var s []byte
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("client certificate: %w", err)
		}
		s = fmt.Appendf(changeStamp(s, fi), "%d:%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return string(s), nil
}

// errOutsideCertDir is the one answer for a client certificate or key
// outside webhooks.client_cert_dir, whether or not such a file exists.
var errOutsideCertDir = errors.New("must name a file in webhooks.client_cert_dir")

// ClientCertPath is the rule for webhooks[].client_cert and client_key:
// name, resolved against dir (webhooks.client_cert_dir) when relative,
// must lie inside dir; an empty dir refuses client certificates. It
// returns the path to load.
//
// Containment is checked lexically (after filepath.Clean) before the file
// system is touched, so a name outside dir gets the same error whether or
// not it exists; then after resolving symbolic links in both, so that a
// link in dir cannot lead out of it (again the same error, whether or not
// the link's target exists). A name inside dir that does not exist (yet)
// passes; loading it says so. Registration
// (app.CheckSubscriber) and the transport, before it loads the files,
// both apply it.
func ClientCertPath(dir, name string) (string, error) {
	if dir == "" {
		return "", errors.New("client certificates are refused: webhooks.client_cert_dir is not set")
	}
	if name == "" {
		return "", errors.New("is empty")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("webhooks.client_cert_dir: %w", err)
	}
	p := filepath.Clean(name)
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	if !inside(dir, p) {
		return "", errOutsideCertDir
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("webhooks.client_cert_dir: %w", err)
	}
	real, err := resolve(p, 0)
	if err != nil || !inside(realDir, real) {
		return "", errOutsideCertDir
	}
	return real, nil
}

// resolve returns p with its symbolic links resolved as far as they exist:
// a file that does not exist (yet) is resolved through its directory, and
// a dangling link through its target, so that where p leads is known
// whether or not the file is there. links counts the links followed.
func resolve(p string, links int) (string, error) {
	real, err := filepath.EvalSymlinks(p)
	if !errors.Is(err, fs.ErrNotExist) {
		return real, err
	}
	parent := filepath.Dir(p)
	if parent == p {
		return p, nil
	}
	rp, err := resolve(parent, links)
	if err != nil {
		return "", err
	}
	q := filepath.Join(rp, filepath.Base(p))
	target, err := os.Readlink(q)
	switch {
	case err != nil:
		return q, nil // not there, and not a link
	case links == 40:
		return "", errors.New("too many links")
	case !filepath.IsAbs(target):
		target = filepath.Join(rp, target)
	}
	return resolve(target, links+1)
}

// inside reports whether path p lies below directory dir (both clean and
// absolute).
func inside(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && filepath.IsLocal(rel)
}

// cache keeps the size most recently used values by key (golang-lru). It
// is safe for concurrent use.
type cache[V any] = lru.Cache[string, V]

// newCache returns a cache of size values (at least one).
func newCache[V any](size int) *cache[V] {
	c, err := lru.New[string, V](max(size, 1))
	if err != nil {
		panic(err) // only for a size below one
	}
	return c
}
