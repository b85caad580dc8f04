package webhook

import (
	"context"
	"errors"

	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/valyala/fasthttp"
)

// classifyError classifies an error of an attempt (connect, TLS, request,
// response); ctx is the attempt's context. The SSRF guard's refusal is
// permanent. fasthttp's own errors are temporary: its timeout (which
// carries no net.Error) is ReasonTimeout, a connection the server closed
// before answering is ReasonConnect; it neither dials nor shakes hands
// (host.connect does, with net and crypto/tls). Everything else, and every
// error of an attempt whose context has ended, is classified by
// internal/delivery.
func classifyError(ctx context.Context, err error) *delivery.Failure {
	var refused *RefusedError
	switch {
	case errors.As(err, &refused):
		return delivery.Permanent(delivery.ReasonRefused, err)
	case ctx.Err() != nil:
		// A cancelled attempt ends with a timeout of its connection.
	case errors.Is(err, fasthttp.ErrTimeout):
		return delivery.Temporary(delivery.ReasonTimeout, err)
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		return delivery.Temporary(delivery.ReasonConnect, err)
	}
	return delivery.ClassifyNetwork(ctx, err)
}
