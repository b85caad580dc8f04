package view

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/herald-alerts/herald/internal/ledger"
)

// schemaVersion changes whenever what the view stores, or how, changes: a
// store of another version is rebuilt. 6: a quarantine record marks an
// alert only when its headers authenticate (bus.AuthenticateHeaders). 7:
// an entry keeps the incarnation of the partner's record it was decided
// for (ledger.Entry.Incarnation). 8: the meta bucket keeps the longest
// any published alert was released after its list time (kReleaseLag). 9:
// the bindings of the alert-ids topic (bBindings). 10: the bindings
// displaced by a later record under their id (bDisplaced), judged from
// the first record of alert-ids.
const schemaVersion = "10"

// Buckets (see the package documentation for their keys and values).
var (
	bMeta         = []byte("meta")
	bOffsets      = []byte("offsets")
	bPublished    = []byte("published")
	bPublishedRaw = []byte("published.raw")
	bRelease      = []byte("release")
	bReleaseRaw   = []byte("release.raw")
	bReceipts     = []byte("receipts")
	bEntries      = []byte("entries")
	bAcks         = []byte("acks")
	bList         = []byte("list")
	bListKey      = []byte("list.key")
	bPartner      = []byte("partner")
	bPartnerState = []byte("partner.state")
	bPartnerChan  = []byte("partner.channel")
	bPullRev      = []byte("pull.rev")
	bAudit        = []byte("audit")
	bAuditActor   = []byte("audit.actor")
	bAuditAction  = []byte("audit.action")
	bQuarantine   = []byte("quarantine")
	bBindings     = []byte("bindings")
	bDisplaced    = []byte("bindings.displaced")

	allBuckets = [][]byte{bMeta, bOffsets, bPublished, bPublishedRaw, bRelease, bReleaseRaw, bReceipts,
		bEntries, bAcks, bList, bListKey, bPartner, bPartnerState, bPartnerChan, bPullRev, bAudit, bAuditActor, bAuditAction, bQuarantine, bBindings, bDisplaced}
)

// Keys of the meta bucket.
var (
	kVersion = []byte("version")
	kPrefix  = []byte("prefix")
	kScope   = []byte("scope") // Scope.String(); absent: ScopeAll
	// kKeys holds the ids of the publishing keys the records were
	// authenticated with (keyringOf); absent: kept before they were.
	kKeys = []byte("keys")
	// kReleaseLag holds the longest any published alert was released
	// after the time it is listed at (Summary.Released minus Summary.At),
	// in nanoseconds, big-endian; absent: none was. Counts reads the
	// published alerts listed from CountQuery.Since minus it on.
	kReleaseLag = []byte("release.lag")
)

func partitionsKey(topic string) []byte { return []byte("partitions/" + topic) }

// errCorrupt marks a stored value the view cannot read: the store is
// rebuilt.
var errCorrupt = errors.New("view store holds a value it cannot read")

func corrupt(what string, key []byte, err error) error {
	return fmt.Errorf("%w: %s %q: %v", errCorrupt, what, key, err)
}

// sortTime encodes t so that byte order is time order; the zero time sorts
// first.
func sortTime(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return uint64(t.UnixNano()) ^ (1 << 63)
}

func appendTime(b []byte, t time.Time) []byte { return binary.BigEndian.AppendUint64(b, sortTime(t)) }

