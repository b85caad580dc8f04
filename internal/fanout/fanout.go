// Package fanout is Herald's fan-out role: it consumes the alerts topic,
// quarantines anything Herald did not publish or must not carry (PRODUCT.md
// §3 rule 1), applies the dissemination policy to every partner the alert
// could reach, and writes one delivery job per (alert, partner, target) and
// one receipt per decision before the alert's offset is committed. Decide,
// its decide step, is also what previews and dry runs show.
package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"
)

// Producer writes messages synchronously: Write returns once the broker has
// acknowledged them all.
type Producer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// JobProducer writes delivery jobs (*bus.Producer): it tells which
// partition each key goes to, so that the fan-out packs the jobs of an
// alert that go to one partition into one record, and writes the records
// where it said.
type JobProducer interface {
	Placement(ctx context.Context) (*bus.Placement, error)
	WriteTo(ctx context.Context, pl *bus.Placement, msgs ...kafka.Message) error
}

// History finds what the ledger knows of alerts: earlier alerts for
// updates and cancels, and whether an id was already fanned out.
type History interface {
	Lookup(ctx context.Context, ids []string) (map[string]*ledger.Alert, error)
}

// PublishedHistory is the capability a History adds to give each alert as
// published, from which the fan-out traces the lineage of an update or
// cancel (delivery.TraceLineage). *view.View has it. Without it, updates
// and cancels cannot be planned.
type PublishedHistory interface {
	History
	// Held returns the alert id as the alerts topic holds its record
	// (view.View.Held): an alert not applied yet is waited for, and one
	// whose record retention deleted (as of the view's last read of the
	// topic's log starts) is an error wrapping ledger.ErrGone. It reads
	// Kafka only for an alert the view lacks.
	Held(ctx context.Context, id string) (*alerts.Alert, error)
}

// BindingHistory is the capability a History adds to give the binding of
// an alert id on the alert-ids topic (record.Binding; *view.View has it),
// so that the fan-out writes the binding of an alert fanned out without
// one (a fan-out stopped between the alert receipt and the binding) the
// next time the id is seen, and never writes one that differs from the
// binding held.
type BindingHistory interface {
	History
	Binding(id string) (*record.Binding, bool)
}

// Quarantine reasons, sent in the "reason" header.
const (
	ReasonMalformed   = "malformed"         // not a decodable alert
	ReasonInvalid     = "invalid"           // fails validation
	ReasonForbidden   = "forbidden"         // a marking Herald must not carry
	ReasonUnknownRef  = "unknown-reference" // an update or cancel of an alert Herald never fanned out
	ReasonDowngrade   = "downgrade"         // an update or cancel lowers the marking or TLP
	ReasonUnissued    = "unattributed"      // not authenticated as written by Herald's publishers
	ReasonDuplicateID = "duplicate-id"      // another alert was fanned out under this id
	ReasonUnapproved  = "unapproved"        // needs a second analyst and has no valid approval
)

// RuleUnknownSubscriber is recorded for a named partner that is not
// registered (deleted between publication and fan-out: publishing refuses
// unknown names).
const RuleUnknownSubscriber = "audience.unknown-subscriber"

// Worker is the fan-out role. Set every field before calling Handle.
type Worker struct {
	Registry *subscribers.Registry
	Policy   policy.Options
	// SecondAnalyst is release.second_analyst: alerts at those labels
	// must carry a second analyst's approval.
	SecondAnalyst []string
	Deliveries    JobProducer
	Receipts      Producer
	Quarantine    Producer
	// Bindings writes to the alert-ids topic: after an alert's receipt,
	// the binding of its id to its digest (record.Binding), which
	// outlives the alert's record and receipts. Nil writes none (tests of
	// the policy alone).
	Bindings Producer
	History  History
	// Authenticate checks that a message of the alerts topic was written
	// by one of Herald's publishers (bus.Bus.Authenticate); nil refuses
	// everything.
	Authenticate func(kafka.Message) error
	Now          func() time.Time
	Log          *slog.Logger
	// Observe, if set, is told each alert's outcome (for metrics).
	Observe func(alertID string, jobs, withheld int)
	// Quarantined, if set, is told the reason of each record quarantined
	// (for metrics), once it is written to the quarantine topic.
	Quarantined func(reason string)

	mu   sync.Mutex
	seen map[string]string // alert id → digest, of alerts this worker fanned out
}

// Handle processes a batch from the alerts topic. It returns nil only when
// every job, receipt and quarantine record of the batch has been written, so
// the caller may then commit the offsets. A refused message never fails the
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

// errAlreadyFannedOut marks the identical alert published again: nothing to
// do, nothing is sent twice.
var errAlreadyFannedOut = errors.New("already fanned out")

