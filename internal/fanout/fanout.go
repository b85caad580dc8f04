// Package fanout is Herald's fan-out role: it consumes the alerts topic,
// quarantines anything invalid or forbidden (PRODUCT.md §3 rule 1), applies
// the dissemination policy to every partner the alert could reach, and
// writes one delivery job per (alert, partner, target) and one receipt per
// decision before the alert's offset is committed.
package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/segmentio/kafka-go"
)

// Producer writes messages synchronously: Write returns once the broker has
// acknowledged them all.
type Producer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// History finds earlier alerts in the ledger, for updates and cancels.
type History interface {
	Lookup(ctx context.Context, ids []string) (map[string]*ledger.Alert, error)
}

// Quarantine reasons, sent in the "reason" header.
const (
	ReasonMalformed  = "malformed"         // not a decodable alert
	ReasonInvalid    = "invalid"           // fails validation
	ReasonForbidden  = "forbidden"         // a marking Herald must not carry
	ReasonUnknownRef = "unknown-reference" // an update or cancel of an alert Herald never fanned out
	ReasonDowngrade  = "downgrade"         // an update or cancel lowers the marking or TLP
	ReasonUnissued   = "unattributed"      // no issued_by: not published through Herald
)

// Rule recorded for a named partner that is not registered.
const RuleUnknownSubscriber = "audience.unknown-subscriber"

// Worker is the fan-out role. Set every field before calling Handle.
type Worker struct {
	Registry   *subscribers.Registry
	Taxonomy   alerts.Taxonomy
	Policy     policy.Options
	Deliveries Producer
	Receipts   Producer
	Quarantine Producer
	History    History
	Now        func() time.Time
	Log        *slog.Logger
	// Observe, if set, is told each alert's outcome (for metrics).
	Observe func(alertID string, jobs, withheld int)
}

