// Package delivery holds the records Herald's workers exchange over Kafka:
// the delivery Job (one alert to one partner over one target), the Receipt
// that records every decision and attempt, and the Failure that classifies
// what went wrong as temporary or permanent in one place.
package delivery

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
)

// Channels.
const (
	ChannelEmail   = "email"
	ChannelWebhook = "webhook"
)

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
	h := sha256.Sum256([]byte(alertID + "\x00" + subscriberID + "\x00" + target))
	return "msg_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:16]))
}

// Job is one delivery: one alert to one partner over one target. It is the
// value on the deliveries and retry topics, keyed by subscriber id. The
// alert travels inside the job so that a delivery worker needs nothing but
// the job and the subscriber registry.
type Job struct {
	ID         string        `json:"id"`
	Alert      *alerts.Alert `json:"alert"`
	Subscriber string        `json:"subscriber"`
	Channel    string        `json:"channel"`
	Target     string        `json:"target"`
	Mode       string        `json:"mode"`
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
)

// Receipt records one decision or one outcome. Receipts are keyed by alert
// id on the receipts topic, so that one alert's ledger lives in one
// partition.
type Receipt struct {
	Kind       string    `json:"kind"`
	AlertID    string    `json:"alert"`
	DeliveryID string    `json:"delivery,omitempty"`
	Subscriber string    `json:"subscriber"`
	Channel    string    `json:"channel,omitempty"`
	Target     string    `json:"target,omitempty"`
	Decision   string    `json:"decision,omitempty"`
	Mode       string    `json:"mode,omitempty"`
	Rule       string    `json:"rule,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	State      string    `json:"state,omitempty"`
	Attempt    int       `json:"attempt,omitempty"`
	Error      string    `json:"error,omitempty"`
	RetryAt    time.Time `json:"retry_at,omitzero"`
	At         time.Time `json:"at"`

	// Set on KindAlert receipts only.
	Type       alerts.Type    `json:"type,omitempty"`
	TLP        alerts.TLP     `json:"tlp,omitempty"`
	Marking    alerts.Marking `json:"marking,omitempty"`
	References []string       `json:"references,omitempty"`
	IssuedBy   string         `json:"issued_by,omitempty"`
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