func (w *Worker) handleOne(ctx context.Context, m kafka.Message) error {
	log := w.Log.With("partition", m.Partition, "offset", m.Offset)
	a, err := w.ingest(m)
	var d *decided
	if err == nil {
		d, err = w.prepare(ctx, a, m)
	}
	if errors.Is(err, errAlreadyFannedOut) {
		log.Info("identical alert published again: nothing to do", "alert", a.ID)
		return nil
	}
	if rej := (*rejection)(nil); errors.As(err, &rej) {
		log.Warn("alert quarantined", "reason", rej.reason, "error", rej.err)
		if err := w.Quarantine.Write(ctx, bus.Rejection(m, rej.reason, rej.err)); err != nil {
			return fmt.Errorf("quarantine message at offset %d: %w", m.Offset, err)
		}
		if w.Quarantined != nil {
			w.Quarantined(rej.reason)
		}
		return nil
	}
	if err != nil {
		return err
	}
	jobs, err := w.write(ctx, d)
	if err != nil {
		return err
	}
	// After the alert receipt: a binding always means "fanned out". A
	// failure here fails the batch; the alert is fetched again, found
	// fanned out by its receipt, and its binding written then (prepare).
	if err := w.bind(ctx, record.Binding{ID: a.ID, Digest: d.digest, FannedOut: d.now, Partition: m.Partition, Offset: m.Offset}); err != nil {
		return err
	}
	w.remember(a.ID, d.digest)
	log.Info("alert fanned out", "alert", a.ID, "jobs", jobs, "decisions", len(d.decisions))
	if w.Observe != nil {
		withheld := 0
		for _, x := range d.decisions {
			if x.Decision == delivery.Withhold {
				withheld++
			}
		}
		w.Observe(a.ID, jobs, withheld)
	}
	return nil
}

// ingest authenticates, decodes and checks one message from the alerts
// topic. It returns a *rejection for anything that must be quarantined.
func (w *Worker) ingest(m kafka.Message) (*alerts.Alert, error) {
	auth := w.Authenticate
	if auth == nil {
		auth = func(kafka.Message) error { return bus.ErrNoKeyring }
	}
	if err := auth(m); err != nil {
		return nil, &rejection{ReasonUnissued, fmt.Errorf("not published by Herald: %w", err)}
	}
	a, err := alerts.Decode(m.Value)
	if err != nil {
		return nil, &rejection{ReasonMalformed, err}
	}
	a.Normalize()
	if a.Marking != "" && !a.Marking.Valid() {
		return nil, &rejection{ReasonForbidden, fmt.Errorf("marking %q is not carried by Herald", a.Marking)}
	}
	if a.IssuedBy == "" || a.IssuedAt == nil {
		return nil, &rejection{ReasonUnissued, errors.New("issued_by and issued_at are set by Herald when an analyst publishes; this alert did not come through Herald")}
	}
	// Validity is judged as of publication: an alert that expired while it
	// waited is not invalid, and the policy withholds it as expired. Its
	// sectors and regions are not judged again: Herald's publisher checked
	// them against its taxonomy (the alert is authenticated as its), which
	// may differ from this process's while a change of taxonomy.sectors or
	// taxonomy.regions rolls out; the alert goes to the partners
	// registered for them, where quarantining it would send it to nobody.
	if err := a.Validate(*a.IssuedAt, nil); err != nil {
		return nil, &rejection{ReasonInvalid, err}
	}
	if string(m.Key) != a.ID {
		return nil, &rejection{ReasonInvalid, fmt.Errorf("message key %q does not match alert id %q", m.Key, a.ID)}
	}
	if policy.NeedsRelease(a, w.SecondAnalyst) {
		switch {
		case a.ApprovedBy == "" || a.ApprovedAt == nil:
			return nil, &rejection{ReasonUnapproved, fmt.Errorf("a %s %s alert needs a second analyst's approval (release.second_analyst)", a.TLP.Label(), a.Marking)}
		case SamePerson(a.ApprovedBy, a.IssuedBy):
			return nil, &rejection{ReasonUnapproved, fmt.Errorf("approved by its author %s: the second analyst must be someone else", a.IssuedBy)}
		}
	}
	return a, nil
}

// SamePerson reports whether two actors ("api:alice", "cli:alice") are the
// same person: the name after the channel. Comparing names, not channels,
// is the cautious side: an author cannot approve through another channel.
func SamePerson(x, y string) bool {
	name := func(s string) string {
		if _, n, ok := strings.Cut(s, ":"); ok {
			s = n
		}
		return strings.ToLower(strings.TrimSpace(s))
	}
	return name(x) == name(y)
}

