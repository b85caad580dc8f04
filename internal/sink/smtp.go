// Package sink runs the partners' side of Herald's channels in process, on
// 127.0.0.1:0: an SMTP server (RFC 5321, github.com/emersion/go-smtp) that
// keeps or counts every message, with STARTTLS (RFC 3207) or implicit TLS
// (RFC 8314) and AUTH PLAIN (RFC 4954); webhook receivers that record
// requests and answer from a script, over HTTPS with HTTP/2 (RFC 9113) and
// optional client certificates; and a throwaway certificate authority for
// both. `herald demo`, `herald bench` and the test kit
// (internal/testkit/smtptest, webhooktest) use them.
package sink

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// SMTPOptions configure an SMTP sink. The zero value is a plain server
// without TLS or AUTH that accepts and keeps everything.
type SMTPOptions struct {
	// TLS is the server's TLS configuration, for StartTLS or ImplicitTLS
	// (CA.ServerTLS, say).
	TLS *tls.Config
	// StartTLS offers STARTTLS and refuses MAIL before it.
	StartTLS bool
	// ImplicitTLS makes the listener speak TLS from the first byte
	// (port 465 style).
	ImplicitTLS bool
	// Username and Password, when set, require AUTH PLAIN with them
	// before MAIL.
	Username, Password string
	// Rcpt, when set, is consulted for every RCPT TO; a non-nil
	// *smtp.SMTPError is the reply (4xx temporary, 5xx permanent).
	Rcpt func(to string) *smtp.SMTPError
	// Data, when set, is consulted after a message is received; a non-nil
	// error is the reply to the final dot and the message is not counted.
	Data func(to []string, data []byte) *smtp.SMTPError
	// Discard counts messages without keeping them.
	Discard bool
	// ErrorLog receives the server's errors (a *log.Logger will do); nil
	// discards them.
	ErrorLog smtp.Logger
}

// Message is one message the SMTP sink accepted.
type Message struct {
	From string
	To   []string
	Data []byte // exactly as received, CRLF line endings, dot-stuffing removed
	TLS  bool   // whether the session was encrypted
	Auth string // the authenticated user, if any
}

// SMTP is a running SMTP sink.
type SMTP struct {
	// Addr is the listening address, "127.0.0.1:port"; Host and Port split it.
	Addr string
	Host string
	Port int

	opts     SMTPOptions
	srv      *smtp.Server
	ln       net.Listener
	done     chan struct{}
	mu       sync.Mutex
	messages []Message
	count    atomic.Int64
	conns    atomic.Int64
}

// StartSMTP starts an SMTP sink on 127.0.0.1:0.
func StartSMTP(opts SMTPOptions) (*SMTP, error) {
	if (opts.StartTLS || opts.ImplicitTLS) && opts.TLS == nil {
		return nil, errors.New("smtp sink: STARTTLS and implicit TLS need a TLS configuration")
	}
	s := &SMTP{opts: opts, done: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.conns.Add(1)
		return &session{s: s, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 16 << 20
	srv.MaxRecipients = 100
	srv.AllowInsecureAuth = !opts.StartTLS && !opts.ImplicitTLS
	srv.ErrorLog = opts.ErrorLog
	if srv.ErrorLog == nil {
		srv.ErrorLog = log.New(io.Discard, "", 0)
	}
	if opts.StartTLS {
		srv.TLSConfig = opts.TLS
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("smtp sink: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	s.Addr, s.Host, s.Port = addr.String(), addr.IP.String(), addr.Port
	if opts.ImplicitTLS {
		ln = tls.NewListener(ln, opts.TLS)
	}
	s.srv, s.ln = srv, ln
	go func() {
		defer close(s.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			srv.ErrorLog.Printf("smtp sink: serve: %v", err)
		}
	}()
	return s, nil
}

// Close stops the server and waits for it.
func (s *SMTP) Close() {
	s.srv.Close()
	// Close the listener too: a Close that comes before Serve has
	// registered it would leave Serve blocked in Accept.
	s.ln.Close()
	<-s.done
}

// Messages returns a copy of the messages kept so far.
func (s *SMTP) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Count returns how many messages were accepted (also with Discard).
func (s *SMTP) Count() int { return int(s.count.Load()) }

// Connections returns how many SMTP sessions were opened.
func (s *SMTP) Connections() int { return int(s.conns.Load()) }

type session struct {
	s    *SMTP
	conn *smtp.Conn
	user string
	from string
	to   []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || ss.s.opts.Username == "" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != ss.s.opts.Username || password != ss.s.opts.Password {
			return smtp.ErrAuthFailed
		}
		ss.user = username
		return nil
	}), nil
}

func (ss *session) tls() bool {
	_, ok := ss.conn.TLSConnectionState()
	return ok
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.opts.StartTLS && !ss.tls() {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Must issue a STARTTLS command first"}
	}
	if ss.s.opts.Username != "" && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if f := ss.s.opts.Rcpt; f != nil {
		if e := f(to); e != nil {
			return e
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, r); err != nil {
		return err
	}
	if f := ss.s.opts.Data; f != nil {
		if e := f(ss.to, buf.Bytes()); e != nil {
			return e
		}
	}
	ss.s.count.Add(1)
	if !ss.s.opts.Discard {
		m := Message{From: ss.from, To: append([]string(nil), ss.to...), Data: buf.Bytes(), TLS: ss.tls(), Auth: ss.user}
		ss.s.mu.Lock()
		ss.s.messages = append(ss.s.messages, m)
		ss.s.mu.Unlock()
	}
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }
