package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"

	"github.com/herald-alerts/herald/internal/delivery"
)

// classifyError classifies an error from http.Client.Do. parent is the
// caller's context, attempt the attempt's (with its timeout).
//
// TLS failures (an untrusted, expired or mismatched certificate, a
// handshake the server aborts, a client certificate it rejects) are
// temporary: they are nearly always a partner's configuration slip that
// the partner fixes within hours, nothing was sent before the handshake
// completed, and verification is never relaxed, so retrying within the
// retry window costs nothing and saves a manual replay. Exhausted retries
// still end in the dead-letter topic with reason tls.
func classifyError(parent, attempt context.Context, err error) *delivery.Failure {
	var refused *RefusedError
	switch {
	case errors.As(err, &refused):
		return delivery.Permanent(delivery.ReasonRefused, nil)
	case parent.Err() != nil:
		// The worker is shutting down or gave up on the job: not the
		// endpoint's fault; try again later.
		return delivery.Temporary(delivery.ReasonUnknown, nil)
	case errors.Is(context.Cause(attempt), errAttemptTimeout), errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return delivery.Temporary(delivery.ReasonTimeout, nil)
	case isTLS(err):
		return delivery.Temporary(delivery.ReasonTLS, nil)
	}
	return delivery.Temporary(delivery.ReasonConnect, nil)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isTLS reports whether err comes from TLS: certificate verification, a
// malformed record, or an alert from either side.
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
	return strings.Contains(err.Error(), "tls: ")
}
