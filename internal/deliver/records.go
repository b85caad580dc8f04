package deliver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/subscribers"
)

// headerLease marks a lease: the copy of a job whose attempt was handed
// off by its batch. A dead letter's reason and error headers, and a
// refused record's source, are bus.Rejection's (bus.HeaderReason, …).
const headerLease = "lease"

// Rules the runner records for withholds the policy does not name.
const (
	// RuleSubscriberDeleted withholds a job whose subscriber record was
	// deleted since fan-out.
	RuleSubscriberDeleted = "subscriber.deleted"
	// RuleTargetRemoved withholds a job whose target is no longer in the
	// subscriber's record.
	RuleTargetRemoved = "subscriber.target-removed"
	// RuleSubscriberReplaced withholds a job decided for another
	// incarnation of the subscriber's record than the current one
	// (subscribers.Subscriber.Incarnation): the partner was deleted and
	// its id registered again since fan-out, by what may be another
	// organisation, which must never receive what was decided for the
	// deleted one.
	RuleSubscriberReplaced = "subscriber.replaced"
)

// Causes of rescheduling without an attempt, for metrics.
const (
	causeNotDue      = "not-due"
	causeCircuitOpen = "circuit-open"
	causeSaturated   = "saturated"
	causeShutdown    = "shutdown"
	causeLeaseBusy   = "lease-busy"
	causeHandoff     = "handoff"
)

// out collects the records one batch, or one handed-off attempt, must
// write before its work counts as done; after holds, by topic, what runs
// once that topic's records are written.
type out struct {
	mu      sync.Mutex
	byTopic map[string][]kafka.Message
	after   map[string][]func()
	err     error
}

func newOut() *out { return &out{byTopic: make(map[string][]kafka.Message)} }

func (o *out) add(topic string, m kafka.Message) {
	o.mu.Lock()
	o.byTopic[topic] = append(o.byTopic[topic], m)
	o.mu.Unlock()
}

func (o *out) addJSON(topic, key string, v any, headers ...kafka.Header) {
	var b []byte
	var err error
	if e, ok := v.(interface{ Encode() ([]byte, error) }); ok {
		b, err = e.Encode() // a job: its alert bytes as they are
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		o.mu.Lock()
		o.err = errors.Join(o.err, fmt.Errorf("encode record for %s: %w", topic, err))
		o.mu.Unlock()
		return
	}
	o.add(topic, kafka.Message{Key: []byte(key), Value: b, Headers: headers})
}

// empty reports whether o holds nothing to write.
func (o *out) empty() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.byTopic) == 0 && len(o.after) == 0 && o.err == nil
}

// then makes f run once the records of topic that o holds (f applies one
// of them) are acknowledged, before the next phase is written.
func (o *out) then(topic string, f func()) {
	o.mu.Lock()
	if o.after == nil {
		o.after = make(map[string][]func())
	}
	o.after[topic] = append(o.after[topic], f)
	o.mu.Unlock()
}

// flush writes everything o holds, one acknowledged write per topic, in
// the phases of flushPhases, and runs the after functions of each phase's
// topics once it is acknowledged. An endpoint state is thus applied to
// this runner's registry before the receipts are written: whoever reads a
// "disabled" receipt finds the endpoint disabled here too, so the next job
// for it is withheld.
func (r *Runner) flush(ctx context.Context, o *out) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	if r.beforeFlush != nil {
		if err := r.beforeFlush(o.byTopic); err != nil {
			return err
		}
	}
	for _, phase := range flushPhases(o.byTopic) {
		g, gctx := errgroup.WithContext(ctx)
		for _, topic := range phase {
			msgs := o.byTopic[topic]
			if topic == bus.TopicReceipts {
				msgs = packReceipts(msgs)
			}
			g.Go(func() error { return r.bus.Producer(topic).Write(gctx, msgs...) })
		}
		if err := g.Wait(); err != nil {
			return err
		}
		for _, topic := range phase {
			for _, f := range o.after[topic] {
				f()
			}
		}
	}
	return nil
}