// Handle processes a batch from the alerts topic. It returns nil only when
// every job, receipt and quarantine record of the batch has been written, so
// the caller may then commit the offsets. An invalid message never fails the
// batch: it is quarantined and the batch goes on.
func (w *Worker) Handle(ctx context.Context, msgs []kafka.Message) error {
	for _, m := range msgs {
		if err := w.handleOne(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// rejection is an alert refused at ingest, with its quarantine reason.
type rejection struct {
	reason string
	err    error
}

func (r *rejection) Error() string { return r.reason + ": " + r.err.Error() }

func (w *Worker) handleOne(ctx context.Context, m kafka.Message) error {
	log := w.Log.With("partition", m.Partition, "offset", m.Offset)
	a, err := w.ingest(m)
	var plan *Plan
	if err == nil {
		plan, err = w.Plan(ctx, a)
	}
	if rej := (*rejection)(nil); errors.As(err, &rej) {
		log.Warn("alert quarantined", "reason", rej.reason, "error", rej.err)
		return w.quarantine(ctx, m, rej)
	}
	if err != nil {
		return err
	}
	if err := w.Deliveries.Write(ctx, plan.Jobs...); err != nil {
		return fmt.Errorf("write delivery jobs of alert %s: %w", a.ID, err)
	}
	if err := w.Receipts.Write(ctx, plan.Receipts...); err != nil {
		return fmt.Errorf("write receipts of alert %s: %w", a.ID, err)
	}
	log.Info("alert fanned out", "alert", a.ID, "jobs", len(plan.Jobs), "decisions", len(plan.Decisions))
	if w.Observe != nil {
		w.Observe(a.ID, len(plan.Jobs), len(plan.Decisions)-len(plan.Jobs))
	}
	return nil
}

// quarantine copies m to the quarantine topic with the reason in headers.
func (w *Worker) quarantine(ctx context.Context, m kafka.Message, rej *rejection) error {
	headers := append(append([]kafka.Header{}, m.Headers...),
		kafka.Header{Key: "reason", Value: []byte(rej.reason)},
		kafka.Header{Key: "error", Value: []byte(rej.err.Error())},
		kafka.Header{Key: "source", Value: []byte(m.Topic + "/" + strconv.Itoa(m.Partition) + "/" + strconv.FormatInt(m.Offset, 10))},
	)
	if err := w.Quarantine.Write(ctx, kafka.Message{Key: m.Key, Value: m.Value, Headers: headers}); err != nil {
		return fmt.Errorf("quarantine message at offset %d: %w", m.Offset, err)
	}
	return nil
}

// ingest decodes and checks one message from the alerts topic. It returns
// a *rejection for anything that must be quarantined, and another error
// only when the check itself could not be made (the batch is retried).
func (w *Worker) ingest(m kafka.Message) (*alerts.Alert, error) {
	a, err := alerts.Decode(m.Value)
	if err != nil {
		return nil, &rejection{ReasonMalformed, err}
	}
	a.Normalize()
	if a.Marking != "" && !a.Marking.Valid() {
		return nil, &rejection{ReasonForbidden, fmt.Errorf("marking %q is not carried by Herald", a.Marking)}
	}
	// Validity is judged as of publication: an alert that expired while it
	// waited is not invalid, and the policy withholds it as expired.
	at := m.Time
	if a.IssuedAt != nil {
		at = *a.IssuedAt
	}
	if err := a.Validate(at, w.Taxonomy); err != nil {
		return nil, &rejection{ReasonInvalid, err}
	}
	if a.ID == "" || string(m.Key) != a.ID {
		return nil, &rejection{ReasonInvalid, fmt.Errorf("message key %q does not match alert id %q", m.Key, a.ID)}
	}
	if a.IssuedBy == "" || a.IssuedAt == nil {
		return nil, &rejection{ReasonUnissued, errors.New("issued_by and issued_at are set by Herald when an analyst publishes; this alert did not come through Herald")}
	}
	return a, nil
}

// Plan is what the fan-out writes for one alert.
type Plan struct {
	Decisions []policy.Decision
	Jobs      []kafka.Message
	Receipts  []kafka.Message
}

// Plan decides, for every partner the alert could reach, what each target
// gets, and builds the jobs and receipts to write. Updates and cancels also
// reach every target that received the alerts they reference (rule 7).
func (w *Worker) Plan(ctx context.Context, a *alerts.Alert) (*Plan, error) {
	now := w.Now()
	cands, missing := w.Registry.Candidates(a)
	var prior map[string]*ledger.Alert
	if len(a.References) > 0 {
		var err error
		prior, err = w.History.Lookup(ctx, a.References)
		if err != nil {
			return nil, fmt.Errorf("look up alerts referenced by %s: %w", a.ID, err)
		}
		if errs := ledger.CheckReferences(a, prior); len(errs) > 0 {
			reason := ReasonDowngrade
			for _, fe := range errs {
				if strings.HasPrefix(fe.Field, "references") {
					reason = ReasonUnknownRef
				}
			}
			return nil, &rejection{reason, &alerts.ValidationError{What: "invalid " + string(a.Type), Fields: errs}}
		}
		cands = addPriorRecipients(w.Registry, cands, prior)
	}
	received := ledger.ReceivedAny(prior)
	plan := &Plan{}
	for _, s := range cands {
		ds := policy.Evaluate(a, s, now, w.Policy)
		if len(prior) > 0 {
			ds = policy.FollowUp(ds, received)
		}
		plan.Decisions = append(plan.Decisions, ds...)
	}
	for _, id := range missing {
		plan.Decisions = append(plan.Decisions, policy.Decision{
			Subscriber: id, Decision: delivery.Withhold, Rule: RuleUnknownSubscriber,
			Reason: "named in audience.subscribers but not registered",
		})
	}
	alertReceipt := delivery.Receipt{Kind: delivery.KindAlert, AlertID: a.ID, At: now, Type: a.Type, TLP: a.TLP,
		Marking: a.Marking, References: a.References, IssuedBy: a.IssuedBy}
	plan.Receipts = append(plan.Receipts, ReceiptMessage(alertReceipt))
	// Every job carries the same alert: encode it once, not once per job.
	alertJSON, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode alert %s: %w", a.ID, err)
	}
	for _, d := range plan.Decisions {
		r := delivery.Receipt{Kind: delivery.KindDecision, AlertID: a.ID, Subscriber: d.Subscriber, Channel: d.Channel,
			Target: d.Target, Decision: d.Decision, Mode: d.Mode, Rule: d.Rule, Reason: d.Reason, At: now}
		if d.Decision != delivery.Withhold {
			r.DeliveryID = delivery.ID(a.ID, d.Subscriber, d.Target)
			job := delivery.Job{ID: r.DeliveryID, AlertJSON: alertJSON, Subscriber: d.Subscriber, Channel: d.Channel,
				Target: d.Target, Mode: d.Mode}
			if a.NotBefore != nil && a.NotBefore.After(now) {
				job.NotBefore = *a.NotBefore
			}
			v, err := job.Encode()
			if err != nil {
				return nil, fmt.Errorf("encode job: %w", err)
			}
			plan.Jobs = append(plan.Jobs, kafka.Message{Key: []byte(d.Subscriber), Value: v})
		}
		plan.Receipts = append(plan.Receipts, ReceiptMessage(r))
	}
	return plan, nil
}

// addPriorRecipients adds to cands every registered partner that received
// one of the prior alerts and is not already a candidate.
func addPriorRecipients(reg *subscribers.Registry, cands []*subscribers.Subscriber, prior map[string]*ledger.Alert) []*subscribers.Subscriber {
	have := make(map[string]bool, len(cands))
	for _, s := range cands {
		have[s.ID] = true
	}
	for _, p := range prior {
		for _, e := range p.Entries() {
			if have[e.Subscriber] || e.Decision != delivery.Deliver {
				continue
			}
			if s := reg.Get(e.Subscriber); s != nil {
				have[s.ID] = true
				cands = append(cands, s)
			}
		}
	}
	return cands
}

// ReceiptMessage encodes a receipt for the receipts topic, keyed by alert id.
func ReceiptMessage(r delivery.Receipt) kafka.Message {
	v, _ := json.Marshal(r) // a Receipt always encodes
	return kafka.Message{Key: []byte(r.AlertID), Value: v}
}
