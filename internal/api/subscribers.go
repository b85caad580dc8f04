package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/subscribers"
)

// SubscriberList is the answer to GET /v1/subscribers.
type SubscriberList struct {
	Subscribers []*subscribers.Subscriber `json:"subscribers"`
}

// redacted returns a copy of s with its webhook secrets redacted. Records
// in the registry are immutable, so the copy shares nothing it changes.
func redacted(s *subscribers.Subscriber) *subscribers.Subscriber {
	c := *s
	c.Webhooks = make([]subscribers.Webhook, len(s.Webhooks))
	for i, wh := range s.Webhooks {
		wh.Secrets = redactSecrets(wh.Secrets)
		c.Webhooks[i] = wh
	}
	if len(c.Webhooks) == 0 {
		c.Webhooks = nil
	}
	return &c
}

// restoreSecrets replaces redacted secrets in s by the stored secrets they
// stand for, naming each one that matches none: those of the records
// known, old as written and the effective record eff (where the partner's
// own secrets are), either of which may be nil. A secret restored from old
// for the same webhook leaves it unchanged, so the partner's own secrets
// for it stay in force (subscribers.ReplacedOverlays).
func restoreSecrets(s, old, eff *subscribers.Subscriber, v *alerts.ValidationError) {
	stored := map[string]string{}
	for _, known := range []*subscribers.Subscriber{eff, old} {
		if known == nil {
			continue
		}
		for _, wh := range known.Webhooks {
			for _, sec := range wh.Secrets {
				stored[subscribers.RedactSecret(sec)] = sec
			}
		}
	}
	for i := range s.Webhooks {
		for j, sec := range s.Webhooks[i].Secrets {
			if !strings.HasPrefix(sec, subscribers.RedactedSecretPrefix) {
				continue
			}
			if real, ok := stored[sec]; ok {
				s.Webhooks[i].Secrets[j] = real
			} else {
				v.Add(fmt.Sprintf("webhooks[%d].secrets[%d]", i, j), "%s matches no secret stored for %s: give the whsec_ secret itself", sec, s.ID)
			}
		}
	}
}

// listSubscribers handles GET /v1/subscribers.
func (h *handler) listSubscribers(w http.ResponseWriter, r *http.Request) {
	if h.Registry == nil {
		writeError(w, http.StatusServiceUnavailable, "the subscriber registry is not available on this server", nil)
		return
	}
	list := h.Registry.List()
	out := SubscriberList{Subscribers: make([]*subscribers.Subscriber, 0, len(list))}
	for _, s := range list {
		// The records as written, as GET of one returns them.
		if h.Directory != nil {
			if rec := h.Directory.Record(s.ID); rec != nil {
				s = rec
			}
		}
		out.Subscribers = append(out.Subscribers, redacted(s))
	}
	writeJSON(w, http.StatusOK, out)
}

// getSubscriber handles GET /v1/subscribers/{id}.
func (h *handler) getSubscriber(w http.ResponseWriter, r *http.Request) {
	if h.Registry == nil {
		writeError(w, http.StatusServiceUnavailable, "the subscriber registry is not available on this server", nil)
		return
	}
	// The record as written: what a PUT of the edited record replaces.
	// Endpoint states Herald recorded are at …/endpoints, the keys and
	// secrets the partner manages itself at …/partner-managed.
	s := h.record(w, r)
	if s == nil {
		return
	}
	w.Header().Set("ETag", s.Version())
	writeJSON(w, http.StatusOK, redacted(s))
}

// preconditions judges the request's If-Match and If-None-Match (RFC 9110
// §13.1.1–2) against current, the record as last written (nil: none), and
// answers 412 itself when they fail. A change made from a copy read
// earlier — GET, edit, PUT with the ETag that GET gave — is refused when
// the record changed in between (another administrator's suspension, say),
// instead of writing the stale copy back over it.
func preconditions(w http.ResponseWriter, r *http.Request, id string, current *subscribers.Subscriber) bool {
	if match := r.Header.Get("If-Match"); match != "" {
		ok := current != nil && (strings.TrimSpace(match) == "*" || slices.Contains(etags(match, false), current.Version()))
		if !ok {
			now := "it has been deleted"
			if current != nil {
				now = "its ETag is now " + current.Version()
			}
			writeError(w, http.StatusPreconditionFailed, fmt.Sprintf("subscriber %q changed since you read it (%s): GET it again, make your change to that, and send it with the new ETag in If-Match", id, now), nil)
			return false
		}
	}
	if none := r.Header.Get("If-None-Match"); none != "" && current != nil &&
		(strings.TrimSpace(none) == "*" || slices.Contains(etags(none, true), current.Version())) {
		writeError(w, http.StatusPreconditionFailed, fmt.Sprintf("subscriber %q exists (If-None-Match): its ETag is %s", id, current.Version()), nil)
		return false
	}
	return true
}

