package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
)

// FuzzPublish drives POST /v1/alerts with arbitrary bodies: the API never
// fails with a 5xx or panics on input, and publishes only alerts that are
// valid, stamped with the caller, under the id it answered with.
func FuzzPublish(f *testing.F) {
	f.Add(validAlert)
	f.Add(strings.Replace(validAlert, `"title"`, `"id": "x-1", "colour": 1, "title"`, 1))
	f.Add(update("update", "orig-1", "GREEN", "OFFICIAL"))
	f.Add(update("cancel", "orig-1", "RED", "OFFICIAL-SENSITIVE"))
	f.Add(`{"title": "\u0000", "audience": {"sectors": [null]}, "grading": {"source": 9}}`)
	f.Add(`[]`)
	f.Add(`{"not_before": "2026-13-01T00:00:00Z"}`)
	e := newEnv(f)
	e.publishAs("orig-1")
	e.fannedOut("orig-1", alerts.TLPAmber, alerts.MarkingOfficial)
	h := e.server.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		before := len(e.publishedT(t))
		r := httptest.NewRequestWithContext(context.Background(), "POST", "/v1/alerts", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+analystToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("status %d for input: %s", w.Code, w.Body)
		}
		got := e.publishedT(t)
		if w.Code != http.StatusAccepted {
			if len(got) != before {
				t.Fatalf("status %d but the alert was published", w.Code)
			}
			var er struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &er); err != nil || er.Error == "" {
				t.Fatalf("status %d without a JSON error: %s", w.Code, w.Body)
			}
			return
		}
		var pr api.PublishResponse
		if err := json.Unmarshal(w.Body.Bytes(), &pr); err != nil {
			t.Fatalf("answered %s", w.Body)
		}
		if pr.Unchanged {
			if len(got) != before {
				t.Fatalf("the identical alert was published again")
			}
			return
		}
		if len(got) != before+1 {
			t.Fatalf("202 but %d alerts published", len(got)-before)
		}
		var a *alerts.Alert
		for _, g := range got {
			if g.ID == pr.ID {
				a = g
			}
		}
		if a == nil {
			t.Fatalf("answered %s but no alert %q was published", w.Body, pr.ID)
		}
		if err := a.Validate(testNow, testTaxonomy); err != nil {
			t.Fatalf("published an invalid alert: %v", err)
		}
		if a.IssuedBy != "api:alice" || a.IssuedAt == nil || !a.IssuedAt.Equal(testNow) {
			t.Fatalf("published with issued_by %q at %v", a.IssuedBy, a.IssuedAt)
		}
	})
}
