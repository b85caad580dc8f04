// Package audit writes Herald's audit trail (PRODUCT.md §10): every
// publish, approval, rejection, subscriber change, dead-letter replay, token
// refusal and partner action, with who, when and what, to the audit topic.
// Entries never hold a token, a secret or a key.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/internal/record"
)

// Producer writes to the audit topic; *bus.Producer satisfies it.
type Producer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// Log writes audit entries. A nil *Log writes nothing (for tools that run
// without a bus).
type Log struct {
	P   Producer
	Now func() time.Time
}

// Record writes one entry, keyed by its object. At is set from the clock
// when zero, Outcome to ok when empty.
func (l *Log) Record(ctx context.Context, e record.Audit) error {
	if l == nil || l.P == nil {
		return nil
	}
	if e.At.IsZero() {
		now := time.Now
		if l.Now != nil {
			now = l.Now
		}
		e.At = now().UTC()
	}
	if e.Outcome == "" {
		e.Outcome = record.OutcomeOK
	}
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit %s %s: %w", e.Action, e.Object, err)
	}
	if err := l.P.Write(ctx, kafka.Message{Key: []byte(e.Object), Value: v}); err != nil {
		return fmt.Errorf("audit %s %s: %w", e.Action, e.Object, err)
	}
	return nil
}
