package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/herald-alerts/herald/internal/audit"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/publish"
	"github.com/herald-alerts/herald/internal/taxii"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Body limits. An alert's body is at most 64 KiB of text; JSON escaping
// and the other fields fit comfortably in twice that. Subscriber records
// carry armoured public keys, a few KiB each.
const (
	MaxAlertBytes      = 128 << 10
	MaxSubscriberBytes = 256 << 10
)

// readyTimeout bounds the readiness check.
const readyTimeout = 3 * time.Second

// Ledger answers what Herald knows of alerts from the receipts topic.
// Alerts with no receipts are absent from the result. *ledger.Source
// satisfies it.
type Ledger interface {
	Lookup(ctx context.Context, ids []string) (map[string]*ledger.Alert, error)
}

// Subscribers is the current set of partners. *subscribers.Registry
// satisfies it.
type Subscribers interface {
	// List returns every subscriber, sorted by id.
	List() []*subscribers.Subscriber
	// Get returns the subscriber with id, or nil.
	Get(id string) *subscribers.Subscriber
}

// SubscriberWriter stores and deletes partner records (in the compacted
// subscribers topic) and records each change, as actor, in the audit
// trail; prev returns the record a put replaces. The registry sees the
// change once it has consumed it.
type SubscriberWriter interface {
	Put(ctx context.Context, actor, reason string, subs []*subscribers.Subscriber, prev func(id string) *subscribers.Subscriber) error
	Delete(ctx context.Context, actor, id string) error
}

// Server holds the API's dependencies. Set the fields, then call Handler.
// Fields must not change once Handler has been called.
type Server struct {
	// Publisher publishes, approves and rejects alerts (one stamp and one
	// set of checks for the CLI and the API).
	Publisher *publish.Publisher
	// Decide is the fan-out's decide step over the live registry, for
	// previews.
	Decide Decider
	// Audit records refused tokens and subscriber changes.
	Audit *audit.Log
	// Desk answers the alert list and the audit trail (the view).
	Desk Desk
	// Directory gives the partner records as written and their endpoint
	// states; Endpoints records an administrator's change of one.
	Directory Directory
	Endpoints EndpointWriter
	// Overlays records a partner's change of its own key or webhook
	// secrets beside its record; nil answers those changes 503.
	Overlays OverlayWriter
	// Ledger answers status questions and checks what updates and
	// cancels reference.
	Ledger Ledger
	// Registry is the current set of partners.
	Registry Subscribers
	// Writer stores partner records.
	Writer SubscriberWriter
	// CheckSubscriber normalises and validates a partner record, returning
	// an *alerts.ValidationError naming the bad fields. If nil, the record
	// is normalised and validated against Taxonomy without checking keys.
	CheckSubscriber func(s *subscribers.Subscriber) error
	// Taxonomy is the configured sectors and regions (config.Taxonomy's
	// Build), the ones the Publisher checks alerts against: GET
	// /v1/taxonomy lists them for the console's pickers, and partner
	// records are checked against them when CheckSubscriber is nil. nil is
	// the built-in taxonomy.Default().
	Taxonomy *taxonomy.Taxonomy
	// SigningKey is the agency's ASCII-armoured public signing key;
	// empty makes /v1/signing-key answer 503.
	SigningKey []byte
	// Partner is what the partner endpoints and the email
	// acknowledgement pages need (PRODUCT.md §12).
	Partner Partners
	// Pull serves the partners' pull channel (TAXII 2.1 and the MISP
	// feed); nil serves neither.
	Pull *taxii.Server
	// Tokens are the bearer tokens (hashed) and their roles.
	Tokens []config.Token
	// Ready reports whether the API can serve (Kafka reachable, registry
	// caught up); nil means always ready. A role of the process that is
	// stopped does not make it unready (herald_role_up says so).
	Ready func(ctx context.Context) error
	// Metrics is served on /metrics and receives the API's own metrics;
	// nil means prometheus.DefaultGatherer plus the API's metrics.
	Metrics *prometheus.Registry
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives one line per request; nil discards.
	Log *slog.Logger
}

// configuredTaxonomy returns Taxonomy, or the built-in taxonomy when it
// is nil.
func (s *Server) configuredTaxonomy() *taxonomy.Taxonomy {
	if s.Taxonomy == nil {
		return taxonomy.Default()
	}
	return s.Taxonomy
}

// handler is the Server's state once Handler has been called.
type handler struct {
	*Server
	tokens  []tokenHash
	log     *slog.Logger
	now     func() time.Time
	metrics *httpMetrics
	pages   *pages
	// records serialises this process's changes to partner records and to
	// partners' own keys and secrets (see lockRecords).
	records sync.Mutex
}

