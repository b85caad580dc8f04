package deliver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
)

// ReasonReplayed is the reason of the pending receipt Replay writes.
const ReasonReplayed = "replayed"

// ReplayGrace is how long a replayed delivery may stay pending before a
// later Replay takes it for a replay that was cut short (killed between its
// pending receipt and its job) and queues it again. A deliver role takes a
// replayed job up within moments; one that was down for longer may send
// the delivery twice, which receivers drop by its webhook-id or
// Message-ID: at least once, never lost.
const ReplayGrace = 15 * time.Minute

// ReasonReplayFailed is the reason of the dead receipt Replay writes
// after its pending receipt when it could not re-queue the jobs: the
// delivery is dead again, and may be replayed again.
const ReasonReplayFailed = "replay-failed"

// ReasonUnauthenticated is the reason ListDead gives a record of the dead
// topic that Herald did not write (its herald-auth authenticator is
// missing or wrong): whatever it claims, it is never replayed.
const ReasonUnauthenticated = "unauthenticated"

// ReasonUnauthenticatedHeaders is the reason ListDead gives a dead letter
// Herald wrote whose reason and error headers it did not (they fail
// bus.AuthenticateHeaders: altered in a copy, or written before Herald
// covered headers): its job, which authenticates, is listed and
// replayable, and its claimed reason and error are not shown.
const ReasonUnauthenticatedHeaders = "unauthenticated-headers"

// unattributedKeyPrefix starts the key of a dead letter that holds a job
// record Herald did not write (reason delivery.ReasonUnattributed).
// Subscriber ids, the keys of dead jobs, are slugs and never start with
// '~'. The key is covered by the authenticator Herald adds when it writes
// the dead letter, and its headers are not: a copy of the record with
// another reason header is still known for what it is.
const unattributedKeyPrefix = "~unattributed/"

// refusedKeyPrefix starts the key of a dead letter that holds a job of a
// pack the runner refused (it failed its checks) while it took the pack's
// other jobs: listed with the reason in its header, never replayed. Like
// unattributedKeyPrefix, the key is covered by the authenticator.
const refusedKeyPrefix = "~refused/"

// TopicReader reads a whole topic and authenticates its records;
// *bus.Bus satisfies it.
type TopicReader interface {
	ReadAll(ctx context.Context, topic string, fn func(kafka.Message) error) error
	Authenticate(m kafka.Message) error
	AuthenticateHeaders(m kafka.Message) error
}

// ReplayBus is what Replay needs of Kafka; *bus.Bus satisfies it.
type ReplayBus interface {
	TopicReader
	ledger.Reader // the receipts of the dead jobs' alerts
	Producer(topic string) *bus.Producer
}

var _ ReplayBus = (*bus.Bus)(nil)

// DeadFilter selects dead letters; empty fields match everything. A dead
// letter without a Job matches a filter that is not empty by what it names
// for certain (DeadLetter.named): a job of a pack the runner refused, by
// the partner it names (its "~refused/" key), its incarnation, and an
// alert whose delivery to that partner and target its id is (the record
// holds no alert); a job of a pack an older role dead-lettered whole, by
// the partner it names and the pack's alert. It never matches Deliveries,
// which select what to replay, nor does a record Herald did not write, or
// one of the dead topic it did not write, match any filter.
type DeadFilter struct {
	// Subscriber is a subscriber id.
	Subscriber string
	// Incarnation keeps the dead letters of jobs decided for that
	// incarnation of the subscriber's record, and those of jobs without
	// one (ledger.SameIncarnation): a partner registered again under a
	// deleted partner's id replays none of the deleted one's.
	Incarnation string
	// Alert is an alert id.
	Alert string
	// Deliveries, when not empty, keeps the dead letters of these
	// delivery ids only.
	Deliveries []string
}

// Empty reports whether f selects every dead letter.
func (f DeadFilter) Empty() bool {
	return f.Subscriber == "" && f.Incarnation == "" && f.Alert == "" && len(f.Deliveries) == 0
}

func (f DeadFilter) match(d *DeadLetter) bool {
	j := d.Job
	if j == nil {
		if f.Empty() {
			return true
		}
		if d.named == nil || len(f.Deliveries) > 0 {
			return false
		}
		j = d.named
	}
	return (f.Subscriber == "" || j.Subscriber == f.Subscriber) &&
		ledger.SameIncarnation(j.Incarnation, f.Incarnation) &&
		(f.Alert == "" || ofAlert(j, f.Alert)) &&
		(len(f.Deliveries) == 0 || slices.Contains(f.Deliveries, j.ID))
}

