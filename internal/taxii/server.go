package taxii

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/formats"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
)

// Source is what the servers read of Kafka: *view.View satisfies it.
type Source interface {
	// PartnerDeliveries returns a page of a partner's own deliveries,
	// newest first, and the cursor of the next.
	PartnerDeliveries(subscriber string, q view.PartnerQuery) ([]view.PartnerDelivery, string, error)
	// Holding starts a question about what the alerts topic holds
	// (view.Holding: the alert as published while the topic still holds
	// its record, the view synced with the topic once for an alert it
	// lacks).
	Holding(ctx context.Context) *view.Holding
	// PullRevision returns the revision of a partner's pull entries,
	// which changes with every decision about them.
	PullRevision(subscriber string) (view.Revision, error)
}

// Registry gives the partners' current records: *subscribers.Registry
// satisfies it.
type Registry interface {
	Get(id string) *subscribers.Subscriber
}

// Receipts records receipts on the receipts topic.
type Receipts interface {
	WriteReceipt(ctx context.Context, r delivery.Receipt) error
}

// Auditor records an entry of the audit trail (*audit.Log satisfies it).
type Auditor interface {
	Record(ctx context.Context, e record.Audit) error
}

// Caller is the holder of a token a request presented.
type Caller struct {
	// Name is the token's name (never the token).
	Name string
	// Role is the token's role (config.RolePartner for partners).
	Role string
	// Subscriber is the subscriber a partner token is bound to.
	Subscriber string
}

// Identify returns the holder of the token a request presented, or false
// when the token is not known.
type Identify func(r *http.Request, token string) (Caller, bool)

// Refuse records a refused token (the audit trail): who ("unknown", or the
// role and name) and why.
type Refuse func(r *http.Request, who, why string)

// callerKey is the context key of the request's Caller.
type callerKey struct{}

// RolePartner is the role of partner tokens (config.RolePartner).
const RolePartner = "partner"

// Server serves the TAXII 2.1 server and the MISP feed. Set the fields,
// then call Register; they must not change afterwards.
type Server struct {
	// Source is the view of Kafka.
	Source Source
	// Registry is the current set of partners.
	Registry Registry
	// Receipts records each first pull of an alert. Required: a pull that
	// cannot be recorded is not served (503).
	Receipts Receipts
	// Audit records each first pull of an alert in the audit trail, as
	// the partner's other actions are; nil records none.
	Audit Auditor
	// Policy are the policy's settings, as the fan-out has them.
	Policy policy.Options
	// Agency is the agency's name as partners know it (email.issuer_name
	// or the signing key's name): the STIX identity and MISP organisation.
	// Empty makes every collection answer 503.
	Agency string
	// BaseURL is where partners reach the API (scheme and host, no
	// path), for the absolute URLs of TAXII discovery; empty takes the
	// request's host, over https when the request came over TLS or a
	// proxy says so (X-Forwarded-Proto).
	BaseURL string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Log receives one line per recorded pull; nil discards.
	Log *slog.Logger

	// alerts and renders keep decoded alerts and their renderings, keyed
	// by digests of what they were made from; seen remembers the
	// deliveries whose pull this process recorded, until the view shows
	// them delivered; cached keeps partners' collections, keyed by
	// what they were made from, up to a number and a number of alerts.
	// Each drops its least recently used entries.
	alerts  *lru.Cache[[32]byte, *alerts.Alert]
	renders *lru.Cache[renderKey, any]
	seen    *lru.Cache[string, struct{}]
	cached  *collectionCache
}

// Media types of TAXII 2.1.
const (
	MediaTAXII = "application/taxii+json;version=2.1"
	MediaSTIX  = formats.ContentTypeSTIX
)

// APIRoot is the name of the one API root.
const APIRoot = "herald"

// Paths.
const (
	PathTAXII    = "/taxii2/"
	PathMISPFeed = "/misp/feed/"
)

