package delivery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"strings"

	"github.com/emersion/go-smtp"
)

// ClassifyNetwork classifies an error from talking to a partner's server or
// to the mail relay; ctx is the attempt's context. Every class is
// temporary:
//
//   - the caller cancelled (shutdown, or the worker gave up on the job):
//     ReasonUnknown, not the endpoint's fault;
//   - a deadline (the attempt's, or a socket's) or a network timeout:
//     ReasonTimeout;
//   - TLS: an untrusted, expired or mismatched certificate, a malformed
//     record, an alert from either side (a client certificate the server
//     rejects), a relay that offers no STARTTLS: ReasonTLS. These are nearly
//     always a configuration slip that the other side fixes within hours;
//     nothing was sent before the handshake completed and verification is
//     never relaxed, so retrying within the retry window costs nothing, and
//     exhausted retries still end in the dead-letter topic with reason tls;
//   - anything else (refused, reset, DNS): ReasonConnect.
func ClassifyNetwork(ctx context.Context, err error) *Failure {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return Temporary(ReasonUnknown, err)
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), isTimeout(err):
		return Temporary(ReasonTimeout, err)
	case isTLS(err):
		return Temporary(ReasonTLS, err)
	}
	return Temporary(ReasonConnect, err)
}

// ClassifySMTP classifies an SMTP server's reply (RFC 5321 §4.2.1), or
// returns nil when err carries none. go-smtp's SMTPError.Temporary decides:
// a 4xx reply is temporary (ReasonSMTP4xx), a 5xx reply permanent
// (ReasonSMTP5xx). Any other code is a reply out of sequence, the relay's
// fault rather than a verdict on the message: temporary, ReasonUnknown.
func ClassifySMTP(err error) *Failure {
	var reply *smtp.SMTPError
	switch {
	case !errors.As(err, &reply):
		return nil
	case reply.Temporary():
		return Temporary(ReasonSMTP4xx, err)
	case reply.Code/100 == 5:
		return Permanent(ReasonSMTP5xx, err)
	}
	return Temporary(ReasonUnknown, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isTLS reports whether err comes from TLS: certificate verification, a
// malformed record, an alert from either side, or STARTTLS.
func isTLS(err error) bool {
	var (
		verr    *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		record  tls.RecordHeaderError
		alert   tls.AlertError
		op      *net.OpError
	)
	switch {
	case errors.As(err, &verr), errors.As(err, &unknown), errors.As(err, &host),
		errors.As(err, &invalid), errors.As(err, &record), errors.As(err, &alert):
		return true
	case errors.As(err, &op) && op.Op == "remote error":
		return true // an alert sent by the server, e.g. certificate required
	}
	msg := err.Error()
	return strings.Contains(msg, "tls:") || strings.Contains(msg, "STARTTLS")
}