// etags splits an If-Match or If-None-Match list into the tags to compare
// with a current one. If-Match compares strongly, so weak tags (W/) never
// match and are left out; If-None-Match compares weakly (RFC 9110
// §13.1.2), so weak tags count with their W/ taken off.
func etags(list string, weak bool) []string {
	var out []string
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if w, ok := strings.CutPrefix(t, "W/"); ok {
			if !weak {
				continue
			}
			t = w
		}
		if t != "" {
			out = append(out, t)
		}
	}
	return out
}

// putSubscriber handles PUT /v1/subscribers/{id}: it validates the record
// and writes it to the subscribers topic. The registry, and so GET, sees
// it once it has consumed the write.
func (h *handler) putSubscriber(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, MaxSubscriberBytes)
	if err != nil {
		return
	}
	s, err := subscribers.Decode(body)
	if err != nil {
		writeDecodeError(w, "subscriber", err)
		return
	}
	id := r.PathValue("id")
	switch s.ID {
	case "":
		s.ID = id
	case id:
	default:
		writeError(w, http.StatusUnprocessableEntity, "invalid subscriber", []alerts.FieldError{{
			Field: "id", Message: fmt.Sprintf("%q does not match the id %q in the path", s.ID, id),
		}})
		return
	}
	// After the registry has caught up (lockRecords), so that the record
	// as written it is compared with is the latest: the partner's own
	// keys and secrets stay in force unless this record changes them
	// (app.SubscriberStore.Put).
	unlock, ok := h.lockWrites(w, r)
	if !ok {
		return
	}
	defer unlock()
	v := &alerts.ValidationError{What: "invalid subscriber"}
	var old, eff *subscribers.Subscriber
	if h.Directory != nil {
		old = h.Directory.Record(id)
	}
	if !preconditions(w, r, id, old) {
		return
	}
	if h.Registry != nil {
		eff = h.Registry.Get(id)
	}
	restoreSecrets(s, old, eff, v)
	if err := v.Err(); err != nil {
		writeInvalid(w, err)
		return
	}
	if err := h.checkSubscriber(s); err != nil {
		writeInvalid(w, err)
		return
	}
	if err := h.Writer.Put(r.Context(), actor(r), "", []*subscribers.Subscriber{s}, func(string) *subscribers.Subscriber { return old }); err != nil {
		h.log.Error("put subscriber", "subscriber", s.ID, "error", err)
		writeError(w, http.StatusServiceUnavailable, "the record could not be stored; try again", nil)
		return
	}
	h.log.Info("subscriber stored", "subscriber", s.ID)
	w.Header().Set("ETag", s.Version())
	writeJSON(w, http.StatusOK, redacted(s))
}

// checkSubscriber normalises and validates s.
func (h *handler) checkSubscriber(s *subscribers.Subscriber) error {
	if h.CheckSubscriber != nil {
		return h.CheckSubscriber(s)
	}
	s.Normalize()
	return s.Validate(h.configuredTaxonomy(), nil)
}

// deleteSubscriber handles DELETE /v1/subscribers/{id}. Deleting writes a
// tombstone and is idempotent: deleting an id the registry does not know
// (or does not know yet) also answers 204.
func (h *handler) deleteSubscriber(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !alerts.ValidID(id) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no subscriber %q", id), nil)
		return
	}
	// After the registry has caught up, so that the partner's own keys
	// and secrets it knows are cleared with the record. A partner's key
	// written meanwhile is its own record and brings nothing back.
	unlock, ok := h.lockWrites(w, r)
	if !ok {
		return
	}
	defer unlock()
	var current *subscribers.Subscriber
	if h.Directory != nil {
		current = h.Directory.Record(id)
	}
	if !preconditions(w, r, id, current) {
		return
	}
	if err := h.Writer.Delete(r.Context(), actor(r), id); err != nil {
		h.log.Error("delete subscriber", "subscriber", id, "error", err)
		writeError(w, http.StatusServiceUnavailable, "the record could not be deleted; try again", nil)
		return
	}
	h.log.Info("subscriber deleted", "subscriber", id)
	w.WriteHeader(http.StatusNoContent)
}
