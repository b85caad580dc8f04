package api

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/publish"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
)

// PublishResponse is the 202 answer to POST /v1/alerts and the 200 answer
// to approve and reject.
type PublishResponse struct {
	ID        string `json:"id"`
	StatusURL string `json:"status_url"`
	// State is published or pending (waiting for a second analyst), or,
	// for the identical alert already held, its state.
	State string `json:"state"`
	// Digest identifies the alert's content: an approval is bound to it.
	Digest string `json:"digest"`
	// Unchanged says the identical alert was already held: nothing was
	// written and nothing is sent twice.
	Unchanged bool      `json:"unchanged,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// PreviewResponse is the answer to POST /v1/alerts/preview: the alert as
// it would be published, the policy's decision for every target of every
// registered partner (those the fan-out decides first, then every other
// partner, withheld with its rule), and whether it needs a second analyst.
type PreviewResponse struct {
	Alert        *alerts.Alert     `json:"alert"`
	Digest       string            `json:"digest"`
	NeedsRelease bool              `json:"needs_release"`
	Decisions    []policy.Decision `json:"decisions"`
	Counts       map[string]int    `json:"counts"`
	// Others, when set, summarises the rows of partners outside the
	// audience that Decisions leaves out (more than OthersListed; ?all=true
	// lists them). Counts count them.
	Others *Others `json:"others,omitempty"`
}

// AlertStatus is the answer to GET /v1/alerts/{id}: what the receipts say
// of an alert that was fanned out, and what the alert list says of one
// that was not (yet): waiting for a second analyst, rejected, expired,
// quarantined by the fan-out, or published moments ago. The fields are
// named as in the alert list.
type AlertStatus struct {
	ID string `json:"id"`
	// State is published, pending, rejected, expired or quarantined, as
	// in the alert list (view.Summary.State).
	State      string         `json:"state"`
	Type       alerts.Type    `json:"type"`
	TLP        alerts.TLP     `json:"tlp"`
	Marking    alerts.Marking `json:"marking"`
	Title      string         `json:"title,omitempty"`
	References []string       `json:"references,omitempty"`
	// Provenance is the alert list's: who issued the alert, who
	// approved or rejected it, and when; for a quarantined alert, why
	// the fan-out refused it.
	view.Provenance
	FannedOut time.Time      `json:"fanned_out,omitzero"`
	Counts    map[string]int `json:"counts"`
	Acks      []ledger.Ack   `json:"acks,omitempty"`
	// Done says no delivery will change any more: every one settled, or,
	// for a rejected, expired or quarantined alert, none will ever be
	// made.
	Done bool `json:"done"`
}

// Deliveries is the answer to GET /v1/alerts/{id}/deliveries: who got the
// alert, who did not, and why.
type Deliveries struct {
	ID string `json:"id"`
	// State is the alert's: published once it has receipts; pending,
	// rejected or expired (or published, moments before its fan-out)
	// with no deliveries yet; quarantined when the fan-out refused it,
	// so that it has none and never will.
	State      string         `json:"state,omitempty"`
	Done       bool           `json:"done"`
	Counts     map[string]int `json:"counts"`
	Deliveries []ledger.Entry `json:"deliveries"`
	Acks       []ledger.Ack   `json:"acks,omitempty"`
	// QuarantineReason, QuarantineError and QuarantinedAt say why and
	// when the fan-out refused a quarantined alert (view.Provenance).
	QuarantineReason string    `json:"quarantine_reason,omitempty"`
	QuarantineError  string    `json:"quarantine_error,omitempty"`
	QuarantinedAt    time.Time `json:"quarantined_at,omitzero"`
}

// actor names the analyst behind a request, as issued_by and the audit
// trail record it.
func actor(r *http.Request) string { return "api:" + caller(r).name }

// decodeAlert reads the alert in the request body. It answers the request
// itself and returns nil when the body is not an alert.
func decodeAlert(w http.ResponseWriter, r *http.Request) *alerts.Alert {
	body, err := readBody(w, r, MaxAlertBytes)
	if err != nil {
		return nil
	}
	a, err := publish.DecodeBody(publish.Body{Data: body})
	if err != nil {
		writeDecodeError(w, "alert", err)
		return nil
	}
	return a
}

// writePublishError answers an error of the publisher: 422 naming the
// fields, 409 for a used id or an alert not waiting, 403 for the author
// approving, 404, or 503.
func (h *handler) writePublishError(w http.ResponseWriter, r *http.Request, err error) {
	var v *alerts.ValidationError
	var conflict *publish.ConflictError
	switch {
	case errors.As(err, &v):
		writeInvalid(w, err)
	case errors.As(err, &conflict):
		writeError(w, http.StatusConflict, "an id names one alert forever", []alerts.FieldError{{Field: "id", Message: conflict.Error()}})
	case errors.Is(err, publish.ErrSelfApproval):
		writeError(w, http.StatusForbidden, err.Error(), nil)
	case errors.Is(err, publish.ErrNotFound):
		writeError(w, http.StatusNotFound, err.Error(), nil)
	case errors.Is(err, publish.ErrNotPending), errors.Is(err, publish.ErrNotPreviewed):
		writeError(w, http.StatusConflict, err.Error(), nil)
	default:
		h.log.Error("publish", "route", r.Pattern, "error", err)
		writeError(w, http.StatusServiceUnavailable, "the request could not be completed; nothing was sent; try again", nil)
	}
}

func (h *handler) publisher(w http.ResponseWriter) *publish.Publisher {
	if h.Publisher == nil {
		writeError(w, http.StatusServiceUnavailable, "publishing is not available on this server", nil)
	}
	return h.Publisher
}

func publishResponse(res *publish.Result) PublishResponse {
	return PublishResponse{ID: res.ID, StatusURL: "/v1/alerts/" + res.ID, State: res.State, Digest: res.Digest,
		Unchanged: res.Unchanged, ExpiresAt: res.ExpiresAt}
}

// publish handles POST /v1/alerts. The publisher reads the body and
// records its refusal, as it records an invalid alert's; a body refused
// before it is read (media type, size) is recorded through it too.
func (h *handler) publish(w http.ResponseWriter, r *http.Request) {
	p := h.publisher(w)
	if p == nil {
		return
	}
	body, err := readBody(w, r, MaxAlertBytes)
	var refused *bodyRefused
	switch {
	case errors.As(err, &refused):
		p.RefuseBody(r.Context(), actor(r), refused.reason)
		return
	case err != nil:
		return
	}
	a, res, err := p.PublishBody(r.Context(), publish.Body{Data: body}, actor(r))
	var input *publish.InputError
	switch {
	case errors.As(err, &input):
		writeDecodeError(w, "alert", input.Err)
		return
	case err != nil:
		h.writePublishError(w, r, err)
		return
	}
	h.seeOwnWrite(r, res.ID)
	h.log.Info("alert published", "alert", res.ID, "state", res.State, "unchanged", res.Unchanged, "tlp", a.TLP, "issued_by", a.IssuedBy)
	w.Header().Set("Location", "/v1/alerts/"+res.ID)
	writeJSON(w, http.StatusAccepted, publishResponse(res))
}

// preview handles POST /v1/alerts/preview: the same checks as publish,
// then the decision table; nothing is published. The id it assigns is
// returned so that publishing the previewed alert keeps it, and the digest
// so that its approval is bound to what was previewed.
func (h *handler) preview(w http.ResponseWriter, r *http.Request) {
	a := decodeAlert(w, r)
	p := h.publisher(w)
	if a == nil || p == nil {
		return
	}
	prep, err := p.Prepare(r.Context(), a, actor(r))
	if err != nil {
		h.writePublishError(w, r, err)
		return
	}
	if h.Decide == nil {
		writeError(w, http.StatusServiceUnavailable, "preview is not available on this server", nil)
		return
	}
	ds, audience := h.Decide(a, prep.Prior, h.now())
	rows, counts, others := decisionTable(r, ds, audience)
	writeJSON(w, http.StatusOK, PreviewResponse{Alert: a, Digest: a.Digest(), NeedsRelease: prep.NeedsRelease,
		Decisions: rows, Counts: counts, Others: others})
}

// decisionCounts counts a decision table's rows per decision, every
// decision present: the preview's counts, and the review's.
func decisionCounts(ds []policy.Decision) map[string]int {
	counts := map[string]int{delivery.Deliver: 0, delivery.Notice: 0, delivery.Withhold: 0}
	for i := range ds {
		counts[ds[i].Decision]++
	}
	return counts
}

// releaseRequest is the body of approve and reject: the digest of what the
// second analyst saw, and a rejection's reason.
type releaseRequest struct {
	Digest string `json:"digest,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// decodeRelease reads an optional JSON body of approve or reject.
func decodeRelease(w http.ResponseWriter, r *http.Request) (releaseRequest, bool) {
	var req releaseRequest
	ok := decodeOptional(w, r, 16<<10, "request", &req)
	return req, ok
}

// approve handles POST /v1/alerts/{id}/approve.
func (h *handler) approve(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeRelease(w, r)
	p := h.publisher(w)
	if !ok || p == nil {
		return
	}
	res, err := p.Approve(r.Context(), r.PathValue("id"), actor(r), req.Digest)
	if err != nil {
		h.writePublishError(w, r, err)
		return
	}
	h.seeOwnWrite(r, res.ID)
	h.log.Info("alert approved", "alert", res.ID, "approved_by", actor(r))
	writeJSON(w, http.StatusOK, publishResponse(res))
}

// reject handles POST /v1/alerts/{id}/reject.
func (h *handler) reject(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeRelease(w, r)
	p := h.publisher(w)
	if !ok || p == nil {
		return
	}
	res, err := p.Reject(r.Context(), r.PathValue("id"), actor(r), req.Reason, req.Digest)
	if err != nil {
		h.writePublishError(w, r, err)
		return
	}
	h.seeOwnWrite(r, res.ID)
	h.log.Info("alert rejected", "alert", res.ID, "rejected_by", actor(r))
	writeJSON(w, http.StatusOK, publishResponse(res))
}

// find returns the id in the path and the ledger's view of it: nil when
// it has no receipts. It answers 404 for an id that cannot name an alert,
// or 503, and returns false.
func (h *handler) find(w http.ResponseWriter, r *http.Request) (string, *ledger.Alert, bool) {
	id := r.PathValue("id")
	if !alerts.ValidID(id) {
		writeError(w, http.StatusNotFound, "no such alert: an alert id matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", nil)
		return id, nil, false
	}
	if h.Ledger == nil {
		writeError(w, http.StatusServiceUnavailable, "alert status is not available on this server", nil)
		return id, nil, false
	}
	known, err := h.Ledger.Lookup(r.Context(), []string{id})
	if err != nil {
		h.log.Error("look up alert", "alert", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "cannot read delivery receipts now; try again", nil)
		return id, nil, false
	}
	return id, known[id], true
}

// alertStatus handles GET /v1/alerts/{id}.
func (h *handler) alertStatus(w http.ResponseWriter, r *http.Request) {
	id, a, ok := h.find(w, r)
	if !ok {
		return
	}
	if a == nil {
		h.listedStatus(w, r, id)
		return
	}
	// Who issued and approved it, as the receipts recorded; when, as the
	// alert list knows it (the list holds its row unless Desk is unset).
	prov := view.Provenance{IssuedBy: a.IssuedBy, ApprovedBy: a.ApprovedBy}
	if h.Desk != nil {
		if s, ok, err := h.Desk.Summary(id); err == nil && ok {
			prov.IssuedAt = s.IssuedAt
			if s.ApprovedBy == a.ApprovedBy {
				prov.ApprovedAt = s.ApprovedAt
			}
		}
	}
	writeJSON(w, http.StatusOK, AlertStatus{
		ID: a.ID, State: record.StatePublished, Type: a.Type, TLP: a.TLP, Marking: a.Marking, Title: a.Title, References: a.References,
		Provenance: prov, FannedOut: a.FannedOut, Counts: a.Counts(),
		Acks: a.Acknowledgements(), Done: a.Done(),
	})
}

// listedStatus answers GET /v1/alerts/{id} for an alert with no receipts
// from the alert list (listed): one that waits for a second analyst, was
// rejected, expired, was quarantined by the fan-out, or was published
// moments ago and not fanned out yet. It has no deliveries.
func (h *handler) listedStatus(w http.ResponseWriter, r *http.Request, id string) {
	s, ok := h.listed(w, r, id)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, AlertStatus{
		ID: s.ID, State: s.State, Type: s.Type, TLP: s.TLP, Marking: s.Marking, Title: s.Title,
		Provenance: s.Provenance, FannedOut: s.FannedOut, Counts: s.Counts,
		Done: listedDone(s),
	})
}