// CollectionID returns the id of a partner's TAXII collection: the
// version 5 UUID of "taxii-collection" NUL subscriber id in
// formats.Namespace, fixed for the life of the subscriber id.
func CollectionID(subscriber string) string {
	return uuid.NewSHA1(formats.Namespace, []byte("taxii-collection\x00"+subscriber)).String()
}

// Register adds the TAXII 2.1 server and the MISP feed to mux, with
// identify to recognise tokens and refuse (which may be nil) to record the
// refused ones.
func (s *Server) Register(mux *http.ServeMux, identify Identify, refuse Refuse) {
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Log == nil {
		s.Log = slog.New(slog.DiscardHandler)
	}
	s.alerts = mustLRU[[32]byte, *alerts.Alert](renderCacheSize)
	s.renders = mustLRU[renderKey, any](renderCacheSize)
	s.seen = mustLRU[string, struct{}](pulledSetSize)
	s.cached = newCollectionCache(collectionCacheSize, collectionItemsBudget)
	g := &gate{identify: identify, refuse: refuse, registry: s.Registry}
	taxii := func(h func(http.ResponseWriter, *http.Request, *subscribers.Subscriber)) http.Handler {
		return g.wrap(taxiiErrors{}, true, h)
	}
	mux.Handle("GET /taxii2/{$}", taxii(s.discovery))
	mux.Handle("GET /taxii2/{root}/{$}", taxii(s.apiRoot))
	mux.Handle("GET /taxii2/{root}/collections/{$}", taxii(s.collections))
	mux.Handle("GET /taxii2/{root}/collections/{id}/{$}", taxii(s.collection))
	mux.Handle("GET /taxii2/{root}/collections/{id}/objects/{$}", taxii(s.objects))
	mux.Handle("GET /taxii2/{root}/collections/{id}/objects/{object}/{$}", taxii(s.object))
	mux.Handle("GET /taxii2/{root}/collections/{id}/objects/{object}/versions/{$}", taxii(s.versions))
	mux.Handle("GET /taxii2/{root}/collections/{id}/manifest/{$}", taxii(s.manifest))
	mux.Handle("/taxii2/", taxii(func(w http.ResponseWriter, r *http.Request, _ *subscribers.Subscriber) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET")
			taxiiErrors{}.write(w, http.StatusMethodNotAllowed, "Method not allowed", "this TAXII server is read-only: collections cannot be written")
			return
		}
		taxiiErrors{}.write(w, http.StatusNotFound, "Not found", "no such TAXII resource")
	}))
	feed := func(h func(http.ResponseWriter, *http.Request, *subscribers.Subscriber)) http.Handler {
		return g.wrap(feedErrors{}, false, h)
	}
	mux.Handle("GET /misp/feed/manifest.json", feed(s.feedManifest))
	mux.Handle("GET /misp/feed/hashes.csv", feed(s.feedHashes))
	mux.Handle("GET /misp/feed/{file}", feed(s.feedEvent))
	mux.Handle("/misp/feed/", feed(func(w http.ResponseWriter, r *http.Request, _ *subscribers.Subscriber) {
		feedErrors{}.write(w, http.StatusNotFound, "Not found", "the feed serves manifest.json, hashes.csv and <uuid>.json")
	}))
}

// errorWriter writes an error in a server's own shape.
type errorWriter interface {
	write(w http.ResponseWriter, status int, title, description string)
}

// taxiiErrors writes TAXII 2.1 error messages.
type taxiiErrors struct{}

// taxiiError is a TAXII 2.1 error message.
type taxiiError struct {
	Title       string `json:"title"`
	Description string `json:"description,omitempty"`
	HTTPStatus  string `json:"http_status"`
}

func (taxiiErrors) write(w http.ResponseWriter, status int, title, description string) {
	writeTAXII(w, status, taxiiError{Title: title, Description: description, HTTPStatus: strconv.Itoa(status)})
}

// feedErrors writes the feed's errors as JSON, which MISP logs.
type feedErrors struct{}

