// Package publish is how an analyst's alert enters Herald, from the CLI and
// the API alike: one stamp, one set of checks, one write (PRODUCT.md §1, §3
// rule 1, §10). An alert is stamped with who issued it and when, validated
// against the taxonomy and the registry (a named partner must exist),
// checked against what it references (rule 7) and against what was already
// published under its id (an id names one alert forever), then written to
// the alerts topic — or, when its TLP or marking needs a second analyst, to
// the pending release log until another analyst approves it.
package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/audit"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/record"
)

// Producer writes messages synchronously; *bus.Producer satisfies it.
type Producer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// Existing is what Herald already holds under an alert id.
type Existing struct {
	// Published is the digest of the alert the id names once published:
	// the one its binding on the alert-ids topic names (Bind), else the
	// first alert published under the id; "" when none.
	Published string
	// IssuedBy and ApprovedBy are the first published alert's: who issued
	// it, and who approved it as the second analyst ("" when none).
	IssuedBy, ApprovedBy string
	// Partition and Offset are the first published alert's place on the
	// alerts topic (the record a quarantine record names as its source).
	Partition int
	Offset    int64
	// Release is the id's release log, folded; its Submitted is nil when
	// the alert never waited for a second analyst.
	Release record.ReleaseState
	// FannedOut is when the alert was fanned out, as its binding on the
	// alert-ids topic says (Bind); zero when no binding is held.
	FannedOut time.Time
}

// Bind applies the binding of the id on the alert-ids topic (nil: none) to
// what the alerts topic holds: the alert fanned out under the id is the
// one it names for ever, whether or not its record is still on the alerts
// topic (retention) or another record under the id came first there. The
// first record's issuer and place are kept only when it is that alert;
// FannedOut is the binding's.
// Both indexes call it after reading the alerts topic.
func (e *Existing) Bind(b *record.Binding) {
	if b == nil {
		return
	}
	e.FannedOut = b.FannedOut
	if b.Digest == e.Published {
		return
	}
	e.Published, e.IssuedBy, e.ApprovedBy = b.Digest, "", ""
	e.Partition, e.Offset = b.Partition, b.Offset
}

// Digest returns the content digest the id is bound to, or "".
func (e *Existing) Digest() string {
	if e.Published != "" {
		return e.Published
	}
	if e.Release.Submitted != nil {
		return e.Release.Submitted.Digest
	}
	return ""
}

// State is the alert's state at now: published, pending, rejected,
// expired, or "" when nothing is held under the id.
func (e *Existing) State(now time.Time) string {
	if e.Published != "" {
		return record.StatePublished
	}
	return e.Release.State(now)
}

// Index answers what Herald already holds: the materialised view in the
// api role, reads of Kafka in the CLI.
type Index interface {
	// Existing returns what is held under id; nil when nothing is.
	Existing(ctx context.Context, id string) (*Existing, error)
	// Lookup returns what the ledger knows of the alerts ids.
	Lookup(ctx context.Context, ids []string) (map[string]*ledger.Alert, error)
	// Held returns the alert id as the alerts topic holds its record now
	// (ledger.Published): an error wrapping ledger.ErrGone when retention
	// deleted it.
	Held(ctx context.Context, id string) (*alerts.Alert, error)
}

// Registry is what publishing needs of the subscriber registry.
type Registry interface {
	fanout.Candidates
}

// Publisher publishes, approves and rejects alerts. Set every field.
type Publisher struct {
	Index    Index
	Registry Registry
	Taxonomy alerts.Taxonomy
	Release  config.Release
	// Alerts and Pending write to the alerts topic and the pending
	// release log.
	Alerts  Producer
	Pending Producer
	Audit   *audit.Log
	Now     func() time.Time
}

// Errors of the publisher. Callers map them onto exit statuses and HTTP
// codes: a *alerts.ValidationError is invalid input (exit 2, 422), a
// *ConflictError a used id (exit 2, 409).
var (
	// ErrNotFound: no alert waits for approval under the id (404).
	ErrNotFound = errors.New("no such alert")
	// ErrSelfApproval: the author tried to approve (403, exit 1).
	ErrSelfApproval = errors.New("the author of an alert cannot approve it: another analyst must")
	// ErrNotPending: the alert is not waiting for approval (409).
	ErrNotPending = errors.New("the alert is not waiting for approval")
	// ErrNotPreviewed: the alert waiting for approval is not the one the
	// approver previewed, by its digest (409).
	ErrNotPreviewed = errors.New("the alert waiting is not the one you previewed")
	// ErrUnavailable: a dependency failed (Kafka); nothing was written.
	ErrUnavailable = errors.New("service unavailable")
)