// listedDone reports whether an alert with no receipts will get none.
func listedDone(s view.Summary) bool {
	return s.State == record.StateRejected || s.State == record.StateExpired || s.State == record.StateQuarantined
}

// listed returns the alert list's row of id, an alert with no receipts,
// as the view holds it (as the alert list reads it: a status page polling
// an alert that waits for a second analyst asks Kafka nothing). Only an id
// the view does not hold yet has it caught up first with what was
// published and submitted before the request, for an alert published
// through another server moments ago. It answers 404 for an id the list
// does not hold then, or 503, and returns false.
//
// Only the alerts and pending topics are caught up with: the ledger has
// just answered for the receipts, and the audit trail says nothing here.
func (h *handler) listed(w http.ResponseWriter, r *http.Request, id string) (view.Summary, bool) {
	if h.Desk == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no receipts for alert %q: it is unknown, waits for a second analyst, or was published moments ago and the fan-out has not reached it yet", id), nil)
		return view.Summary{}, false
	}
	s, ok, err := h.Desk.Summary(id)
	if err == nil && !ok {
		if err := h.Desk.Sync(r.Context(), bus.TopicAlerts, bus.TopicPending); err != nil {
			h.log.Error("catch the view up", "alert", id, "error", err)
			writeError(w, http.StatusServiceUnavailable, "cannot read the alerts published and waiting for approval now; try again", nil)
			return view.Summary{}, false
		}
		s, ok, err = h.Desk.Summary(id)
	}
	if err != nil {
		h.viewError(w, r, err)
		return view.Summary{}, false
	}
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no alert %q: nothing was published or submitted for approval under this id (check the id)", id), nil)
		return view.Summary{}, false
	}
	return s, true
}

