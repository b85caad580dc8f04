// Package smtptest runs an in-process SMTP server (github.com/emersion/go-smtp)
// on 127.0.0.1:0 for tests: it records every message it accepts, byte for
// byte, and can require STARTTLS or implicit TLS with a self-signed
// certificate, require AUTH PLAIN (RFC 4954), and answer chosen recipients
// with temporary (4xx) or permanent (5xx) replies (RFC 5321 §4.2).
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configure a Server. The zero value is a plain server without
// TLS or AUTH that accepts everything.
type Options struct {
	// StartTLS offers STARTTLS with a self-signed certificate for
	// 127.0.0.1 and localhost, and refuses MAIL before it.
	StartTLS bool
	// ImplicitTLS makes the listener speak TLS from the first byte
	// (port 465 style, RFC 8314).
	ImplicitTLS bool
	// Username and Password, when set, require AUTH PLAIN with them
	// before MAIL.
	Username, Password string
	// Rcpt, when set, is consulted for every RCPT TO; a non-nil
	// *smtp.SMTPError is the reply (4xx temporary, 5xx permanent).
	Rcpt func(to string) *smtp.SMTPError
	// Data, when set, is consulted after a message is received; a
	// non-nil error is the reply to the final dot and the message is not
	// recorded.
	Data func(to []string, data []byte) *smtp.SMTPError
	// Discard counts messages without keeping them (for benchmarks).
	Discard bool
}

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte // exactly as received, CRLF line endings, dot-stuffing removed
	TLS  bool   // whether the session was encrypted
	Auth string // the authenticated user, if any
}

// Server is a running SMTP sink.
type Server struct {
	// Addr is the listening address, "127.0.0.1:port".
	Addr string
	// Host and Port split Addr.
	Host string
	Port int
	// RootCAs trusts the server's self-signed certificate.
	RootCAs *x509.CertPool
	// CertPEM is that certificate in PEM, for a process configured with
	// smtp.ca_file.
	CertPEM []byte

	opts     Options
	srv      *smtp.Server
	mu       sync.Mutex
	messages []Message
	count    atomic.Int64
	conns    atomic.Int64
}

// New starts a server and stops it when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{opts: opts}
	be := smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		s.conns.Add(1)
		return &session{s: s, conn: c}, nil
	})
	srv := smtp.NewServer(be)
	srv.Domain = "localhost"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 16 << 20
	srv.MaxRecipients = 100
	srv.AllowInsecureAuth = !opts.StartTLS && !opts.ImplicitTLS
	srv.ErrorLog = testLogger{t}
	var tlsConf *tls.Config
	if opts.StartTLS || opts.ImplicitTLS {
		cert, pool, err := selfSigned()
		if err != nil {
			t.Fatalf("smtptest: certificate: %v", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		s.RootCAs = pool
		s.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	}
	if opts.StartTLS {
		srv.TLSConfig = tlsConf
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	if opts.ImplicitTLS {
		l = tls.NewListener(l, tlsConf)
	}
	s.srv = srv
	addr := l.Addr().(*net.TCPAddr)
	s.Addr, s.Host, s.Port = addr.String(), addr.IP.String(), addr.Port
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			t.Errorf("smtptest: serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		// Close the listener ourselves too: a Close that comes before
		// Serve has registered it would leave Serve blocked in Accept.
		l.Close()
		<-done
	})
	return s
}

// Messages returns a copy of the messages received so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Count returns how many messages were accepted (also with Discard).
func (s *Server) Count() int { return int(s.count.Load()) }

// Connections returns how many SMTP sessions were opened.
func (s *Server) Connections() int { return int(s.conns.Load()) }

type session struct {
	s    *Server
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

// selfSigned makes an ECDSA P-256 certificate for 127.0.0.1 and localhost.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

// testLogger sends the server's error log to the test log.
type testLogger struct{ t testing.TB }

func (l testLogger) Printf(format string, v ...any) { l.t.Logf("smtptest: "+format, v...) }
func (l testLogger) Println(v ...any)               { l.t.Log(append([]any{"smtptest:"}, v...)...) }
