package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/internal/view"
)

// Desk answers the analyst's desk questions from the materialised view:
// the alert list, one alert's row of it, and the audit trail. *view.View
// satisfies it.
type Desk interface {
	List(q view.ListQuery) ([]view.Summary, string, error)
	// Counts counts the list's alerts by state (the desk's tiles).
	Counts(q view.CountQuery) (view.Counts, error)
	// Summary is one alert's row of the list; false when it is not listed.
	Summary(id string) (view.Summary, bool, error)
	Audit(q view.AuditQuery) ([]record.Audit, string, error)
	// Sync waits until the view has applied what was written to its
	// topics (all of them when none is named) before the call.
	Sync(ctx context.Context, topics ...string) error
}

// AlertList is the answer to GET /v1/alerts: a page of the alert list,
// newest first, and the cursor of the next page ("" at the end); with
// ?counts=true, how many alerts the whole list holds in each state.
type AlertList struct {
	Alerts []view.Summary `json:"alerts"`
	Next   string         `json:"next,omitempty"`
	Counts *view.Counts   `json:"counts,omitempty"`
}

// AuditList is the answer to GET /v1/audit.
type AuditList struct {
	Entries []record.Audit `json:"entries"`
	Next    string         `json:"next,omitempty"`
}

// Taxonomy is the answer to GET /v1/taxonomy: the sectors and regions an
// audience is written with.
type Taxonomy struct {
	Sectors []taxonomy.Sector `json:"sectors"`
	Regions []taxonomy.Region `json:"regions"`
}

// alertStates are the values of ?state=.
var alertStates = []string{record.StatePending, record.StatePublished, record.StateRejected, record.StateExpired, record.StateQuarantined}

// pageQuery reads ?limit= and ?before=, adding a field error for a bad
// limit.
func pageQuery(r *http.Request, v *alerts.ValidationError) (limit int, before string) {
	q := r.URL.Query()
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		switch {
		case err != nil:
			v.Add("limit", "must be a whole number, not %q", s)
		case n < 1 || n > view.MaxLimit:
			v.Add("limit", "must be between 1 and %d, not %d", view.MaxLimit, n)
		default:
			limit = n
		}
	}
	before = q.Get("before")
	if len(before) > 200 {
		v.Add("before", "is not a cursor of this list")
	}
	return limit, before
}

func (h *handler) desk(w http.ResponseWriter) Desk {
	if h.Desk == nil {
		writeError(w, http.StatusServiceUnavailable, "the alert list is not available on this server", nil)
	}
	return h.Desk
}

// listAlerts handles GET /v1/alerts.
func (h *handler) listAlerts(w http.ResponseWriter, r *http.Request) {
	d := h.desk(w)
	if d == nil {
		return
	}
	v := &alerts.ValidationError{What: "invalid query"}
	state := r.URL.Query().Get("state")
	if state != "" && !slices.Contains(alertStates, state) {
		v.Add("state", "must be %s, not %q", strings.Join(alertStates, ", "), state)
	}
	limit, before := pageQuery(r, v)
	counts, cq := h.countQuery(r, v)
	if err := v.Err(); err != nil {
		writeInvalid(w, err)
		return
	}
	// The list is read as the view holds it, without asking Kafka first:
	// every open console reads it, and its counts, every few seconds. An
	// alert this server has just written is in it already (seeOwnWrite).
	list, next, err := d.List(view.ListQuery{State: state, Limit: limit, Before: before})
	if err != nil {
		h.viewError(w, r, err)
		return
	}
	if list == nil {
		list = []view.Summary{}
	}
	out := AlertList{Alerts: list, Next: next}
	if counts {
		n, err := d.Counts(cq)
		if err != nil {
			h.viewError(w, r, err)
			return
		}
		out.Counts = &n
	}
	writeJSON(w, http.StatusOK, out)
}

// countQuery reads ?counts= (true asks for the list's counts by state)
// and ?since= (an RFC 3339 time: also count the alerts published since),
// adding a field error for a bad value.
func (h *handler) countQuery(r *http.Request, v *alerts.ValidationError) (bool, view.CountQuery) {
	q := r.URL.Query()
	var counts bool
	if s := q.Get("counts"); s != "" {
		var err error
		if counts, err = strconv.ParseBool(s); err != nil {
			v.Add("counts", "must be true or false, not %q", s)
		}
	}
	var cq view.CountQuery
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		switch {
		case err != nil:
			v.Add("since", "must be a time in RFC 3339 form (2026-11-30T00:00:00Z), not %q", s)
		case !counts:
			v.Add("since", "counts alerts published since; it needs counts=true")
		}
		cq.Since = t
	}
	return counts, cq
}

// seeOwnWrite waits until this server's view holds what the request has
// just written to the alerts and pending topics (a publication, a
// submission, an approval, a rejection), so that the alert list read next
// shows it: once per write, instead of a catch-up on every read of the
// list. The write stands if the view cannot catch up now (it follows
// Kafka and will); that is logged. Another API process behind the same
// load balancer shows it as soon as its own view has read it.
func (h *handler) seeOwnWrite(r *http.Request, id string) {
	if h.Desk == nil {
		return
	}
	if err := h.Desk.Sync(r.Context(), bus.TopicAlerts, bus.TopicPending); err != nil {
		h.log.Warn("catch the view up with an alert just written", "alert", id, "route", r.Pattern, "error", err)
	}
}

// listAudit handles GET /v1/audit.
func (h *handler) listAudit(w http.ResponseWriter, r *http.Request) {
	d := h.desk(w)
	if d == nil {
		return
	}
	v := &alerts.ValidationError{What: "invalid query"}
	q := r.URL.Query()
	aq := view.AuditQuery{Actor: q.Get("actor"), Action: q.Get("action"), Object: q.Get("object")}
	for _, t := range []struct {
		key string
		dst *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if s := q.Get(t.key); s != "" {
			at, err := time.Parse(time.RFC3339, s)
			if err != nil {
				v.Add(t.key, "must be an RFC 3339 time, not %q", s)
			}
			*t.dst = at
		}
	}
	aq.Limit, aq.Before = pageQuery(r, v)
	if err := v.Err(); err != nil {
		writeInvalid(w, err)
		return
	}
	entries, next, err := d.Audit(aq)
	if err != nil {
		h.viewError(w, r, err)
		return
	}
	if entries == nil {
		entries = []record.Audit{}
	}
	writeJSON(w, http.StatusOK, AuditList{Entries: entries, Next: next})
}

// viewError answers an error of the view: a query it refuses
// (view.QueryError) is 422 naming the field, the rest is 503.
func (h *handler) viewError(w http.ResponseWriter, r *http.Request, err error) {
	if qe, ok := errors.AsType[*view.QueryError](err); ok {
		writeError(w, http.StatusUnprocessableEntity, "invalid query", []alerts.FieldError{{Field: qe.Field, Message: qe.Message}})
		return
	}
	h.log.Error("read the view", "route", r.Pattern, "error", err)
	writeError(w, http.StatusServiceUnavailable, "cannot read the deliveries, alerts and audit trail kept from Kafka now; try again", nil)
}

// taxonomy handles GET /v1/taxonomy: the configured sectors and regions.
func (h *handler) taxonomy(w http.ResponseWriter, r *http.Request) {
	t := h.configuredTaxonomy()
	writeJSON(w, http.StatusOK, Taxonomy{Sectors: t.Sectors(), Regions: t.Regions()})
}
