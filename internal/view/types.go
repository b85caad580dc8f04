package view

import (
	"encoding/json"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/record"
)

// Published is what the alerts topic says of an alert id: its first
// authentic record (a decodable alert whose id is the record's key). A later
// record under the same id with the same digest is a duplicate; with another
// digest, a conflict (an id names one alert forever): neither changes it.
// Once retention deleted the first record, a view rebuilt from Kafka takes
// the first record still held, which may be such a conflict: what answers
// for the alert that was fanned out asks View.Retained, which checks the
// digest against the receipts'.
type Published struct {
	ID     string `json:"id"`
	Digest string `json:"digest"`
	// Alert is the record's value, exactly as published.
	Alert      json.RawMessage `json:"alert,omitempty"`
	Partition  int             `json:"partition"`
	Offset     int64           `json:"offset"`
	Time       time.Time       `json:"time"` // the record's timestamp
	Type       alerts.Type     `json:"type,omitempty"`
	TLP        alerts.TLP      `json:"tlp,omitempty"`
	Marking    alerts.Marking  `json:"marking,omitempty"`
	Title      string          `json:"title,omitempty"`
	References []string        `json:"references,omitempty"`
	IssuedBy   string          `json:"issued_by,omitempty"`
	IssuedAt   time.Time       `json:"issued_at,omitzero"`
	ApprovedBy string          `json:"approved_by,omitempty"`
	ApprovedAt time.Time       `json:"approved_at,omitzero"`
	ExpiresAt  time.Time       `json:"expires_at,omitzero"`
	// NotBefore is the alert's not_before: nothing of it reaches a partner
	// before then (rule 8).
	NotBefore time.Time `json:"not_before,omitzero"`
	// Duplicates counts later records under the id with the same digest.
	Duplicates int `json:"duplicates,omitempty"`
	// Conflicts counts later records under the id with another digest.
	Conflicts int `json:"conflicts,omitempty"`
}

// releaseRecord is what the view keeps of an alert's release log: the
// fold (record.ReleaseState, the one home of it) without the submitted
// alert's bytes (kept apart), and the labels the list shows.
type releaseRecord struct {
	State   record.ReleaseState `json:"state"`
	Type    alerts.Type         `json:"type,omitempty"`
	TLP     alerts.TLP          `json:"tlp,omitempty"`
	Marking alerts.Marking      `json:"marking,omitempty"`
	Title   string              `json:"title,omitempty"`
}

// Provenance is who issued an alert and who released or refused it, and
// when: the alert list's columns, which GET /v1/alerts/{id} shows too.
type Provenance struct {
	IssuedBy     string    `json:"issued_by,omitempty"`
	IssuedAt     time.Time `json:"issued_at,omitzero"`
	ApprovedBy   string    `json:"approved_by,omitempty"`
	ApprovedAt   time.Time `json:"approved_at,omitzero"`
	RejectedBy   string    `json:"rejected_by,omitempty"`
	RejectReason string    `json:"reject_reason,omitempty"`
	RejectedAt   time.Time `json:"rejected_at,omitzero"`
	// ExpiresAt is when a pending alert stops waiting.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// QuarantineReason and QuarantineError say why the fan-out refused
	// a quarantined alert (its state record.StateQuarantined): the
	// reason (fanout.Reason*: invalid, unapproved, …) and the refusal in
	// words, from the quarantine topic's reason and error headers;
	// QuarantinedAt is when. Set only while the alert's state is
	// quarantined.
	QuarantineReason string    `json:"quarantine_reason,omitempty"`
	QuarantineError  string    `json:"quarantine_error,omitempty"`
	QuarantinedAt    time.Time `json:"quarantined_at,omitzero"`
}

// Summary is one alert of the alert list.
type Summary struct {
	ID      string         `json:"id"`
	Title   string         `json:"title,omitempty"`
	Type    alerts.Type    `json:"type,omitempty"`
	TLP     alerts.TLP     `json:"tlp,omitempty"`
	Marking alerts.Marking `json:"marking,omitempty"`
	// State is record.StatePending, StatePublished, StateRejected,
	// StateExpired or StateQuarantined.
	State string `json:"state"`
	Provenance
	// Counts are the alert's deliveries per state (ledger.Alert.Counts).
	Counts map[string]int `json:"counts"`
	// Acks counts the partners that acknowledged it.
	Acks      int       `json:"acks"`
	FannedOut time.Time `json:"fanned_out,omitzero"`
	// At is the time the list is sorted by: the earliest of its submission,
	// issue and fan-out.
	At time.Time `json:"at"`
}

