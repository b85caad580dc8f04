// Package record defines the records Herald's processes exchange over
// Kafka besides alerts, jobs and receipts (internal/delivery) and partner
// records and endpoint states (subscribers): the release log of alerts
// waiting for a second analyst (topic pending) and the audit trail (topic
// audit). Every one is authenticated on the bus (crypto/busauth) like
// everything Herald writes.
package record

import (
	"encoding/json"
	"time"
)

// Release event kinds (topic pending, keyed by alert id).
const (
	// Submitted: an alert that needs a second analyst was published and
	// waits. The first Submitted record of an id is the alert; a later one
	// under the same id with another digest is refused by the publisher and
	// ignored by readers.
	Submitted = "submitted"
	// Rejected: a second analyst refused the alert, with a reason.
	Rejected = "rejected"
	// Approved: a second analyst released it; the alert itself, stamped
	// approved_by, goes to the alerts topic.
	Approved = "approved"
)

// Release is one event of the release log of an alert (PRODUCT.md §10).
type Release struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Digest is the alert's content digest (alerts.Alert.Digest): what an
	// approval or rejection is bound to.
	Digest string `json:"digest"`
	// Alert is, on Submitted, the alert exactly as published (stamped
	// issued_by and issued_at): the bytes an approval releases.
	Alert json.RawMessage `json:"alert,omitempty"`
	// By is who acted: the author on Submitted, the second analyst on
	// Approved and Rejected.
	By string    `json:"by"`
	At time.Time `json:"at"`
	// ExpiresAt is when a Submitted alert stops waiting
	// (release.pending_ttl after At).
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Reason is a rejection's reason.
	Reason string `json:"reason,omitempty"`
}

// Audit actions.
const (
	ActionPublish          = "alert.publish"
	ActionSubmit           = "alert.submit" // published, waiting for a second analyst
	ActionApprove          = "alert.approve"
	ActionReject           = "alert.reject"
	ActionSubscriberPut    = "subscriber.put"
	ActionSubscriberDelete = "subscriber.delete"
	ActionEndpointDisable  = "endpoint.disable"
	ActionEndpointEnable   = "endpoint.enable"
	ActionDeadReplay       = "dead.replay"
	ActionTokenRefused     = "token.refused"
	ActionPartnerAck       = "partner.ack"
	ActionPartnerKey       = "partner.key"
	ActionPartnerSecret    = "partner.secret"
	ActionPartnerReplay    = "partner.replay"
	ActionPartnerPull      = "partner.pull"
	// ActionKeysResign is a run of `herald keys resign` that ended: the
	// latest records of a compacted topic vouched for (Object
	// "topic:subscribers") or copied (Object "topic:alert-ids") under the
	// publishing key that signs now, with its counts.
	ActionKeysResign = "keys.resign"
	// ActionKeysResignStart is a run of `herald keys resign` about to
	// write (same Object): the signing key and what the run will write,
	// recorded before its first write, so that a run that dies midway
	// leaves a trace (an ActionKeysResignStart with no ActionKeysResign
	// after it).
	ActionKeysResignStart = "keys.resign.start"
	// ActionKeysRetire is a run of `herald keys retire` that rewrote the
	// publishing key file (Object "publishing-key:" + the id of the key
	// that signs): the keys retired and at how many topics' ends. What a
	// process trusts on the bus changes with it once the file is
	// deployed.
	ActionKeysRetire = "keys.retire"
)

// Actions lists every audit action, in the order the console's audit
// filter offers them; an audit query for any other action is refused
// (view.View.Audit).
var Actions = []string{
	ActionPublish, ActionSubmit, ActionApprove, ActionReject,
	ActionSubscriberPut, ActionSubscriberDelete, ActionEndpointDisable,
	ActionEndpointEnable, ActionDeadReplay, ActionTokenRefused,
	ActionPartnerAck, ActionPartnerKey, ActionPartnerSecret,
	ActionPartnerReplay, ActionPartnerPull, ActionKeysResign,
	ActionKeysResignStart, ActionKeysRetire,
}

// Audit is one entry of the audit trail: who did what to which object,
// when (topic audit, keyed by Object). It never holds a token, a secret
// or a key: Details name what changed, not its secret value.
type Audit struct {
	At time.Time `json:"at"`
	// Actor is who acted: "api:<token name>", "cli:<user>", "partner:<token
	// name>", "herald:deliver", or for a refused token "unknown".
	Actor  string `json:"actor"`
	Action string `json:"action"`
	// Object names what was acted on: "alert:<id>", "subscriber:<id>",
	// "endpoint:<subscriber id>/<n>", "token:<name>", "dead:<delivery id>".
	Object string `json:"object"`
	// Outcome is "ok", or "refused" with Reason.
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	// Details say what changed (field names and new values that are not
	// secret), e.g. {"changed": ["clearance", "status"]}.
	Details map[string]any `json:"details,omitempty"`
}

// Audit outcomes.
const (
	OutcomeOK      = "ok"
	OutcomeRefused = "refused"
)

// Alert states, as the alert list shows them.
const (
	StatePending   = "pending"   // waiting for a second analyst
	StatePublished = "published" // on the alerts topic: fanned out or about to be
	StateRejected  = "rejected"  // a second analyst refused it
	StateExpired   = "expired"   // nobody approved it within release.pending_ttl
	// StateQuarantined: published, and the fan-out refused it at ingest
	// (PRODUCT.md §3 rule 1): it reaches no one. The quarantine topic
	// says so (view.Quarantine); the release log never does.
	StateQuarantined = "quarantined"
)

// ReleaseState folds the release log of one alert. It is the one home of
// that fold: the publisher's checks and the view's alert list use it.
type ReleaseState struct {
	// Submitted is the first Submitted event of the id: the alert.
	Submitted *Release `json:"submitted,omitempty"`
	Approved  *Release `json:"approved,omitempty"`
	Rejected  *Release `json:"rejected,omitempty"`
	// Conflicts counts Submitted events under the id with another digest,
	// which are ignored.
	Conflicts int `json:"conflicts,omitempty"`
}

// Apply folds one event, in log order. The first Submitted event wins; an
// approval or rejection counts only when bound to its digest, and only the
// first decision counts.
func (s *ReleaseState) Apply(ev Release) {
	switch ev.Kind {
	case Submitted:
		switch {
		case s.Submitted == nil:
			s.Submitted = &ev
		case s.Submitted.Digest != ev.Digest:
			s.Conflicts++
		}
	case Approved, Rejected:
		if s.Submitted == nil || ev.Digest != s.Submitted.Digest || s.Approved != nil || s.Rejected != nil {
			return
		}
		if ev.Kind == Approved {
			s.Approved = &ev
		} else {
			s.Rejected = &ev
		}
	}
}

// State is the release state at now: pending, published (approved),
// rejected or expired; "" when nothing was submitted.
func (s *ReleaseState) State(now time.Time) string {
	switch {
	case s.Submitted == nil:
		return ""
	case s.Approved != nil:
		return StatePublished
	case s.Rejected != nil:
		return StateRejected
	case !s.Submitted.ExpiresAt.IsZero() && !now.Before(s.Submitted.ExpiresAt):
		return StateExpired
	}
	return StatePending
}
