package view

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
)

// Quarantine is what an authentic record of the quarantine topic says of
// a record of the alerts topic: the fan-out refused it at ingest
// (PRODUCT.md §3 rule 1), so it reached no one. It marks the alert the
// view lists under its id only when it refused the very record the view
// lists (Marks), and only while the alert has no receipts: an alert that
// was fanned out stays so.
type Quarantine struct {
	// Digest identifies the content refused (alerts.Alert.Digest).
	Digest string `json:"digest"`
	// SourcePartition and SourceOffset are the place on the alerts topic
	// of the record refused, from the record's source header.
	SourcePartition int   `json:"source_partition"`
	SourceOffset    int64 `json:"source_offset"`
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

// Marks reports whether q refused the record that the alerts topic holds
// at partition and offset with digest: the record the alert list shows
// under q's id (Published). Anyone who may write to the alerts topic can
// have a copy of Herald's alert refused (as unattributed): that copy is
// another record, and its refusal says nothing of what became of
// Herald's. The source header is authenticated (bus.AuthenticateHeaders),
// as is the digest (the quarantine record's value is the alert refused):
// a copy of an authentic quarantine record that names another source does
// not authenticate, and the fan-out writes the source of the record it
// refused, not one the record carried (bus.Rejection).
func (q *Quarantine) Marks(digest string, partition int, offset int64) bool {
	return q.Digest == digest && q.SourcePartition == partition && q.SourceOffset == offset
}

// MaxQuarantineError is how much of a quarantine record's error header
// the view keeps: a refusal in words is a line or a few field errors.
const MaxQuarantineError = 2048

// errNoReason is QuarantineOf's answer to a record without a reason the
// fan-out writes: a word of lower-case letters and '-'.
var errNoReason = errors.New("no quarantine reason (a word) in the reason header")

// errNoSource is QuarantineOf's answer to a record without the source
// header the fan-out writes: topic/partition/offset.
var errNoSource = errors.New("no place of the record refused (topic/partition/offset) in the source header")

// QuarantineOf reads a record of the quarantine topic that the caller has
// authenticated with its headers (bus.AuthenticHeaders): the alert id it is keyed by and what it
// says of that alert's content. It returns a nil Quarantine and no error
// when the record holds no alert under its key (the quarantine holds
// whatever reached the alerts topic, most of it nothing Herald lists); an
// error when it holds one without the reason or source the fan-out writes.
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
	partition, offset, ok := source(bus.Header(m, bus.HeaderSource))
	if !ok {
		return "", nil, fmt.Errorf("quarantine record of %q: %w", id, errNoSource)
	}
	return id, &Quarantine{Digest: a.Digest(), SourcePartition: partition, SourceOffset: offset,
		Reason: reason, Error: alerts.Clip(bus.Header(m, bus.HeaderError), MaxQuarantineError, ""),
		Partition: m.Partition, Offset: m.Offset, Time: m.Time}, nil
}

// source reads the partition and offset of a source header
// (bus.Rejection: topic/partition/offset). The topic is not compared: the
// fan-out refuses records of the alerts topic only.
func source(h string) (partition int, offset int64, ok bool) {
	rest, off, ok := cutLast(h)
	if !ok {
		return 0, 0, false
	}
	_, part, ok := cutLast(rest)
	if !ok {
		return 0, 0, false
	}
	p, err1 := strconv.ParseInt(part, 10, 32)
	o, err2 := strconv.ParseInt(off, 10, 64)
	if err1 != nil || err2 != nil || p < 0 || o < 0 {
		return 0, 0, false
	}
	return int(p), o, true
}

// cutLast cuts s around its last '/'.
func cutLast(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
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

// Before reports whether q, rather than o, is the record to keep of two
// that refused one record of the alerts topic (a fan-out that stopped
// before committing refuses it again): the earlier (partition, then
// offset). The order depends on the records alone, never on the order
// they were read in, so a rebuilt view keeps the same one.
func (q *Quarantine) Before(o *Quarantine) bool {
	if q.Partition != o.Partition {
		return q.Partition < o.Partition
	}
	return q.Offset < o.Offset
}