// ListQuery selects a page of the alert list.
type ListQuery struct {
	// State keeps alerts in that state only (record.StatePending, …,
	// record.StateQuarantined); empty for all.
	State string
	// Limit is the page size: 0 means DefaultLimit; above MaxLimit is
	// MaxLimit.
	Limit int
	// Before continues a list: the next cursor of the previous page, or an
	// alert id (the page starts after it).
	Before string
}

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// PartnerDelivery is one of a partner's own deliveries: one alert to one of
// its targets. It never describes an alert withheld from the partner.
type PartnerDelivery struct {
	Alert      string      `json:"alert"`
	Type       alerts.Type `json:"type,omitempty"`
	TLP        alerts.TLP  `json:"tlp,omitempty"`
	DeliveryID string      `json:"delivery_id,omitempty"`
	Channel    string      `json:"channel,omitempty"`
	Target     string      `json:"target"`
	Mode       string      `json:"mode,omitempty"`
	State      string      `json:"state"`
	Attempts   int         `json:"attempts"`
	LastError  string      `json:"last_error,omitempty"`
	RetryAt    time.Time   `json:"retry_at,omitzero"`
	UpdatedAt  time.Time   `json:"updated_at"`
	// FannedOut is when the alert was decided for the partner.
	FannedOut time.Time `json:"fanned_out,omitzero"`
	// Acknowledged is whether the partner acknowledged the alert, and
	// AcknowledgedAt when.
	Acknowledged   bool      `json:"acknowledged"`
	AcknowledgedAt time.Time `json:"acknowledged_at,omitzero"`
}

// PartnerQuery selects a page of a partner's deliveries.
type PartnerQuery struct {
	// Alert keeps the deliveries of that alert only.
	Alert string
	// State keeps deliveries in that delivery state only
	// (delivery.StateDelivered, …).
	State string
	// Channel keeps deliveries by that channel only
	// (delivery.ChannelEmail, ChannelWebhook or ChannelPull).
	Channel string
	// Incarnation keeps the deliveries decided for that incarnation of
	// the partner's record (subscribers.Subscriber.Incarnation; the
	// partner's current record), and those recorded without one, from
	// before Herald recorded it (ledger.Entry.Of). Empty keeps them all.
	Incarnation string
	// Limit and Before as in ListQuery (Before takes a next cursor only).
	Limit  int
	Before string
	// At, if set, leaves out the deliveries of alerts whose not_before is
	// after it: a partner learns of an alert no sooner than it may have it
	// (rule 8), not even its id in a pending delivery. Zero shows them.
	At time.Time
}

// AuditQuery selects a page of the audit trail, newest first.
type AuditQuery struct {
	Actor  string // exact
	Action string // exact
	Object string // prefix: "alert:" or "subscriber:bank"
	// Since (inclusive) and Until (exclusive) bound the entries' time;
	// zero for no bound.
	Since, Until time.Time
	// Limit and Before as in ListQuery (Before takes a next cursor only).
	Limit  int
	Before string
}

// Revision is a state of something the view holds: of one View, two equal
// revisions of the same thing mean that it did not change in between. It
// is for keying what is made from that thing; it orders nothing.
type Revision struct {
	// Epoch counts the times the view was rebuilt while it was open.
	Epoch int64
	// Seq counts the changes applied since the store was made.
	Seq uint64
	// Gone counts the times the alerts topic's log start moved while the
	// view was open (records deleted by retention), and the times an
	// alert receipt applied named another alert than the record held
	// under its id: records Retained no longer answers.
	Gone int64
}

// receiptsAlert is what the view keeps of an alert from the receipts topic
// besides its entries: the fold's meta, and counts kept as entries change
// so that the list never reads entries.
type receiptsAlert struct {
	Meta   ledger.Meta    `json:"meta"`
	Counts map[string]int `json:"counts,omitempty"`
	Acks   int            `json:"acks,omitempty"`
	// First is the time of the first receipt applied.
	First time.Time `json:"first"`
}
