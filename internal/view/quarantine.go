package view

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
)

// Quarantine is what an authentic record of the quarantine topic says of
// an alert's content: the fan-out refused it at ingest (PRODUCT.md §3 rule
// 1), so it reached no one. It marks the alert the view lists under its id
// only when Digest is that alert's digest (the content the view lists,
// never a name someone chose), and only while the alert has no receipts:
// an alert that was fanned out stays so.
type Quarantine struct {
	// Digest identifies the content refused (alerts.Alert.Digest).
	Digest string `json:"digest"`
	// Reason is the fan-out's reason (fanout.Reason*), from the record's
	// reason header.
	Reason string `json:"reason"`
	// Error is the refusal in words, from the record's error header (at
	// most MaxQuarantineError bytes of it).
	Error string `json:"error,omitempty"`
	// Partition, Offset and Time are the quarantine record's.
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	Time      time.Time `json:"time"`
}

// MaxQuarantineError is how much of a quarantine record's error header
// the view keeps: a refusal in words is a line or a few field errors.
const MaxQuarantineError = 2048

// reasonUnattributed is fanout.ReasonUnissued (fanout imports the view,
// not the other way round): the reason of a record the fan-out found
// without a valid authenticator.
const reasonUnattributed = "unattributed"

// errNoReason is QuarantineOf's answer to a record without a reason the
// fan-out writes: a word of lower-case letters and '-'.
var errNoReason = errors.New("no quarantine reason (a word) in the reason header")

// QuarantineOf reads a record of the quarantine topic that the caller has
// authenticated (bus.Authentic): the alert id it is keyed by and what it
// says of that alert's content. It returns a nil Quarantine and no error
// when the record holds no alert under its key (the quarantine holds
// whatever reached the alerts topic, most of it nothing Herald lists); an
// error when it holds one without the reason the fan-out writes.
func QuarantineOf(m kafka.Message) (string, *Quarantine, error) {
	id := string(m.Key)
	if !alerts.ValidID(id) {
		return "", nil, nil
	}
	a, err := alerts.Decode(m.Value)
	if err != nil || a.ID != id {
		return "", nil, nil
	}
	a.Normalize()
	reason := bus.Header(m, bus.HeaderReason)
	if !reasonWord(reason) {
		return "", nil, fmt.Errorf("quarantine record of %q: %w", id, errNoReason)
	}
	return id, &Quarantine{Digest: a.Digest(), Reason: reason, Error: clip(bus.Header(m, bus.HeaderError), MaxQuarantineError),
		Partition: m.Partition, Offset: m.Offset, Time: m.Time}, nil
}

// reasonWord reports whether s is a reason as the fan-out writes them:
// 1–64 lower-case letters and '-'.
func reasonWord(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && c != '-' {
			return false
		}
	}
	return true
}

// clip returns s as valid UTF-8, cut to at most n bytes on a character
// boundary.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// Before reports whether q, rather than o, is the record to keep of one
// content quarantined more than once: a refusal for any other reason
// before one as unattributed, then the earlier record (partition, then
// offset). Anyone who may write to the alerts topic can have a copy of
// Herald's content refused as unattributed, which says nothing of what
// became of Herald's own record; every other reason was given to a record
// Herald wrote. The order depends on the records alone, never on the order
// they were read in, so a rebuilt view keeps the same one.
func (q *Quarantine) Before(o *Quarantine) bool {
	if qa, oa := q.Reason == reasonUnattributed, o.Reason == reasonUnattributed; qa != oa {
		return oa
	}
	if q.Partition != o.Partition {
		return q.Partition < o.Partition
	}
	return q.Offset < o.Offset
}
