package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/publish"
)

// Review is the answer to GET /v1/alerts/{id}/review: an alert that was
// submitted for release by a second analyst (PRODUCT.md §10), exactly as
// its author published it, with the same audience preview the author saw
// (the fan-out's decide step over the live registry), so that the second
// analyst approves what they have read.
type Review struct {
	// Alert is the submitted alert's bytes, unchanged: what an approval
	// releases.
	Alert json.RawMessage `json:"alert"`
	// Digest is the alert's content digest; an approval sends it back.
	Digest string `json:"digest"`
	// State is pending, published (approved), rejected or expired.
	State       string    `json:"state"`
	IssuedBy    string    `json:"issued_by"`
	SubmittedAt time.Time `json:"submitted_at"`
	// ExpiresAt is when the alert stops waiting for approval.
	ExpiresAt    time.Time `json:"expires_at,omitzero"`
	ApprovedBy   string    `json:"approved_by,omitempty"`
	ApprovedAt   time.Time `json:"approved_at,omitzero"`
	RejectedBy   string    `json:"rejected_by,omitempty"`
	RejectedAt   time.Time `json:"rejected_at,omitzero"`
	RejectReason string    `json:"reject_reason,omitempty"`
	// Own says the caller issued the alert (fanout.SamePerson): they can
	// never approve it.
	Own bool `json:"own"`
	// Decisions and Counts are the audience preview, as of now, in the
	// shape of POST /v1/alerts/preview's; analysts see webhook URLs
	// without credentials, query or fragment.
	Decisions []policy.Decision `json:"decisions"`
	Counts    map[string]int    `json:"counts"`
	// Others is as in PreviewResponse.
	Others *Others `json:"others,omitempty"`
}

// review handles GET /v1/alerts/{id}/review.
func (h *handler) review(w http.ResponseWriter, r *http.Request) {
	p := h.publisher(w)
	if p == nil {
		return
	}
	if h.Decide == nil {
		writeError(w, http.StatusServiceUnavailable, "the audience preview is not available on this server", nil)
		return
	}
	id := r.PathValue("id")
	notFound := func() {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no alert was submitted for release by a second analyst under %q", id), nil)
	}
	if !alerts.ValidID(id) {
		notFound()
		return
	}
	ex, err := p.Index.Existing(r.Context(), id)
	if err != nil {
		h.log.Error("look up a submitted alert", "alert", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "cannot read the alerts waiting for approval now; try again", nil)
		return
	}
	if ex == nil || ex.Release.Submitted == nil {
		notFound()
		return
	}
	rel := ex.Release
	sub := rel.Submitted
	a, err := alerts.Decode(sub.Alert)
	if err != nil {
		h.log.Error("decode a submitted alert", "alert", id, "error", err)
		writeError(w, http.StatusInternalServerError, "the alert submitted under "+id+" cannot be read", nil)
		return
	}
	// An update or cancel is judged against what its references reached,
	// as the author's preview judged it.
	var prior map[string]*ledger.Alert
	if refs := publish.References(a); len(refs) > 0 {
		if prior, err = p.Index.Lookup(r.Context(), refs); err != nil {
			h.log.Error("look up referenced alerts", "alert", id, "error", err)
			writeError(w, http.StatusServiceUnavailable, "cannot read the referenced alerts' receipts now; try again", nil)
			return
		}
	}
	ds, audience := h.Decide(a, prior, h.now())
	rows, counts, others := decisionTable(r, ds, audience)
	out := Review{
		Alert: sub.Alert, Digest: sub.Digest, State: ex.State(h.now()), IssuedBy: sub.By, SubmittedAt: sub.At,
		ExpiresAt: sub.ExpiresAt, Own: fanout.SamePerson(actor(r), sub.By),
		Decisions: rows, Counts: counts, Others: others,
	}
	if rel.Approved != nil {
		out.ApprovedBy, out.ApprovedAt = rel.Approved.By, rel.Approved.At
	}
	if rel.Rejected != nil {
		out.RejectedBy, out.RejectedAt, out.RejectReason = rel.Rejected.By, rel.Rejected.At, rel.Rejected.Reason
	}
	writeJSON(w, http.StatusOK, out)
}
