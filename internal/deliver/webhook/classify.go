package webhook

import (
	"context"
	"errors"

	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/valyala/fasthttp"
)

// classifyError classifies an error of an attempt (connect, TLS, request,
// response); ctx is the attempt's context. The SSRF guard's refusal is
// permanent. fasthttp's own errors are temporary: its timeouts (which
// carry no net.Error) are ReasonTimeout, a connection the server closed
// before answering or no free connection is ReasonConnect. Everything
// else, and every error of an attempt whose context has ended, is
// classified by internal/delivery.
func classifyError(ctx context.Context, err error) *delivery.Failure {
	var refused *RefusedError
	switch {
	case errors.As(err, &refused):
		return delivery.Permanent(delivery.ReasonRefused, err)
	case ctx.Err() != nil:
		// A cancelled attempt ends with a timeout of its connection.
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout):
		return delivery.Temporary(delivery.ReasonTimeout, err)
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, fasthttp.ErrNoFreeConns):
		return delivery.Temporary(delivery.ReasonConnect, err)
	}
	return delivery.ClassifyNetwork(ctx, err)
}