// ConflictError refuses a different alert under an id already used.
type ConflictError struct {
	ID     string
	State  string
	Digest string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("id: %q already names another alert (%s, %s): an id names one alert forever; choose another id, or leave id out and Herald assigns one", e.ID, e.State, e.Digest)
}

// Prepared is an alert stamped and checked, ready to write or preview.
type Prepared struct {
	Alert *alerts.Alert
	// Prior is what the ledger knows of the alerts an update or cancel
	// references.
	Prior map[string]*ledger.Alert
	// Existing is the identical alert already held under the id, if any:
	// publishing it again writes nothing.
	Existing *Existing
	// NeedsRelease says a second analyst must approve it.
	NeedsRelease bool
}

// Stamp sets what Herald sets on an alert it publishes: who issued it and
// when (to the millisecond), and an id when it has none. It clears any
// approval a caller supplied.
func Stamp(a *alerts.Alert, by string, now time.Time) {
	now = now.UTC()
	at := now.Truncate(time.Millisecond)
	a.IssuedBy, a.IssuedAt = by, &at
	a.ApprovedBy, a.ApprovedAt = "", nil
	if a.ID == "" {
		a.ID = alerts.NewID(now)
	}
}

// Prepare normalises, stamps and checks a, as issued by by: field rules,
// taxonomy, named partners registered, references known and not lowered,
// and the id not used by another alert. It returns a *alerts.ValidationError
// naming every bad field, a *ConflictError, or an error wrapping
// ErrUnavailable.
func (p *Publisher) Prepare(ctx context.Context, a *alerts.Alert, by string) (*Prepared, error) {
	now := p.Now()
	a.Normalize()
	Stamp(a, by, now)
	v := &alerts.ValidationError{What: "invalid alert"}
	var verr *alerts.ValidationError
	if err := a.Validate(now, p.Taxonomy); errors.As(err, &verr) {
		v.Fields = append(v.Fields, verr.Fields...)
	} else if err != nil {
		return nil, err
	}
	for i, id := range a.Audience.Subscribers {
		if alerts.ValidID(id) && p.Registry.Get(id) == nil {
			v.Add(fmt.Sprintf("audience.subscribers[%d]", i), "no partner %q is registered: check the id (a mistyped recipient gets nothing)", id)
		}
	}
	prep := &Prepared{Alert: a, NeedsRelease: policy.NeedsRelease(a, p.Release.SecondAnalyst)}
	if refs := References(a); len(refs) > 0 {
		known, err := p.Index.Lookup(ctx, refs)
		if err != nil {
			return nil, fmt.Errorf("check the referenced alerts: %w: %w", ErrUnavailable, err)
		}
		held := ledger.Remembered(func(id string) (*alerts.Alert, error) { return p.Index.Held(ctx, id) })
		errs, err := ledger.CheckReferences(a, known, held)
		if err != nil {
			return nil, fmt.Errorf("check the referenced alerts: %w: %w", ErrUnavailable, err)
		}
		v.Fields = append(v.Fields, errs...)
		prep.Prior = known
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	ex, err := p.Index.Existing(ctx, a.ID)
	if err != nil {
		return nil, fmt.Errorf("check alert id %s: %w: %w", a.ID, ErrUnavailable, err)
	}
	if ex != nil {
		if d := ex.Digest(); d != "" && d != a.Digest() {
			return nil, &ConflictError{ID: a.ID, State: ex.State(now), Digest: d}
		}
		if ex.Digest() != "" {
			prep.Existing = ex
		}
	}
	return prep, nil
}

// References returns the valid ids an update or cancel references, other
// than its own; Validate names the others.
func References(a *alerts.Alert) []string {
	var ids []string
	for _, ref := range a.References {
		if alerts.ValidID(ref) && ref != a.ID {
			ids = append(ids, ref)
		}
	}
	return ids
}

// Result is the outcome of Publish, Approve or Reject.
type Result struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// Digest is the content digest an approval is bound to.
	Digest string `json:"digest"`
	// Unchanged says the identical alert was already held: nothing was
	// written, nothing is sent twice.
	Unchanged bool `json:"unchanged,omitempty"`
	// ExpiresAt is when a pending alert stops waiting.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// Publish prepares a as issued by by and writes it: to the alerts topic,
// or, when it needs a second analyst, to the pending release log. The
// identical alert already held is a no-op answering its id and state.
func (p *Publisher) Publish(ctx context.Context, a *alerts.Alert, by string) (*Result, error) {
	prep, err := p.Prepare(ctx, a, by)
	var v *alerts.ValidationError
	var conflict *ConflictError
	switch {
	case errors.As(err, &v):
		p.refused(ctx, by, record.ActionPublish, a.ID, invalidFields(v))
		return nil, err
	case errors.As(err, &conflict):
		p.refused(ctx, by, record.ActionPublish, a.ID, conflict.Error())
		return nil, err
	case err != nil:
		return nil, err
	}
	now := p.Now()
	digest := a.Digest()
	if ex := prep.Existing; ex != nil {
		res := &Result{ID: a.ID, State: ex.State(now), Digest: digest, Unchanged: true}
		if s := ex.Release.Submitted; s != nil && res.State == record.StatePending {
			res.ExpiresAt = s.ExpiresAt
		}
		return res, nil
	}
	value, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode alert %s: %w", a.ID, err)
	}
	if prep.NeedsRelease {
		ev := record.Release{Kind: record.Submitted, ID: a.ID, Digest: digest, Alert: value, By: by, At: now.UTC(),
			ExpiresAt: now.UTC().Add(p.Release.PendingTTL)}
		if err := p.writeRelease(ctx, ev); err != nil {
			return nil, err
		}
		if err := p.won(ctx, a, by, record.ActionSubmit, digest); err != nil {
			return nil, err
		}
		return &Result{ID: a.ID, State: record.StatePending, Digest: digest, ExpiresAt: ev.ExpiresAt}, nil
	}
	if err := p.Alerts.Write(ctx, kafka.Message{Key: []byte(a.ID), Value: value}); err != nil {
		return nil, fmt.Errorf("publish alert %s: %w: %w", a.ID, ErrUnavailable, err)
	}
	if err := p.won(ctx, a, by, record.ActionPublish, digest); err != nil {
		return nil, err
	}
	return &Result{ID: a.ID, State: record.StatePublished, Digest: digest}, nil
}