// deliveries handles GET /v1/alerts/{id}/deliveries. An alert with no
// receipts yet (waiting for a second analyst, rejected, expired,
// quarantined, or not yet fanned out) has none, and its state says why.
func (h *handler) deliveries(w http.ResponseWriter, r *http.Request) {
	id, a, ok := h.find(w, r)
	if !ok {
		return
	}
	if a == nil {
		s, ok := h.listed(w, r, id)
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, Deliveries{ID: s.ID, State: s.State, Done: listedDone(s),
			Counts: map[string]int{}, Deliveries: []ledger.Entry{},
			QuarantineReason: s.QuarantineReason, QuarantineError: s.QuarantineError, QuarantinedAt: s.QuarantinedAt})
		return
	}
	entries := a.Entries()
	if caller(r).role != config.RoleAdmin {
		for i := range entries {
			entries[i].Target = subscribers.RedactTarget(entries[i].Target)
		}
	}
	writeJSON(w, http.StatusOK, Deliveries{ID: a.ID, State: record.StatePublished, Done: a.Done(), Counts: a.Counts(),
		Deliveries: entries, Acks: a.Acknowledgements()})
}

// viewDecisions returns ds as the caller may see them: analysts see
// webhook URLs without credentials, query or fragment (PRODUCT.md §4).
func viewDecisions(r *http.Request, ds []policy.Decision) []policy.Decision {
	if caller(r).role == config.RoleAdmin {
		return ds
	}
	out := make([]policy.Decision, len(ds))
	for i, d := range ds {
		d.Target = subscribers.RedactTarget(d.Target)
		out[i] = d
	}
	return out
}

