// Package smtptest runs the SMTP sink (internal/sink) for tests: on
// 127.0.0.1:0, with a throwaway CA's certificate when STARTTLS or implicit
// TLS is asked for, its errors in the test log, stopped when the test
// ends.
package smtptest

import (
	"crypto/x509"
	"testing"

	"github.com/herald-alerts/herald/internal/sink"
)

// Options configure a Server (see sink.SMTPOptions). StartTLS or
// ImplicitTLS without TLS use a throwaway CA's certificate for 127.0.0.1
// and localhost.
type Options = sink.SMTPOptions

// Message is one message the sink received.
type Message = sink.Message

// Server is a running SMTP sink.
type Server struct {
	*sink.SMTP
	// RootCAs trusts the server's certificate; CertPEM is its CA in PEM,
	// for a process configured with smtp.ca_file.
	RootCAs *x509.CertPool
	CertPEM []byte
}

// New starts a server and stops it when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{}
	if (opts.StartTLS || opts.ImplicitTLS) && opts.TLS == nil {
		ca, err := sink.NewCA("smtptest CA")
		if err != nil {
			t.Fatalf("smtptest: %v", err)
		}
		opts.TLS, s.RootCAs, s.CertPEM = ca.ServerTLS(), ca.Pool(), ca.PEM()
	}
	if opts.ErrorLog == nil {
		opts.ErrorLog = testLogger{t}
	}
	srv, err := sink.StartSMTP(opts)
	if err != nil {
		t.Fatalf("smtptest: %v", err)
	}
	t.Cleanup(srv.Close)
	s.SMTP = srv
	return s
}

// testLogger sends the server's error log to the test log.
type testLogger struct{ t testing.TB }

func (l testLogger) Printf(format string, v ...any) { l.t.Logf("smtptest: "+format, v...) }
func (l testLogger) Println(v ...any)               { l.t.Log(append([]any{"smtptest:"}, v...)...) }
