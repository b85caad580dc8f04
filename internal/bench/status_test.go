package bench

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestQuietReadyzDropsOnlyReadyzLines(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(quietReadyz{slog.NewTextHandler(&buf, nil)}).With("role", "api")
	log.Error("http request", "method", "GET", "route", "GET /readyz", "status", 503)
	log.Error("http request", "method", "GET", "route", "GET /v1/alerts/{id}/deliveries", "status", 503)
	log.Info("listening", "key", "api.listen")
	out := buf.String()
	assert.NotContains(t, out, "/readyz")
	assert.Contains(t, out, "route=\"GET /v1/alerts/{id}/deliveries\"")
	assert.Contains(t, out, "role=api")
	assert.Contains(t, out, "listening")
}