// Decider is the decide step previews show: fanout.DecideAll over the
// live registry (app.Preview), a row for every partner; audience is the
// number of leading rows the fan-out itself decides (the candidates), the
// rest being partners outside the audience, all withheld.
type Decider func(a *alerts.Alert, prior map[string]*ledger.Alert, now time.Time) (ds []policy.Decision, audience int)

// OthersListed is how many rows of partners outside the audience a
// preview or review lists before it summarises them instead (Others),
// unless asked for all (?all=true): a registry of 100,000 partners would
// otherwise make every preview some 36 MB of rows that all say withheld.
const OthersListed = 1000

// Others summarises the rows of partners outside the audience that a
// preview or review leaves out: how many, and how many per rule. Every
// one is a withhold; the counts include them.
type Others struct {
	LeftOut int            `json:"left_out"`
	Rules   map[string]int `json:"rules"`
}

// decisionTable is the rows a preview or review lists, its counts (of
// every row) and the summary of the rows it leaves out (nil when none):
// the audience's rows, then the others' when there are at most
// OthersListed of them or the request asks for all.
func decisionTable(r *http.Request, ds []policy.Decision, audience int) ([]policy.Decision, map[string]int, *Others) {
	if ds == nil {
		ds = []policy.Decision{}
	}
	counts := decisionCounts(ds)
	rest := ds[min(audience, len(ds)):]
	if len(rest) <= OthersListed || r.URL.Query().Get("all") == "true" {
		return viewDecisions(r, ds), counts, nil
	}
	// Only withholds are summarised: a partner registered or changed
	// between the fan-out's candidates and the rest (fanout.DecideAll)
	// may have another decision, and whoever gets the alert is listed.
	listed := slices.Clip(ds[:audience])
	o := &Others{Rules: map[string]int{}}
	for _, d := range rest {
		if d.Decision != delivery.Withhold {
			listed = append(listed, d)
			continue
		}
		o.LeftOut++
		o.Rules[d.Rule]++
	}
	return viewDecisions(r, listed), counts, o
}
