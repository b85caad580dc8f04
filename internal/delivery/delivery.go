// Package delivery holds the records Herald's workers exchange over Kafka:
// the delivery Job (one alert to one partner over one target), the Receipt
// that records every decision and attempt, and the Failure that classifies
// what went wrong as temporary or permanent in one place.
package delivery

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/herald-alerts/herald/alerts"
)

// Channels.
const (
	ChannelEmail   = "email"
	ChannelWebhook = "webhook"
	// ChannelPull is the partner's pull channel: its TAXII 2.1 collection
	// and MISP feed (PRODUCT.md §11). The policy decides it like a target;
	// nothing is sent, so the fan-out writes no job for it.
	ChannelPull = "pull"
)

// TargetPull is the target of every pull decision: a partner has one pull
// channel.
const TargetPull = "pull"

// Decisions of the dissemination policy (PRODUCT.md §3).
const (
	Deliver  = "deliver"  // content goes to the target
	Notice   = "notice"   // only a content-free notice goes to the target
	Withhold = "withhold" // nothing goes
)

// Modes say how a job's content is protected.
const (
	ModeSigned       = "signed"        // PGP/MIME signed email, or signed webhook
	ModeEncrypted    = "encrypted"     // PGP/MIME signed then encrypted email
	ModeKeyNotice    = "key-notice"    // content-free notice that the address's key needs attention
	ModeCancelNotice = "cancel-notice" // content-free notice that an alert the partner had was withdrawn for it
	// ModeFollowUpKeyNotice is the content-free notice to a target that
	// received the alert an update or cancel supersedes but cannot read the
	// follow-up (it must be encrypted and the address has no usable key):
	// it names the alert the target holds, says it was updated or
	// withdrawn, and that the key needs attention (PRODUCT.md §3 rule 7).
	ModeFollowUpKeyNotice = "followup-key-notice"
	// ModeKeyExpiryNotice is the content-free notice to an email address
	// whose OpenPGP key expires within one of email.key_expiry_warning
	// (PRODUCT.md §12). Its job carries a notice Herald made, not an
	// alert (internal/keywatch): the address, the key's fingerprint and
	// its expiry.
	ModeKeyExpiryNotice = "key-expiry-notice"
	// ModePull: the alert is in the partner's pull collection, served to
	// its partner token over TAXII 2.1 and as a MISP feed.
	ModePull = "pull"
)

// Held names an alert a target received, for the notices that tell it
// that alert was updated or withdrawn. Title is set only when the
// original went to the target unencrypted, so a notice never carries in
// the clear what the target only ever received encrypted.
type Held struct {
	ID    string `json:"id"`
	Title string `json:"title,omitempty"`
}

// ID returns the delivery id of (alert, partner, target): deterministic, so
// a job retried or delivered twice carries the same id, and receivers can
// drop duplicates. It is used as the webhook-id and in the Message-ID.
func ID(alertID, subscriberID, target string) string {
	var in [256]byte // most fit; longer ones grow onto the heap
	h := sha256.Sum256(append(append(append(append(append(in[:0], alertID...), 0), subscriberID...), 0), target...))
	var b [len(idPrefix) + 26]byte // 26: base32 of 16 bytes, unpadded
	copy(b[:], idPrefix)
	idEncoding.Encode(b[len(idPrefix):], h[:16])
	return string(b[:])
}

// idPrefix starts every delivery id.
const idPrefix = "msg_"

// idEncoding is the base32 of delivery ids: RFC 4648's alphabet in lower
// case, unpadded.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Job is one delivery: one alert to one partner over one target. It is the
// value on the deliveries and retry topics, keyed by subscriber id. The
// alert travels inside the job, as the exact bytes the fan-out read from the
// alerts topic (never re-encoded), so that a delivery worker needs nothing
// but the job and the subscriber registry, and every rendering of it can be
// keyed by the digest of those bytes.
type Job struct {
	ID string `json:"id"`
	// Alert is the decoded alert. Jobs decoded by DecodeJob share it with
	// every job of the same alert bytes: never modify it.
	Alert *alerts.Alert `json:"-"`
	// AlertJSON is the alert as published. When empty, encoding the job
	// encodes Alert.
	AlertJSON json.RawMessage `json:"alert"`
	// AlertDigest is the SHA-256 of AlertJSON, set by DecodeJob: the key of
	// every cache of what is rendered from the alert.
	AlertDigest [32]byte `json:"-"`
	Subscriber  string   `json:"subscriber"`
	// Incarnation is the Incarnation of the partner's record the fan-out
	// decided the job with (subscribers.Subscriber.Incarnation): the
	// deliver role withholds the job from any other incarnation of the
	// partner's id. Empty in jobs written before Herald recorded it.
	Incarnation string `json:"incarnation,omitempty"`
	Channel     string `json:"channel"`
	Target      string `json:"target"`
	Mode        string `json:"mode"`
	// Attempt counts attempts made so far; 0 before the first.
	Attempt int `json:"attempt"`
	// NotBefore is when the job may next be attempted (the alert's
	// not_before, or a retry's due time).
	NotBefore time.Time `json:"not_before,omitzero"`
	// History records every failed attempt.
	History []Attempt `json:"history,omitempty"`
	// Held lists, for notices about an update or cancel, the alerts it
	// supersedes that this target received.
	Held []Held `json:"held,omitempty"`
	// Lineage places an update or cancel in its chain, for the formats
	// partners' tools read; nil for an alert that references nothing. The
	// fan-out sets the same lineage on every job of an alert.
	Lineage *Lineage `json:"lineage,omitempty"`
}