// packReceipts packs the receipts records of one flush, one receipt each,
// alert by alert (delivery.PackReceipts): each alert's receipts in the
// order they were settled, the alerts in the order of their first
// receipt. Packing changes how many records the receipts take, never when
// they are written: all of them are written by the same flush as before.
// Receipts carry no headers (the producer adds herald-auth to each record
// it writes); should one ever carry any, nothing is packed.
func packReceipts(msgs []kafka.Message) []kafka.Message {
	if len(msgs) < 2 {
		return msgs
	}
	var keys []string
	byKey := make(map[string][][]byte)
	for _, m := range msgs {
		if len(m.Headers) > 0 {
			return msgs
		}
		k := string(m.Key)
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], m.Value)
	}
	if len(keys) == len(msgs) {
		return msgs // one receipt an alert: nothing to pack
	}
	out := make([]kafka.Message, 0, len(keys))
	for _, k := range keys {
		key := []byte(k)
		for _, v := range delivery.PackReceipts(byKey[k]) {
			out = append(out, kafka.Message{Key: key, Value: v})
		}
	}
	return out
}

// flushPhases orders the topics of a batch's records into phases, each
// written (its topics in parallel) once the one before is acknowledged:
//
//  1. dead letters and endpoint states, so that whoever reads a "dead"
//     receipt finds the dead letter it tells of;
//  2. the receipts;
//  3. the jobs of the retry tiers (and any other topic), so that a
//     retrying delivery's receipt is in the receipts topic before the
//     retry can be attempted and its next outcome written: receipts of a
//     delivery are folded in topic order, and an "expired" or "dead"
//     written by a retry tier must never come before the "retrying" that
//     led to it.
//
// A process that dies between phases has not committed the jobs it was
// handling; they are handled again, and their records written again.
func flushPhases(byTopic map[string][]kafka.Message) [][]string {
	var first, receipts, last []string
	for topic := range byTopic {
		switch topic {
		case bus.TopicDead, bus.TopicSubscribers:
			first = append(first, topic)
		case bus.TopicReceipts:
			receipts = append(receipts, topic)
		default:
			last = append(last, topic)
		}
	}
	var phases [][]string
	for _, p := range [][]string{first, receipts, last} {
		if len(p) > 0 {
			sort.Strings(p)
			phases = append(phases, p)
		}
	}
	return phases
}

// receipt records an outcome of job and counts it.
func (r *Runner) receipt(o *out, job *delivery.Job, rc delivery.Receipt) {
	rc = r.record(o, job, rc)
	reason := rc.Reason
	if rc.State == delivery.StateWithheld {
		reason = rc.Rule
	}
	r.metrics.outcomes.WithLabelValues(job.Channel, rc.State, reason).Inc()
}

// record adds to o the outcome receipt rc of job, without counting it,
// and returns it as written.
func (r *Runner) record(o *out, job *delivery.Job, rc delivery.Receipt) delivery.Receipt {
	rc.Kind = delivery.KindOutcome
	rc.DeliveryID = job.ID
	rc.Subscriber = job.Subscriber
	rc.Incarnation = job.Incarnation
	rc.Channel = job.Channel
	rc.Target = job.Target
	if job.Alert != nil {
		rc.AlertID = job.Alert.ID
	}
	if rc.At.IsZero() {
		rc.At = r.now()
	}
	o.add(bus.TopicReceipts, kafka.Message{Key: []byte(rc.AlertID), Value: rc.Encode()})
	return rc
}

// withhold ends job as withheld by rule.
func (r *Runner) withhold(o *out, job *delivery.Job, rule, why string) {
	r.receipt(o, job, delivery.Receipt{State: delivery.StateWithheld, Rule: rule, Error: why, Attempt: job.Attempt})
}

// expire ends job as expired.
func (r *Runner) expire(o *out, job *delivery.Job) {
	r.receipt(o, job, delivery.Receipt{State: delivery.StateExpired, Rule: policy.RuleExpired, Attempt: job.Attempt,
		Error: "the alert expired at " + job.Alert.ExpiresAt.UTC().Format(time.RFC3339)})
}

// forward moves job to the retry tier that fits its NotBefore, without an
// attempt and without a receipt.
func (r *Runner) forward(o *out, job *delivery.Job, lease bool, cause string) {
	tier := r.tierFor(job.NotBefore.Sub(r.now()))
	var hs []kafka.Header
	if lease {
		hs = append(hs, kafka.Header{Key: headerLease, Value: []byte("1")})
	}
	o.addJSON(bus.RetryTopic(tier), job.Subscriber, job, hs...)
	r.metrics.reschedule.WithLabelValues(cause).Inc()
}

// reschedule moves job, which was not attempted, to be tried again at
// due; its attempt count is unchanged.
func (r *Runner) reschedule(o *out, job *delivery.Job, due time.Time, lease bool, cause string) {
	j := *job
	j.NotBefore = due
	r.forward(o, &j, lease, cause)
}

