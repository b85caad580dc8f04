package delivery_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/stretchr/testify/require"
)

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassifyNetwork(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeoutCause(context.Background(), -time.Second, errors.New("attempt timed out"))
	defer cancel2()

	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	tests := []struct {
		name   string
		ctx    context.Context
		err    error
		reason string
	}{
		{"caller cancelled", cancelled, errors.New("context canceled"), delivery.ReasonUnknown},
		{"caller cancelled beats timeout", cancelled, context.DeadlineExceeded, delivery.ReasonUnknown},
		{"attempt deadline", expired, errors.New("read: connection reset"), delivery.ReasonTimeout},
		{"context deadline in the chain", live, fmt.Errorf("send: %w", context.DeadlineExceeded), delivery.ReasonTimeout},
		{"socket deadline", live, fmt.Errorf("read: %w", os.ErrDeadlineExceeded), delivery.ReasonTimeout},
		{"net timeout", live, &net.OpError{Op: "read", Err: timeoutErr{}}, delivery.ReasonTimeout},
		{"certificate verification", live, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, delivery.ReasonTLS},
		{"unknown authority", live, fmt.Errorf("x: %w", x509.UnknownAuthorityError{}), delivery.ReasonTLS},
		{"host name mismatch", live, x509.HostnameError{Host: "partner.test", Certificate: &x509.Certificate{}}, delivery.ReasonTLS},
		{"expired certificate", live, x509.CertificateInvalidError{Reason: x509.Expired, Cert: &x509.Certificate{}}, delivery.ReasonTLS},
		{"not TLS on the other side", live, tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, delivery.ReasonTLS},
		{"alert", live, tls.AlertError(116), delivery.ReasonTLS},
		{"alert from the server", live, &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}, delivery.ReasonTLS},
		{"tls in the message", live, errors.New("tls: handshake failure"), delivery.ReasonTLS},
		{"no STARTTLS", live, errors.New("smtp: server doesn't support STARTTLS"), delivery.ReasonTLS},
		{"refused", live, refused, delivery.ReasonConnect},
		{"DNS", live, &net.DNSError{Err: "no such host", Name: "partner.test", IsNotFound: true}, delivery.ReasonConnect},
		{"reset", live, errors.New("read: connection reset by peer"), delivery.ReasonConnect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := delivery.ClassifyNetwork(tt.ctx, tt.err)
			require.Equal(t, tt.reason, f.Reason, "%v", tt.err)
			require.True(t, f.Temporary)
			require.ErrorIs(t, f, tt.err, "the failure wraps the error")
		})
	}
}

// TestClassifyNetworkReal classifies what real dials and handshakes return.
func TestClassifyNetworkReal(t *testing.T) {
	ctx := context.Background()
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close()) // nobody listens there now: the point of the test
		_, err = net.Dial("tcp", addr)
		require.Error(t, err)
		require.Equal(t, delivery.ReasonConnect, delivery.ClassifyNetwork(ctx, err).Reason)
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.NotFoundHandler())
		defer srv.Close()
		_, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{ServerName: "127.0.0.1"})
		require.Error(t, err)
		require.Equal(t, delivery.ReasonTLS, delivery.ClassifyNetwork(ctx, err).Reason)
	})
	t.Run("not TLS", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		defer srv.Close()
		_, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{ServerName: "127.0.0.1"})
		require.Error(t, err)
		require.Equal(t, delivery.ReasonTLS, delivery.ClassifyNetwork(ctx, err).Reason)
	})
}

func TestClassifySMTP(t *testing.T) {
	reply := func(code int, enhanced smtp.EnhancedCode, msg string) error {
		return fmt.Errorf("rcpt: %w", &smtp.SMTPError{Code: code, EnhancedCode: enhanced, Message: msg})
	}
	tests := []struct {
		name      string
		err       error
		reason    string
		temporary bool
	}{
		{"421 service not available", reply(421, smtp.EnhancedCode{4, 3, 2}, "Shutting down"), delivery.ReasonSMTP4xx, true},
		{"450 mailbox busy", reply(450, smtp.EnhancedCode{4, 2, 1}, "Busy"), delivery.ReasonSMTP4xx, true},
		{"452 mailbox full", reply(452, smtp.EnhancedCode{4, 2, 2}, "Mailbox full"), delivery.ReasonSMTP4xx, true},
		{"550 no such user", reply(550, smtp.EnhancedCode{5, 1, 1}, "No such user"), delivery.ReasonSMTP5xx, false},
		{"554 rejected", reply(554, smtp.EnhancedCode{5, 7, 1}, "Rejected"), delivery.ReasonSMTP5xx, false},
		{"530 STARTTLS first is a reply, not a TLS failure", reply(530, smtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first"),
			delivery.ReasonSMTP5xx, false},
		{"reply out of sequence", reply(250, smtp.EnhancedCode{2, 0, 0}, "OK"), delivery.ReasonUnknown, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := delivery.ClassifySMTP(tt.err)
			require.NotNil(t, f)
			require.Equal(t, tt.reason, f.Reason)
			require.Equal(t, tt.temporary, f.Temporary)
			require.ErrorIs(t, f, tt.err)
		})
	}
	require.Nil(t, delivery.ClassifySMTP(errors.New("connection reset")), "no reply, no SMTP class")
}