// jobWire is Job without its methods, for encoding.
type jobWire Job

// MarshalJSON encodes the job (encoding/json then compacts the result;
// Encode does not).
func (j Job) MarshalJSON() ([]byte, error) { return j.Encode() }

// Encode encodes the job with its alert bytes as they are: encoding/json
// re-compacts a json.RawMessage (and a Marshaler's output), which is most of
// the cost of writing a job, so the alert is spliced in. Writers of jobs
// use Encode. A first attempt's job (what the fan-out writes, tens of
// thousands per alert) is written directly, without reflection.
func (j Job) Encode() ([]byte, error) {
	if j.plain() {
		return j.appendPlain(), nil
	}
	return j.encodeReflect()
}

// encodeReflect is Encode through encoding/json, for any job.
func (j Job) encodeReflect() ([]byte, error) {
	raw := j.AlertJSON
	if len(raw) == 0 {
		if j.Alert == nil {
			raw = []byte("null")
		} else {
			b, err := json.Marshal(j.Alert)
			if err != nil {
				return nil, fmt.Errorf("encode job %s: alert: %w", j.ID, err)
			}
			raw = b
		}
	}
	w := jobWire(j)
	w.AlertJSON = nil
	b, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	// The first `"alert":null` is the key: quotes inside the id string
	// before it are escaped.
	i := bytes.Index(b, alertNull)
	if i < 0 {
		return nil, fmt.Errorf("encode job %s: no alert field", j.ID)
	}
	out := make([]byte, 0, len(b)+len(raw))
	out = append(out, b[:i+len(`"alert":`)]...)
	out = append(out, raw...)
	return append(out, b[i+len(alertNull):]...), nil
}

var alertNull = []byte(`"alert":null`)

// UnmarshalJSON decodes a job and its alert (uncached: workers use
// DecodeJob).
func (j *Job) UnmarshalJSON(b []byte) error {
	var w jobWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*j = Job(w)
	if len(j.AlertJSON) > 0 && string(j.AlertJSON) != "null" {
		var a alerts.Alert
		if err := json.Unmarshal(j.AlertJSON, &a); err != nil {
			return fmt.Errorf("alert: %w", err)
		}
		j.Alert, j.AlertDigest = &a, sha256.Sum256(j.AlertJSON)
	}
	return nil
}

// AlertCache decodes each distinct alert once per process: the jobs of one
// alert carry identical alert bytes, and decoding the alert is most of the
// cost of decoding a job. It is keyed by the SHA-256 of the bytes, so two
// different alerts can never share an entry, and holds the most recently
// used alerts up to a fixed number (golang-lru). Safe for concurrent use.
type AlertCache struct {
	lru *lru.Cache[[32]byte, *alerts.Alert]
	// last is the entry found or added last: the jobs of one alert come
	// one after another, and comparing their bytes with its bytes costs
	// less than hashing them.
	mu   sync.Mutex
	last *cached
}

// cached is an alert with the exact bytes it was decoded from.
type cached struct {
	raw    []byte
	digest [32]byte
	alert  *alerts.Alert
}

// NewAlertCache returns a cache of up to size alerts (at least one).
func NewAlertCache(size int) *AlertCache {
	c, err := lru.New[[32]byte, *alerts.Alert](max(size, 1))
	if err != nil {
		panic(err) // only for a size below one
	}
	return &AlertCache{lru: c}
}

