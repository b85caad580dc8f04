package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/herald-alerts/herald/alerts"
)

// Binding is a record of the alert-ids topic (keyed by alert id): the
// alert id is bound for ever to the content the fan-out fanned out under
// it (PRODUCT.md §1, "an id names one alert forever"). The topic is
// compacted and deletes nothing by time, so the binding outlives the
// alert's record on the alerts topic and its receipts: the publisher and
// the fan-out answer from it once those are gone. The fan-out writes it
// after the alert receipt, so a binding always means "fanned out", and
// never writes one that differs from the binding held for the id.
type Binding struct {
	// ID is the alert id, the record's key.
	ID string `json:"id"`
	// Digest is the content digest of the alert fanned out
	// (alerts.Alert.Digest).
	Digest string `json:"digest"`
	// FannedOut is when it was fanned out (the alert receipt's time).
	FannedOut time.Time `json:"fanned_out"`
	// Partition and Offset are the place on the alerts topic of the
	// record that was fanned out; Offset is -1 when it is not known (a
	// binding written after the fact for an alert whose record the view
	// no longer holds).
	Partition int   `json:"partition"`
	Offset    int64 `json:"offset"`
}

// DecodeBinding reads the value of a record of the alert-ids topic keyed
// by key. Its key must be an alert id (alerts.ValidID: nothing else can be
// bound), and the binding must name its key, a digest and a time.
func DecodeBinding(key, value []byte) (*Binding, error) {
	if !alerts.ValidID(string(key)) {
		return nil, fmt.Errorf("key %.80q is not an alert id", key)
	}
	var b Binding
	if err := json.Unmarshal(value, &b); err != nil {
		return nil, fmt.Errorf("decode alert id binding: %w", err)
	}
	switch {
	case b.ID != string(key):
		return nil, fmt.Errorf("binding of %q is not the record's key %q", b.ID, key)
	case b.Digest == "":
		return nil, errors.New("binding names no digest")
	case b.FannedOut.IsZero():
		return nil, errors.New("binding names no fan-out time")
	}
	return &b, nil
}

// Encode returns the binding's record value.
func (b *Binding) Encode() []byte {
	v, _ := json.Marshal(b) // nothing in a Binding fails to encode
	return v
}

// Displaced is a binding that a later record under its id on the
// alert-ids topic follows which no reader accepts (not written by Herald,
// unreadable, or a binding to another digest): compaction keeps only the
// latest record under a key, so it would erase the binding although every
// reader ignores the record. The fan-out writes the binding again after
// it (fanout.Rebind).
type Displaced struct {
	// Binding is the binding in force, as the reader holds it.
	Binding Binding
	// Partition and Offset are the place on the alert-ids topic of the
	// latest record that displaced it.
	Partition int
	Offset    int64
	// Why says why the record is not accepted: DisplacedUnauthentic,
	// DisplacedUnreadable or DisplacedOtherDigest.
	Why string
}

// Why a record displaces a binding (Displaced.Why).
const (
	DisplacedUnauthentic = "not written by Herald" // no herald-auth, or one that does not match
	DisplacedUnreadable  = "unreadable"            // authentic but no binding (a tombstone, say)
	DisplacedOtherDigest = "another digest"        // authentic, binding the id to other content
)

// BindingStep is what one record under an alert id on the alert-ids topic,
// read in order, does to the binding a reader holds for the id
// (StepBinding).
type BindingStep int

// The steps of StepBinding.
const (
	// BindingNone: no binding is held and the record is none; nothing
	// changes (a record before the binding displaces nothing).
	BindingNone BindingStep = iota
	// BindingBinds: no binding is held and the record is one: it is the
	// binding in force of the id, for ever.
	BindingBinds
	// BindingCopies: the record binds the id to the digest held (the
	// fan-out's self-heal, `herald keys resign --alert-ids`, several
	// fan-out processes backfilling): it changes nothing a reader holds,
	// and is the latest record under the id again, ending a
	// displacement.
	BindingCopies
	// BindingDisplaces: a binding is held and the record is not one
	// readers accept as it (not authentic, unreadable, or another
	// digest): readers ignore it, but compaction would keep it instead of
	// the binding (Displaced).
	BindingDisplaces
)

// StepBinding is the rule every reader of the alert-ids topic follows
// (the view, the command line's publish.KafkaIndex, `herald keys resign
// --alert-ids`): the binding in force of an id is its FIRST authentic
// record that is a binding, and nothing read after it replaces it. held
// is the binding held for the id before the record (nil: none), rec the
// record as a binding (nil when the reader does not accept it as one:
// not authentic, or it does not decode).
func StepBinding(held, rec *Binding) BindingStep {
	switch {
	case held == nil && rec == nil:
		return BindingNone
	case held == nil:
		return BindingBinds
	case rec != nil && rec.Digest == held.Digest:
		return BindingCopies
	default:
		return BindingDisplaces
	}
}
