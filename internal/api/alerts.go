package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
)

// errUnavailable marks a failure of a dependency (Kafka, the ledger):
// the request was fine and may be tried again.
var errUnavailable = errors.New("service unavailable")

// PublishResponse is the 202 answer to POST /v1/alerts.
type PublishResponse struct {
	ID        string `json:"id"`
	StatusURL string `json:"status_url"`
}

// PreviewResponse is the answer to POST /v1/alerts/preview: the alert as
// it would be published and the policy's decision for every target.
type PreviewResponse struct {
	Alert     *alerts.Alert     `json:"alert"`
	Decisions []policy.Decision `json:"decisions"`
	Counts    map[string]int    `json:"counts"`
}

// AlertStatus is the answer to GET /v1/alerts/{id}.
type AlertStatus struct {
	ID         string         `json:"id"`
	Type       alerts.Type    `json:"type"`
	TLP        alerts.TLP     `json:"tlp"`
	Marking    alerts.Marking `json:"marking"`
	References []string       `json:"references,omitempty"`
	IssuedBy   string         `json:"issued_by"`
	FannedOut  time.Time      `json:"fanned_out,omitzero"`
	Counts     map[string]int `json:"counts"`
	Done       bool           `json:"done"`
}

// Deliveries is the answer to GET /v1/alerts/{id}/deliveries: who got the
// alert, who did not, and why.
type Deliveries struct {
	ID         string         `json:"id"`
	Done       bool           `json:"done"`
	Counts     map[string]int `json:"counts"`
	Deliveries []ledger.Entry `json:"deliveries"`
}

// prepare decodes, normalises, stamps and validates the alert in the
// request, checking what an update or cancel references. It answers the
// request itself and returns nil when the alert cannot go on. For an
// update or cancel it also returns what the ledger knows of the referenced
// alerts.
func (h *handler) prepare(w http.ResponseWriter, r *http.Request) (*alerts.Alert, map[string]*ledger.Alert) {
	body, err := readBody(w, r, MaxAlertBytes)
	if err != nil {
		return nil, nil
	}
	a, err := alerts.Decode(body)
	if err != nil {
		writeDecodeError(w, "alert", err)
		return nil, nil
	}
	now := h.now().UTC()
	a.Normalize()
	a.IssuedBy = "api:" + caller(r).name
	at := now.Truncate(time.Millisecond)
	a.IssuedAt = &at
	if a.ID == "" {
		a.ID = alerts.NewID(now)
	}
	v := &alerts.ValidationError{What: "invalid alert"}
	var verr *alerts.ValidationError
	if err := a.Validate(now, h.Taxonomy); errors.As(err, &verr) {
		v.Fields = append(v.Fields, verr.Fields...)
	}
	known, err := h.checkReferences(r.Context(), a, v)
	if err != nil {
		h.log.Error("check alert references", "alert", a.ID, "error", err)
		writeError(w, http.StatusServiceUnavailable, "cannot check the referenced alerts now; try again", nil)
		return nil, nil
	}
	if err := v.Err(); err != nil {
		writeInvalid(w, err)
		return nil, nil
	}
	return a, known
}

// checkReferences applies rule 7 of PRODUCT.md §3 to an update or cancel:
// every alert it references must have been fanned out, and its marking and
// TLP may not be lower. Problems are added to v; the error is for a ledger
// that cannot be read. It returns what the ledger knows of the references.
func (h *handler) checkReferences(ctx context.Context, a *alerts.Alert, v *alerts.ValidationError) (map[string]*ledger.Alert, error) {
	if a.Type != alerts.TypeUpdate && a.Type != alerts.TypeCancel {
		return nil, nil
	}
	var ids []string
	for _, ref := range a.References {
		if alerts.ValidID(ref) && ref != a.ID {
			ids = append(ids, ref)
		}
	}
	if len(ids) == 0 {
		return nil, nil // Validate has named the bad references
	}
	if h.Ledger == nil {
		return nil, fmt.Errorf("no ledger: %w", errUnavailable)
	}
	known, err := h.Ledger.Lookup(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("look up %d referenced alerts: %w", len(ids), err)
	}
	v.Fields = append(v.Fields, ledger.CheckReferences(a, known)...)
	return known, nil
}