func (c *AlertCache) decode(raw []byte) (*alerts.Alert, [32]byte, error) {
	if c != nil {
		c.mu.Lock()
		last := c.last
		c.mu.Unlock()
		if last != nil && bytes.Equal(last.raw, raw) {
			return last.alert, last.digest, nil
		}
	}
	sum := sha256.Sum256(raw)
	a, ok := (*alerts.Alert)(nil), false
	if c != nil {
		a, ok = c.lru.Get(sum)
	}
	if !ok {
		a = new(alerts.Alert)
		if err := json.Unmarshal(raw, a); err != nil {
			return nil, sum, err
		}
		if c == nil {
			return a, sum, nil
		}
		// Two decoders of the same new bytes: the first one kept wins.
		if prev, found, _ := c.lru.PeekOrAdd(sum, a); found {
			a = prev
		}
	}
	c.mu.Lock()
	c.last = &cached{raw: raw, digest: sum, alert: a}
	c.mu.Unlock()
	return a, sum, nil
}

// DecodeJob decodes and checks a job record, decoding its alert through
// cache (which may be nil).
//
// The alert is most of a job's bytes, and the jobs of one alert carry the
// same alert bytes: the alert's value is found with one pass over it
// (splitAlert) and decoded, through cache, only when its bytes are new,
// and decodeJSON decodes the rest of the job. A record that pass does
// not take apart is decoded by decodeJSON as a whole, with the same
// result.
func DecodeJob(value []byte, cache *AlertCache) (*Job, error) {
	rest, raw, ok := splitAlert(value)
	return decodeJob(value, rest, raw, ok, cache)
}

// decodeJob is DecodeJob once value was split (splitAlert).
func decodeJob(value, rest, raw []byte, split bool, cache *AlertCache) (*Job, error) {
	var w jobWire
	if !split {
		rest = value
	}
	if err := decodeJSON(rest, &w); err != nil {
		return nil, fmt.Errorf("decode delivery job: %w", err)
	}
	j := Job(w)
	if split {
		j.AlertJSON = raw
	}
	if len(j.AlertJSON) > 0 && string(j.AlertJSON) != "null" {
		a, sum, err := cache.decode(j.AlertJSON)
		if err != nil {
			return nil, fmt.Errorf("decode delivery job: alert: %w", err)
		}
		j.Alert, j.AlertDigest = a, sum
	}
	if err := j.check(); err != nil {
		return &j, err
	}
	return &j, nil
}

// check checks a decoded job: it has an alert, a subscriber, a target, a
// channel a worker delivers, the delivery id of all three, and no negative
// attempt count.
func (j *Job) check() error {
	switch {
	case j.Alert == nil || j.Alert.ID == "":
		return errors.New("delivery job has no alert")
	case j.Subscriber == "" && j.Target == "":
		return errors.New("delivery job has no subscriber and no target")
	case j.Subscriber == "":
		return errors.New("delivery job has no subscriber")
	case j.Target == "":
		return errors.New("delivery job has no target")
	case j.Channel != ChannelEmail && j.Channel != ChannelWebhook:
		return fmt.Errorf("delivery job has unknown channel %q", j.Channel)
	case j.ID != ID(j.Alert.ID, j.Subscriber, j.Target):
		return fmt.Errorf("delivery job id %q does not match its alert, subscriber and target", j.ID)
	case j.Attempt < 0:
		return fmt.Errorf("delivery job has negative attempt %d", j.Attempt)
	}
	return nil
}

// splitAlert finds the value of the "alert" member of the JSON object v in
// one pass: it returns the alert's bytes (a sub-slice of v) and a copy of v
// with that value replaced by null, for encoding/json to decode. It
// reports false for anything it does not take apart with certainty — not
// an object, a member name with an escape, no alert member, more than one,
// or one spelled in other case — and checks nothing else: encoding/json checks rest, and the alert
// bytes when it decodes them.
func splitAlert(v []byte) (rest, alert []byte, ok bool) {
	rest, alert, _, ok = splitRecord(v)
	return rest, alert, ok
}

// Members of a record besides its alert, as splitRecord reports them.
const (
	memberJobs  = 1 << iota // a member named exactly "jobs"
	memberOther             // any other member
)

