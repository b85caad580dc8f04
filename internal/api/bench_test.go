package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/config"
)

// discardPublisher accepts every alert and keeps none.
type discardPublisher struct{}

func (discardPublisher) Publish(context.Context, *alerts.Alert) error { return nil }

// BenchmarkPublish measures POST /v1/alerts in process: authentication,
// decoding, validation, publishing to a publisher that does nothing, the
// request log and metrics. Kafka's cost is not included.
func BenchmarkPublish(b *testing.B) {
	e := newEnv(b, func(s *api.Server) { s.Publisher = discardPublisher{} })
	h := e.server.Handler()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequestWithContext(b.Context(), "POST", "/v1/alerts", strings.NewReader(validAlert))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Authorization", "Bearer "+analystToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkAuth measures authenticating against 100 configured tokens,
// every one compared in constant time.
func BenchmarkAuth(b *testing.B) {
	e := newEnv(b, func(s *api.Server) {
		for i := range 98 {
			s.Tokens = append(s.Tokens, config.Token{Name: fmt.Sprint("t", i), Role: config.RoleAnalyst, SHA256: config.HashToken(fmt.Sprint("tok", i))})
		}
	})
	h := e.server.Handler()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequestWithContext(b.Context(), "GET", "/v1/whoami", nil)
		r.Header.Set("Authorization", "Bearer "+adminToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d", w.Code)
		}
	}
}
