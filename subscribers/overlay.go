package subscribers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A partner changes its own OpenPGP keys and webhook secrets (PRODUCT.md
// §12); an administrator writes the rest of its record. Each partner-owned
// change is a record of its own in the subscribers topic, an overlay,
// beside the partner's record and never inside it: one key per address,
// one per webhook, so the compacted topic keeps the latest of each. The
// Registry applies them on top of the record as written, as it applies
// endpoint states. Neither writer ever writes back a copy of the other's
// record, so a partner's key upload made from a copy a moment old can
// never undo an administrator's suspension, and an administrator's record
// put back from an old GET can never undo a partner's newer key.
//
// A partner's change is a whole new key, or a whole new list of secrets,
// made from the one in force: two changes made at once through two api
// processes, each from what its own registry had read, would otherwise
// both be answered as made while the topic kept only the later, which was
// made without the earlier. So each overlay carries Seq, its place among
// the changes of its key: one more than the latest Seq its writer's
// registry had read under the key. The registry takes an overlay in
// place of the one it holds under the key only if its Seq is higher
// (takesPlace); otherwise it ignores it, and the writer, reading its own
// record back, learns that its change is not in force. The very overlay
// it holds, read again under its key (the same bytes re-signed with a new
// publishing key), is no rival: it stays held, as the same change. Every process
// reads one key's records in the same order (one key, one partition) and
// decides on them alone, never on the partner's record, which lies on
// another partition and which processes read in different orders
// relative to them; whether the overlay held applies to the record stays
// InForce's question, asked afresh whenever either changes.
//
// The topic is compacted: a process that reads it later may find only the
// latest records of a key, a suffix of what others read. The overlays a
// registry takes have rising Seqs, so from the first record of that
// suffix that the others took on, it holds what they hold. Only when the
// latest record under a key is one they ignored would it hold another
// overlay than they do: then the writer that reads its record ignored
// writes the overlay in force again, at a higher Seq, as a change of its
// own that changes nothing (see Registry.OverlayRevision).

// Key prefixes of the overlays in the subscribers topic. Subscriber ids are
// slugs, which never start with '~', so the keys cannot collide with
// theirs.
const (
	KeyOverlayPrefix     = "~key/"
	SecretsOverlayPrefix = "~secrets/"
)

// EndorsementPrefix starts the subscribers-topic key of an endorsement:
// `herald keys resign`'s record vouching, under the publishing key's first
// key, for the latest record of the key that follows the prefix, which an
// older publishing key signed. Registry.Apply knows no such record: the
// reader of the topic applies it (internal/app).
const EndorsementPrefix = "~resign/"

// KeyOverlayKey returns the subscribers-topic key of the partner's own key
// for address: one key per address, whatever its case.
func KeyOverlayKey(subscriber, address string) string {
	return KeyOverlayPrefix + subscriber + "/" + keyDigest(strings.ToLower(address))
}

// SecretsOverlayKey returns the subscribers-topic key of the partner's own
// secrets for its webhook url: one key per webhook.
func SecretsOverlayKey(subscriber, url string) string {
	return SecretsOverlayPrefix + subscriber + "/" + keyDigest(url)
}

// IsRecordKey reports whether a subscribers-topic key holds a partner
// record: not an endpoint state, not an overlay, nor any other record kept
// beside the partners' records (their keys start with '~').
func IsRecordKey(key string) bool { return !strings.HasPrefix(key, "~") }

// KeyOverlay is a partner's own OpenPGP key for one of its addresses. The
// Registry's effective record has it in place of the key the record holds
// for that address, while the record lists the address with the key it
// was made over and is the incarnation the key was uploaded to (InForce).
type KeyOverlay struct {
	Subscriber string `json:"subscriber"`
	Address    string `json:"address"`
	PGPKey     string `json:"pgp_key"`
	By         string `json:"by"`
	// At is when it was written.
	At time.Time `json:"at"`
	// Incarnation is the Incarnation of the record it was made against:
	// it applies to that incarnation only.
	Incarnation string `json:"incarnation,omitempty"`
	// Over is PGPKeyDigest of the key the record as written held for the
	// address (none: the digest of "") when the partner made its change:
	// the key applies only while the record still holds that one, so an
	// administrator's replacement of it (a compromised key) made
	// meanwhile is never undone by it, nor by the key in force written
	// again from a copy that predates the replacement. Keys written
	// before Over existed have none and apply as they did then, so that
	// an upgrade does not silently drop the keys partners uploaded.
	Over string `json:"over,omitempty"`
	// Seq is its place among the partner's changes of the key for the
	// address: the registry holds it only if it is higher than the Seq
	// of the key the registry held when it read it (see the compare-and-
	// set above). Keys written before Seq existed have none (0): they take
	// the place of any key held, as every key did then, so that an
	// upgrade neither drops nor refuses them.
	Seq uint64 `json:"seq,omitempty"`
}

// SecretsOverlay is a partner's own list of Standard Webhooks secrets for
// one of its webhooks. The Registry's effective record has them in place
// of the secrets the record holds for that webhook, while the record lists
// its URL with the secrets they were made over and is the incarnation
// they were made for (InForce).
type SecretsOverlay struct {
	Subscriber string   `json:"subscriber"`
	URL        string   `json:"url"`
	Secrets    []string `json:"secrets"`
	By         string   `json:"by"`
	// At is when it was written.
	At time.Time `json:"at"`
	// Incarnation is the Incarnation of the record it was made against:
	// it applies to that incarnation only.
	Incarnation string `json:"incarnation,omitempty"`
	// Over is SecretsDigest of the secrets the record as written held for
	// the webhook when the partner made its list from them: the list
	// applies only while the record still holds those. Secrets carries a
	// copy of the administrator's secrets beside the partner's new one,
	// so an administrator's change of them (a revoked secret) made
	// meanwhile is never undone by it. Lists written before Over existed
	// have none and apply as they did then, so that an upgrade does not
	// silently drop the secrets partners rotated.
	Over string `json:"over,omitempty"`
	// Seq is its place among the partner's changes of the webhook's
	// secrets, as KeyOverlay.Seq; lists written before Seq existed have
	// none and take the place of any list held, as they did then.
	Seq uint64 `json:"seq,omitempty"`
}

// ErrOverlayChanged reports that a partner's key or secrets in force
// changed after the partner's change of them was made from them (another
// change read meanwhile): the change would undo it, and is not written.
var ErrOverlayChanged = errors.New("the partner's key or secrets in force changed while the change was made")

// takesPlace reports whether an overlay with Seq seq, read from the
// subscribers topic under its key, takes the place of the one the
// registry holds there, whose Seq is heldSeq: the compare-and-set. An
// overlay without Seq (0, written before Seq existed) always does, as
// every overlay did then; so does any overlay where none is held
// (heldSeq 0: the first of its key, the first after a tombstone cleared
// it, or the first of what compaction left).
func takesPlace(seq, heldSeq uint64) bool {
	return seq == 0 || seq > heldSeq
}

// SecretsDigest returns the digest of a webhook's secrets that a
// SecretsOverlay is made over (SecretsOverlay.Over).
func SecretsDigest(secrets []string) string {
	h := sha256.New()
	for _, s := range secrets {
		h.Write([]byte(s))
		h.Write([]byte{'\n'})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// SameKey reports whether two armored OpenPGP keys are the same key: keys
// are compared without the white space around them. It is the one home of
// that rule (PGPKeyDigest digests a key as it compares).
func SameKey(a, b string) bool { return strings.TrimSpace(a) == strings.TrimSpace(b) }

// PGPKeyDigest returns the digest of an address's key that a KeyOverlay
// is made over (KeyOverlay.Over); an address without a key has the
// digest of "". Keys are compared without the white space around them
// (SameKey): two keys SameKey calls the same have one digest.
func PGPKeyDigest(key string) string {
	h := sha256.Sum256([]byte(strings.TrimSpace(key)))
	return "sha256:" + hex.EncodeToString(h[:])
}

// InForce reports whether o applies to rec, the partner's record as
// written: the record lists o's address with the key o was made over, and
// is the incarnation o was made against.
func (o KeyOverlay) InForce(rec *Subscriber) bool {
	return slices.ContainsFunc(rec.Email, func(e Email) bool { return o.over(rec, e) })
}

// over reports whether o applies to e, an address of rec as written.
func (o KeyOverlay) over(rec *Subscriber, e Email) bool {
	return o.Incarnation == rec.Incarnation && strings.EqualFold(e.Address, o.Address) &&
		(o.Over == "" || PGPKeyDigest(e.PGPKey) == o.Over)
}

// InForce reports whether o applies to rec, the partner's record as
// written: the record lists o's webhook with the secrets o was made over,
// and is the incarnation o was made against.
func (o SecretsOverlay) InForce(rec *Subscriber) bool {
	return slices.ContainsFunc(rec.Webhooks, func(w Webhook) bool { return o.over(rec, w) })
}

// over reports whether o applies to w, a webhook of rec as written.
func (o SecretsOverlay) over(rec *Subscriber, w Webhook) bool {
	return o.Incarnation == rec.Incarnation && w.URL == o.URL && (o.Over == "" || SecretsDigest(w.Secrets) == o.Over)
}

// ReplacedOverlays returns the keys of the overlays that next, an
// administrator's new version of the record prev as written (nil for a
// new record), replaces: an address whose key next sets differently from
// prev, or that prev does not list, has its key overlay replaced by the
// record's key; likewise a webhook's secrets. An address or webhook whose
// key or secrets are as prev has them keeps its overlay: an administrator
// who puts back the record as read a moment ago never undoes the partner's
// newer key.
func ReplacedOverlays(prev, next *Subscriber) []string {
	var out []string
	for _, e := range next.Email {
		i := -1
		if prev != nil {
			i = slices.IndexFunc(prev.Email, func(p Email) bool { return strings.EqualFold(p.Address, e.Address) })
		}
		if i < 0 || !SameKey(prev.Email[i].PGPKey, e.PGPKey) {
			out = append(out, KeyOverlayKey(next.ID, e.Address))
		}
	}
	for _, w := range next.Webhooks {
		i := -1
		if prev != nil {
			i = slices.IndexFunc(prev.Webhooks, func(p Webhook) bool { return p.URL == w.URL })
		}
		if i < 0 || !slices.Equal(prev.Webhooks[i].Secrets, w.Secrets) {
			out = append(out, SecretsOverlayKey(next.ID, w.URL))
		}
	}
	return out
}

// same reports whether o is the very overlay held: every field alike (the
// same change read again, such as a copy written again with a new publishing
// key by `herald keys resign`), not a rival change made from the same
// state. The registry holds it as it was, with no change to count.
func (o KeyOverlay) same(held KeyOverlay) bool {
	a, b := o, held
	a.At, b.At = time.Time{}, time.Time{}
	return a == b && o.At.Equal(held.At)
}

// same reports whether o is the very overlay held, as KeyOverlay.same.
func (o SecretsOverlay) same(held SecretsOverlay) bool {
	return o.Subscriber == held.Subscriber && o.URL == held.URL && slices.Equal(o.Secrets, held.Secrets) &&
		o.By == held.By && o.At.Equal(held.At) && o.Incarnation == held.Incarnation && o.Over == held.Over && o.Seq == held.Seq
}

// PutKeyOverlay records o as the partner's own key for its address, in
// force on top of the partner's record while KeyOverlay.InForce says so,
// if it takes the place of the key held for the address (its Seq is
// higher, or it has none: see KeyOverlay.Seq), and reports whether it
// did. The very overlay held read again (the same change, such as a copy
// re-signed with a new publishing key) is held as it was: it reports true
// and changes nothing. Either way it counts as read under its key
// (OverlayRevision).
func (r *Registry) PutKeyOverlay(o KeyOverlay) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	addr := strings.ToLower(o.Address)
	if held, ok := r.keys[o.Subscriber][addr]; ok && o.same(held) {
		r.readLocked(KeyOverlayKey(o.Subscriber, o.Address), o.Seq, false)
		return true
	}
	took := takesPlace(o.Seq, r.keys[o.Subscriber][addr].Seq)
	r.readLocked(KeyOverlayKey(o.Subscriber, o.Address), o.Seq, !took)
	if !took {
		return false
	}
	m := r.keys[o.Subscriber]
	if m == nil {
		m = map[string]KeyOverlay{}
		r.keys[o.Subscriber] = m
	}
	m[addr] = o
	r.overlayChangedLocked(o.Subscriber)
	return true
}

// PutSecretsOverlay records o as the partner's own secrets for its
// webhook, in force on top of the partner's record while
// SecretsOverlay.InForce says so, if it takes the place of the secrets
// held for the webhook (SecretsOverlay.Seq), and reports whether it did;
// the very overlay held read again is held as it was, as for
// PutKeyOverlay. Either way it counts as read under its key
// (OverlayRevision).
func (r *Registry) PutSecretsOverlay(o SecretsOverlay) bool {
	o.Secrets = slices.Clone(o.Secrets)
	r.mu.Lock()
	defer r.mu.Unlock()
	if held, ok := r.secrets[o.Subscriber][o.URL]; ok && o.same(held) {
		r.readLocked(SecretsOverlayKey(o.Subscriber, o.URL), o.Seq, false)
		return true
	}
	took := takesPlace(o.Seq, r.secrets[o.Subscriber][o.URL].Seq)
	r.readLocked(SecretsOverlayKey(o.Subscriber, o.URL), o.Seq, !took)
	if !took {
		return false
	}
	m := r.secrets[o.Subscriber]
	if m == nil {
		m = map[string]SecretsOverlay{}
		r.secrets[o.Subscriber] = m
	}
	m[o.URL] = o
	r.overlayChangedLocked(o.Subscriber)
	return true
}

// overlayRead is what the registry has read under one overlay key.
type overlayRead struct {
	// rev changes with every record read under the key, tombstones
	// included.
	rev uint64
	// seq is the highest Seq read under the key, also of overlays
	// ignored or since cleared: a writer's next change goes after it.
	seq uint64
	// ignored says the latest record read under the key was an overlay
	// the registry did not take.
	ignored bool
}

// readLocked counts a record read under the overlay key: an overlay with
// Seq seq, ignored or taken, or a tombstone (seq 0, not ignored).
func (r *Registry) readLocked(key string, seq uint64, ignored bool) {
	r.seq++
	rd := r.reads[key]
	r.reads[key] = overlayRead{rev: r.seq, seq: max(rd.seq, seq), ignored: ignored}
}

// OverlayRevision returns a number that changes whenever the registry
// reads a record under the overlay key (KeyOverlayKey, SecretsOverlayKey),
// whether it takes it or not (0 if it never read one), and whether the
// latest it read was an overlay it did not take. A writer that reads the
// revision before writing its overlay and, once the registry has caught
// up with the topic, finds it changed, knows the registry has read its
// record; the key and secrets in force then tell it whether its change
// is among them. If the latest record was not taken, the topic's latest
// record under the key is not the overlay in force, and a process that
// reads the topic after compaction has kept only that record would hold
// it instead: the writer then writes the key or secrets in force again,
// as a change of its own (NextKeySeq, NextSecretsSeq), which every
// registry takes.
func (r *Registry) OverlayRevision(key string) (rev uint64, ignored bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rd := r.reads[key]
	return rd.rev, rd.ignored
}

// NextKeySeq returns the Seq of a partner's change of its own key for
// address made from rec, its effective record (Get) — one more than the
// highest Seq the registry has read under the address's key — or
// ErrOverlayChanged if the registry's effective record no longer holds
// rec's key for the address (another change of it read since rec was),
// and ErrOverlayChanged too if it has no record of rec's incarnation
// that lists the address. Both are read at once, so a change written
// with the Seq was made from the key in force at that Seq.
func (r *Registry) NextKeySeq(rec *Subscriber, address string) (uint64, error) {
	return r.nextSeq(rec, KeyOverlayKey(rec.ID, address), func(cur *Subscriber) bool {
		i, j := rec.EmailIndex(address), cur.EmailIndex(address)
		return i >= 0 && j >= 0 && SameKey(cur.Email[j].PGPKey, rec.Email[i].PGPKey)
	})
}

// NextSecretsSeq returns the Seq of a partner's change of its own secrets
// for its webhook url made from rec, its effective record (Get), as
// NextKeySeq does for a key: ErrOverlayChanged if the registry's effective
// record no longer holds rec's secrets for the webhook.
func (r *Registry) NextSecretsSeq(rec *Subscriber, url string) (uint64, error) {
	return r.nextSeq(rec, SecretsOverlayKey(rec.ID, url), func(cur *Subscriber) bool {
		i, j := rec.WebhookIndex(url), cur.WebhookIndex(url)
		return i >= 0 && j >= 0 && slices.Equal(cur.Webhooks[j].Secrets, rec.Webhooks[i].Secrets)
	})
}

// nextSeq returns one more than the highest Seq read under the overlay
// key, if the registry's effective record of rec's id is rec's
// incarnation and same(it) says it holds what rec holds there, and
// ErrOverlayChanged otherwise.
func (r *Registry) nextSeq(rec *Subscriber, key string, same func(cur *Subscriber) bool) (uint64, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	cur := r.currentRecordLocked(rec.ID)
	if cur == nil || cur.Incarnation != rec.Incarnation || !same(cur) {
		return 0, ErrOverlayChanged
	}
	return r.reads[key].seq + 1, nil
}

// currentRecordLocked returns the effective record of id, or nil.
func (r *Registry) currentRecordLocked(id string) *Subscriber {
	slot, ok := r.ids.find(r.recs, id)
	if !ok {
		return nil
	}
	return r.currentLocked(slot).record()
}

// EmailIndex returns the index of address in s's addresses, whatever its
// case, or -1 (also for a nil s).
func (s *Subscriber) EmailIndex(address string) int {
	if s == nil {
		return -1
	}
	return slices.IndexFunc(s.Email, func(e Email) bool { return strings.EqualFold(e.Address, address) })
}

// WebhookIndex returns the index of the webhook with url in s, or -1 (also
// for a nil s).
func (s *Subscriber) WebhookIndex(url string) int {
	if s == nil {
		return -1
	}
	return slices.IndexFunc(s.Webhooks, func(w Webhook) bool { return w.URL == url })
}

// ClearOverlay forgets the overlay stored under the subscribers-topic key
// (KeyOverlayKey or SecretsOverlayKey), as a tombstone of the key does; it
// reports whether there was one. Either way it counts as read under the
// key (OverlayRevision); the next overlay read there takes its place
// whatever its Seq.
func (r *Registry) ClearOverlay(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	sub, ok := overlaySubscriber(key)
	if !ok {
		return false
	}
	r.readLocked(key, 0, false)
	for addr := range r.keys[sub] {
		if KeyOverlayKey(sub, addr) == key {
			delete(r.keys[sub], addr)
			if len(r.keys[sub]) == 0 {
				delete(r.keys, sub)
			}
			r.overlayChangedLocked(sub)
			return true
		}
	}
	for url := range r.secrets[sub] {
		if SecretsOverlayKey(sub, url) == key {
			delete(r.secrets[sub], url)
			if len(r.secrets[sub]) == 0 {
				delete(r.secrets, sub)
			}
			r.overlayChangedLocked(sub)
			return true
		}
	}
	return false
}

// overlaySubscriber returns the subscriber an overlay key names.
func overlaySubscriber(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, KeyOverlayPrefix)
	if !ok {
		if rest, ok = strings.CutPrefix(key, SecretsOverlayPrefix); !ok {
			return "", false
		}
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}

// overlayChangedLocked counts a change of an overlay of subscriber and
// recomputes its effective record.
func (r *Registry) overlayChangedLocked(subscriber string) {
	r.rev++
	if slot, ok := r.ids.find(r.recs, subscriber); ok {
		r.rebuildLocked(subscriber, slot)
	}
}

// KeyOverlays returns the partner's own keys of subscriber, sorted by
// address, whether or not the record lists their addresses (or the
// subscriber has a record).
func (r *Registry) KeyOverlays(subscriber string) []KeyOverlay {
	r.mu.RLock()
	out := make([]KeyOverlay, 0, len(r.keys[subscriber]))
	for _, o := range r.keys[subscriber] {
		out = append(out, o)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b KeyOverlay) int {
		return strings.Compare(strings.ToLower(a.Address), strings.ToLower(b.Address))
	})
	return out
}

// SecretsOverlays returns the partner's own webhook secrets of
// subscriber, sorted by URL, whether or not the record lists their URLs
// (or the subscriber has a record). Each holds its own slice of secrets.
func (r *Registry) SecretsOverlays(subscriber string) []SecretsOverlay {
	r.mu.RLock()
	out := make([]SecretsOverlay, 0, len(r.secrets[subscriber]))
	for _, o := range r.secrets[subscriber] {
		o.Secrets = slices.Clone(o.Secrets)
		out = append(out, o)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b SecretsOverlay) int { return strings.Compare(a.URL, b.URL) })
	return out
}