// dead writes job to the dead topic with reason and records state.
func (r *Runner) dead(o *out, job *delivery.Job, state, reason, errText string, attempt int) {
	o.addJSON(bus.TopicDead, job.Subscriber, job,
		kafka.Header{Key: bus.HeaderReason, Value: []byte(reason)},
		kafka.Header{Key: bus.HeaderError, Value: []byte(errText)})
	r.receipt(o, job, delivery.Receipt{State: state, Reason: reason, Error: errText, Attempt: attempt})
}

// deadInvalid moves an undecodable record read as m to the dead topic as
// it is.
func (r *Runner) deadInvalid(o *out, m kafka.Message, err error) {
	r.deadUnattempted(o, m, m.Key, m.Value, delivery.ReasonInvalid, err,
		"undecodable delivery job moved to the dead-letter topic")
}

// deadRefusedJob moves a job of the pack m, an authentic record, that
// fails its checks to the dead topic: its bytes as they are, under its
// partner's id prefixed with refusedKeyPrefix, so that it is listed but
// never replayed (the pack's other jobs were taken). When the job names
// its delivery (BadJob.Delivery), whose decision receipt the fan-out
// wrote, it records that delivery dead (reason invalid), so that it is not
// shown pending for ever; when it names none, the dead letter's error says
// that no delivery was recorded dead.
func (r *Runner) deadRefusedJob(o *out, m kafka.Message, x delivery.BadJob) {
	key := x.Subscriber
	if key == "" {
		key = string(m.Key)
	}
	err := x.Err
	if x.Delivery == nil {
		err = fmt.Errorf("%w (it names no delivery of the pack's alert: none is recorded dead)", err)
	}
	r.deadUnattempted(o, m, []byte(refusedKeyPrefix+key), x.Value, delivery.ReasonInvalid, err,
		"undecodable delivery job moved to the dead-letter topic")
	if x.Delivery != nil {
		// Counted once, as the dead letter.
		r.record(o, x.Delivery, delivery.Receipt{State: delivery.StateDead, Reason: delivery.ReasonInvalid,
			Error: x.Err.Error(), Attempt: x.Delivery.Attempt})
	}
}

// deadUnattributed moves a record that Herald did not write (it fails
// authentication) to the dead topic without attempting it: its value as it
// is, under its key prefixed with unattributedKeyPrefix, which the
// authenticator Herald adds covers, so that it can never pass for a dead
// job and be replayed. It writes no receipt: the record's claims are not
// Herald's.
func (r *Runner) deadUnattributed(o *out, m kafka.Message, err error) {
	r.deadUnattempted(o, m, append([]byte(unattributedKeyPrefix), m.Key...), m.Value, delivery.ReasonUnattributed, err,
		"delivery job not written by Herald moved to the dead-letter topic unattempted")
}

// deadUnattempted writes value, read in m and never attempted, to the dead
// topic under key with reason, err and where it was read (bus.Rejection),
// and counts and logs it (msg). It writes no receipt.
func (r *Runner) deadUnattempted(o *out, m kafka.Message, key, value []byte, reason string, err error, msg string) {
	d := bus.Rejection(m, reason, err)
	d.Key, d.Value = key, value
	o.add(bus.TopicDead, d)
	r.metrics.outcomes.WithLabelValues("", delivery.StateDead, reason).Inc()
	r.log.Warn(msg, "source", bus.Source(m), "error", err)
}

// conclude turns the result of an attempt of job into records: delivered,
// retrying, dead or disabled.
func (r *Runner) conclude(o *out, job *delivery.Job, f *delivery.Failure, now time.Time) {
	attempt := job.Attempt + 1
	if f == nil {
		r.receipt(o, job, delivery.Receipt{State: delivery.StateDelivered, Attempt: attempt, At: now})
		return
	}
	j := *job
	j.History = append(slices.Clone(job.History), delivery.Attempt{At: now, Reason: f.Reason, Error: f.Error()})
	log := r.log.With("alert", job.Alert.ID, "subscriber", job.Subscriber, "delivery", job.ID, "channel", job.Channel)
	switch {
	case f.Gone:
		r.dead(o, &j, delivery.StateDisabled, delivery.ReasonGone, f.Error(), attempt)
		r.disable(o, job, now)
		log.Warn("endpoint answered 410 Gone: disabled", "attempt", attempt)
	case !f.Temporary:
		r.dead(o, &j, delivery.StateDead, f.Reason, f.Error(), attempt)
		log.Warn("delivery failed for good", "reason", f.Reason, "attempt", attempt, "error", f)
	case job.Attempt >= len(r.cfg.RetrySchedule):
		r.dead(o, &j, delivery.StateDead, delivery.ReasonExhausted, f.Error(), attempt)
		log.Warn("delivery retries exhausted", "attempt", attempt, "error", f)
	default:
		due := now.Add(r.retryDelay(job.Attempt, f.RetryAfter))
		j.Attempt = attempt
		j.NotBefore = due
		o.addJSON(bus.RetryTopic(r.tierFor(due.Sub(now))), j.Subscriber, &j)
		r.receipt(o, job, delivery.Receipt{State: delivery.StateRetrying, Reason: f.Reason, Error: f.Error(),
			Attempt: attempt, RetryAt: due, At: now})
		log.Debug("delivery will be retried", "reason", f.Reason, "attempt", attempt, "retry_at", due)
	}
}