// identity applies "an id names one alert forever" to an alert whose id
// was fanned out before with digest prev: the identical alert is
// errAlreadyFannedOut, another alert a duplicate-id rejection.
func identity(a *alerts.Alert, prev, digest string) error {
	if prev == digest {
		return errAlreadyFannedOut
	}
	return &rejection{ReasonDuplicateID, fmt.Errorf("alert %s was already fanned out with other content (%s, this is %s): an id names one alert forever", a.ID, prev, digest)}
}

// prepare checks the alert's identity against the ledger (identity) and
// the alerts it references (rule 7, checkPrior), and decides it. One read
// of the history answers both questions; while it runs, an alert that
// references nothing is decided, since its decisions do not depend on it.
// Nothing is written until the answer is in.
func (w *Worker) prepare(ctx context.Context, a *alerts.Alert, m kafka.Message) (*decided, error) {
	raw := m.Value
	digest := a.Digest()
	w.mu.Lock()
	prev, ok := w.seen[a.ID]
	w.mu.Unlock()
	if ok {
		return nil, identity(a, prev, digest)
	}
	now := w.Now()
	type answer struct {
		known map[string]*ledger.Alert
		err   error
	}
	lookup := make(chan answer, 1)
	go func() {
		known, err := w.History.Lookup(ctx, append([]string{a.ID}, a.References...))
		lookup <- answer{known, err}
	}()
	var early []policy.Decision
	if len(a.References) == 0 {
		early = Decide(a, w.Registry, nil, now, w.Policy)
	}
	ans := <-lookup
	if ans.err != nil {
		return nil, fmt.Errorf("look up alert %s in the ledger: %w", a.ID, ans.err)
	}
	if k := ans.known[a.ID]; k != nil && !k.FannedOut.IsZero() {
		// Fanned out before: by its binding once its receipts are gone,
		// else by its alert receipt, and then a binding missing (a
		// fan-out stopped before writing it, or one from before bindings
		// existed) is written now.
		b := record.Binding{ID: a.ID, Digest: k.Digest, FannedOut: k.FannedOut, Offset: -1}
		if k.Digest == digest {
			b.Partition, b.Offset = m.Partition, m.Offset // a record of that alert
		}
		if err := w.bind(ctx, b); err != nil {
			return nil, err
		}
		return nil, identity(a, k.Digest, digest)
	}
	var prior map[string]*ledger.Alert
	var held ledger.Published
	if len(a.References) > 0 {
		held = w.published(ctx)
		prior = make(map[string]*ledger.Alert, len(a.References))
		for _, ref := range a.References {
			if p := ans.known[ref]; p != nil {
				prior[ref] = p
			}
		}
		if err := checkPrior(a, prior, held); err != nil {
			return nil, err
		}
	}
	return w.decide(ctx, a, raw, now, digest, prior, held, early)
}

// bind writes the binding b of an alert fanned out to the alert-ids topic,
// unless the history holds one for its id already: the same binding
// again would change nothing, and another one would rebind an id, which
// never happens (the identity check reads the binding), so it is logged
// and not written.
func (w *Worker) bind(ctx context.Context, b record.Binding) error {
	if w.Bindings == nil || b.Digest == "" {
		return nil
	}
	if h, ok := w.History.(BindingHistory); ok {
		if held, ok := h.Binding(b.ID); ok {
			if held.Digest != b.Digest {
				w.Log.Error("not rebinding an alert id: another binding is held", "alert", b.ID, "held", held.Digest, "digest", b.Digest)
			}
			return nil
		}
	}
	if err := w.Bindings.Write(ctx, BindingMessage(b)); err != nil {
		return fmt.Errorf("write the binding of alert id %s: %w", b.ID, err)
	}
	return nil
}

// BindingMessage encodes a binding for the alert-ids topic, keyed by alert
// id.
func BindingMessage(b record.Binding) kafka.Message {
	return kafka.Message{Key: []byte(b.ID), Value: b.Encode()}
}

// remember records that this worker fanned out id with digest, so that a
// second alert under the id in the same batch is caught before the ledger
// shows the first.
func (w *Worker) remember(id, digest string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil || len(w.seen) >= 10_000 {
		w.seen = make(map[string]string)
	}
	w.seen[id] = digest
}

// Candidates is what Decide needs of the subscriber registry.
type Candidates interface {
	// EachCandidate calls fn with every partner the alert could reach
	// (subscribers.Registry.EachCandidate), one at a time, and returns
	// the named ids that are not registered.
	EachCandidate(a *alerts.Alert, fn func(*subscribers.Subscriber)) (missing []string)
	Get(id string) *subscribers.Subscriber
}

// Partners is what DecideAll needs of the subscriber registry: the
// candidates, and every partner.
type Partners interface {
	Candidates
	// Each calls fn with every registered partner, sorted by id, one at a
	// time (subscribers.Registry.Each).
	Each(fn func(*subscribers.Subscriber))
}

