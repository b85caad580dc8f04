package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/ack"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
)

// MaxNote is the longest acknowledgement note, in characters.
const MaxNote = 1000

// Partners holds what the partner endpoints (PRODUCT.md §12) need beyond
// the Server's other fields. A partner token reaches these endpoints only,
// and only its own subscriber's data.
type Partners struct {
	// Deliveries answers a partner's own deliveries (the view); nil
	// answers 503.
	Deliveries PartnerDeliveries
	// Receipts records acknowledgements on the receipts topic.
	Receipts ReceiptWriter
	// Dead lists and replays a partner's own dead letters.
	Dead DeadLetters
	// Links opens the capabilities of the acknowledgement links in email;
	// nil answers every link 404.
	Links *ack.Codec
	// Sync, if set, waits until the registry has applied every record
	// written to the subscribers topic before the call, so that a
	// partner's change is made to its record as last written, never to a
	// copy a moment old.
	Sync func(ctx context.Context) error
}

// PartnerDeliveries answers a partner's own deliveries; *view.View
// satisfies it. It never returns an entry the policy withheld.
type PartnerDeliveries interface {
	PartnerDeliveries(subscriber string, q view.PartnerQuery) ([]view.PartnerDelivery, string, error)
}

// ReceiptWriter writes a receipt to the receipts topic (keyed by its
// alert id).
type ReceiptWriter interface {
	WriteReceipt(ctx context.Context, r delivery.Receipt) error
}

// DeadLetters is what a partner may do with its own dead letters.
type DeadLetters interface {
	// Dead returns the delivery ids of the dead letters of subscriber's
	// record of the given incarnation (deliver.DeadFilter.Incarnation).
	Dead(ctx context.Context, subscriber, incarnation string) ([]string, error)
	// Replay re-queues those dead letters with the given delivery ids
	// (every one when ids is empty) and returns how many it re-queued: a
	// delivery delivered or replayed since is not.
	Replay(ctx context.Context, subscriber, incarnation string, ids []string) (int, error)
}

// partnerAPI serves the partner endpoints.
type partnerAPI struct {
	*handler
}

// registerPartner adds the partner endpoints and the acknowledgement
// pages to mux.
func (h *handler) registerPartner(mux *http.ServeMux) {
	p := &partnerAPI{handler: h}
	partner := []string{config.RolePartner}
	mux.Handle("GET /v1/partner", h.auth(partner, p.whoami))
	mux.Handle("GET /v1/partner/deliveries", h.auth(partner, p.deliveries))
	mux.Handle("POST /v1/partner/alerts/{id}/ack", h.auth(partner, p.acknowledge))
	mux.Handle("POST /v1/partner/dead/replay", h.auth(partner, p.replay))
	mux.Handle("GET /v1/partner/email", h.auth(partner, p.listEmail))
	mux.Handle("PUT /v1/partner/email/{address}/key", h.auth(partner, p.putKey))
	mux.Handle("GET /v1/partner/webhooks", h.auth(partner, p.listWebhooks))
	mux.Handle("POST /v1/partner/webhooks/{index}/secrets", h.auth(partner, p.addSecret))
	mux.Handle("DELETE /v1/partner/webhooks/{index}/secrets/{n}", h.auth(partner, p.retireSecret))
	mux.HandleFunc("GET /ack/{token}", p.ackPage)
	mux.HandleFunc("POST /ack/{token}", p.ackConfirm)
}

// partnerActor names a partner token as the audit trail records it.
func partnerActor(r *http.Request) string { return "partner:" + caller(r).name }

// subscriberOf returns the subscriber the request's partner token acts
// for.
func subscriberOf(r *http.Request) string { return caller(r).subscriber }

// audit records a partner's action; a failure to record it is logged, not
// answered: the action itself was done.
func (p *partnerAPI) audit(r *http.Request, actor string, e record.Audit) {
	e.Actor = actor
	if err := p.Audit.Record(r.Context(), e); err != nil {
		p.log.Warn("audit a partner action", "action", e.Action, "object", e.Object, "error", err)
	}
}