// won reads back what the id is bound to after the write and records the
// action in the audit trail. Two publishers may pass Prepare's check at
// the same moment with different alerts under one new id: the topic's
// order decides (the first record wins; the fan-out quarantines the other
// as duplicate-id), and the loser is told so here instead of "published".
// If the read-back cannot be made the write stands: the fan-out still
// refuses a second alert under the id.
func (p *Publisher) won(ctx context.Context, a *alerts.Alert, by, action, digest string) error {
	if ex, err := p.Index.Existing(ctx, a.ID); err == nil && ex != nil && ex.Digest() != "" && ex.Digest() != digest {
		conflict := &ConflictError{ID: a.ID, State: ex.State(p.Now()), Digest: ex.Digest()}
		_ = p.Audit.Record(ctx, record.Audit{Actor: by, Action: action, Object: "alert:" + a.ID,
			Outcome: record.OutcomeRefused, Reason: "another alert took the id at the same moment; this one will not go out"})
		return conflict
	}
	p.audit(ctx, by, action, a, nil)
	return nil
}

func (p *Publisher) writeRelease(ctx context.Context, ev record.Release) error {
	v, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode %s event of %s: %w", ev.Kind, ev.ID, err)
	}
	if err := p.Pending.Write(ctx, kafka.Message{Key: []byte(ev.ID), Value: v}); err != nil {
		return fmt.Errorf("write %s event of %s: %w: %w", ev.Kind, ev.ID, ErrUnavailable, err)
	}
	return nil
}

// audit records an action on an alert. The action is done and durable
// by now: a failure to record it is logged by the caller's metrics, not
// undone, so it is returned for no one and never hides the action.
func (p *Publisher) audit(ctx context.Context, by, action string, a *alerts.Alert, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	details["tlp"], details["marking"], details["type"], details["digest"] = a.TLP, a.Marking, a.Type, a.Digest()
	_ = p.Audit.Record(ctx, record.Audit{Actor: by, Action: action, Object: "alert:" + a.ID, Details: details})
}

// pending returns the alert waiting under id, or ErrNotFound / ErrNotPending.
func (p *Publisher) pending(ctx context.Context, id string) (*record.Release, *alerts.Alert, error) {
	if !alerts.ValidID(id) {
		return nil, nil, ErrNotFound
	}
	ex, err := p.Index.Existing(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("look up alert %s: %w: %w", id, ErrUnavailable, err)
	}
	if ex == nil || ex.Release.Submitted == nil {
		if ex != nil && ex.Published != "" {
			return nil, nil, fmt.Errorf("alert %s was published without waiting for approval: %w", id, ErrNotPending)
		}
		return nil, nil, fmt.Errorf("%w waits for approval under %q", ErrNotFound, id)
	}
	if st := ex.State(p.Now()); st != record.StatePending {
		return nil, nil, fmt.Errorf("alert %s is %s: %w", id, st, ErrNotPending)
	}
	sub := ex.Release.Submitted
	a, err := alerts.Decode(sub.Alert)
	if err != nil {
		return nil, nil, fmt.Errorf("decode pending alert %s: %w", id, err)
	}
	return sub, a, nil
}