// Decide is the fan-out's decide step: for every partner the alert could
// reach (those sharing a sector, those named, and for an update or cancel
// every partner that received an alert it references), the policy's
// decision for each target, with rule 7 applied; a named partner that is
// not registered gets a withhold row. Every other partner is outside the
// audience by rule 2 and has no row: the fan-out records nothing for it.
//
// The candidates are decided one at a time, so that only the decisions
// are held, not the partners' records as well.
func Decide(a *alerts.Alert, reg Candidates, prior map[string]*ledger.Alert, now time.Time, opt policy.Options) []policy.Decision {
	ds, _ := decide(a, reg, prior, now, opt, false)
	return ds
}

// DecideAll is what dry runs and previews show (PRODUCT.md §7, §8): Decide's
// rows, in Decide's order, then the policy's decision for every other
// registered partner, by id, so that an analyst sees before an alert goes
// who will not get it and the rule that says so (audience.sector for a
// partner sharing no sector, subscriber.suspended, …). The other partners
// are evaluated as the candidates are (policy.Append: the rules have one
// home); none of them received an alert the alert references (those are
// candidates), so rule 7 changes nothing of their rows. The fan-out
// itself decides only the candidates (Decide): it writes no receipt for a
// partner outside the audience.
//
// audience is the number of Decide's rows, which come first: every row
// after them is a withhold (a partner outside the audience gets nothing).
func DecideAll(a *alerts.Alert, reg Partners, prior map[string]*ledger.Alert, now time.Time, opt policy.Options) (ds []policy.Decision, audience int) {
	ds, have := decide(a, reg, prior, now, opt, true)
	audience = len(ds)
	reg.Each(func(s *subscribers.Subscriber) {
		if !have[s.ID] {
			ds = policy.Append(ds, a, s, now, opt)
		}
	})
	return ds, audience
}

// decide is Decide; with all it also returns the ids of the partners it
// decided.
func decide(a *alerts.Alert, reg Candidates, prior map[string]*ledger.Alert, now time.Time, opt policy.Options, all bool) ([]policy.Decision, map[string]bool) {
	var ds []policy.Decision
	var have map[string]bool
	if all || len(prior) > 0 {
		have = make(map[string]bool)
	}
	missing := reg.EachCandidate(a, func(s *subscribers.Subscriber) {
		if have != nil {
			have[s.ID] = true
		}
		ds = policy.Append(ds, a, s, now, opt)
	})
	if len(prior) > 0 {
		for _, s := range priorRecipients(reg, have, prior) {
			ds = policy.Append(ds, a, s, now, opt)
		}
		ds = policy.FollowUp(ds, ledger.ReceivedAny(prior))
	}
	for _, id := range missing {
		ds = append(ds, policy.Decision{
			Subscriber: id, Decision: delivery.Withhold, Rule: RuleUnknownSubscriber,
			Reason: "named in audience.subscribers but not registered",
		})
	}
	return ds, have
}

// Plan is what the fan-out writes for one alert.
type Plan struct {
	Digest    string
	Decisions []policy.Decision
	// Lineage is the alert's place in its chain (nil for an alert that
	// references nothing); every webhook job carries it, with the
	// withdrawn indicators its partner may see (delivery.Lineage.For).
	Lineage *delivery.Lineage
	// Jobs are the records of the jobs, packed in order
	// (delivery.PackJobs) but not by partition, as Handle packs them: to
	// read, not to write.
	Jobs []kafka.Message
	// Receipts are the records of the decisions' receipts (each slice's
	// packed into arrays by delivery.PackReceipts), then the alert
	// receipt, alone in its record: the record that the alert was fanned
	// out, which Handle writes only once every job and every other
	// receipt is written.
	Receipts []kafka.Message
}

// Plan decides, for every partner the alert could reach (Decide), what
// each target gets, and builds all the jobs and receipts to write, as
// Handle writes them (Handle builds and writes them a slice at a time, and
// packs the jobs by partition). raw
// is the alert exactly as published: every job carries those bytes (nil
// encodes a). Webhook jobs carry the alert's lineage, traced from the
// published alerts it references (PublishedHistory) and narrowed to what
// each partner received of the chain, so that partners with the same
// history share one rendering and signature per payload format; email
// jobs carry only the chain's root, which their threading names.
//
// The pull channel sends nothing: its decisions get no job, and a pull
// target the policy lets have the alert (or, by a notice, lose the alerts
// it supersedes) gets at once an outcome receipt in state
// delivery.StateAvailable; the pull servers record the first pull.
func (w *Worker) Plan(ctx context.Context, a *alerts.Alert, raw []byte) (*Plan, error) {
	now := w.Now()
	var prior map[string]*ledger.Alert
	var held ledger.Published
	if len(a.References) > 0 {
		held = w.published(ctx)
		var err error
		prior, err = w.History.Lookup(ctx, a.References)
		if err != nil {
			return nil, fmt.Errorf("look up alerts referenced by %s: %w", a.ID, err)
		}
		if err := checkPrior(a, prior, held); err != nil {
			return nil, err
		}
	}
	d, err := w.decide(ctx, a, raw, now, a.Digest(), prior, held, nil)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Digest: d.digest, Decisions: d.decisions, Lineage: d.lineage}
	for from := 0; from < len(d.decisions); {
		if plan.Jobs, plan.Receipts, from, err = d.messages(from, plan.Jobs, plan.Receipts); err != nil {
			return nil, err
		}
	}
	plan.Jobs = d.pack(plan.Jobs, nil)
	plan.Receipts = append(plan.Receipts, d.alertReceipt())
	return plan, nil
}