// publish handles POST /v1/alerts.
func (h *handler) publish(w http.ResponseWriter, r *http.Request) {
	a, _ := h.prepare(w, r)
	if a == nil {
		return
	}
	if h.Publisher == nil {
		writeError(w, http.StatusServiceUnavailable, "publishing is not available on this server", nil)
		return
	}
	if err := h.Publisher.Publish(r.Context(), a); err != nil {
		h.log.Error("publish alert", "alert", a.ID, "error", err)
		writeError(w, http.StatusServiceUnavailable, "the alert could not be published; nothing was sent; try again", nil)
		return
	}
	h.log.Info("alert published", "alert", a.ID, "type", a.Type, "tlp", a.TLP, "issued_by", a.IssuedBy)
	status := "/v1/alerts/" + a.ID
	w.Header().Set("Location", status)
	writeJSON(w, http.StatusAccepted, PublishResponse{ID: a.ID, StatusURL: status})
}

// preview handles POST /v1/alerts/preview: the same checks as publish,
// then the decision table; nothing is published. The id it assigns is
// returned so that publishing the previewed alert keeps it.
func (h *handler) preview(w http.ResponseWriter, r *http.Request) {
	a, prior := h.prepare(w, r)
	if a == nil {
		return
	}
	if h.Preview == nil {
		writeError(w, http.StatusServiceUnavailable, "preview is not available on this server", nil)
		return
	}
	ds := h.Preview(a, prior, h.now())
	if ds == nil {
		ds = []policy.Decision{}
	}
	counts := map[string]int{delivery.Deliver: 0, delivery.Notice: 0, delivery.Withhold: 0}
	for _, d := range ds {
		counts[d.Decision]++
	}
	writeJSON(w, http.StatusOK, PreviewResponse{Alert: a, Decisions: ds, Counts: counts})
}

// lookup returns the ledger's view of the alert named in the path, or
// answers 404 or 503 and returns nil.
func (h *handler) lookup(w http.ResponseWriter, r *http.Request) *ledger.Alert {
	id := r.PathValue("id")
	if !alerts.ValidID(id) {
		writeError(w, http.StatusNotFound, "no such alert: an alert id matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", nil)
		return nil
	}
	if h.Ledger == nil {
		writeError(w, http.StatusServiceUnavailable, "alert status is not available on this server", nil)
		return nil
	}
	known, err := h.Ledger.Lookup(r.Context(), []string{id})
	if err != nil {
		h.log.Error("look up alert", "alert", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "cannot read delivery receipts now; try again", nil)
		return nil
	}
	a := known[id]
	if a == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no receipts for alert %q: it is unknown, or was published moments ago and the fan-out has not reached it yet", id), nil)
		return nil
	}
	return a
}

// alertStatus handles GET /v1/alerts/{id}.
func (h *handler) alertStatus(w http.ResponseWriter, r *http.Request) {
	a := h.lookup(w, r)
	if a == nil {
		return
	}
	writeJSON(w, http.StatusOK, AlertStatus{
		ID: a.ID, Type: a.Type, TLP: a.TLP, Marking: a.Marking, References: a.References,
		IssuedBy: a.IssuedBy, FannedOut: a.FannedOut, Counts: a.Counts(), Done: a.Done(),
	})
}

// deliveries handles GET /v1/alerts/{id}/deliveries.
func (h *handler) deliveries(w http.ResponseWriter, r *http.Request) {
	a := h.lookup(w, r)
	if a == nil {
		return
	}
	writeJSON(w, http.StatusOK, Deliveries{ID: a.ID, Done: a.Done(), Counts: a.Counts(), Deliveries: a.Entries()})
}