// ofAlert reports whether j, a dead job or what a dead letter names
// (DeadLetter.named), is of the alert id: its alert's, or, when it holds
// none (a refused job's dead letter), the delivery id it carries is that
// alert's to its partner and target (delivery.ID), as the runner required
// before recording the delivery dead.
func ofAlert(j *delivery.Job, id string) bool {
	if j.Alert != nil {
		return j.Alert.ID == id
	}
	return j.Subscriber != "" && j.Target != "" && j.ID == delivery.ID(id, j.Subscriber, j.Target)
}

// refusedNames returns what the dead letter of a job of a pack the runner
// refused names for certain (DeadLetter.named): its key is the partner's id
// after refusedKeyPrefix, its value the job's bytes without the pack's
// alert. The partner is known when the job names the very partner of the
// key (a job that names none is keyed by its pack's key, another
// partner's id); the job's target, incarnation and delivery id are then
// as it gives them. Nil when the job names no partner, or another.
func refusedNames(key, value []byte) *delivery.Job {
	var w struct {
		ID          string `json:"id"`
		Subscriber  string `json:"subscriber"`
		Incarnation string `json:"incarnation"`
		Target      string `json:"target"`
	}
	sub := strings.TrimPrefix(string(key), refusedKeyPrefix)
	if json.Unmarshal(value, &w) != nil || w.Subscriber == "" || w.Subscriber != sub {
		return nil
	}
	return &delivery.Job{ID: w.ID, Subscriber: w.Subscriber, Incarnation: w.Incarnation, Target: w.Target}
}

// DeadLetter is one record of the dead topic.
type DeadLetter struct {
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	Time      time.Time `json:"time"`
	// Reason is why the job is dead (a delivery.Reason… constant), or
	// ReasonUnauthenticated for a record Herald did not write, or
	// ReasonUnauthenticatedHeaders for one whose reason and error headers
	// Herald did not write (Error then says so).
	Reason string `json:"reason"`
	// Error is the last error.
	Error string `json:"error,omitempty"`
	// Authentic reports that Herald wrote the record (PRODUCT.md §3 rule
	// 1). Only authentic dead jobs are replayed.
	Authentic bool `json:"authentic"`
	// Job is the dead job with its attempt history; nil when the record is
	// not a job Herald dead-lettered: undecodable (Reason "invalid"), a job
	// of a pack the runner refused (Reason "invalid", a "~refused/" key), a
	// job record Herald did not write that the runner moved here unattempted
	// (Reason "unattributed"), or a record of the dead topic Herald did not
	// write (Reason "unauthenticated"). Raw then holds its value. A pack a
	// deliver role from before packing moved here (Reason "invalid") is a
	// dead letter per job, each with its Job, replayable.
	Job *delivery.Job `json:"job,omitempty"`
	// Raw is the record's value when Job is nil.
	Raw []byte `json:"raw,omitempty"`
	// named is, when Job is nil, what the dead letter names for certain,
	// for DeadFilter to match: the partner, incarnation, target and
	// delivery id of a refused job (refusedNames), or of a job of a pack
	// an older role dead-lettered whole, with the pack's alert when it is
	// known. Nil when it names nothing Herald vouches for. Never a job to
	// attempt.
	named *delivery.Job
}

// Names returns what d names for certain: its job's alert, partner and
// target, or, for a dead letter without a job, what it names (the partner
// and target of a job of a pack the runner refused, when the job names
// the very partner it is keyed by); "" for what it does not name. It is
// for showing, never a job to attempt.
func (d DeadLetter) Names() (alert, subscriber, target string) {
	j := d.Job
	if j == nil {
		j = d.named
	}
	if j == nil {
		return "", "", ""
	}
	if j.Alert != nil {
		alert = j.Alert.ID
	}
	return alert, j.Subscriber, j.Target
}