// checkPrior applies rule 7 to an update or cancel given what the ledger
// knows of the alerts it references and what the alerts topic still holds
// of their chains (held, ledger.CheckReferences): a rejection names what
// is wrong. A reference whose chain reaches a record retention deleted, or
// cannot be traced (delivery.UntraceableError: more than a thousand
// alerts, an alert without issued_at, references in a circle), is
// quarantined as unknown-reference, as a reference Herald never fanned
// out: what it names cannot be resolved to a lineage, now or later. The
// batch is not failed (it would be fetched again for ever, and every
// later alert of its partition would reach no one), and the follow-up is
// never sent on a partial lineage.
func checkPrior(a *alerts.Alert, prior map[string]*ledger.Alert, held ledger.Published) error {
	errs, err := ledger.CheckReferences(a, prior, held)
	if err != nil {
		return fmt.Errorf("check the alerts %s references: %w", a.ID, err)
	}
	if len(errs) == 0 {
		return nil
	}
	reason := ReasonDowngrade
	for _, fe := range errs {
		if strings.HasPrefix(fe.Field, "references") {
			reason = ReasonUnknownRef
		}
	}
	return &rejection{reason, &alerts.ValidationError{What: "invalid " + string(a.Type), Fields: errs}}
}

// decided is an alert decided, from which its jobs and receipts are made.
type decided struct {
	a         *alerts.Alert
	raw       []byte
	now       time.Time
	digest    string
	decisions []policy.Decision
	prior     map[string]*ledger.Alert
	lineage   *delivery.Lineage
	// received maps each earlier alert of the chain to the partners it
	// reached (ledger.Alert.Recipients), found once for all the jobs.
	received map[string]ledger.Recipients
}

// decide decides a for every partner it could reach, given what the ledger
// knows of the alerts it references (prior, checked by checkPrior), and
// traces its lineage through held, the lookup checkPrior traced it with.
// decisions, when not nil, is what Decide already returned for a (an
// alert without references).
func (w *Worker) decide(ctx context.Context, a *alerts.Alert, raw []byte, now time.Time, digest string, prior map[string]*ledger.Alert, held ledger.Published, decisions []policy.Decision) (*decided, error) {
	if raw == nil {
		var err error
		if raw, err = json.Marshal(a); err != nil {
			return nil, fmt.Errorf("encode alert %s: %w", a.ID, err)
		}
	}
	if decisions == nil {
		decisions = Decide(a, w.Registry, prior, now, w.Policy)
	}
	d := &decided{a: a, raw: raw, now: now, digest: digest, decisions: decisions, prior: prior}
	if len(a.References) > 0 {
		lineage, err := delivery.TraceLineage(a, held)
		if err != nil {
			// checkPrior traced the same chain through held, which
			// remembers its answers: this is a failure to read the view;
			// fail the batch, which is fetched again.
			return nil, err
		}
		d.lineage = lineage
		chain, err := w.chainHistory(ctx, lineage, prior)
		if err != nil {
			return nil, err
		}
		d.received = make(map[string]ledger.Recipients, len(chain))
		for id, p := range chain {
			if p != nil {
				d.received[id] = p.Recipients()
			}
		}
	}
	return d, nil
}

// The fan-out makes and writes an alert's jobs and receipts a slice at a
// time, so that what it holds does not grow with the audience: a slice
// ends after sliceMessages jobs and receipts or sliceBytes of jobs, and at
// most slicesInFlight slices are being written at once. (Fewer, larger
// slices cost the writers less per message, but every job carries the
// alert: the slices being written, and the one made while they are, are
// most of what a fan-out adds to the live heap, and the garbage collector
// lets the heap grow to twice its live size. 1 MiB slices keep a fan-out
// to 10,000 partners about 10 MB below 4 MiB ones, for some 10% of
// BenchmarkHandle's jobs per second.)
const (
	sliceMessages  = 1000
	sliceBytes     = 1 << 20
	slicesInFlight = 2
)