// PartnerInfo is the answer to GET /v1/partner: who the token acts for.
type PartnerInfo struct {
	Subscriber string `json:"subscriber"`
	Name       string `json:"name,omitempty"`
	Token      string `json:"token"`
	Status     string `json:"status,omitempty"`
}

// whoami handles GET /v1/partner.
func (p *partnerAPI) whoami(w http.ResponseWriter, r *http.Request) {
	info := PartnerInfo{Subscriber: subscriberOf(r), Token: caller(r).name}
	if s := p.ownRecord(info.Subscriber); s != nil {
		info.Name, info.Status = s.Name, s.Status
	}
	writeJSON(w, http.StatusOK, info)
}

// ownRecord returns the partner's effective record: as written, with its
// endpoint states and its own keys and secrets applied (the registry's
// Get), or nil (also without a registry). Never the record as written: a
// partner's change made from it would drop the partner's own earlier key
// or secrets.
func (p *partnerAPI) ownRecord(sub string) *subscribers.Subscriber {
	if p.Registry == nil {
		return nil
	}
	return p.Registry.Get(sub)
}

// incarnation returns the Incarnation of the partner's current record
// ("" without a registry, or for a record made before Herald set it): a
// partner sees only the history of its own incarnation of its id
// (ledger.Entry.Of). ok is false when the registry holds no record for
// the partner (deleted, and not registered again): no incarnation, so no
// history, is its own.
func (p *partnerAPI) incarnation(sub string) (inc string, ok bool) {
	if p.Registry == nil {
		return "", true
	}
	if s := p.ownRecord(sub); s != nil {
		return s.Incarnation, true
	}
	return "", false
}

// PartnerDeliveryList is the answer to GET /v1/partner/deliveries: a page
// of the partner's own deliveries, newest alert first, and the cursor of
// the next page.
type PartnerDeliveryList struct {
	Subscriber string                 `json:"subscriber"`
	Deliveries []view.PartnerDelivery `json:"deliveries"`
	Next       string                 `json:"next,omitempty"`
}

// deliveries handles GET /v1/partner/deliveries (?alert=, ?state=,
// ?limit=, ?before=).
func (p *partnerAPI) deliveries(w http.ResponseWriter, r *http.Request) {
	if p.Partner.Deliveries == nil {
		writeError(w, http.StatusServiceUnavailable, "partner deliveries are not available on this server", nil)
		return
	}
	v := &alerts.ValidationError{What: "invalid query"}
	q := view.PartnerQuery{Alert: r.URL.Query().Get("alert"), State: r.URL.Query().Get("state"),
		Channel: r.URL.Query().Get("channel"), At: p.now()}
	if q.Alert != "" && !alerts.ValidID(q.Alert) {
		v.Add("alert", "is not an alert id (^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$)")
	}
	q.Limit, q.Before = pageQuery(r, v)
	if err := v.Err(); err != nil {
		writeInvalid(w, err)
		return
	}
	sub := subscriberOf(r)
	inc, hasRecord := p.incarnation(sub)
	q.Incarnation = inc
	var list []view.PartnerDelivery
	var next string
	if hasRecord {
		var err error
		if list, next, err = p.Partner.Deliveries.PartnerDeliveries(sub, q); err != nil {
			p.viewError(w, r, err)
			return
		}
	}
	if list == nil {
		list = []view.PartnerDelivery{}
	}
	for i := range list {
		// The partner's own URL, still without credentials, query or
		// fragment: a token that leaks shows no secret.
		list[i].Target = subscribers.RedactTarget(list[i].Target)
	}
	writeJSON(w, http.StatusOK, PartnerDeliveryList{Subscriber: sub, Deliveries: list, Next: next})
}

// AckRequest is the optional body of POST /v1/partner/alerts/{id}/ack.
type AckRequest struct {
	// Note is one line of at most MaxNote characters, for the analysts.
	Note string `json:"note,omitempty"`
}

// AckResponse is the answer to an acknowledgement: the partner's first
// acknowledgement of the alert, which a second one does not change.
type AckResponse struct {
	Alert          string    `json:"alert"`
	Subscriber     string    `json:"subscriber"`
	AcknowledgedAt time.Time `json:"acknowledged_at"`
	By             string    `json:"by"`
	Note           string    `json:"note,omitempty"`
	// Already says the alert was acknowledged before: nothing was
	// recorded.
	Already bool `json:"already_acknowledged"`
}

