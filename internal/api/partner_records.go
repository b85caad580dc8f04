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
// other's change, whichever process makes it. When the registry cannot
// catch up it answers 503 itself and reports false; otherwise the caller
// calls unlock.
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
	old, _, unlock := p.lockRecord(w, r)
	defer unlock()
	if old == nil {
		return
	}
	addr := r.PathValue("address")
	i := slices.IndexFunc(old.Email, func(e subscribers.Email) bool { return strings.EqualFold(e.Address, addr) })
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
	if strings.TrimSpace(old.Email[i].PGPKey) == strings.TrimSpace(armored) {
		res.Unchanged = true
		writeJSON(w, http.StatusOK, res)
		return
	}
	next := cloneRecord(old)
	next.Email[i].PGPKey = armored
	if !p.check(w, next) ||
		!p.stored(w, old.ID, p.Overlays.SetKey(r.Context(), partnerActor(r), old, old.Email[i].Address, armored, now)) {
		return
	}
	p.audit(r, partnerActor(r), record.Audit{Action: record.ActionPartnerKey, Object: "subscriber:" + old.ID,
		Details: map[string]any{"address": res.Address, "fingerprint": res.Fingerprint, "expires_at": res.ExpiresAt}})
	p.log.Info("partner replaced an OpenPGP key", "subscriber", old.ID, "fingerprint", res.Fingerprint)
	writeJSON(w, http.StatusOK, res)
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
	next.Webhooks[i].Secrets = append(next.Webhooks[i].Secrets, secret)
	if !p.check(w, next) || !p.stored(w, old.ID, p.Overlays.SetSecrets(r.Context(), partnerActor(r), old,
		old.Webhooks[i].URL, writtenSecrets(written, old.Webhooks[i].URL), next.Webhooks[i].Secrets, p.now())) {
		return
	}
	added := subscribers.RedactSecret(secret)
	p.audit(r, partnerActor(r), record.Audit{Action: record.ActionPartnerSecret, Object: "subscriber:" + old.ID,
		Details: map[string]any{"webhook": i, "endpoint": subscribers.RedactURL(old.Webhooks[i].URL), "added": added}})
	p.log.Info("partner added a webhook secret", "subscriber", old.ID, "webhook", i, "secret", added)
	writeJSON(w, http.StatusCreated, SecretResponse{Index: i, Secrets: redactSecrets(next.Webhooks[i].Secrets), Secret: secret, Added: added})
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
	next.Webhooks[i].Secrets = slices.Delete(next.Webhooks[i].Secrets, j, j+1)
	if !p.check(w, next) || !p.stored(w, old.ID, p.Overlays.SetSecrets(r.Context(), partnerActor(r), old,
		old.Webhooks[i].URL, writtenSecrets(written, old.Webhooks[i].URL), next.Webhooks[i].Secrets, p.now())) {
		return
	}
	retired := subscribers.RedactSecret(secrets[j])
	p.audit(r, partnerActor(r), record.Audit{Action: record.ActionPartnerSecret, Object: "subscriber:" + old.ID,
		Details: map[string]any{"webhook": i, "endpoint": subscribers.RedactURL(old.Webhooks[i].URL), "retired": retired}})
	p.log.Info("partner retired a webhook secret", "subscriber", old.ID, "webhook", i, "secret", retired)
	writeJSON(w, http.StatusOK, SecretResponse{Index: i, Secrets: redactSecrets(next.Webhooks[i].Secrets), Retired: retired})
}