// messages appends to jobs and receipts the messages of the decisions from
// d.decisions[from] on, until the slice is full, and returns where the
// next slice starts (len(d.decisions) when done). The jobs are bare, each
// keyed by its partner's id and encoded without the alert
// (delivery.Job.EncodeBare): pack puts them into the records written.
func (d *decided) messages(from int, jobs, receipts []kafka.Message) ([]kafka.Message, []kafka.Message, int, error) {
	a, now := d.a, d.now
	var notBefore time.Time
	if a.NotBefore != nil && a.NotBefore.After(now) {
		notBefore = *a.NotBefore
	}
	// Every receipt is keyed by the alert id, every job by its partner's
	// id; the writers never modify keys, so messages share them. The
	// slice's receipts, in order, are packed into records of many
	// (delivery.PackReceipts): a record fewer per delivery.
	rkey := []byte(a.ID)
	rest := min(len(d.decisions)-from, sliceMessages/2+1)
	encoded := make([][]byte, 0, rest)
	receipt := func(r *delivery.Receipt) { encoded = append(encoded, r.Encode()) }
	if jobs == nil {
		jobs = make([]kafka.Message, 0, rest)
	}
	var jkey []byte
	// An email threads under the chain's first alert (References) and
	// renders nothing else of the chain: one root for every email job.
	var root *delivery.Lineage
	if d.lineage != nil {
		root = &delivery.Lineage{Root: d.lineage.Root, RootIssuedAt: d.lineage.RootIssuedAt}
	}
	n, size := 0, 0
	i := from
	for ; i < len(d.decisions) && n < sliceMessages && size < sliceBytes; i++ {
		x := &d.decisions[i]
		r := delivery.Receipt{Kind: delivery.KindDecision, AlertID: a.ID, Subscriber: x.Subscriber,
			Incarnation: x.Incarnation, Channel: x.Channel, Target: x.Target, Decision: x.Decision, Mode: x.Mode, Rule: x.Rule, Reason: x.Reason, At: now}
		switch {
		case x.Decision == delivery.Withhold:
		case x.Channel == delivery.ChannelPull:
			r.DeliveryID = delivery.ID(a.ID, x.Subscriber, x.Target)
			receipt(&r)
			receipt(&delivery.Receipt{Kind: delivery.KindOutcome,
				AlertID: a.ID, DeliveryID: r.DeliveryID, Subscriber: x.Subscriber, Incarnation: x.Incarnation,
				Channel: x.Channel, Target: x.Target, Mode: x.Mode, State: delivery.StateAvailable, At: now})
			n += 2
			continue
		default:
			r.DeliveryID = delivery.ID(a.ID, x.Subscriber, x.Target)
			job := delivery.Job{ID: r.DeliveryID, AlertJSON: d.raw, Subscriber: x.Subscriber,
				Incarnation: x.Incarnation, Channel: x.Channel, Target: x.Target, Mode: x.Mode, NotBefore: notBefore}
			if x.Channel == delivery.ChannelWebhook {
				// Withdrawals name only indicators of earlier alerts this
				// partner (this incarnation of its record) received:
				// never a value it was not sent.
				job.Lineage = d.lineage.For(func(id string) bool { return d.received[id].Has(x.Subscriber, x.Incarnation) })
			} else if x.Channel == delivery.ChannelEmail {
				job.Lineage = root // encoded below, never changed
			}
			if x.Mode == delivery.ModeCancelNotice || x.Mode == delivery.ModeFollowUpKeyNotice {
				job.Held = held(d.prior, x.Subscriber, x.Incarnation, x.Target)
			}
			v, err := job.EncodeBare()
			if err != nil {
				return jobs, receipts, i, fmt.Errorf("encode job: %w", err)
			}
			if string(jkey) != x.Subscriber {
				jkey = []byte(x.Subscriber)
			}
			jobs = append(jobs, kafka.Message{Key: jkey, Value: v})
			n++
			size += len(v)
		}
		receipt(&r)
		n++
	}
	for _, v := range delivery.PackReceipts(encoded) {
		receipts = append(receipts, kafka.Message{Key: rkey, Value: v})
	}
	return jobs, receipts, i, nil
}

// pack returns the records of a slice's bare jobs: the jobs that place
// puts on one partition, in their order, packed with the alert's bytes
// (delivery.PackJobs), each record keyed by the partner of the first job
// of its partition, so that it goes to the partition of every job it
// holds, and each partner's jobs keep the order of the records of one job
// they replace. A nil placement packs them all together, in order (a
// Plan's records).
func (d *decided) pack(bare []kafka.Message, pl *bus.Placement) []kafka.Message {
	if len(bare) == 0 {
		return nil
	}
	type group struct {
		key    []byte
		values [][]byte
	}
	var order []*group
	groups := map[int]*group{}
	for _, m := range bare {
		p := 0
		if pl != nil {
			p = pl.Partition(m.Key)
		}
		g, ok := groups[p]
		if !ok {
			g = &group{key: m.Key}
			groups[p] = g
			order = append(order, g)
		}
		g.values = append(g.values, m.Value)
	}
	out := make([]kafka.Message, 0, len(order))
	for _, g := range order {
		for _, v := range delivery.PackJobs(d.raw, g.values) {
			out = append(out, kafka.Message{Key: g.key, Value: v})
		}
	}
	return out
}