// decodeOptional reads an optional JSON body into v: no body (or an empty
// one) leaves v as it is.
func decodeOptional(w http.ResponseWriter, r *http.Request, limit int64, what string, v any) bool {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return true
	}
	body, err := readBody(w, r, limit)
	if err != nil {
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	if !screenBody(w, body, what) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeDecodeError(w, what, err)
		return false
	}
	return true
}

// errNoLedger says the server answers no ledger questions.
var errNoLedger = errors.New("delivery receipts are not available on this server")

// received returns what the ledger holds of alert id if its content went,
// or is on its way, to one of the targets of subscriber's current record
// (ledger.Alert.Received: the policy decided to deliver it to this
// incarnation of the partner's record), or nil; and that incarnation.
func (p *partnerAPI) received(ctx context.Context, id, subscriber string) (*ledger.Alert, string, error) {
	if p.Ledger == nil {
		return nil, "", errNoLedger
	}
	known, err := p.Ledger.Lookup(ctx, []string{id})
	if err != nil {
		return nil, "", fmt.Errorf("look up alert %s: %w", id, err)
	}
	a := known[id]
	if a == nil {
		return nil, "", nil
	}
	inc, ok := p.incarnation(subscriber)
	if !ok {
		return nil, "", nil
	}
	for _, e := range a.Entries() {
		if e.Subscriber == subscriber && a.Received(subscriber, inc, e.Target) {
			return a, inc, nil
		}
	}
	return nil, "", nil
}

// acknowledge handles POST /v1/partner/alerts/{id}/ack.
func (p *partnerAPI) acknowledge(w http.ResponseWriter, r *http.Request) {
	var req AckRequest
	if !decodeOptional(w, r, 16<<10, "request", &req) {
		return
	}
	req.Note = strings.TrimSpace(req.Note)
	v := &alerts.ValidationError{What: "invalid acknowledgement"}
	alerts.CheckLine(v, "note", req.Note, 0, MaxNote)
	if err := v.Err(); err != nil {
		writeInvalid(w, err)
		return
	}
	id, sub := r.PathValue("id"), subscriberOf(r)
	var a *ledger.Alert
	var inc string
	if alerts.ValidID(id) {
		var err error
		if a, inc, err = p.received(r.Context(), id, sub); err != nil {
			p.log.Error("look up alert", "alert", id, "error", err)
			writeError(w, http.StatusServiceUnavailable, "cannot read delivery receipts now; try again", nil)
			return
		}
	}
	if a == nil {
		object := "alert:" + id
		if !alerts.ValidID(id) {
			object = "alert:?" // not an alert id: what was sent is not kept
		}
		p.audit(r, partnerActor(r), record.Audit{Action: record.ActionPartnerAck, Object: object,
			Outcome: record.OutcomeRefused, Reason: "not delivered to " + sub, Details: map[string]any{"subscriber": sub}})
		writeError(w, http.StatusNotFound, fmt.Sprintf("no alert %q was delivered to you", id), nil)
		return
	}
	res, err := p.recordAck(r.Context(), a, delivery.Receipt{Subscriber: sub, Incarnation: inc, By: caller(r).name, Note: req.Note})
	if err != nil {
		p.log.Error("record an acknowledgement", "alert", id, "subscriber", sub, "error", err)
		writeError(w, http.StatusServiceUnavailable, "the acknowledgement could not be recorded; try again", nil)
		return
	}
	p.audit(r, partnerActor(r), record.Audit{Action: record.ActionPartnerAck, Object: "alert:" + id,
		Details: map[string]any{"subscriber": sub, "already_acknowledged": res.Already}})
	writeJSON(w, http.StatusOK, res)
}