// Handler returns the HTTP handler serving the API, the console, the
// probes and the metrics.
func (s *Server) Handler() http.Handler {
	h := &handler{Server: s, log: s.Log, now: s.Now}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.now == nil {
		h.now = time.Now
	}
	h.tokens = hashTokens(s.Tokens, h.log)
	var gatherer prometheus.Gatherer
	if s.Metrics != nil {
		h.metrics = newHTTPMetrics(s.Metrics)
		gatherer = s.Metrics
	} else {
		own := prometheus.NewRegistry()
		h.metrics = newHTTPMetrics(own)
		gatherer = prometheus.Gatherers{prometheus.DefaultGatherer, own}
	}
	h.pages = mustPages()

	analyst := []string{config.RoleAnalyst}
	readers := []string{config.RoleAnalyst, config.RoleAdmin}
	admin := []string{config.RoleAdmin}
	everyone := []string{config.RoleAnalyst, config.RoleAdmin, config.RolePartner}

	mux := http.NewServeMux()
	mux.Handle("POST /v1/alerts", h.auth(analyst, h.publish))
	mux.Handle("GET /v1/alerts", h.auth(readers, h.listAlerts))
	mux.Handle("GET /v1/audit", h.auth(admin, h.listAudit))
	mux.Handle("GET /v1/taxonomy", h.auth(everyone, h.taxonomy))
	mux.Handle("POST /v1/alerts/preview", h.auth(readers, h.preview))
	mux.Handle("GET /v1/alerts/{id}", h.auth(readers, h.alertStatus))
	mux.Handle("GET /v1/alerts/{id}/deliveries", h.auth(readers, h.deliveries))
	mux.Handle("GET /v1/alerts/{id}/review", h.auth(readers, h.review))
	mux.Handle("POST /v1/alerts/{id}/approve", h.auth(analyst, h.approve))
	mux.Handle("POST /v1/alerts/{id}/reject", h.auth(analyst, h.reject))
	mux.Handle("GET /v1/partners", h.auth(readers, h.listPartners))
	mux.Handle("POST /v1/subscribers/{id}/suspend", h.auth(admin, h.setStatus(subscribers.StatusSuspended)))
	mux.Handle("POST /v1/subscribers/{id}/resume", h.auth(admin, h.setStatus(subscribers.StatusActive)))
	mux.Handle("GET /v1/subscribers/{id}/endpoints", h.auth(admin, h.listEndpoints))
	mux.Handle("GET /v1/subscribers/{id}/partner-managed", h.auth(admin, h.listPartnerManaged))
	mux.Handle("POST /v1/subscribers/{id}/webhooks/{index}/enable", h.auth(admin, h.setEndpoint(false)))
	mux.Handle("POST /v1/subscribers/{id}/webhooks/{index}/disable", h.auth(admin, h.setEndpoint(true)))
	mux.Handle("GET /v1/subscribers", h.auth(admin, h.listSubscribers))
	mux.Handle("GET /v1/subscribers/{id}", h.auth(admin, h.getSubscriber))
	mux.Handle("PUT /v1/subscribers/{id}", h.auth(admin, h.putSubscriber))
	mux.Handle("DELETE /v1/subscribers/{id}", h.auth(admin, h.deleteSubscriber))
	mux.Handle("GET /v1/whoami", h.auth(readers, h.whoami))
	mux.HandleFunc("GET /v1/signing-key", h.signingKey)
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: slogPrinter{h.log}}))
	h.registerPartner(mux)
	h.registerPull(mux)
	mux.HandleFunc("/v1/", h.notFound)
	h.pages.register(mux)
	return h.observe(securityHeaders(mux))
}

// notFound answers unknown API paths in JSON.
func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
}

// Caller is the answer to GET /v1/whoami: the name and role of the token
// presented. The console uses it to check a token at sign-in.
type Caller struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// whoami handles GET /v1/whoami.
func (h *handler) whoami(w http.ResponseWriter, r *http.Request) {
	t := caller(r)
	writeJSON(w, http.StatusOK, Caller{Name: t.name, Role: t.role})
}

// signingKey serves the agency's public key (PRODUCT.md §5).
func (h *handler) signingKey(w http.ResponseWriter, r *http.Request) {
	if len(h.SigningKey) == 0 {
		writeError(w, http.StatusServiceUnavailable, "no signing key is configured", nil)
		return
	}
	w.Header().Set("Content-Type", "application/pgp-keys")
	w.Header().Set("Content-Disposition", `inline; filename="herald-signing-key.asc"`)
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(h.SigningKey)
}

// healthz answers 200 while the process serves HTTP.
func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 when Ready says so, 503 with the reason otherwise.
func (h *handler) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if h.Ready != nil {
		ctx, cancel := context.WithTimeoutCause(r.Context(), readyTimeout, errors.New("readiness check timed out"))
		defer cancel()
		if err := h.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
	}
	_, _ = w.Write([]byte("ready\n"))
}

// slogPrinter adapts a slog.Logger to promhttp's error log.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) {
	p.log.Error("serve metrics", "error", v)
}
