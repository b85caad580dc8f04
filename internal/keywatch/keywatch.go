// Package keywatch warns partners before their OpenPGP keys expire
// (PRODUCT.md §12): an email address whose key expires within one of
// email.key_expiry_warning (default 30 and 7 days) gets one content-free
// notice per threshold per key, so that alerts do not silently turn into
// "an alert is waiting" notices the day the key expires. It also counts the
// keys expiring soon for Prometheus, and lists them for administrators
// (`herald subscribers list --expiring 30d`).
//
// # Once, whatever the number of processes
//
// A notice is a delivery job (delivery.ModeKeyExpiryNotice) on the
// deliveries topic, delivered by the deliver role like any other, and
// named by (subscriber, address, key fingerprint, threshold): every process
// that finds the same key within the same threshold names the same notice
// (delivery.KeyExpiry.NoticeID) and the same delivery id. Its receipts go
// to the receipts topic under the notice id, where alerts' go, so the
// ledger answers for it as for an alert: who got it, when. Analysts
// therefore see each notice in the alert list and its status, titled
// "OpenPGP key expiry notice (30-day)" and issued by "herald:keywatch/…";
// the partner sees it among its deliveries.
//
// Before sending, a process claims the notice: it writes the notice's
// alert receipt (delivery.KindAlert) naming itself ("herald:keywatch/" and
// a random claim id made at start), then reads the ledger back, caught up
// with everything written before (Ledger). The ledger keeps the first
// alert receipt of an id (ledger.Meta.Apply), and every process reads the
// receipts topic in the same order, so exactly one claim is the first: the
// process whose claim it is writes the job, then its decision receipt;
// every other process, and every later check, finds the notice claimed and
// does nothing. A restart changes nothing: the receipts outlive the
// process. If the claiming process dies between its claim and its job
// (milliseconds), that notice is not sent; a process that fails to write
// the job retries at its next check, since the claim is still its own.
//
// # Where and when
//
// Every process that runs the fan-out role runs a Watch (internal/app).
// Every address of an active partner whose key is usable now and expires
// is looked at: at start, as soon as the registry holds a changed record
// (the registry is looked at every Poll), and at least every Interval.
// Only the tightest threshold the key has crossed is sent: a key found 5
// days before it expires gets the 7-day notice, not both. A key already
// expired or revoked gets no warning (the policy's key notices take over),
// nor does one without expiry. The notice expires with the key.
package keywatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/subscribers"
)

// Rule is the rule of a key-expiry notice's decision receipt.
const Rule = "key.expiring"

// SoonWindow is the window of the keys-expiring gauge.
const SoonWindow = 30 * 24 * time.Hour

// Defaults of Watch.
const (
	DefaultInterval = time.Hour
	DefaultPoll     = 2 * time.Second
)

// Registry is the current set of partners; *subscribers.Registry
// satisfies it.
type Registry interface {
	// Revision changes whenever a record or an endpoint state does.
	Revision() uint64
	// Each calls fn with the effective record of every partner.
	Each(fn func(*subscribers.Subscriber))
}

// Ledger answers what the receipts topic holds of the given ids, caught
// up with every receipt written before the call (app.ViewIndex).
type Ledger interface {
	Lookup(ctx context.Context, ids []string) (map[string]*ledger.Alert, error)
}

// Producer writes to one topic; *bus.Producer satisfies it.
type Producer interface {
	Write(ctx context.Context, msgs ...kafka.Message) error
}

// Key is one address's key as administrators list it.
type Key struct {
	Subscriber  string    `json:"subscriber"`
	Status      string    `json:"status"`
	Address     string    `json:"address"`
	Fingerprint string    `json:"fingerprint"`
	Expires     time.Time `json:"expires_at"`
}

// Expiring returns the keys of subs that expire before now+within, those
// already expired included, soonest first. Keys that do not parse or do
// not expire are left out.
func Expiring(subs []*subscribers.Subscriber, now time.Time, within time.Duration) []Key {
	var out []Key
	for _, s := range subs {
		for _, e := range s.Email {
			if strings.TrimSpace(e.PGPKey) == "" {
				continue
			}
			info, err := pgp.InspectKey(e.PGPKey, now)
			if err != nil || info.Expires.IsZero() || info.Expires.Sub(now) > within {
				continue
			}
			out = append(out, Key{Subscriber: s.ID, Status: s.Status, Address: e.Address, Fingerprint: info.Fingerprint, Expires: info.Expires})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Expires.Before(out[j].Expires) })
	return out
}

