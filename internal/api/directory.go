package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/subscribers"
)

// Partner is one partner as analysts see it in the directory: who it is
// and what it may receive, never its addresses, keys or secrets.
type Partner struct {
	ID          string          `json:"id"`
	Name        string          `json:"name"`
	Kind        string          `json:"kind"`
	Sectors     []string        `json:"sectors,omitempty"`
	Regions     []string        `json:"regions,omitempty"`
	MinSeverity alerts.Severity `json:"min_severity,omitempty"`
	Clearance   alerts.TLP      `json:"clearance"`
	Sensitive   bool            `json:"sensitive"`
	AcceptsTest bool            `json:"accepts_test"`
	Status      string          `json:"status"`
	Emails      int             `json:"emails"`
	Webhooks    int             `json:"webhooks"`
}

// PartnerList is the answer to GET /v1/partners.
type PartnerList struct {
	Partners []Partner `json:"partners"`
}

// EndpointList is the answer to GET /v1/subscribers/{id}/endpoints: the
// state Herald recorded for each webhook of a partner (disabled after a
// 410 Gone, enabled again by an administrator), beside the record.
type EndpointList struct {
	Endpoints []subscribers.EndpointState `json:"endpoints"`
}

// PartnerManaged is the answer to GET /v1/subscribers/{id}/partner-managed:
// the keys and webhook secrets the partner manages itself (PRODUCT.md
// §12), stored beside its record and in force over the record's own
// while the record lists their address or webhook. Keys are shown by
// fingerprint, secrets redacted, never the material itself.
type PartnerManaged struct {
	Keys    []ManagedKey     `json:"keys"`
	Secrets []ManagedSecrets `json:"secrets"`
}

// ManagedKey is a partner's own key for one address.
type ManagedKey struct {
	Address string `json:"address"`
	KeyStatus
	// InForce says whether the record lists the address, with the key the
	// partner's key was made over, and is the incarnation the key was
	// uploaded to (subscribers.KeyOverlay.InForce): a key for an address
	// it no longer lists, made before an administrator replaced the
	// address's key, or uploaded to a deleted partner's record under the
	// same id, changes nothing.
	InForce bool      `json:"in_force"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
}

// ManagedSecrets is a partner's own secrets for one webhook: its URL as the
// record has it (administrators see whole records, as the endpoint states
// at …/endpoints do), and the secrets redacted.
type ManagedSecrets struct {
	URL     string   `json:"url"`
	Secrets []string `json:"secrets"`
	// InForce says whether the record lists the webhook, with the
	// secrets the partner's list was made over, and is the incarnation
	// it was made for (subscribers.SecretsOverlay.InForce): a list made
	// before an administrator changed the webhook's secrets changes
	// nothing.
	InForce bool      `json:"in_force"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
}

// Directory is what the partner directory needs of the registry beyond
// Subscribers: the records as written (an administrator edits those, never
// the effective record with endpoint states and the partner's own keys and
// secrets applied), endpoint states, and the partner's own keys and
// secrets, with what the registry has read under each of their keys (a
// partner's change learns from it whether the registry has read it back:
// subscribers.Registry.OverlayRevision). *subscribers.Registry satisfies
// it.
type Directory interface {
	Record(id string) *subscribers.Subscriber
	Endpoints(subscriber string) []subscribers.EndpointState
	KeyOverlays(subscriber string) []subscribers.KeyOverlay
	SecretsOverlays(subscriber string) []subscribers.SecretsOverlay
	OverlayRevision(key string) (rev uint64, ignored bool)
}

// OverlayWriter records a partner's own key for one address, or its own
// secrets for one webhook, as its own record beside the partner's record,
// which it never rewrites (app.SubscriberStore satisfies it). rec is the
// partner's effective record the change was made from; when the key or
// secrets in force are no longer rec's, the writer writes nothing and
// returns subscribers.ErrOverlayChanged.
type OverlayWriter interface {
	SetKey(ctx context.Context, actor string, rec *subscribers.Subscriber, address, written, pgpKey string, now time.Time) error
	SetSecrets(ctx context.Context, actor string, rec *subscribers.Subscriber, url string, written, secrets []string, now time.Time) error
	// RewriteKey and RewriteSecrets write an overlay the registry holds
	// again exactly as it is, after the last change of its key read, as
	// a change of rec, the partner's effective record (settle).
	RewriteKey(ctx context.Context, rec *subscribers.Subscriber, o subscribers.KeyOverlay) error
	RewriteSecrets(ctx context.Context, rec *subscribers.Subscriber, o subscribers.SecretsOverlay) error
}

// EndpointWriter records an administrator's change of an endpoint's state
// as its own record (app.SubscriberStore satisfies it).
type EndpointWriter interface {
	SetEndpoint(ctx context.Context, actor, subscriber, url string, disabled bool, reason string, now time.Time) error
}

// listPartners handles GET /v1/partners: the directory analysts pick named
// partners from.
func (h *handler) listPartners(w http.ResponseWriter, r *http.Request) {
	if h.Registry == nil {
		writeError(w, http.StatusServiceUnavailable, "the subscriber registry is not available on this server", nil)
		return
	}
	list := h.Registry.List()
	out := PartnerList{Partners: make([]Partner, len(list))}
	for i, s := range list {
		out.Partners[i] = Partner{ID: s.ID, Name: s.Name, Kind: s.Kind, Sectors: s.Sectors, Regions: s.Regions,
			MinSeverity: s.MinSeverity, Clearance: s.Clearance, Sensitive: s.Sensitive, AcceptsTest: s.AcceptsTest,
			Status: s.Status, Emails: len(s.Email), Webhooks: len(s.Webhooks)}
	}
	writeJSON(w, http.StatusOK, out)
}

