package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/config"
)

// BenchmarkPublish measures POST /v1/alerts in process: authentication,
// decoding, validation, the id check (a read of the alert's partition of
// the in-process broker), the authenticated write, the audit record, the
// request log and metrics.
func BenchmarkPublish(b *testing.B) {
	e := newEnv(b)
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