// Watch sends key-expiry notices. Set the fields, then call Run.
type Watch struct {
	Registry Registry
	Ledger   Ledger
	// Jobs writes to the deliveries topic, Receipts to the receipts
	// topic.
	Jobs, Receipts Producer
	// Thresholds are email.key_expiry_warning.
	Thresholds []time.Duration
	// Interval is the longest time between two checks of every key
	// (DefaultInterval); Poll how often the registry is looked at for
	// changed records (DefaultPoll).
	Interval, Poll time.Duration
	Now            func() time.Time
	Log            *slog.Logger
	// Keys keeps the verdicts on partners' keys, by the digest of their
	// armour: the process's one cache, which the policy's key checks and
	// the email notifier share (internal/app). New sets one of the
	// Watch's own.
	Keys *pgp.RecipientCache

	claim   string
	soon    prometheus.Gauge
	expired prometheus.Gauge
	sent    prometheus.Counter
}

// New returns a Watch with its metrics; set its fields before Run.
func New() *Watch {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Watch{
		claim: delivery.KeyExpiryIssuer + "/" + hex.EncodeToString(b[:]),
		Keys:  &pgp.RecipientCache{},
		soon: prometheus.NewGauge(prometheus.GaugeOpts{Name: "herald_partner_keys_expiring",
			Help: "OpenPGP keys of active partners' email addresses that expire within 30 days and have not expired yet."}),
		expired: prometheus.NewGauge(prometheus.GaugeOpts{Name: "herald_partner_keys_expired",
			Help: "OpenPGP keys of active partners' email addresses that have expired."}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_key_expiry_notices_total",
			Help: "Key-expiry notices this process queued (each notice is queued by one process only)."}),
	}
}

// Collectors returns the Watch's metrics, for registration.
func (w *Watch) Collectors() []prometheus.Collector {
	return []prometheus.Collector{w.soon, w.expired, w.sent}
}

// Claim names this process in the notices it claims.
func (w *Watch) Claim() string { return w.claim }

func (w *Watch) now() time.Time {
	if w.Now != nil {
		return w.Now()
	}
	return time.Now()
}

func (w *Watch) log() *slog.Logger {
	if w.Log != nil {
		return w.Log
	}
	return slog.New(slog.DiscardHandler)
}