// reasonRequest is the body of an administrator's action that needs a
// reason.
type reasonRequest struct {
	Reason string `json:"reason"`
}

// decodeReason reads {"reason": …}, required and one line of text.
func decodeReason(w http.ResponseWriter, r *http.Request) (string, bool) {
	body, err := readBody(w, r, 16<<10)
	if err != nil {
		return "", false
	}
	if !screenBody(w, body, "request") {
		return "", false
	}
	var req reasonRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeDecodeError(w, "request", err)
		return "", false
	}
	v := &alerts.ValidationError{What: "invalid request"}
	alerts.CheckLine(v, "reason", strings.TrimSpace(req.Reason), 1, alerts.MaxTitle)
	if err := v.Err(); err != nil {
		writeInvalid(w, err)
		return "", false
	}
	return strings.TrimSpace(req.Reason), true
}

// record returns the partner record named in the path as written, or
// answers 404 and returns nil.
func (h *handler) record(w http.ResponseWriter, r *http.Request) *subscribers.Subscriber {
	id := r.PathValue("id")
	var s *subscribers.Subscriber
	if h.Directory != nil && alerts.ValidID(id) {
		s = h.Directory.Record(id)
	}
	if s == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no subscriber %q", id), nil)
	}
	return s
}

// setStatus handles POST /v1/subscribers/{id}/suspend and …/resume: a new
// version of the record with its status changed, the reason in the audit
// trail.
func (h *handler) setStatus(status string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		reason, ok := decodeReason(w, r)
		if !ok {
			return
		}
		// After the registry has caught up, so that the new version is
		// made from the record as last written. A partner's own key or
		// secret is not in that record and stays in force.
		unlock, ok := h.lockWrites(w, r)
		if !ok {
			return
		}
		defer unlock()
		old := h.record(w, r)
		if old == nil {
			return
		}
		s := *old
		s.Status = status
		if err := h.Writer.Put(r.Context(), actor(r), reason, []*subscribers.Subscriber{&s},
			func(string) *subscribers.Subscriber { return old }); err != nil {
			h.log.Error("set subscriber status", "subscriber", s.ID, "error", err)
			writeError(w, http.StatusServiceUnavailable, "the record could not be stored; try again", nil)
			return
		}
		h.log.Info("subscriber status set", "subscriber", s.ID, "status", status)
		writeJSON(w, http.StatusOK, redacted(&s))
	}
}

// listEndpoints handles GET /v1/subscribers/{id}/endpoints.
func (h *handler) listEndpoints(w http.ResponseWriter, r *http.Request) {
	s := h.record(w, r)
	if s == nil {
		return
	}
	states := h.Directory.Endpoints(s.ID)
	if states == nil {
		states = []subscribers.EndpointState{}
	}
	writeJSON(w, http.StatusOK, EndpointList{Endpoints: states})
}

// listPartnerManaged handles GET /v1/subscribers/{id}/partner-managed.
func (h *handler) listPartnerManaged(w http.ResponseWriter, r *http.Request) {
	s := h.record(w, r)
	if s == nil {
		return
	}
	writeJSON(w, http.StatusOK, PartnerManagedOf(h.Directory, s, h.now()))
}

// PartnerManagedOf describes the keys and secrets the partner of rec, its
// record as written, manages itself, at now: what GET
// /v1/subscribers/{id}/partner-managed answers and `herald subscribers
// get` names, so that both say the same.
func PartnerManagedOf(d Directory, rec *subscribers.Subscriber, now time.Time) PartnerManaged {
	out := PartnerManaged{Keys: []ManagedKey{}, Secrets: []ManagedSecrets{}}
	for _, o := range d.KeyOverlays(rec.ID) {
		mk := ManagedKey{Address: o.Address, By: o.By, At: o.At, InForce: o.InForce(rec)}
		if ks := keyStatus(o.PGPKey, now); ks != nil {
			mk.KeyStatus = *ks
		}
		out.Keys = append(out.Keys, mk)
	}
	for _, o := range d.SecretsOverlays(rec.ID) {
		out.Secrets = append(out.Secrets, ManagedSecrets{URL: o.URL, Secrets: redactSecrets(o.Secrets), By: o.By, At: o.At,
			InForce: o.InForce(rec)})
	}
	return out
}

// enableEndpoint handles POST /v1/subscribers/{id}/webhooks/{index}/enable
// (and …/disable): an administrator's change of one endpoint's state,
// recorded as its own record beside the partner's.
func (h *handler) setEndpoint(disabled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		reason, ok := decodeReason(w, r)
		if !ok {
			return
		}
		s := h.record(w, r)
		if s == nil {
			return
		}
		i, err := strconv.Atoi(r.PathValue("index"))
		if err != nil || i < 0 || i >= len(s.Webhooks) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("subscriber %s has no webhook %q (webhooks are numbered from 0)", s.ID, r.PathValue("index")), nil)
			return
		}
		if h.Endpoints == nil {
			writeError(w, http.StatusServiceUnavailable, "endpoint states cannot be written on this server", nil)
			return
		}
		if err := h.Endpoints.SetEndpoint(r.Context(), actor(r), s.ID, s.Webhooks[i].URL, disabled, reason, h.now()); err != nil {
			h.log.Error("set endpoint state", "subscriber", s.ID, "error", err)
			writeError(w, http.StatusServiceUnavailable, "the endpoint state could not be stored; try again", nil)
			return
		}
		writeJSON(w, http.StatusOK, subscribers.EndpointState{Subscriber: s.ID, URL: s.Webhooks[i].URL, Disabled: disabled,
			Reason: reason, By: actor(r), At: h.now().UTC()})
	}
}