// alertReceipt is the receipt recording that the alert was fanned out.
func (d *decided) alertReceipt() kafka.Message {
	a := d.a
	return ReceiptMessage(delivery.Receipt{Kind: delivery.KindAlert, AlertID: a.ID, At: d.now,
		Type: a.Type, TLP: a.TLP, Marking: a.Marking, References: a.References, IssuedBy: a.IssuedBy,
		ApprovedBy: a.ApprovedBy, Title: a.Title, Digest: d.digest})
}

// write writes the alert's jobs and decision receipts a slice at a time,
// up to slicesInFlight slices at once, and then, once every one of them is
// acknowledged, the alert receipt: a fan-out cut short anywhere before it
// leaves no record that the alert was fanned out, so the alert is planned
// and written again in full (jobs and receipts again under the same
// delivery ids, which receivers and the ledger take as duplicates). It
// returns the number of jobs written.
func (w *Worker) write(ctx context.Context, d *decided) (int, error) {
	g, gctx := errgroup.WithContext(ctx)
	// A slice's jobs and receipts are written at the same time, and the
	// slice counts as in flight until both are acknowledged.
	g.SetLimit(slicesInFlight)
	// The jobs of a slice that go to one partition are packed into one
	// record (up to delivery.MaxRecordJobs).
	// One placement for the whole alert, and the records written by it:
	// a partition added meanwhile moves none of them.
	pl, err := w.Deliveries.Placement(ctx)
	if err != nil {
		return 0, fmt.Errorf("write delivery jobs of alert %s: %w", d.a.ID, err)
	}
	jobs := 0
	for from := 0; from < len(d.decisions) && gctx.Err() == nil; {
		var js, rs []kafka.Message
		if js, rs, from, err = d.messages(from, nil, nil); err != nil {
			break
		}
		jobs += len(js)
		js = d.pack(js, pl)
		g.Go(func() error {
			var jerr, rerr error
			var wg sync.WaitGroup
			if len(js) > 0 {
				wg.Go(func() { jerr = w.Deliveries.WriteTo(gctx, pl, js...) })
			}
			if len(rs) > 0 {
				rerr = w.Receipts.Write(gctx, rs...)
			}
			wg.Wait()
			switch {
			case jerr != nil:
				return fmt.Errorf("write delivery jobs of alert %s: %w", d.a.ID, jerr)
			case rerr != nil:
				return fmt.Errorf("write receipts of alert %s: %w", d.a.ID, rerr)
			}
			return nil
		})
	}
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return 0, err
	}
	if err := w.Receipts.Write(ctx, d.alertReceipt()); err != nil {
		return 0, fmt.Errorf("write the alert receipt of %s: %w", d.a.ID, err)
	}
	return jobs, nil
}