// Run checks every key at once, then whenever the registry holds a changed
// record and at least every Interval, until ctx ends. A failed check is
// logged and tried again at the next poll.
func (w *Watch) Run(ctx context.Context) error {
	interval, poll := w.Interval, w.Poll
	if interval <= 0 {
		interval = DefaultInterval
	}
	if poll <= 0 {
		poll = DefaultPoll
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var last time.Time
	var checked uint64
	first, failed := true, false
	for {
		if rev := w.Registry.Revision(); first || rev != checked || failed || time.Since(last) >= interval {
			if err := w.Check(ctx, w.withKeys()); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				w.log().Warn("check partners' keys for expiry: will try again", "error", err)
				failed = true
			} else {
				failed, last = false, time.Now()
			}
			first, checked = false, rev
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// withKeys returns the partners with an OpenPGP key: the only ones Check
// looks at. The registry hands out its records one at a time, so the
// others are never held all at once.
func (w *Watch) withKeys() []*subscribers.Subscriber {
	var out []*subscribers.Subscriber
	w.Registry.Each(func(s *subscribers.Subscriber) {
		for _, e := range s.Email {
			if strings.TrimSpace(e.PGPKey) != "" {
				out = append(out, s)
				return
			}
		}
	})
	return out
}

// threshold returns the tightest of ts that left has crossed.
func threshold(ts []time.Duration, left time.Duration) (time.Duration, bool) {
	var best time.Duration
	found := false
	for _, t := range ts {
		if left <= t && (!found || t < best) {
			best, found = t, true
		}
	}
	return best, found
}

// Check looks at every key of subs once and queues the notices that are
// due and not yet sent (by any process). Each key is judged at every
// check (Keys: parsed again only when its verdict no longer holds at
// now): a key made after now (its owner's clock ahead) gets its notices
// once it can be used.
func (w *Watch) Check(ctx context.Context, subs []*subscribers.Subscriber) error {
	now := w.now()
	var due []delivery.KeyExpiry
	soon, expired := 0, 0
	for _, s := range subs {
		if !s.Active() {
			continue
		}
		for _, e := range s.Email {
			if strings.TrimSpace(e.PGPKey) == "" {
				continue
			}
			v := w.Keys.Judge(e.PGPKey, now)
			if !v.Parses() {
				continue
			}
			info := v.Info
			if info.Expires.IsZero() {
				continue
			}
			left := info.Expires.Sub(now)
			switch {
			case left <= 0:
				expired++
				continue
			case left <= SoonWindow:
				soon++
			}
			if v.Err != nil {
				continue // revoked, not valid yet, or cannot encrypt: the policy's key notices say so
			}
			if t, ok := threshold(w.Thresholds, left); ok {
				due = append(due, delivery.KeyExpiry{Subscriber: s.ID, Address: e.Address, Fingerprint: info.Fingerprint,
					Expires: info.Expires, Threshold: t})
			}
		}
	}
	w.soon.Set(float64(soon))
	w.expired.Set(float64(expired))
	if len(due) > 0 {
		if err := w.send(ctx, due, now); err != nil {
			return err
		}
	}
	w.log().Debug("partners' keys checked", "expiring", soon, "expired", expired, "within_a_threshold", len(due))
	return nil
}

// send claims and queues the notices of due that no process has claimed.
func (w *Watch) send(ctx context.Context, due []delivery.KeyExpiry, now time.Time) error {
	ids := make([]string, len(due))
	for i, k := range due {
		ids[i] = k.NoticeID()
	}
	known, err := w.Ledger.Lookup(ctx, ids)
	if err != nil {
		return fmt.Errorf("look up key-expiry notices: %w", err)
	}
	var claims []kafka.Message
	var open []delivery.KeyExpiry
	for i, k := range due {
		a := known[ids[i]]
		switch {
		case a == nil:
			claims = append(claims, fanout.ReceiptMessage(claimReceipt(k, w.claim, now)))
			open = append(open, k)
		case a.IssuedBy == w.claim && len(a.Entries()) == 0:
			open = append(open, k) // ours, and its job was not written: again
		}
	}
	if len(open) == 0 {
		return nil
	}
	if len(claims) > 0 {
		if err := w.Receipts.Write(ctx, claims...); err != nil {
			return fmt.Errorf("claim key-expiry notices: %w", err)
		}
		openIDs := make([]string, len(open))
		for i, k := range open {
			openIDs[i] = k.NoticeID()
		}
		if known, err = w.Ledger.Lookup(ctx, openIDs); err != nil {
			return fmt.Errorf("read back key-expiry notice claims: %w", err)
		}
	}
	var jobs, decisions []kafka.Message
	var mine []delivery.KeyExpiry
	for _, k := range open {
		a := known[k.NoticeID()]
		if a == nil || a.IssuedBy != w.claim {
			continue // another process claimed it first
		}
		mine = append(mine, k)
		job := k.Job(now)
		v, err := job.Encode()
		if err != nil {
			return fmt.Errorf("encode key-expiry notice %s: %w", job.ID, err)
		}
		jobs = append(jobs, kafka.Message{Key: []byte(job.Subscriber), Value: v})
		decisions = append(decisions, fanout.ReceiptMessage(delivery.Receipt{Kind: delivery.KindDecision, AlertID: job.Alert.ID, DeliveryID: job.ID,
			Subscriber: job.Subscriber, Channel: job.Channel, Target: job.Target, Decision: delivery.Notice, Mode: job.Mode, Rule: Rule,
			Reason: fmt.Sprintf("the OpenPGP key %s expires on %s: the %s notice", k.Fingerprint, k.Expires.UTC().Format(time.RFC3339), days(k.Threshold)),
			At:     now}))
	}
	if len(jobs) == 0 {
		return nil
	}
	// The job first: a receipt never claims a notice that is not queued.
	if err := w.Jobs.Write(ctx, jobs...); err != nil {
		return fmt.Errorf("queue key-expiry notices: %w", err)
	}
	w.sent.Add(float64(len(jobs)))
	if err := w.Receipts.Write(ctx, decisions...); err != nil {
		return fmt.Errorf("key-expiry notices queued, their decisions not recorded: %w", err)
	}
	for _, k := range mine {
		w.log().Info("key-expiry notice queued", "subscriber", k.Subscriber, "address", k.Address, "fingerprint", k.Fingerprint,
			"expires", k.Expires.UTC().Format(time.RFC3339), "threshold", days(k.Threshold))
	}
	return nil
}

// claimReceipt is the alert receipt by which a process claims k's notice:
// the first one in the receipts topic names the process that sends it. It
// labels the notice for analysts as the fan-out labels an alert.
func claimReceipt(k delivery.KeyExpiry, claim string, now time.Time) delivery.Receipt {
	a := k.Notice(now)
	return delivery.Receipt{Kind: delivery.KindAlert, AlertID: a.ID, At: now, Type: a.Type, TLP: a.TLP, Marking: a.Marking,
		IssuedBy: claim, Title: a.Title + " (" + days(k.Threshold) + ")", Digest: a.Digest()}
}

// days names a threshold: "30-day", or the duration when not whole days.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%d-day", d/(24*time.Hour))
	}
	return d.String()
}
