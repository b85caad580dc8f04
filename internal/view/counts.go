package view

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/herald-alerts/herald/internal/record"
	"go.etcd.io/bbolt"
)

// Counts is how many alerts the list holds in each state, as List with
// that state would list them: the console's desk shows them on its tiles
// every few seconds, so they are counted from the list's index, without
// reading a page of summaries per state.
type Counts struct {
	Pending     int `json:"pending"`
	Expired     int `json:"expired"`
	Published   int `json:"published"`
	Rejected    int `json:"rejected"`
	Quarantined int `json:"quarantined"`
	// PublishedSince is, of Published, how many were released at or
	// after CountQuery.Since: approved at or after it, or, published
	// without review, issued (else listed) at or after it, as the
	// summaries' approved_at, issued_at and at say. Absent without Since.
	PublishedSince *int `json:"published_since,omitempty"`
}

// CountQuery asks for Counts.
type CountQuery struct {
	// Since, if set, asks for Counts.PublishedSince.
	Since time.Time
}

// Counts counts the list's alerts by state. Published, rejected and
// quarantined alerts are counted by their keys in the list's index;
// pending ones read their release record, to tell those that have
// expired (by Options.Now, as List does); published ones listed from
// CountQuery.Since minus the longest any published alert was released
// after its list time on (an approval comes after the submission it is
// listed at, by however long that alert waited) are summarised to find
// when they were released. The cost grows with the alerts held, a few keys a
// microsecond, not with their receipts.
func (v *View) Counts(q CountQuery) (Counts, error) {
	if v.scope != ScopeAll {
		return Counts{}, ErrNotKept
	}
	now := v.now()
	var n Counts
	err := v.read(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bList).Cursor()
		n.Rejected = countPrefix(c, []byte{listRejected})
		n.Quarantined = countPrefix(c, []byte{listQuarantined})
		n.Published = countPrefix(c, []byte{listPublished})
		pending := []byte{listPending}
		rel := tx.Bucket(bRelease)
		for k, _ := c.Seek(pending); k != nil && bytes.HasPrefix(k, pending); k, _ = c.Next() {
			id := k[9:]
			var r releaseRecord
			if v := rel.Get(id); v != nil {
				if err := json.Unmarshal(v, &r); err != nil {
					return corrupt("release", id, err)
				}
			}
			if r.State.State(now) == record.StateExpired {
				n.Expired++
			} else {
				n.Pending++
			}
		}
		if q.Since.IsZero() {
			return nil
		}
		since := 0
		n.PublishedSince = &since
		published := []byte{listPublished}
		from := sortTime(q.Since.Add(-releaseLag(tx)))
		for k := lastBefore(c, published, nil); k != nil; k = prev(c, published) {
			if binary.BigEndian.Uint64(k[1:9]) < from {
				break // listed before Since minus the longest lag: released before Since
			}
			id := string(k[9:])
			rs, err := load(tx, id, nil, false)
			if err != nil {
				return err
			}
			st, at := rs.place()
			if !rs.summarize(id, at, st, now).Released().Before(q.Since) {
				since++
			}
		}
		return nil
	})
	if err != nil {
		return Counts{}, fmt.Errorf("view counts: %w", err)
	}
	return n, nil
}

// Released is when a published alert went out: its approval, or, when it
// needed none, its issue time, else the time it was listed.
func (s Summary) Released() time.Time {
	switch {
	case !s.ApprovedAt.IsZero():
		return s.ApprovedAt
	case !s.IssuedAt.IsZero():
		return s.IssuedAt
	}
	return s.At
}

// releaseLag returns the longest any published alert the view holds was
// released after its list time (kReleaseLag).
func releaseLag(tx *bbolt.Tx) time.Duration {
	v := tx.Bucket(bMeta).Get(kReleaseLag)
	if len(v) != 8 {
		return 0
	}
	return time.Duration(binary.BigEndian.Uint64(v))
}

// noteReleaseLag keeps lag, how long a published alert was released after
// its list time, if it is the longest yet (kReleaseLag). It only grows: a
// rebuilt view learns it again from the alerts it holds.
func (t *txn) noteReleaseLag(lag time.Duration) error {
	if lag <= releaseLag(t.tx) {
		return nil
	}
	return t.tx.Bucket(bMeta).Put(kReleaseLag, binary.BigEndian.AppendUint64(nil, uint64(lag)))
}

// countPrefix counts the keys of c's bucket that start with prefix.
func countPrefix(c *bbolt.Cursor, prefix []byte) int {
	n := 0
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		n++
	}
	return n
}