// splitRecord is splitAlert that also reports, in members, the other
// members of v (memberJobs, memberOther) when it takes v apart.
func splitRecord(v []byte) (rest, alert []byte, members int, ok bool) {
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '{' {
		return nil, nil, 0, false
	}
	i++
	start, end := -1, -1
	for {
		i = skipSpace(v, i)
		if i < len(v) && v[i] == '}' && start < 0 && end < 0 {
			return nil, nil, 0, false // empty object: no alert
		}
		if i >= len(v) || v[i] != '"' {
			return nil, nil, 0, false
		}
		j := i + 1
		for j < len(v) && v[j] != '"' {
			if v[j] == '\\' {
				return nil, nil, 0, false
			}
			j++
		}
		if j >= len(v) {
			return nil, nil, 0, false
		}
		name := v[i+1 : j]
		i = skipSpace(v, j+1)
		if i >= len(v) || v[i] != ':' {
			return nil, nil, 0, false
		}
		i = skipSpace(v, i+1)
		vend, ok := skipValue(v, i)
		if !ok {
			return nil, nil, 0, false
		}
		switch {
		case bytes.EqualFold(name, []byte("alert")):
			// encoding/json matches names without regard to case, and
			// the last of several wins: leave those cases to it.
			if start >= 0 || string(name) != "alert" {
				return nil, nil, 0, false
			}
			start, end = i, vend
		case string(name) == "jobs":
			members |= memberJobs
		default:
			members |= memberOther
		}
		i = skipSpace(v, vend)
		if i >= len(v) {
			return nil, nil, 0, false
		}
		if v[i] == ',' {
			i++
			continue
		}
		if v[i] != '}' {
			return nil, nil, 0, false
		}
		break
	}
	if start < 0 {
		return nil, nil, 0, false
	}
	rest = make([]byte, 0, len(v)-(end-start)+4)
	rest = append(rest, v[:start]...)
	rest = append(rest, "null"...)
	rest = append(rest, v[end:]...)
	return rest, v[start:end], members, true
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just after the JSON value that starts at i:
// a string, an object or array (with the strings inside them), or a
// literal or number (up to the next delimiter). It reports false when the
// input ends first or a bracket does not match; it does not check the
// value's grammar.
func skipValue(v []byte, i int) (int, bool) {
	if i >= len(v) {
		return i, false
	}
	switch v[i] {
	case '"':
		return skipString(v, i)
	case '{', '[':
		var stack []byte
		for i < len(v) {
			switch c := v[i]; c {
			case '"':
				var ok bool
				if i, ok = skipString(v, i); !ok {
					return i, false
				}
				continue
			case '{', '[':
				stack = append(stack, c)
			case '}', ']':
				if len(stack) == 0 || (c == '}') != (stack[len(stack)-1] == '{') {
					return i, false
				}
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return i, false
	default:
		j := i
		for j < len(v) {
			switch v[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j, j > i
			}
			j++
		}
		return j, false
	}
}

// skipString returns the index just after the JSON string that starts at
// i (a quote).
func skipString(v []byte, i int) (int, bool) {
	for j := i + 1; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return len(v), false
}

// Attempt is one failed try.
type Attempt struct {
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
	Error  string    `json:"error"`
}

// Expired reports whether the job's alert has expired at now.
func (j *Job) Expired(now time.Time) bool {
	return j.Alert != nil && j.Alert.ExpiresAt != nil && !now.Before(*j.Alert.ExpiresAt)
}

// Receipt kinds.
const (
	KindAlert    = "alert"    // the fan-out accepted an alert (its labels, for the ledger)
	KindDecision = "decision" // the policy's decision for one target
	KindOutcome  = "outcome"  // the result of one attempt, or of the job
	KindAck      = "ack"      // a partner acknowledged an alert it received
)

// States of a delivery, as recorded in outcome receipts and shown by status.
const (
	StatePending   = "pending"   // decided, not yet attempted
	StateDelivered = "delivered" // accepted by the receiver
	StateRetrying  = "retrying"  // a temporary failure; a retry is scheduled
	StateDead      = "dead"      // failed for good; in the dead-letter topic
	StateExpired   = "expired"   // the alert expired before delivery
	StateWithheld  = "withheld"  // the policy said no
	StateDisabled  = "disabled"  // the endpoint answered 410 Gone and is disabled
	// StateAvailable: the alert is in the partner's pull collection (or,
	// for a notice, the alerts it supersedes are withdrawn from it); it
	// becomes delivered when the partner first pulls it.
	StateAvailable = "available"
)

// States lists every delivery state, in the order summaries show them.
var States = []string{StateDelivered, StateAvailable, StatePending, StateRetrying, StateDead,
	StateExpired, StateDisabled, StateWithheld}

// Receipt records one decision or one outcome. Receipts are keyed by alert
// id on the receipts topic, so that one alert's ledger lives in one
// partition.
type Receipt struct {
	Kind       string `json:"kind"`
	AlertID    string `json:"alert"`
	DeliveryID string `json:"delivery,omitempty"`
	Subscriber string `json:"subscriber"`
	// Incarnation is the Incarnation of the partner's record the decision
	// was made for (subscribers.Subscriber.Incarnation), on decision and
	// outcome receipts, and of the record that acknowledged, on ack
	// receipts: a partner's delivery history belongs to the incarnation it
	// was made for. Empty in receipts written before Herald recorded it;
	// those belong to every incarnation of the id.
	Incarnation string    `json:"incarnation,omitempty"`
	Channel     string    `json:"channel,omitempty"`
	Target      string    `json:"target,omitempty"`
	Decision    string    `json:"decision,omitempty"`
	Mode        string    `json:"mode,omitempty"`
	Rule        string    `json:"rule,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	State       string    `json:"state,omitempty"`
	Attempt     int       `json:"attempt,omitempty"`
	Error       string    `json:"error,omitempty"`
	RetryAt     time.Time `json:"retry_at,omitzero"`
	At          time.Time `json:"at"`

	// Set on KindAlert receipts only.
	Type       alerts.Type    `json:"type,omitempty"`
	TLP        alerts.TLP     `json:"tlp,omitempty"`
	Marking    alerts.Marking `json:"marking,omitempty"`
	References []string       `json:"references,omitempty"`
	IssuedBy   string         `json:"issued_by,omitempty"`
	ApprovedBy string         `json:"approved_by,omitempty"`
	// Title is the alert's title, for analysts and for the notices that
	// name an alert a partner holds (only ever sent in the clear when the
	// alert itself went in the clear).
	Title string `json:"title,omitempty"`
	// Digest is the alert's content digest (alerts.Alert.Digest): an id
	// names one alert forever.
	Digest string `json:"digest,omitempty"`

	// Set on KindAck receipts: who acknowledged (the partner token's name,
	// or "email link") and what they said.
	By   string `json:"by,omitempty"`
	Note string `json:"note,omitempty"`
}

// Reasons for failure: a fixed set, used in receipts, dead letters and
// metrics labels.
const (
	ReasonConnect   = "connect"   // dial, DNS or connection reset
	ReasonTimeout   = "timeout"   // deadline exceeded
	ReasonTLS       = "tls"       // certificate or handshake failure
	ReasonRefused   = "refused"   // address refused by the SSRF guard or scheme rule
	ReasonHTTP4xx   = "http-4xx"  // permanent client error
	ReasonHTTP5xx   = "http-5xx"  // server error, 408 or 429
	ReasonGone      = "gone"      // HTTP 410: endpoint disabled
	ReasonRedirect  = "redirect"  // redirects are not followed
	ReasonSMTP4xx   = "smtp-4xx"  // temporary SMTP rejection
	ReasonSMTP5xx   = "smtp-5xx"  // permanent SMTP rejection
	ReasonSign      = "sign"      // signing failed: fail closed
	ReasonEncrypt   = "encrypt"   // encryption failed or key unusable: fail closed
	ReasonConfig    = "config"    // the channel is not configured
	ReasonInvalid   = "invalid"   // the job itself is malformed
	ReasonExhausted = "exhausted" // retries exhausted
	ReasonUnknown   = "unknown"   // unclassified; treated as temporary

	// ReasonUnattributed: the job record was not written by Herald (it has
	// no valid herald-auth authenticator); it is never attempted.
	ReasonUnattributed = "unattributed"
)

// Failure is a classified delivery error. Notifiers return it; anything
// else they return is treated as a temporary ReasonUnknown failure.
type Failure struct {
	Reason    string
	Temporary bool
	// RetryAfter is the receiver's requested wait (HTTP Retry-After), if any.
	RetryAfter time.Duration
	// Gone marks an endpoint that asked never to be called again (HTTP 410).
	Gone bool
	Err  error
}

func (f *Failure) Error() string {
	kind := "permanent"
	if f.Temporary {
		kind = "temporary"
	}
	if f.Err == nil {
		return fmt.Sprintf("%s failure (%s)", kind, f.Reason)
	}
	return fmt.Sprintf("%s failure (%s): %v", kind, f.Reason, f.Err)
}

func (f *Failure) Unwrap() error { return f.Err }

// Temporary returns a temporary failure with reason.
func Temporary(reason string, err error) *Failure {
	return &Failure{Reason: reason, Temporary: true, Err: err}
}

// Permanent returns a permanent failure with reason.
func Permanent(reason string, err error) *Failure {
	return &Failure{Reason: reason, Err: err}
}

// Classify turns any error into a Failure: a *Failure in its chain is
// returned as is; anything else is temporary with ReasonUnknown.
func Classify(err error) *Failure {
	if err == nil {
		return nil
	}
	var f *Failure
	if errors.As(err, &f) {
		return f
	}
	return Temporary(ReasonUnknown, err)
}
