package subscribers

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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

// Key prefixes of the overlays in the subscribers topic. Subscriber ids are
// slugs, which never start with '~', so the keys cannot collide with
// theirs.
const (
	KeyOverlayPrefix     = "~key/"
	SecretsOverlayPrefix = "~secrets/"
)

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
// for that address, while the record lists the address and is the
// incarnation the key was uploaded to (InForce).
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

// InForce reports whether o applies to rec, the partner's record as
// written: the record lists o's address and is the incarnation o was made
// against.
func (o KeyOverlay) InForce(rec *Subscriber) bool {
	return slices.ContainsFunc(rec.Email, func(e Email) bool { return o.over(rec, e) })
}

// over reports whether o applies to e, an address of rec as written.
func (o KeyOverlay) over(rec *Subscriber, e Email) bool {
	return o.Incarnation == rec.Incarnation && strings.EqualFold(e.Address, o.Address)
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
		if i < 0 || strings.TrimSpace(prev.Email[i].PGPKey) != strings.TrimSpace(e.PGPKey) {
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

// PutKeyOverlay records o as the partner's own key for its address, in
// force on top of the partner's record while KeyOverlay.InForce says so.
func (r *Registry) PutKeyOverlay(o KeyOverlay) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.keys[o.Subscriber]
	if m == nil {
		m = map[string]KeyOverlay{}
		r.keys[o.Subscriber] = m
	}
	m[strings.ToLower(o.Address)] = o
	r.overlayChangedLocked(o.Subscriber)
}

// PutSecretsOverlay records o as the partner's own secrets for its
// webhook, in force on top of the partner's record while
// SecretsOverlay.InForce says so.
func (r *Registry) PutSecretsOverlay(o SecretsOverlay) {
	o.Secrets = slices.Clone(o.Secrets)
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.secrets[o.Subscriber]
	if m == nil {
		m = map[string]SecretsOverlay{}
		r.secrets[o.Subscriber] = m
	}
	m[o.URL] = o
	r.overlayChangedLocked(o.Subscriber)
}

// ClearOverlay forgets the overlay stored under the subscribers-topic key
// (KeyOverlayKey or SecretsOverlayKey), as a tombstone of the key does; it
// reports whether there was one.
func (r *Registry) ClearOverlay(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	sub, ok := overlaySubscriber(key)
	if !ok {
		return false
	}
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
