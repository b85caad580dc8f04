package demo

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// maxCapture bounds what the sinks keep of one message or request.
const maxCapture = 4 << 20

// mailMsg is one message the SMTP sink accepted.
type mailMsg struct {
	From string
	To   []string
	Data []byte // as received: CRLF line endings, dot-stuffing removed
	TLS  bool   // whether the session was encrypted (STARTTLS)
}

// mailSink is a local SMTP server (RFC 5321) on 127.0.0.1 that accepts every
// message and keeps it byte for byte: the partners' mail servers.
type mailSink struct {
	addr string
	srv  *smtp.Server
	done chan struct{}

	mu   sync.Mutex
	msgs []mailMsg
}

// startMailSink listens on a free loopback port and requires STARTTLS
// (RFC 3207) with tlsConf before it accepts a message.
func startMailSink(log *slog.Logger, tlsConf *tls.Config) (*mailSink, error) {
	s := &mailSink{done: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{sink: s, conn: c}, nil
	}))
	srv.TLSConfig = tlsConf
	srv.Domain = "localhost"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = maxCapture
	srv.MaxRecipients = 10
	srv.ErrorLog = slogPrinter{log.With("component", "demo-smtp-sink")}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start smtp sink: %w", err)
	}
	s.addr, s.srv = ln.Addr().String(), srv
	go func() {
		defer close(s.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			log.Error("smtp sink stopped", "error", err)
		}
	}()
	return s, nil
}

// Close stops the server and waits for it.
func (s *mailSink) Close() {
	s.srv.Close()
	<-s.done
}

// messages returns a copy of what was received so far.
func (s *mailSink) messages() []mailMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mailMsg(nil), s.msgs...)
}

type mailSession struct {
	sink *mailSink
	conn *smtp.Conn
	from string
	to   []string
}

func (ss *mailSession) tls() bool {
	_, ok := ss.conn.TLSConnectionState()
	return ok
}

func (ss *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	if !ss.tls() {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	}
	ss.from = from
	return nil
}

func (ss *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}

func (ss *mailSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.sink.mu.Lock()
	ss.sink.msgs = append(ss.sink.msgs, mailMsg{From: ss.from, To: ss.to, Data: data, TLS: ss.tls()})
	ss.sink.mu.Unlock()
	return nil
}

func (ss *mailSession) Reset() { ss.from, ss.to = "", nil }

func (ss *mailSession) Logout() error { return nil }

// slogPrinter adapts slog to go-smtp's error log.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Printf(format string, v ...any) { p.log.Debug(fmt.Sprintf(format, v...)) }
func (p slogPrinter) Println(v ...any)               { p.log.Debug(strings.TrimSpace(fmt.Sprintln(v...))) }

// hook is one request the webhook receiver accepted.
type hook struct {
	Path   string
	Header http.Header
	Body   []byte
	// Raw is the request as HTTP/1.1 text (request line, headers, blank
	// line, body): what `herald verify webhook` reads.
	Raw []byte
	// TLS reports whether the request came over HTTPS.
	TLS bool
}

// hookSink is the partners' webhook endpoints: one HTTPS server on
// 127.0.0.1 (HTTP/1.1, so that captures read as HTTP/1.1 text), one path
// per endpoint, recording every POST and answering 204.
type hookSink struct {
	base string // https://127.0.0.1:port
	srv  *http.Server
	done chan struct{}

	mu   sync.Mutex
	reqs []hook
}

func startHookSink(log *slog.Logger, tlsConf *tls.Config) (*hookSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start webhook receiver: %w", err)
	}
	s := &hookSink{base: "https://" + ln.Addr().String(), done: make(chan struct{})}
	ln = tls.NewListener(ln, tlsConf)
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("webhook receiver stopped", "error", err)
		}
	}()
	return s, nil
}

// URL returns the endpoint URL for path (which starts with "/").
func (s *hookSink) URL(path string) string { return s.base + path }

// Close stops the server, waiting briefly for requests in flight.
func (s *hookSink) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
	<-s.done
}

func (s *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxCapture)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	raw, err := httputil.DumpRequest(r, true)
	if err != nil {
		http.Error(w, "cannot record request", http.StatusInternalServerError)
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, hook{Path: r.URL.Path, Header: r.Header.Clone(), Body: body, Raw: raw, TLS: r.TLS != nil})
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// requests returns a copy of what was received so far.
func (s *hookSink) requests() []hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hook(nil), s.reqs...)
}