// OverlayKeys returns the subscribers-topic keys of every overlay the
// registry holds for subscriber, sorted: what deleting the partner
// tombstones beside its record.
func (r *Registry) OverlayKeys(subscriber string) []string {
	r.mu.RLock()
	var out []string
	for addr := range r.keys[subscriber] {
		out = append(out, KeyOverlayKey(subscriber, addr))
	}
	for url := range r.secrets[subscriber] {
		out = append(out, SecretsOverlayKey(subscriber, url))
	}
	r.mu.RUnlock()
	slices.Sort(out)
	return out
}

// applyKeyOverlay applies a record under a KeyOverlayKey: the overlay,
// checked to be filed under its own key, or a tombstone.
func (r *Registry) applyKeyOverlay(key string, value []byte) error {
	if len(value) == 0 {
		r.ClearOverlay(key)
		return nil
	}
	var o KeyOverlay
	if err := decodeStrict(value, &o); err != nil {
		return fmt.Errorf("partner key under key %q: %w", key, err)
	}
	switch {
	case o.Subscriber == "":
		return fmt.Errorf("partner key under key %q: subscriber: missing", key)
	case o.Address == "":
		return fmt.Errorf("partner key under key %q: address: missing", key)
	case strings.TrimSpace(o.PGPKey) == "":
		return fmt.Errorf("partner key under key %q: pgp_key: missing (a tombstone clears a key)", key)
	case KeyOverlayKey(o.Subscriber, o.Address) != key:
		return fmt.Errorf("partner key of subscriber %q and its address is stored under key %q, not its address's key", o.Subscriber, key)
	}
	r.PutKeyOverlay(o)
	return nil
}

