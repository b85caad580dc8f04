package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/prometheus/client_golang/prometheus"
)

// contentSecurityPolicy allows the console's own script, style and API
// calls and nothing else: no inline script, no framing, no other origin.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// securityHeaders sets the headers every response carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", contentSecurityPolicy)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		if r.TLS != nil {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}

// requestInfo is what the handlers tell the request log.
type requestInfo struct {
	token string // the token's name, never the token
}

type infoKey struct{}

// httpMetrics are the API's own metrics.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newHTTPMetrics registers the API's metrics with reg, reusing collectors
// already registered by an earlier Handler on the same registry.
func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_http_requests_total",
			Help: "HTTP requests served by the API, by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_http_request_duration_seconds",
			Help:    "Time to serve an API request, by route pattern.",
			Buckets: prometheus.DefBuckets,
		}, []string{"route"}),
	}
	m.requests = register(reg, m.requests)
	m.duration = register(reg, m.duration)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("api: register metrics: " + err.Error())
	}
	return c
}

// statusWriter records the status code written and, for a request the
// API refused, what it told the caller (writeError): the request's log
// line then says why, and which fields were wrong.
type statusWriter struct {
	http.ResponseWriter
	status int
	// refusal and fields are the error and the names of the fields of
	// an error answer.
	refusal string
	fields  []string
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// observe logs one line per request and counts it. It logs the route
// pattern rather than the path, so that ids in paths stay out of metric
// labels, and the token's name, never the token.
func (h *handler) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{}
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		d := time.Since(start)
		route := r.Pattern // set by the ServeMux on this request
		if route == "" {
			route = "unmatched"
		}
		h.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		h.metrics.duration.WithLabelValues(route).Observe(d.Seconds())
		level := slog.LevelInfo
		if sw.status >= 500 {
			level = slog.LevelError
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", sw.status),
			slog.Duration("duration", d),
			slog.String("token", info.token),
		}
		if sw.status >= 400 && sw.refusal != "" {
			attrs = append(attrs, slog.String("refused", sw.refusal))
			if len(sw.fields) > 0 {
				attrs = append(attrs, slog.Any("fields", sw.fields))
			}
		}
		h.log.LogAttrs(r.Context(), level, "http request", attrs...)
	})
}

// tokenHash is one configured token, its hash decoded.
type tokenHash struct {
	name, role string
	// subscriber is the partner a partner token acts for.
	subscriber string
	sum        []byte
}

// hashTokens decodes the configured hashes, dropping (and logging) any
// that is not a hex SHA-256: configuration validation rejects those.
func hashTokens(tokens []config.Token, log *slog.Logger) []tokenHash {
	out := make([]tokenHash, 0, len(tokens))
	for _, t := range tokens {
		sum, err := hex.DecodeString(strings.TrimSpace(t.SHA256))
		if err != nil || len(sum) != sha256.Size {
			log.Warn("api token ignored: its sha256 is not a hex SHA-256", "token", t.Name)
			continue
		}
		if t.Role == config.RolePartner && strings.TrimSpace(t.Subscriber) == "" {
			log.Warn("api token ignored: a partner token must name its subscriber", "token", t.Name)
			continue
		}
		out = append(out, tokenHash{name: t.Name, role: t.Role, subscriber: strings.TrimSpace(t.Subscriber), sum: sum})
	}
	return out
}

// identify returns the configured token matching the presented one. Every
// configured hash is compared, in constant time, whatever matches.
func (h *handler) identify(presented string) (tokenHash, bool) {
	sum := sha256.Sum256([]byte(presented))
	var found tokenHash
	ok := 0
	for _, t := range h.tokens {
		if subtle.ConstantTimeCompare(sum[:], t.sum) == 1 {
			found = t
			ok = 1
		}
	}
	return found, ok == 1
}

// bearer extracts the token of an RFC 6750 §2.1 Authorization header.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// auth lets the request through only with a token whose role is one of
// roles: 401 without a known token, 403 with the wrong role.
func (h *handler) auth(roles []string, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		presented, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
			writeError(w, http.StatusUnauthorized, "a bearer token is required", nil)
			return
		}
		t, ok := h.identify(presented)
		if !ok {
			h.refuse(r, "unknown", "the bearer token is not known")
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "the bearer token is not known", nil)
			return
		}
		if info, _ := r.Context().Value(infoKey{}).(*requestInfo); info != nil {
			info.token = t.name
		}
		if !slices.Contains(roles, t.role) {
			why := "this needs the " + strings.Join(roles, " or ") + " role; token " + t.name + " has " + t.role
			h.refuse(r, t.role+":"+t.name, why)
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald", error="insufficient_scope"`)
			writeError(w, http.StatusForbidden, why, nil)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, t)))
	})
}

// refuse records a refused token in the audit trail: the route, and the
// token's name when it is known — never the token.
func (h *handler) refuse(r *http.Request, who, why string) {
	route := r.Pattern
	if route == "" {
		route = r.Method + " " + r.URL.Path
	}
	if err := h.Audit.Record(r.Context(), record.Audit{Actor: who, Action: record.ActionTokenRefused,
		Object: "route:" + route, Outcome: record.OutcomeRefused, Reason: why}); err != nil {
		h.log.Warn("audit a refused token", "error", err)
	}
}

type callerKey struct{}

// caller returns the token that authenticated the request.
func caller(r *http.Request) tokenHash {
	t, _ := r.Context().Value(callerKey{}).(tokenHash)
	return t
}
