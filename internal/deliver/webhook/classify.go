package webhook

import (
	"context"
	"errors"

	"github.com/herald-alerts/herald/internal/delivery"
)

// classifyError classifies an error from http.Client.Do; attempt is the
// attempt's context (with its timeout). The SSRF guard's refusal is
// permanent; everything else is classified by internal/delivery.
func classifyError(attempt context.Context, err error) *delivery.Failure {
	var refused *RefusedError
	if errors.As(err, &refused) {
		return delivery.Permanent(delivery.ReasonRefused, err)
	}
	return delivery.ClassifyNetwork(attempt, err)
}