// applySecretsOverlay applies a record under a SecretsOverlayKey: the
// overlay, checked to be filed under its own key, or a tombstone.
func (r *Registry) applySecretsOverlay(key string, value []byte) error {
	if len(value) == 0 {
		r.ClearOverlay(key)
		return nil
	}
	var o SecretsOverlay
	if err := decodeStrict(value, &o); err != nil {
		return fmt.Errorf("partner secrets under key %q: %w", key, err)
	}
	switch {
	case o.Subscriber == "":
		return fmt.Errorf("partner secrets under key %q: subscriber: missing", key)
	case o.URL == "":
		return fmt.Errorf("partner secrets under key %q: url: missing", key)
	case len(o.Secrets) == 0:
		return fmt.Errorf("partner secrets under key %q: secrets: missing (a webhook keeps at least one; a tombstone clears the partner's)", key)
	case SecretsOverlayKey(o.Subscriber, o.URL) != key:
		return fmt.Errorf("partner secrets of subscriber %q and its url are stored under key %q, not its webhook's key", o.Subscriber, key)
	}
	for i, sec := range o.Secrets {
		if err := CheckSecret(sec); err != nil {
			return fmt.Errorf("partner secrets under key %q: secrets[%d]: %w", key, i, err)
		}
	}
	r.PutSecretsOverlay(o)
	return nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields, so
// that one kind of record filed under another kind's key is refused.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