// ListDead returns the dead letters that match filter, in topic order
// (partition by partition, oldest first). Records of the dead topic that
// Herald did not write are listed with Reason "unauthenticated" and no
// Job, whatever their headers claim. A reason or error header is shown
// only when the record's headers authenticate (bus.AuthenticateHeaders);
// otherwise the dead letter has Reason "unauthenticated-headers" and an
// Error saying so, and is listed and replayed as its job says: among them
// every dead letter written before Herald authenticated headers. A record holding a pack of jobs (which
// only a deliver role from before packing, unable to read it, moved here as
// invalid) is listed as a dead letter for each of its jobs, which Replay
// queues again.
func ListDead(ctx context.Context, b TopicReader, filter DeadFilter) ([]DeadLetter, error) {
	var out []DeadLetter
	alerts := delivery.NewAlertCache(alertCacheSize)
	add := func(d DeadLetter) {
		if d.Job != nil && len(d.Job.History) > 0 {
			switch last := d.Job.History[len(d.Job.History)-1].Error; {
			case d.Error == "":
				d.Error = last
			case d.Reason == ReasonUnauthenticatedHeaders && last != "":
				d.Error += "; last attempt: " + last
			}
		}
		if filter.match(&d) {
			out = append(out, d)
		}
	}
	err := b.ReadAll(ctx, bus.TopicDead, func(m kafka.Message) error {
		d := DeadLetter{Partition: m.Partition, Offset: m.Offset, Time: m.Time}
		err := b.Authenticate(m)
		if err != nil {
			d.Reason, d.Error, d.Raw = ReasonUnauthenticated, err.Error(), m.Value
			add(d)
			return nil
		}
		d.Authentic = true
		reason, errText := deadHeaders(b, m)
		switch {
		case bytes.HasPrefix(m.Key, []byte(unattributedKeyPrefix)):
			// The reason is the key's, which the authenticator covers.
			d.Reason, d.Error, d.Raw = delivery.ReasonUnattributed, errText, m.Value
		case bytes.HasPrefix(m.Key, []byte(refusedKeyPrefix)):
			d.Reason, d.Error, d.Raw = reason, errText, m.Value
			d.named = refusedNames(m.Key, m.Value)
		default:
			d.Reason, d.Error = reason, errText
			// A pack of jobs is dead only when a deliver role from
			// before packing read it: a dead letter for each of its
			// jobs, none of them attempted, each replayable.
			jobs, bad, err := delivery.DecodeJobs(m.Value, alerts)
			if err != nil {
				d.Raw = m.Value
				break
			}
			for _, job := range jobs {
				dj := d
				dj.Job = job
				add(dj)
			}
			for _, x := range bad {
				dj := d
				dj.Error, dj.Raw = x.Err.Error(), x.Value
				switch {
				case x.Delivery != nil:
					dj.named = x.Delivery
				case x.Subscriber != "":
					dj.named = &delivery.Job{Subscriber: x.Subscriber}
					if len(jobs) > 0 { // the pack's alert
						dj.named.Alert = jobs[0].Alert
					}
				}
				add(dj)
			}
			return nil
		}
		add(d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// deadHeaders returns the reason and error headers of m, an authentic
// record of the dead topic, when its headers authenticate too; otherwise
// ReasonUnauthenticatedHeaders and an error saying why, for the claimed
// ones are not Herald's (PRODUCT.md §3 rule 1).
func deadHeaders(b TopicReader, m kafka.Message) (reason, errText string) {
	if err := b.AuthenticateHeaders(m); err != nil {
		return ReasonUnauthenticatedHeaders, "reason and error headers not written by Herald, not shown (altered, or written before Herald authenticated headers): " + err.Error()
	}
	return bus.Header(m, bus.HeaderReason), bus.Header(m, bus.HeaderError)
}

// replayable reports whether d is a dead job Herald wrote.
func (d *DeadLetter) replayable() bool {
	return d.Authentic && d.Job != nil && d.Reason != delivery.ReasonUnattributed
}

// Replay re-queues the dead jobs that match filter to the deliveries
// topic, with their attempt count reset and their history kept, and writes
// a pending receipt (reason "replayed") for each. It returns how many it
// re-queued.
//
// Replay judges each delivery by its state in the ledger (ledger.FromBus,
// which folds only receipts Herald wrote). Delivered is final there: a
// delivery with any delivered outcome receipt is never replayed, even when
// a later receipt says dead (a duplicate attempt of a job that two workers
// ran, after a rebalance). Otherwise a delivery is replayed only while its
// state is dead or disabled (or the ledger holds nothing of it): one
// replayed and not dead again since is pending, and skipped, so that
// running Replay twice sends nothing twice — until it has been pending for
// ReplayGrace (a delivery with a dead letter is pending only by a replay),
// when its replay is taken to have been cut short and it is queued again.
// Of several dead letters of one delivery, the latest is replayed.
// Only dead jobs Herald wrote are replayed: never undecodable records, job
// records Herald did not write, or records of the dead topic Herald did not
// write. An endpoint disabled by 410 Gone stays disabled: its jobs are
// withheld at delivery time until an administrator re-enables it.
//
// The pending receipts are written before the jobs: a deliver role takes
// a replayed job up within milliseconds, and its outcome must follow the
// pending receipt in the alert's receipts (were it the other way round, a
// replay that died again at once would end at "pending", never to be
// replayed). When the jobs cannot be written, Replay records those
// deliveries dead again (reason "replay-failed") and returns the error.
// A process killed between the two writes leaves a delivery pending with
// no job queued, until ReplayGrace has passed and Replay runs again.
func Replay(ctx context.Context, b ReplayBus, filter DeadFilter, now time.Time) (int, error) {
	dead, err := ListDead(ctx, b, filter)
	if err != nil {
		return 0, fmt.Errorf("replay dead letters: %w", err)
	}
	latest := make(map[string]*delivery.Job)
	var order []string
	alertIDs := make(map[string]bool)
	for _, d := range dead {
		if !d.replayable() {
			continue
		}
		if _, ok := latest[d.Job.ID]; !ok {
			order = append(order, d.Job.ID)
		}
		latest[d.Job.ID] = d.Job
		alertIDs[d.Job.Alert.ID] = true
	}
	if len(order) == 0 {
		return 0, nil
	}
	// Receipts are keyed by alert id: read only those alerts' partitions.
	keys := make([]string, 0, len(alertIDs))
	for id := range alertIDs {
		keys = append(keys, id)
	}
	// The ledger folds only receipts Herald wrote, and in it delivered is
	// final (ledger.Entry.Apply).
	known, err := ledger.FromBus(b).Lookup(ctx, keys)
	if err != nil {
		return 0, fmt.Errorf("replay dead letters: %w", err)
	}
	var jobs, receipts, undo []kafka.Message
	for _, id := range order {
		if a := known[latest[id].Alert.ID]; a != nil {
			if e, ok := a.Entry(latest[id].Subscriber, latest[id].Target); ok && !queueAgain(e, now) {
				continue
			}
		}
		j := *latest[id]
		j.Attempt = 0
		j.NotBefore = time.Time{}
		v, err := j.Encode()
		if err != nil {
			return 0, fmt.Errorf("replay dead letters: encode job %s: %w", id, err)
		}
		jobs = append(jobs, kafka.Message{Key: []byte(j.Subscriber), Value: v})
		rc := delivery.Receipt{Kind: delivery.KindOutcome, AlertID: j.Alert.ID, DeliveryID: j.ID,
			Subscriber: j.Subscriber, Incarnation: j.Incarnation, Channel: j.Channel, Target: j.Target, State: delivery.StatePending,
			Reason: ReasonReplayed, At: now}
		receipts = append(receipts, kafka.Message{Key: []byte(j.Alert.ID), Value: rc.Encode()})
		rc.State, rc.Reason = delivery.StateDead, ReasonReplayFailed
		undo = append(undo, kafka.Message{Key: []byte(j.Alert.ID), Value: rc.Encode()})
	}
	// An alert's receipts share records, as the runner's flush writes
	// them: one write each for all the pending receipts, and for all the
	// undoing ones.
	receipts, undo = packReceipts(receipts), packReceipts(undo)
	// The pending receipts first: a running deliver role may take up a
	// replayed job and write its outcome at once, and that outcome must
	// come after the pending receipt in the alert's receipts, or the
	// ledger would end at "pending" (and never replay it again) although
	// the replay was delivered or died again.
	if err := b.Producer(bus.TopicReceipts).Write(ctx, receipts...); err != nil {
		return 0, fmt.Errorf("replay dead letters: %w", err)
	}
	if err := b.Producer(bus.TopicDeliveries).Write(ctx, jobs...); err != nil {
		// Nothing was queued, or only part of it: say so in the ledger,
		// so that these deliveries can be replayed again. A job that was
		// queued all the same runs, and its outcome follows.
		if uerr := b.Producer(bus.TopicReceipts).Write(context.WithoutCancel(ctx), undo...); uerr != nil {
			return 0, fmt.Errorf("replay dead letters: %w; and recording that they were not re-queued failed: %w", err, uerr)
		}
		return 0, fmt.Errorf("replay dead letters: %w", err)
	}
	return len(jobs), nil
}

// queueAgain reports whether a dead-lettered delivery whose ledger entry
// is e may be queued again at now (see Replay).
func queueAgain(e ledger.Entry, now time.Time) bool {
	switch e.State {
	case "", delivery.StateDead, delivery.StateDisabled:
		return true
	case delivery.StatePending:
		return !e.UpdatedAt.After(now.Add(-ReplayGrace))
	}
	return false
}
