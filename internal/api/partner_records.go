package api

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/subscribers"
)

// MaxKeyBytes bounds an uploaded public key: an armoured key is a few KiB.
const MaxKeyBytes = 64 << 10

// MaxSecrets is how many secrets a partner's webhook may hold: enough for
// a rotation with overlap, and one to spare.
const MaxSecrets = 3

// KeyStatus describes the OpenPGP key Herald holds for an address.
type KeyStatus struct {
	Fingerprint string    `json:"fingerprint"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	// Usable says whether alerts that must be encrypted can be sent to
	// the address now; Problem says why not.
	Usable  bool   `json:"usable"`
	Problem string `json:"problem,omitempty"`
}

// PartnerEmail is one address of the partner and its key.
type PartnerEmail struct {
	Address string     `json:"address"`
	Key     *KeyStatus `json:"key,omitempty"`
}

// PartnerEmailList is the answer to GET /v1/partner/email.
type PartnerEmailList struct {
	Email []PartnerEmail `json:"email"`
}

// KeyResponse is the answer to PUT /v1/partner/email/{address}/key.
type KeyResponse struct {
	Address string `json:"address"`
	KeyStatus
	// Unchanged says the key was already the one held: nothing was
	// written.
	Unchanged bool `json:"unchanged,omitempty"`
}

// PartnerWebhook is one webhook endpoint of the partner, as the partner
// sees it: its URL without credentials, query or fragment, and its
// secrets redacted as the administrators' API redacts them.
type PartnerWebhook struct {
	Index    int        `json:"index"`
	URL      string     `json:"url"`
	MaxTLP   alerts.TLP `json:"max_tlp,omitempty"`
	Disabled bool       `json:"disabled"`
	Secrets  []string   `json:"secrets"`
}

// PartnerWebhookList is the answer to GET /v1/partner/webhooks.
type PartnerWebhookList struct {
	Webhooks []PartnerWebhook `json:"webhooks"`
}

// SecretResponse is the answer to adding or retiring a secret: the
// webhook's secrets, redacted, and, once, a secret just made.
type SecretResponse struct {
	Index   int      `json:"index"`
	Secrets []string `json:"secrets"`
	// Secret is the new whsec_ secret. It is shown this once and never
	// again: store it in the receiver now.
	Secret string `json:"secret,omitempty"`
	// Added and Retired are the redacted forms of what changed.
	Added   string `json:"added,omitempty"`
	Retired string `json:"retired,omitempty"`
}

// keyStatus describes armored at now.
func keyStatus(armored string, now time.Time) *KeyStatus {
	if strings.TrimSpace(armored) == "" {
		return nil
	}
	info, err := pgp.InspectKey(armored, now)
	if err != nil {
		return &KeyStatus{Problem: err.Error()}
	}
	ks := &KeyStatus{Fingerprint: info.Fingerprint, ExpiresAt: info.Expires, Usable: true}
	if err := pgp.CheckRecipientKey(armored, now); err != nil {
		ks.Usable, ks.Problem = false, err.Error()
	}
	return ks
}

// cloneRecord returns a copy of s that shares nothing Normalize or an
// edit changes: records in the registry are immutable.
func cloneRecord(s *subscribers.Subscriber) *subscribers.Subscriber {
	c := *s
	c.Sectors, c.Regions = slices.Clone(s.Sectors), slices.Clone(s.Regions)
	c.Email = slices.Clone(s.Email)
	c.Webhooks = slices.Clone(s.Webhooks)
	for i := range c.Webhooks {
		c.Webhooks[i].Secrets = slices.Clone(s.Webhooks[i].Secrets)
	}
	return &c
}

// lockRecords serialises a change to a partner record, or to a partner's
// own key or secrets, with every other such change this process makes
// (handler.records) and waits until the registry has applied every record
// written before (Partner.Sync), so that the change starts from what was
// last written. Correctness does not rest on it: a partner's change is
// written as its own record (an overlay) and an administrator's record
// replaces an overlay only where it changes that key or secret (see
// app.SubscriberStore.Put), so neither ever writes back a copy of the
// other's change, whichever process makes it; and of two changes of one
// key or webhook's secrets made at once through two processes, every
// registry keeps the first in the topic and ignores the other
// (subscribers.KeyOverlay.Seq), whose request answers 409 (change). When
// the registry cannot catch up it answers 503 itself and reports false;
// otherwise the caller calls unlock.
func (h *handler) lockRecords(w http.ResponseWriter, r *http.Request) (unlock func(), ok bool) {
	h.records.Lock()
	if h.Partner.Sync != nil {
		if err := h.Partner.Sync(r.Context()); err != nil {
			h.records.Unlock()
			// By route, never by path: a path may hold a whole secret
			// (DELETE …/secrets/{n} given the secret itself).
			h.log.Error("catch up with the subscribers topic", "route", r.Pattern, "error", err)
			writeError(w, http.StatusServiceUnavailable, "the record cannot be read now; try again", nil)
			return nil, false
		}
	}
	return h.records.Unlock, true
}

// lockWrites is lockRecords for an administrator's write of records: it
// answers 503 itself, and reports false, when this server has no Writer.
func (h *handler) lockWrites(w http.ResponseWriter, r *http.Request) (unlock func(), ok bool) {
	if h.Writer == nil {
		writeError(w, http.StatusServiceUnavailable, "subscriber records cannot be written on this server", nil)
		return nil, false
	}
	return h.lockRecords(w, r)
}

// lockRecord serialises a change to the partner's own key or secrets
// (lockRecords) and returns the partner's effective record, the one its
// keys and secrets are read from, and its record as written, or answers
// (404 or 503) and returns nil. The caller calls unlock.
//
// The record as written is read before and after the record in force:
// should the registry apply an administrator's change (or a deletion and
// re-creation) between the reads, the two would not belong together, and
// a change made from them would be over secrets the record no longer
// holds (never in force: subscribers.SecretsOverlay.Over) or carry one
// incarnation's data under another's; it answers 503 instead.
func (p *partnerAPI) lockRecord(w http.ResponseWriter, r *http.Request) (rec, written *subscribers.Subscriber, unlock func()) {
	unlock = func() {}
	if p.Registry == nil || p.Directory == nil || p.Overlays == nil {
		writeError(w, http.StatusServiceUnavailable, "partner records cannot be changed on this server", nil)
		return nil, nil, unlock
	}
	unlock, ok := p.lockRecords(w, r)
	if !ok {
		return nil, nil, func() {}
	}
	sub := subscriberOf(r)
	written = p.Directory.Record(sub)
	rec = p.ownRecord(sub)
	if rec == nil || written == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no record for subscriber %q", sub), nil)
		return nil, nil, unlock
	}
	if again := p.Directory.Record(sub); again == nil || again.Version() != written.Version() ||
		rec.Incarnation != written.Incarnation {
		writeError(w, http.StatusServiceUnavailable, "your record changed while it was read; try again", nil)
		return nil, nil, unlock
	}
	return rec, written, unlock
}

// writtenKey returns the key written, the partner's record as written,
// holds for its address, whatever its case ("" if it holds none, or lists
// no such address).
func writtenKey(written *subscribers.Subscriber, address string) string {
	if j := written.EmailIndex(address); j >= 0 {
		return written.Email[j].PGPKey
	}
	return ""
}

// writtenSecrets returns the secrets written, the partner's record as
// written, holds for its webhook url (nil if it lists no such webhook).
func writtenSecrets(written *subscribers.Subscriber, url string) []string {
	for _, wh := range written.Webhooks {
		if wh.URL == url {
			return wh.Secrets
		}
	}
	return nil
}

// check checks next, the partner's effective record with its change
// made, as any record is checked, and answers a refusal (422) itself.
func (p *partnerAPI) check(w http.ResponseWriter, next *subscribers.Subscriber) bool {
	if err := p.checkSubscriber(next); err != nil {
		writeInvalid(w, err)
		return false
	}
	return true
}

// stored answers a failure (503) to store a partner's change, if err is
// one, and reports whether the change was stored.
func (p *partnerAPI) stored(w http.ResponseWriter, sub string, err error) bool {
	if err == nil {
		return true
	}
	p.log.Error("put subscriber", "subscriber", sub, "error", err)
	writeError(w, http.StatusServiceUnavailable, "your record could not be stored; try again", nil)
	return false
}

// ownChange is a partner's change of its own key for one address or its
// own secrets for one webhook, as change writes it.
type ownChange struct {
	// key is the subscribers-topic key it is written under.
	key string
	// write writes it (OverlayWriter.SetKey or SetSecrets).
	write func() error
	// inForce reports whether it is in force in rec, the partner's
	// effective record once the registry has read it back (nil if the
	// record is gone).
	inForce func(rec *subscribers.Subscriber) bool
	// conflict is the answer (409) when it is not; list names where the
	// partner sees what is in force instead.
	conflict, list string
	// audit is the change's audit entry: its Action and Details, and the
	// Reason it is refused when it is not in force (notInForce).
	audit record.Audit
	// again writes the partner's own key or list the registry holds
	// under key again, exactly as it is (By and At too), as a record
	// that changes nothing, made from rec, the partner's effective
	// record; errNothingInForce when none is held (settle).
	again func(rec *subscribers.Subscriber) error
}

// change writes c, then waits until the registry has read it back
// (Partner.Sync) and answers 409 itself, audited as refused, unless the
// change is in force: another change of the same key or secrets came
// first in the topic (made through another api process from the same
// state, and read by every registry before this one, which they all
// ignore), or came first into this process's registry (then nothing is
// written: subscribers.ErrOverlayChanged), or an administrator changed
// the record meanwhile. It answers a failure to write (503) itself too.
// A change written but not read back (the catch-up failed, or stopped
// short of it) answers 503: whether it is in force cannot be told; it is
// audited as written, with a Reason saying so, for it may be. It
// returns the partner's effective record with the change in force, or nil
// with ok true when this server cannot wait for its registry (no
// Partner.Sync): the caller then answers from the change it made, as
// before changes were read back; the registries still keep only the first
// of two changes made at once. The caller holds lockRecords.
func (p *partnerAPI) change(w http.ResponseWriter, r *http.Request, sub string, c ownChange) (rec *subscribers.Subscriber, ok bool) {
	before, _ := p.Directory.OverlayRevision(c.key)
	err := c.write()
	if errors.Is(err, subscribers.ErrOverlayChanged) {
		p.notInForce(w, r, sub, c)
		return nil, false
	}
	if !p.stored(w, sub, err) {
		return nil, false
	}
	if p.Partner.Sync == nil {
		// A server that cannot catch up with the subscribers topic (no
		// registry follower) answers the change as written.
		return nil, true
	}
	err = p.Partner.Sync(r.Context())
	if err == nil {
		if after, _ := p.Directory.OverlayRevision(c.key); after == before {
			// Caught up, and still not read: the catch-up stopped short
			// of the write.
			err = errors.New("the registry caught up without reading the change")
		}
	}
	if err != nil {
		// Written, but whether it is in force cannot be told: it is not
		// answered as made, yet audited as written, for it may be in
		// force (every subscriber change is in the audit trail).
		e := c.audit
		e.Object, e.Outcome = "subscriber:"+sub, record.OutcomeOK
		e.Reason = "written, but could not be read back: whether it is in force could not be told"
		p.audit(r, partnerActor(r), e)
		p.log.Error("read back a partner's change", "subscriber", sub, "route", r.Pattern, "error", err)
		writeError(w, http.StatusServiceUnavailable, "your change was written, but Herald cannot tell now whether it is in force; see "+c.list, nil)
		return nil, false
	}
	rec = p.ownRecord(sub)
	p.settle(r, sub, c)
	if !c.inForce(rec) {
		p.notInForce(w, r, sub, c)
		return nil, false
	}
	return rec, true
}

// errNothingInForce is ownChange.again's answer when the registry holds
// no overlay of the partner's under the key to write again.
var errNothingInForce = errors.New("no key or secrets in force to write again")

// settle makes sure the latest record under c.key is one the registries
// took. When the latest they read there is a change they ignored (this
// request's, or another's made at once), a process that reads the topic
// once compaction has kept only that record would take it, and hold
// another key or other secrets than every other process
// (subscribers.Registry.OverlayRevision). So the overlay the registry
// holds under the key is written again exactly as it is (c.again): a
// record that changes nothing, placed after the last one read, which
// every registry takes, and that names whoever made it, not this request;
// never the administrator's key or secrets as the partner's own. A
// failure is logged, not answered: the partner's change is answered on
// its own merits, and the next change of the key settles it too.
func (p *partnerAPI) settle(r *http.Request, sub string, c ownChange) {
	for range 3 {
		if _, ignored := p.Directory.OverlayRevision(c.key); !ignored {
			return
		}
		rec := p.ownRecord(sub)
		if rec == nil {
			return // gone: the records under the key apply to nothing
		}
		err := c.again(rec)
		if err == nil && p.Partner.Sync != nil {
			err = p.Partner.Sync(r.Context())
		}
		switch {
		case errors.Is(err, subscribers.ErrOverlayChanged):
			continue // another change came in meanwhile: look again
		case errors.Is(err, errNothingInForce):
			p.log.Warn("the latest change of a partner's key or secrets is one no registry took, and none is in force to write again", "subscriber", sub, "action", c.audit.Action)
			return
		case err != nil:
			p.log.Warn("write a partner's key or secrets in force again", "subscriber", sub, "route", r.Pattern, "error", err)
			return
		}
		p.log.Info("wrote a partner's key or secrets in force again, after a change of them no registry took", "subscriber", sub, "action", c.audit.Action)
	}
	if _, ignored := p.Directory.OverlayRevision(c.key); ignored {
		p.log.Warn("the latest change of a partner's key or secrets is still one no registry took", "subscriber", sub, "action", c.audit.Action)
	}
}

// notInForce answers 409 for c, a partner's change that is not in force,
// and audits it as refused.
func (p *partnerAPI) notInForce(w http.ResponseWriter, r *http.Request, sub string, c ownChange) {
	c.audit.Object, c.audit.Outcome = "subscriber:"+sub, record.OutcomeRefused
	p.audit(r, partnerActor(r), c.audit)
	p.log.Info("a partner's change was not in force: its key or secrets changed meanwhile", "subscriber", sub, "action", c.audit.Action)
	writeError(w, http.StatusConflict, c.conflict, nil)
}

// listEmail handles GET /v1/partner/email.
func (p *partnerAPI) listEmail(w http.ResponseWriter, r *http.Request) {
	rec := p.ownRecord(subscriberOf(r))
	if rec == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no record for subscriber %q", subscriberOf(r)), nil)
		return
	}
	out := PartnerEmailList{Email: make([]PartnerEmail, len(rec.Email))}
	now := p.now()
	for i, e := range rec.Email {
		out.Email[i] = PartnerEmail{Address: e.Address, Key: keyStatus(e.PGPKey, now)}
	}
	writeJSON(w, http.StatusOK, out)
}

// readKey reads an armoured key body: application/pgp-keys (RFC 3156 §7)
// or text/plain, in UTF-8 or US-ASCII.
func readKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/pgp-keys" && mt != "text/plain") {
		writeError(w, http.StatusUnsupportedMediaType, "the body must be an ASCII-armoured public key as application/pgp-keys or text/plain", nil)
		return "", false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
		writeError(w, http.StatusUnsupportedMediaType, "the key must be UTF-8 or US-ASCII text, not charset "+cs, nil)
		return "", false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxKeyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the key exceeds %d bytes", MaxKeyBytes), nil)
			return "", false
		}
		writeError(w, http.StatusBadRequest, "read the body: "+err.Error(), nil)
		return "", false
	}
	return strings.TrimSpace(strings.ReplaceAll(string(body), "\r\n", "\n")) + "\n", true
}

// putKey handles PUT /v1/partner/email/{address}/key: the key is checked
// as the policy will use it (pgp.CheckRecipientKey: parsable, usable for
// encryption, not expired or revoked), then the partner's record with the
// key is checked as any record is, and the key is stored as the partner's
// own key for the address (a subscribers.KeyOverlay), never as a new
// version of the record.
func (p *partnerAPI) putKey(w http.ResponseWriter, r *http.Request) {
	armored, ok := readKey(w, r)
	if !ok {
		return
	}
	old, written, unlock := p.lockRecord(w, r)
	defer unlock()
	if old == nil {
		return
	}
	addr := r.PathValue("address")
	i := old.EmailIndex(addr)
	if i < 0 {
		p.audit(r, partnerActor(r), record.Audit{Action: record.ActionPartnerKey, Object: "subscriber:" + old.ID,
			Outcome: record.OutcomeRefused, Reason: "the address is not in the partner's record"})
		writeError(w, http.StatusNotFound, fmt.Sprintf("your record has no address %q", addr), nil)
		return
	}
	now := p.now()
	if err := pgp.CheckRecipientKey(armored, now); err != nil {
		writeError(w, http.StatusUnprocessableEntity, "the key cannot be used", []alerts.FieldError{{Field: "pgp_key", Message: err.Error()}})
		return
	}
	res := KeyResponse{Address: old.Email[i].Address, KeyStatus: *keyStatus(armored, now)}
	if subscribers.SameKey(old.Email[i].PGPKey, armored) {
		res.Unchanged = true
		writeJSON(w, http.StatusOK, res)
		return
	}
	next := cloneRecord(old)
	next.Email[i].PGPKey = armored
	if !p.check(w, next) {
		return
	}
	details := map[string]any{"address": res.Address, "fingerprint": res.Fingerprint, "expires_at": res.ExpiresAt}
	if _, ok := p.change(w, r, old.ID, ownChange{
		key: subscribers.KeyOverlayKey(old.ID, res.Address),
		write: func() error {
			return p.Overlays.SetKey(r.Context(), partnerActor(r), old, res.Address, writtenKey(written, res.Address), armored, now)
		},
		inForce: func(rec *subscribers.Subscriber) bool {
			j := rec.EmailIndex(res.Address)
			return j >= 0 && subscribers.SameKey(rec.Email[j].PGPKey, armored)
		},
		conflict: fmt.Sprintf("the key of %s changed while this change was made (another request?); see it with GET /v1/partner/email and try again", res.Address),
		list:     "GET /v1/partner/email",
		audit:    record.Audit{Action: record.ActionPartnerKey, Reason: "the key changed while the change was made", Details: details},
		again: func(rec *subscribers.Subscriber) error {
			if rec.EmailIndex(res.Address) < 0 {
				return errNothingInForce
			}
			for _, o := range p.Directory.KeyOverlays(rec.ID) {
				if strings.EqualFold(o.Address, res.Address) {
					return p.Overlays.RewriteKey(r.Context(), rec, o)
				}
			}
			return errNothingInForce
		},
	}); !ok {
		return
	}
	p.audit(r, partnerActor(r), record.Audit{Action: record.ActionPartnerKey, Object: "subscriber:" + old.ID, Details: details})
	p.log.Info("partner replaced an OpenPGP key", "subscriber", old.ID, "fingerprint", res.Fingerprint)
	writeJSON(w, http.StatusOK, res)
}

// secretsAgain writes the partner's own secrets the registry holds for
// the webhook url again, exactly as they are (their secrets, By and At),
// as a change that changes nothing (ownChange.again), made from rec, the
// partner's effective record: the change that put them there is still
// the one that made them, not this request, whose own change may have
// been refused. Nothing held, or a webhook rec no longer lists, is
// errNothingInForce: the administrator's secrets are never written as
// the partner's own.
func (p *partnerAPI) secretsAgain(r *http.Request, rec *subscribers.Subscriber, url string) error {
	if rec.WebhookIndex(url) < 0 {
		return errNothingInForce
	}
	for _, o := range p.Directory.SecretsOverlays(rec.ID) {
		if o.URL == url {
			return p.Overlays.RewriteSecrets(r.Context(), rec, o)
		}
	}
	return errNothingInForce
}

// changeSecrets writes secrets, the partner's change of the secrets of
// its webhook i made from old, its effective record, and written, its
// record as written, as change does, audited with details. done reports
// whether the change is in force, given the webhook's secrets once read
// back; list is where the partner sees them when it is not. It returns
// the webhook's secrets in force and its index, or ok false once it has
// answered.
func (p *partnerAPI) changeSecrets(w http.ResponseWriter, r *http.Request, old, written *subscribers.Subscriber, i int,
	secrets []string, details map[string]any, done func(inForce []string) bool, list string) (inForce []string, index int, ok bool) {
	url := old.Webhooks[i].URL
	rec, ok := p.change(w, r, old.ID, ownChange{
		key: subscribers.SecretsOverlayKey(old.ID, url),
		write: func() error {
			return p.Overlays.SetSecrets(r.Context(), partnerActor(r), old, url, writtenSecrets(written, url), secrets, p.now())
		},
		inForce: func(rec *subscribers.Subscriber) bool {
			j := rec.WebhookIndex(url)
			return j >= 0 && done(rec.Webhooks[j].Secrets)
		},
		conflict: fmt.Sprintf("your webhook %d's secrets changed while this change was made (another request?); list them with GET /v1/partner/webhooks and try again", i),
		list:     list,
		audit:    record.Audit{Action: record.ActionPartnerSecret, Reason: "the webhook's secrets changed while the change was made", Details: details},
		again:    func(rec *subscribers.Subscriber) error { return p.secretsAgain(r, rec, url) },
	})
	if !ok {
		return nil, 0, false
	}
	p.audit(r, partnerActor(r), record.Audit{Action: record.ActionPartnerSecret, Object: "subscriber:" + old.ID, Details: details})
	if rec == nil { // not read back: no Partner.Sync
		return secrets, i, true
	}
	j := rec.WebhookIndex(url)
	return rec.Webhooks[j].Secrets, j, true
}

// partnerWebhooks lists the webhooks of rec, the partner's effective
// record (endpoint states and its own secrets applied), as the partner
// sees them.
func partnerWebhooks(rec *subscribers.Subscriber) []PartnerWebhook {
	out := make([]PartnerWebhook, len(rec.Webhooks))
	for i, wh := range rec.Webhooks {
		out[i] = PartnerWebhook{Index: i, URL: subscribers.RedactURL(wh.URL), MaxTLP: wh.MaxTLP, Disabled: wh.Disabled,
			Secrets: redactSecrets(wh.Secrets)}
	}
	return out
}

// redactSecrets returns secrets as Herald shows them
// (subscribers.RedactSecret): a PUT may send them back in that form to
// keep them unchanged (restoreSecrets).
func redactSecrets(secrets []string) []string {
	out := make([]string, len(secrets))
	for i, s := range secrets {
		out[i] = subscribers.RedactSecret(s)
	}
	return out
}

// listWebhooks handles GET /v1/partner/webhooks.
func (p *partnerAPI) listWebhooks(w http.ResponseWriter, r *http.Request) {
	sub := subscriberOf(r)
	rec := p.ownRecord(sub)
	if rec == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no record for subscriber %q", sub), nil)
		return
	}
	writeJSON(w, http.StatusOK, PartnerWebhookList{Webhooks: partnerWebhooks(rec)})
}

// webhookIndex returns the index of the path's webhook in rec, or answers
// 404 and returns -1.
func webhookIndex(w http.ResponseWriter, r *http.Request, rec *subscribers.Subscriber) int {
	s := r.PathValue("index")
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || i >= len(rec.Webhooks) || strconv.Itoa(i) != s {
		writeError(w, http.StatusNotFound, fmt.Sprintf("you have no webhook %q (webhooks are numbered from 0; GET /v1/partner/webhooks lists them)", s), nil)
		return -1
	}
	return i
}

// addSecret handles POST /v1/partner/webhooks/{index}/secrets: a new
// whsec_ secret, made by Herald, joins the endpoint's secrets, stored as
// the partner's own secrets for the endpoint (a
// subscribers.SecretsOverlay). Webhooks are then signed with every secret
// (Standard Webhooks), so the receiver may switch to the new one before
// the old one is retired.
func (p *partnerAPI) addSecret(w http.ResponseWriter, r *http.Request) {
	old, written, unlock := p.lockRecord(w, r)
	defer unlock()
	if old == nil {
		return
	}
	i := webhookIndex(w, r, old)
	if i < 0 {
		return
	}
	if n := len(old.Webhooks[i].Secrets); n >= MaxSecrets {
		writeError(w, http.StatusConflict, fmt.Sprintf("webhook %d already has %d secrets, the most it may hold: retire one first (DELETE /v1/partner/webhooks/%d/secrets/{n})", i, n, i), nil)
		return
	}
	secret, err := whsig.NewSecret()
	if err != nil {
		p.log.Error("make a webhook secret", "error", err)
		writeError(w, http.StatusServiceUnavailable, "no secret could be made; try again", nil)
		return
	}
	next := cloneRecord(old)
	url := old.Webhooks[i].URL
	next.Webhooks[i].Secrets = append(next.Webhooks[i].Secrets, secret)
	if !p.check(w, next) {
		return
	}
	added := subscribers.RedactSecret(secret)
	details := map[string]any{"webhook": i, "endpoint": subscribers.RedactURL(url), "added": added}
	// The new secret is never shown unless it is in force: a receiver
	// switched to a secret Herald does not sign with refuses every
	// webhook.
	inForce, i, ok := p.changeSecrets(w, r, old, written, i, next.Webhooks[i].Secrets, details,
		func(secrets []string) bool { return slices.Contains(secrets, secret) },
		"GET /v1/partner/webhooks, and retire a secret you were not given")
	if !ok {
		return
	}
	p.log.Info("partner added a webhook secret", "subscriber", old.ID, "webhook", i, "secret", added)
	writeJSON(w, http.StatusCreated, SecretResponse{Index: i, Secrets: redactSecrets(inForce), Secret: secret, Added: added})
}

// retireSecret handles DELETE /v1/partner/webhooks/{index}/secrets/{n}:
// n is the secret's place in the list (from 0) or its redacted form, which
// does not shift when another secret is retired first. The rest are
// stored as the partner's own secrets for the endpoint. The last secret
// stays: an endpoint without one could not verify what it receives.
func (p *partnerAPI) retireSecret(w http.ResponseWriter, r *http.Request) {
	old, written, unlock := p.lockRecord(w, r)
	defer unlock()
	if old == nil {
		return
	}
	i := webhookIndex(w, r, old)
	if i < 0 {
		return
	}
	secrets := old.Webhooks[i].Secrets
	want := r.PathValue("n")
	j := slices.IndexFunc(secrets, func(s string) bool { return subscribers.RedactSecret(s) == want })
	if n, err := strconv.Atoi(want); err == nil && strconv.Itoa(n) == want && n >= 0 && n < len(secrets) {
		j = n
	}
	if j < 0 {
		shown := want
		if strings.HasPrefix(want, "whsec_") {
			// A secret itself in the path: not echoed, nor logged.
			shown = subscribers.RedactSecret(want)
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("webhook %d has no secret %q (give its place from 0, or its redacted form)", i, shown), nil)
		return
	}
	if len(secrets) == 1 {
		writeError(w, http.StatusConflict, fmt.Sprintf("secret %d is the last secret of webhook %d and cannot be retired: add its successor first (POST /v1/partner/webhooks/%d/secrets), switch your receiver to it, then retire this one", j, i, i), nil)
		return
	}
	next := cloneRecord(old)
	url, secret := old.Webhooks[i].URL, secrets[j]
	next.Webhooks[i].Secrets = slices.Delete(next.Webhooks[i].Secrets, j, j+1)
	if !p.check(w, next) {
		return
	}
	retired := subscribers.RedactSecret(secret)
	details := map[string]any{"webhook": i, "endpoint": subscribers.RedactURL(url), "retired": retired}
	// The secret is out of force (retired by this change, or by another
	// made at once).
	inForce, i, ok := p.changeSecrets(w, r, old, written, i, next.Webhooks[i].Secrets, details,
		func(secrets []string) bool { return !slices.Contains(secrets, secret) }, "GET /v1/partner/webhooks")
	if !ok {
		return
	}
	p.log.Info("partner retired a webhook secret", "subscriber", old.ID, "webhook", i, "secret", retired)
	writeJSON(w, http.StatusOK, SecretResponse{Index: i, Secrets: redactSecrets(inForce), Retired: retired})
}