func (feedErrors) write(w http.ResponseWriter, status int, title, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"name": title, "message": description})
}

// writeTAXII writes v as a TAXII resource.
func writeTAXII(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", MediaTAXII)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// gate authenticates requests: a known partner token bound to an active
// partner.
type gate struct {
	identify Identify
	refuse   Refuse
	registry Registry
}

// wrap answers 406 (TAXII only: checkAccept), 401 without a known token,
// 403 for a token that is not a partner's or a partner that is not
// active, and otherwise calls h with the partner's current record.
func (g *gate) wrap(ew errorWriter, checkAccept bool, h func(http.ResponseWriter, *http.Request, *subscribers.Subscriber)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := token(r)
		if !ok {
			challenge(w)
			ew.write(w, http.StatusUnauthorized, "Authentication required",
				"present your partner token as a Bearer token, or as the password of HTTP Basic authentication")
			return
		}
		c, ok := g.identify(r, tok)
		if !ok {
			g.refused(r, "unknown", "the token is not known")
			challenge(w)
			ew.write(w, http.StatusUnauthorized, "Authentication failed", "the token is not known")
			return
		}
		if c.Role != RolePartner || c.Subscriber == "" {
			why := "this needs a partner token bound to a subscriber; token " + c.Name + " has role " + c.Role
			g.refused(r, c.Role+":"+c.Name, why)
			ew.write(w, http.StatusForbidden, "Forbidden", why)
			return
		}
		sub := g.registry.Get(c.Subscriber)
		switch {
		case sub == nil:
			ew.write(w, http.StatusForbidden, "Forbidden", "the partner this token is bound to is not registered")
			return
		case !sub.Active():
			ew.write(w, http.StatusForbidden, "Forbidden", "the partner is "+sub.Status+": it may pull nothing")
			return
		}
		if checkAccept && !acceptsTAXII(r.Header.Values("Accept")) {
			ew.write(w, http.StatusNotAcceptable, "Not acceptable", "this server answers "+MediaTAXII)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)), sub)
	})
}

func (g *gate) refused(r *http.Request, who, why string) {
	if g.refuse != nil {
		g.refuse(r, who, why)
	}
}

// challenge offers both schemes a partner may use.
func challenge(w http.ResponseWriter) {
	w.Header().Add("WWW-Authenticate", `Bearer realm="herald"`)
	w.Header().Add("WWW-Authenticate", `Basic realm="herald", charset="UTF-8"`)
}

// token returns the token of an Authorization header: Bearer (RFC 6750),
// or Basic (RFC 7617) with the token as the password and any user name.
func token(r *http.Request) (string, bool) {
	scheme, rest, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest, rest != ""
	case strings.EqualFold(scheme, "Basic"):
		b, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", false
		}
		_, pw, ok := strings.Cut(string(b), ":")
		return pw, ok && pw != ""
	}
	return "", false
}

// acceptsTAXII reports whether the Accept header values allow the TAXII
// 2.1 media type: application/taxii+json without a version or with
// version 2.1, application/*, */*, or no Accept at all.
func acceptsTAXII(values []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			mt, params, err := mime.ParseMediaType(part)
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok && strings.TrimLeft(q, "0.") == "" {
				continue // q=0: not acceptable
			}
			switch mt {
			case "*/*", "application/*":
				return true
			case "application/taxii+json":
				if ver, ok := params["version"]; !ok || ver == "2.1" {
					return true
				}
			}
		}
	}
	return false
}

// errNoAgency is the answer while the agency's name is not configured.
var errNoAgency = errors.New("the agency's name is not configured (email.issuer_name)")

// mustLRU returns an LRU cache of size entries; lru.New fails only for a
// size below 1, which the constants never are.
func mustLRU[K comparable, V any](size int) *lru.Cache[K, V] {
	c, err := lru.New[K, V](size)
	if err != nil {
		panic(err)
	}
	return c
}