// chainHistory returns the ledger of every earlier alert of the chain
// (prior holds those the alert references directly), so that each
// partner's lineage withdraws only what it received.
func (w *Worker) chainHistory(ctx context.Context, l *delivery.Lineage, prior map[string]*ledger.Alert) (map[string]*ledger.Alert, error) {
	chain := make(map[string]*ledger.Alert, len(prior))
	var missing []string
	for _, id := range l.Chain() {
		if p, ok := prior[id]; ok {
			chain[id] = p
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return chain, nil
	}
	more, err := w.History.Lookup(ctx, missing)
	if err != nil {
		return nil, fmt.Errorf("look up the chain of %s: %w", l.Root, err)
	}
	maps.Copy(chain, more)
	return chain, nil
}

// published returns the lookup of alerts as the alerts topic holds them
// (PublishedHistory.Held) for one alert: CheckReferences and TraceLineage
// ask it, each id once (ledger.Remembered).
func (w *Worker) published(ctx context.Context) ledger.Published {
	return ledger.Remembered(func(id string) (*alerts.Alert, error) {
		h, ok := w.History.(PublishedHistory)
		if !ok {
			return nil, fmt.Errorf("alert %s as published: the fan-out's history does not keep published alerts", id)
		}
		return h.Held(ctx, id)
	})
}

// held lists the referenced alerts the target of subscriber's record of
// the given incarnation received, for a notice naming them: the title
// only when that alert went out in the clear, so a notice never shows
// what the target only ever received encrypted.
func held(prior map[string]*ledger.Alert, subscriber, incarnation, target string) []delivery.Held {
	var out []delivery.Held
	for _, p := range prior {
		if !p.Received(subscriber, incarnation, target) {
			continue
		}
		h := delivery.Held{ID: p.ID}
		if !(&alerts.Alert{TLP: p.TLP, Marking: p.Marking}).MustEncrypt() {
			h.Title = p.Title
		}
		out = append(out, h)
	}
	slices.SortFunc(out, func(x, y delivery.Held) int { return strings.Compare(x.ID, y.ID) })
	return out
}

// priorRecipients returns every registered partner that received one of
// the prior alerts and is not a candidate already (have), each once: the
// registered record only when the alert was decided for its incarnation
// (ledger.Entry.Of), so that a partner registered again under a deleted
// partner's id hears nothing of what the deleted one received.
func priorRecipients(reg Candidates, have map[string]bool, prior map[string]*ledger.Alert) []*subscribers.Subscriber {
	var out []*subscribers.Subscriber
	// In the order of the referenced alerts' ids, so that rows come out
	// the same way every time.
	for _, id := range slices.Sorted(maps.Keys(prior)) {
		p := prior[id]
		for _, e := range p.Entries() {
			if have[e.Subscriber] || e.Decision != delivery.Deliver {
				continue
			}
			if s := reg.Get(e.Subscriber); s != nil && e.Of(s.Incarnation) {
				have[s.ID] = true
				out = append(out, s)
			}
		}
	}
	return out
}

// ReceiptMessage encodes a receipt for the receipts topic, keyed by alert id.
func ReceiptMessage(r delivery.Receipt) kafka.Message {
	return kafka.Message{Key: []byte(r.AlertID), Value: r.Encode()}
}

// Unbound is what Backfill needs of the history: the bindings missing from
// the alert-ids topic for alerts it knows were fanned out (view.View.Unbound).
type Unbound interface {
	Unbound(ctx context.Context) ([]record.Binding, error)
}

// backfillBatch is how many bindings Backfill writes per request.
const backfillBatch = 1000

// Backfill writes to p the binding of every alert that h knows was fanned
// out and that has none: alerts fanned out before the alert-ids topic
// existed, and any whose fan-out stopped between its alert receipt and its
// binding. Call it once h has caught up with the receipts and alert-ids
// topics. It is idempotent (a binding written twice is the same binding,
// and the view keeps the first), costs one read of the view's receipts
// index when nothing is missing, and returns how many it wrote.
func Backfill(ctx context.Context, h Unbound, p Producer) (int, error) {
	missing, err := h.Unbound(ctx)
	if err != nil {
		return 0, fmt.Errorf("backfill alert id bindings: %w", err)
	}
	written := 0
	for chunk := range slices.Chunk(missing, backfillBatch) {
		msgs := make([]kafka.Message, len(chunk))
		for i, b := range chunk {
			msgs[i] = BindingMessage(b)
		}
		if err := p.Write(ctx, msgs...); err != nil {
			return written, fmt.Errorf("backfill alert id bindings: write %d of %d: %w", len(msgs), len(missing)-written, err)
		}
		written += len(msgs)
	}
	return written, nil
}

// Displacements is what Rebind needs of the history: the bindings that a
// later record under their id, which no reader accepts, follows on the
// alert-ids topic (view.View.Displaced).
type Displacements interface {
	Displaced(ctx context.Context) ([]record.Displaced, error)
}

// Rebind writes to p, again, each binding h says is displaced: a record
// under its id that Herald does not accept (not written by Herald, or not
// the binding) follows it, and compaction, which keeps only the latest
// record under a key, would erase the binding, after which a view rebuilt
// from Kafka would take the id for free. The copy, written after that
// record, is the binding h holds, as it holds it (the id's first authentic
// binding: never another digest), so the latest record under the id is the
// binding again. It is idempotent: processes that run it at once each
// write the same binding, which readers take as a copy. It returns the
// displacements it wrote the binding of.
func Rebind(ctx context.Context, h Displacements, p Producer) ([]record.Displaced, error) {
	displaced, err := h.Displaced(ctx)
	if err != nil {
		return nil, fmt.Errorf("write displaced alert id bindings again: %w", err)
	}
	var written []record.Displaced
	for chunk := range slices.Chunk(displaced, backfillBatch) {
		msgs := make([]kafka.Message, len(chunk))
		for i, d := range chunk {
			msgs[i] = BindingMessage(d.Binding)
		}
		if err := p.Write(ctx, msgs...); err != nil {
			return written, fmt.Errorf("write displaced alert id bindings again: write %d of %d: %w", len(msgs), len(displaced)-len(written), err)
		}
		written = append(written, chunk...)
	}
	return written, nil
}