// Approve releases the alert waiting under id, approved by by: exactly
// the alert that was published and previewed, bound to its digest (when
// digest is given, it must be the pending alert's). The author can never
// approve. The alert, stamped approved_by and approved_at, goes to the
// alerts topic.
func (p *Publisher) Approve(ctx context.Context, id, by, digest string) (*Result, error) {
	sub, a, err := p.pending(ctx, id)
	if err != nil {
		p.refusedPending(ctx, by, record.ActionApprove, id, err)
		return nil, err
	}
	if fanout.SamePerson(by, sub.By) {
		p.refused(ctx, by, record.ActionApprove, id, ErrSelfApproval.Error())
		return nil, ErrSelfApproval
	}
	if digest != "" && digest != sub.Digest {
		err := fmt.Errorf("digest: the alert waiting under %s is %s, not %s: approve what you previewed: %w", id, sub.Digest, digest, ErrNotPreviewed)
		p.refused(ctx, by, record.ActionApprove, id, err.Error())
		return nil, err
	}
	at := p.Now().UTC().Truncate(time.Millisecond)
	a.ApprovedBy, a.ApprovedAt = by, &at
	if a.Digest() != sub.Digest {
		return nil, fmt.Errorf("pending alert %s does not match its digest", id)
	}
	value, err := json.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("encode alert %s: %w", id, err)
	}
	// The alert first: once it is on the alerts topic it is published,
	// whatever happens to the approval event after it.
	if err := p.Alerts.Write(ctx, kafka.Message{Key: []byte(id), Value: value}); err != nil {
		return nil, fmt.Errorf("publish alert %s: %w: %w", id, ErrUnavailable, err)
	}
	if err := p.writeRelease(ctx, record.Release{Kind: record.Approved, ID: id, Digest: sub.Digest, By: by, At: at}); err != nil {
		return nil, err
	}
	p.audit(ctx, by, record.ActionApprove, a, map[string]any{"issued_by": sub.By})
	return &Result{ID: id, State: record.StatePublished, Digest: sub.Digest}, nil
}

// Reject refuses the alert waiting under id, with a reason. Its author may
// withdraw it this way too.
func (p *Publisher) Reject(ctx context.Context, id, by, reason, digest string) (*Result, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		v := &alerts.ValidationError{What: "invalid rejection"}
		v.Add("reason", "is required: say why the alert may not go out")
		return nil, v
	}
	v := &alerts.ValidationError{What: "invalid rejection"}
	alerts.CheckText(v, "reason", reason)
	if len(reason) > alerts.MaxSummary {
		v.Add("reason", "is %d bytes; the limit is %d", len(reason), alerts.MaxSummary)
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	sub, a, err := p.pending(ctx, id)
	if err != nil {
		p.refusedPending(ctx, by, record.ActionReject, id, err)
		return nil, err
	}
	if digest != "" && digest != sub.Digest {
		err := fmt.Errorf("digest: the alert waiting under %s is %s, not %s: %w", id, sub.Digest, digest, ErrNotPreviewed)
		p.refused(ctx, by, record.ActionReject, id, err.Error())
		return nil, err
	}
	at := p.Now().UTC().Truncate(time.Millisecond)
	if err := p.writeRelease(ctx, record.Release{Kind: record.Rejected, ID: id, Digest: sub.Digest, By: by, At: at, Reason: reason}); err != nil {
		return nil, err
	}
	p.audit(ctx, by, record.ActionReject, a, map[string]any{"issued_by": sub.By, "reason": reason})
	return &Result{ID: id, State: record.StateRejected, Digest: sub.Digest}, nil
}

// refused records an action on the alert id that was refused, and why.
// An id that is not one (malformed, or none: a body that was not read) is
// recorded as "alert:-".
func (p *Publisher) refused(ctx context.Context, by, action, id, reason string) {
	if !alerts.ValidID(id) {
		id = "-"
	}
	_ = p.Audit.Record(ctx, record.Audit{Actor: by, Action: action, Object: "alert:" + id,
		Outcome: record.OutcomeRefused, Reason: reason})
}

// refusedPending records an approval or rejection refused because no
// alert waits under id (err from pending); a failure to look it up was
// not a refusal and is not recorded.
func (p *Publisher) refusedPending(ctx context.Context, by, action, id string, err error) {
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotPending) {
		p.refused(ctx, by, action, id, err.Error())
	}
}