// join concatenates parts with a 0x00 between them.
func join(parts ...string) []byte {
	n := len(parts)
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// lenPrefixed returns uvarint(len(s)) s: a key prefix no other string's
// prefix can be a prefix of.
func lenPrefixed(s string) []byte {
	b := binary.AppendUvarint(make([]byte, 0, len(s)+2), uint64(len(s)))
	return append(b, s...)
}

// offsetKey is the offsets bucket's key of topic[partition].
func offsetKey(topic string, partition int) []byte {
	return binary.BigEndian.AppendUint32(append([]byte(topic), 0), uint32(partition))
}

// stored is the offsets bucket's value.
type stored struct {
	next     int64
	fpOffset int64 // -1: no record applied yet
	fp       [16]byte
}

func (s stored) encode() []byte {
	b := make([]byte, 0, 32)
	b = binary.BigEndian.AppendUint64(b, uint64(s.next))
	b = binary.BigEndian.AppendUint64(b, uint64(s.fpOffset))
	return append(b, s.fp[:]...)
}

func decodeStored(b []byte) (stored, bool) {
	if len(b) != 32 {
		return stored{}, false
	}
	s := stored{next: int64(binary.BigEndian.Uint64(b)), fpOffset: int64(binary.BigEndian.Uint64(b[8:]))}
	copy(s.fp[:], b[16:])
	return s, true
}

// storedEntry is an entry of the receipts fold with the time its partner
// index keys sort by (fixed when the entry is first made).
type storedEntry struct {
	ledger.Entry
	at time.Time
}

const entryCodec = 1

// encodeEntry encodes e compactly: entries are the bulk of the store and of
// the work of applying receipts, so they are not JSON.
func encodeEntry(e *storedEntry) []byte {
	b := make([]byte, 0, 128+len(e.Target)+len(e.LastError)+len(e.Reason)+len(e.Incarnation))
	b = append(b, entryCodec)
	for _, s := range []string{e.Subscriber, e.Target, e.Decision, e.Rule, e.State, e.Channel, e.Mode,
		e.Reason, e.DeliveryID, e.LastError, e.Incarnation} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, int64(e.Attempts))
	for _, t := range []time.Time{e.RetryAt, e.UpdatedAt, e.at} {
		b = appendBinaryTime(b, t)
	}
	return b
}

func appendBinaryTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	tb, err := t.MarshalBinary()
	if err != nil { // a time beyond what the format holds: keep it as UTC
		tb, _ = t.UTC().MarshalBinary()
	}
	b = append(b, byte(len(tb)))
	return append(b, tb...)
}

// decoder reads what encodeEntry wrote, remembering the first problem.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) string() string {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || uint64(len(d.b)-k) < n {
		d.fail()
		return ""
	}
	s := string(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
	return s
}

func (d *decoder) varint() int64 {
	v, k := binary.Varint(d.b)
	if k <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *decoder) time() time.Time {
	if len(d.b) == 0 {
		d.fail()
		return time.Time{}
	}
	n := int(d.b[0])
	if len(d.b) < 1+n {
		d.fail()
		return time.Time{}
	}
	var t time.Time
	if n > 0 {
		if err := t.UnmarshalBinary(d.b[1 : 1+n]); err != nil {
			d.fail()
		}
	}
	d.b = d.b[1+n:]
	return t
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errors.New("truncated or malformed")
	}
	d.b = nil
}

func decodeEntry(b []byte) (*storedEntry, error) {
	if len(b) == 0 || b[0] != entryCodec {
		return nil, errors.New("unknown entry encoding")
	}
	d := decoder{b: b[1:]}
	e := &storedEntry{}
	for _, s := range []*string{&e.Subscriber, &e.Target, &e.Decision, &e.Rule, &e.State, &e.Channel, &e.Mode,
		&e.Reason, &e.DeliveryID, &e.LastError, &e.Incarnation} {
		*s = d.string()
	}
	e.Attempts = int(d.varint())
	e.RetryAt, e.UpdatedAt, e.at = d.time(), d.time(), d.time()
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes")
	}
	return e, d.err
}

// successor returns the smallest key greater than every key that starts
// with prefix, or nil when there is none (the end of the bucket).
func successor(prefix []byte) []byte {
	s := bytes.Clone(prefix)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] < 0xff {
			s[i]++
			return s[:i+1]
		}
	}
	return nil
}

// lastBefore positions c at the greatest key that starts with prefix and
// is below bound (or, when bound is nil, the greatest key with prefix) and
// returns it, or nil when there is none.
func lastBefore(c *bbolt.Cursor, prefix, bound []byte) []byte {
	upper := bound
	if upper == nil {
		upper = successor(prefix)
	}
	var k []byte
	if upper == nil {
		k, _ = c.Last()
	} else if k, _ = c.Seek(upper); k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return nil
	}
	return k
}

// prev steps c back and returns the key if it still starts with prefix.
func prev(c *bbolt.Cursor, prefix []byte) []byte {
	k, _ := c.Prev()
	if k == nil || !bytes.HasPrefix(k, prefix) {
		return nil
	}
	return k
}