// recordAck records rc (Subscriber, Incarnation, By, Note; optionally
// Channel, Target) as the partner's acknowledgement of a, unless the
// partner's record of that incarnation acknowledged it before
// (ledger.Alert.Ack): the first acknowledgement is the one that counts.
func (p *partnerAPI) recordAck(ctx context.Context, a *ledger.Alert, rc delivery.Receipt) (AckResponse, error) {
	if k, ok := a.Ack(rc.Subscriber, rc.Incarnation); ok {
		return AckResponse{Alert: a.ID, Subscriber: k.Subscriber, AcknowledgedAt: k.At, By: k.By, Note: k.Note, Already: true}, nil
	}
	if p.Partner.Receipts == nil {
		return AckResponse{}, fmt.Errorf("no receipt writer on this server")
	}
	rc.Kind, rc.AlertID, rc.At = delivery.KindAck, a.ID, p.now().UTC()
	if err := p.Partner.Receipts.WriteReceipt(ctx, rc); err != nil {
		return AckResponse{}, err
	}
	p.log.Info("alert acknowledged", "alert", a.ID, "subscriber", rc.Subscriber, "by", rc.By)
	return AckResponse{Alert: a.ID, Subscriber: rc.Subscriber, AcknowledgedAt: rc.At, By: rc.By, Note: rc.Note}, nil
}

// ReplayRequest is the body of POST /v1/partner/dead/replay: the delivery
// ids to replay, or none for every dead letter of the partner.
type ReplayRequest struct {
	IDs []string `json:"ids,omitempty"`
}

// ReplayResponse is the answer to a replay.
type ReplayResponse struct {
	// Requeued counts the dead letters sent again. One already delivered,
	// or replayed and not dead again since, is not.
	Requeued int `json:"requeued"`
}

// maxReplayIDs bounds the ids of one replay request.
const maxReplayIDs = 1000

// replay handles POST /v1/partner/dead/replay.
func (p *partnerAPI) replay(w http.ResponseWriter, r *http.Request) {
	var req ReplayRequest
	if !decodeOptional(w, r, 256<<10, "request", &req) {
		return
	}
	if len(req.IDs) > maxReplayIDs {
		writeError(w, http.StatusUnprocessableEntity, "invalid request", []alerts.FieldError{{Field: "ids",
			Message: fmt.Sprintf("has %d ids; at most %d may be replayed at once", len(req.IDs), maxReplayIDs)}})
		return
	}
	if p.Partner.Dead == nil {
		writeError(w, http.StatusServiceUnavailable, "dead letters cannot be replayed on this server", nil)
		return
	}
	// Only the dead letters of the partner's current record: none when
	// the record is gone.
	sub := subscriberOf(r)
	inc, hasRecord := p.incarnation(sub)
	if len(req.IDs) > 0 {
		var own []string
		if hasRecord {
			var err error
			if own, err = p.Partner.Dead.Dead(r.Context(), sub, inc); err != nil {
				p.log.Error("list dead letters", "subscriber", sub, "error", err)
				writeError(w, http.StatusServiceUnavailable, "cannot read the dead letters now; try again", nil)
				return
			}
		}
		var missing []alerts.FieldError
		for i, id := range req.IDs {
			if !slices.Contains(own, id) {
				missing = append(missing, alerts.FieldError{Field: fmt.Sprintf("ids[%d]", i),
					Message: fmt.Sprintf("no dead letter of yours has delivery id %q", id)})
			}
		}
		if len(missing) > 0 {
			p.audit(r, partnerActor(r), record.Audit{Action: record.ActionPartnerReplay, Object: "subscriber:" + sub,
				Outcome: record.OutcomeRefused, Reason: "ids that are not the partner's dead letters"})
			writeError(w, http.StatusNotFound, "not your dead letters", missing)
			return
		}
	}
	var n int
	if hasRecord {
		var err error
		if n, err = p.Partner.Dead.Replay(r.Context(), sub, inc, req.IDs); err != nil {
			p.log.Error("replay dead letters", "subscriber", sub, "error", err)
			writeError(w, http.StatusServiceUnavailable, "the dead letters could not be replayed; try again", nil)
			return
		}
	}
	details := map[string]any{"requeued": n}
	if len(req.IDs) > 0 {
		details["ids"] = req.IDs
	}
	p.audit(r, partnerActor(r), record.Audit{Action: record.ActionPartnerReplay, Object: "subscriber:" + sub, Details: details})
	p.log.Info("partner replayed dead letters", "subscriber", sub, "requeued", n)
	writeJSON(w, http.StatusOK, ReplayResponse{Requeued: n})
}