// ActorDeliver names the delivery runner as the author of the endpoint
// states it writes (subscribers.EndpointState.By).
const ActorDeliver = "herald:deliver"

// disable records job's webhook endpoint as disabled (it answered 410
// Gone), so that fan-out and the policy stop using it: an endpoint state
// under its own key in the subscribers topic, which the registry applies
// on top of the partner's record. The partner's record is never written,
// so an administrator's change to it made meanwhile stands.
func (r *Runner) disable(o *out, job *delivery.Job, now time.Time) {
	if job.Channel != delivery.ChannelWebhook {
		return
	}
	st := subscribers.EndpointState{Subscriber: job.Subscriber, URL: job.Target, Disabled: true,
		Reason: delivery.ReasonGone, By: ActorDeliver, At: now}
	// Once written, the state is applied to the registry at once, unless
	// the registry has read a state of this endpoint meanwhile (ours, or
	// a later one): its follower applies the topic in order.
	rev := r.reg.EndpointRevision(st.Subscriber, st.URL)
	o.addJSON(bus.TopicSubscribers, subscribers.EndpointKey(st.Subscriber, st.URL), st)
	o.then(bus.TopicSubscribers, func() { r.reg.PutEndpointIf(st, rev) })
}

// recheck re-evaluates the policy for job's target with sub's current
// record. It returns the rule and reason of a withhold, or "" and updates
// job's mode when the policy now allows less (a key-notice instead of
// content). A job decided for another incarnation of the record is
// withheld (RuleSubscriberReplaced), whatever it carries; a job or a
// record without an incarnation (written before Herald recorded it) is
// rechecked as before.
func (r *Runner) recheck(job *delivery.Job, sub *subscribers.Subscriber, now time.Time) (rule, why string) {
	if !ledger.SameIncarnation(job.Incarnation, sub.Incarnation) {
		return RuleSubscriberReplaced, "the subscriber record the job was decided for was deleted and its id registered again (incarnation " +
			strconv.Quote(job.Incarnation) + ", now " + strconv.Quote(sub.Incarnation) + ")"
	}
	if job.Mode == delivery.ModeCancelNotice || job.Mode == delivery.ModeFollowUpKeyNotice || job.Mode == delivery.ModeKeyExpiryNotice {
		// A content-free notice about an alert the target holds (rule 7),
		// or about the target's own key: it goes unless the partner or
		// the target is gone.
		if !sub.Active() {
			return policy.RuleSuspended, "the partner's status is " + strconv.Quote(sub.Status) + ", not active"
		}
		switch job.Channel {
		case delivery.ChannelEmail:
			if slices.ContainsFunc(sub.Email, func(e subscribers.Email) bool { return e.Address == job.Target }) {
				return "", ""
			}
		case delivery.ChannelWebhook:
			for _, w := range sub.Webhooks {
				if w.URL == job.Target {
					if w.Disabled {
						return policy.RuleDisabled, "the endpoint answered 410 Gone and is disabled"
					}
					return "", ""
				}
			}
		}
		return RuleTargetRemoved, "the target is no longer in the subscriber's record"
	}
	for _, d := range policy.Evaluate(job.Alert, sub, now, r.cfg.Policy) {
		if d.Channel == "" && d.Decision == delivery.Withhold {
			return d.Rule, d.Reason // the partner as a whole, with no targets left
		}
		if d.Channel != job.Channel || d.Target != job.Target {
			continue
		}
		switch d.Decision {
		case delivery.Deliver:
			if job.Mode != delivery.ModeKeyNotice {
				job.Mode = d.Mode
			}
			return "", ""
		case delivery.Notice:
			job.Mode = d.Mode
			return "", ""
		default:
			return d.Rule, d.Reason
		}
	}
	return RuleTargetRemoved, "the target is no longer in the subscriber's record"
}
