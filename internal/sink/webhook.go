package sink

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxBody bounds what a receiver reads of a request body.
const maxBody = 16 << 20

// Request is one request a Receiver got.
type Request struct {
	Method     string
	Path       string // the request URI: path and query
	Proto      string
	Header     http.Header
	Body       []byte
	RemoteAddr string
	// TLS reports whether the request came over HTTPS; ClientCN is the
	// common name of the client certificate, if any.
	TLS      bool
	ClientCN string
	// Raw is the request as HTTP/1.1 text (request line, headers, blank
	// line, body), what `herald verify webhook` reads; kept with
	// ReceiverOptions.Raw.
	Raw []byte
	At  time.Time
}

// Step answers one request. Steps are taken in order; the last one
// answers every request after it. release is closed when the receiver
// closes.
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
			if _, err := w.Write([]byte{'.'}); err != nil || rc.Flush() != nil {
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

// Endless answers code with a body that never ends, until the client
// stops reading or the receiver closes.
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

// ReceiverOptions configure a Receiver. The zero value serves plain
// HTTP/1.1 and keeps every request.
type ReceiverOptions struct {
	// TLS, when set, serves https with it (client authentication
	// included); nil serves plain http.
	TLS *tls.Config
	// HTTP2 offers HTTP/2 over TLS beside HTTP/1.1.
	HTTP2 bool
	// Raw keeps each request as HTTP/1.1 text in Request.Raw.
	Raw bool
	// Discard counts requests without keeping them, and leaves the body
	// to the step to read.
	Discard bool
	// ErrorLog receives the server's errors; nil discards them (some
	// tests provoke handshake failures on purpose).
	ErrorLog *log.Logger
}

// Receiver is a recording webhook endpoint on 127.0.0.1 that answers 204
// until Script says otherwise.
type Receiver struct {
	base string // scheme://127.0.0.1:port
	port int
	opts ReceiverOptions
	srv  *http.Server
	done chan struct{}
	busy sync.WaitGroup // handlers running

	mu      sync.Mutex
	closed  bool
	reqs    []Request
	count   int
	steps   []Step
	next    int
	release chan struct{} // closed by Close
	conns   atomic.Int64
	active  atomic.Int64
}

// StartReceiver starts a receiver on 127.0.0.1:0.
func StartReceiver(opts ReceiverOptions) (*Receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	rc := &Receiver{opts: opts, done: make(chan struct{}), release: make(chan struct{}), steps: []Step{Status(http.StatusNoContent)}}
	rc.port = ln.Addr().(*net.TCPAddr).Port
	rc.base = "http://" + ln.Addr().String()
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(opts.TLS != nil && opts.HTTP2)
	rc.srv = &http.Server{
		Handler:           http.HandlerFunc(rc.serve),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          opts.ErrorLog,
		Protocols:         protocols,
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				rc.conns.Add(1)
				rc.active.Add(1)
			case http.StateClosed, http.StateHijacked:
				rc.active.Add(-1)
			}
		},
	}
	if rc.srv.ErrorLog == nil {
		rc.srv.ErrorLog = log.New(io.Discard, "", 0)
	}
	serve := func() error { return rc.srv.Serve(ln) }
	if opts.TLS != nil {
		rc.base = "https://" + ln.Addr().String()
		rc.srv.TLSConfig = opts.TLS.Clone()
		serve = func() error { return rc.srv.ServeTLS(ln, "", "") }
	}
	go func() {
		defer close(rc.done)
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			rc.srv.ErrorLog.Printf("webhook receiver: serve: %v", err)
		}
	}()
	return rc, nil
}

// Close releases hanging handlers, stops the server and waits for the
// handlers to return. It is idempotent.
func (rc *Receiver) Close() {
	rc.mu.Lock()
	if !rc.closed {
		rc.closed = true
		close(rc.release)
	}
	rc.mu.Unlock()
	rc.srv.Close()
	<-rc.done
	rc.busy.Wait()
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
	rc.mu.Lock()
	if rc.closed {
		rc.mu.Unlock()
		return
	}
	rc.busy.Add(1) // under mu, before Close's Wait
	rc.mu.Unlock()
	defer rc.busy.Done()
	var req *Request
	if !rc.opts.Discard || rc.opts.Raw {
		body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
		r.Body = io.NopCloser(bytes.NewReader(body))
		req = &Request{Method: r.Method, Path: r.URL.RequestURI(), Proto: r.Proto, Header: r.Header.Clone(),
			Body: body, RemoteAddr: r.RemoteAddr, TLS: r.TLS != nil, At: time.Now()}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			req.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		if rc.opts.Raw {
			req.Raw, _ = httputil.DumpRequest(r, true) // restores r.Body
		}
	}
	rc.mu.Lock()
	rc.count++
	if req != nil && !rc.opts.Discard {
		rc.reqs = append(rc.reqs, *req)
	}
	step := rc.steps[min(rc.next, len(rc.steps)-1)]
	rc.next++
	rc.mu.Unlock()
	step(w, r, rc.release)
}

// Requests returns a copy of the requests kept so far.
func (rc *Receiver) Requests() []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Request(nil), rc.reqs...)
}

// Count returns how many requests were received (also with Discard).
func (rc *Receiver) Count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.count
}

// Conns returns how many connections were accepted.
func (rc *Receiver) Conns() int64 { return rc.conns.Load() }

// ActiveConns returns how many connections are open now.
func (rc *Receiver) ActiveConns() int64 { return rc.active.Load() }

// URL returns the receiver's base URL, scheme://127.0.0.1:port, joined
// with path.
func (rc *Receiver) URL(path string) string { return rc.base + path }

// Port returns the receiver's port.
func (rc *Receiver) Port() int { return rc.port }

// URLFor returns scheme://host:port/path for the receiver's port, for a
// name that resolves to 127.0.0.1.
func (rc *Receiver) URLFor(host, path string) string {
	scheme := "http"
	if rc.opts.TLS != nil {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(rc.port)), path)
}
