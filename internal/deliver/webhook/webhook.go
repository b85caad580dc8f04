// Package webhook delivers alerts to partners' HTTPS endpoints
// (PRODUCT.md §3 rule 5, §4, §5).
//
// Every request is a POST of a body that is the same for every recipient
// of an alert in the endpoint's payload format (webhooks[].format, PRODUCT.md
// §11), built and signed once per alert and format: Herald's JSON envelope
// (herald, the default), a STIX 2.1 bundle, a MISP event or a CAP 1.2
// message (internal/formats), each with its own Content-Type (see
// ContentType). Every format carries a Standard Webhooks v1 signature
// (https://www.standardwebhooks.com) per delivery, keyed with the
// endpoint's whsec_ secrets, in webhook-id, webhook-timestamp and
// webhook-signature, and the base64 of a binary OpenPGP (RFC 9580)
// detached signature of the body by the agency key in
// herald-pgp-signature.
//
// A content-free cancel notice (a partner that had an alert and may not
// have its update or cancel) is Herald's JSON notice envelope in the
// herald, stix and misp formats, and a CAP Cancel without an info block in
// the cap format (see NoticeBody and the partner guide
// docs/partner-formats.md).
//
// Transport: fasthttp's connection pools (github.com/valyala/fasthttp), one
// per host, shared by every delivery, speaking HTTP/1.1 (RFC 9112) with
// keep-alive, TLS 1.2 or later with verification always on, optional mutual
// TLS per endpoint, no proxy and no compression; redirects never followed
// (RFC 9110 §15.4), response headers bounded (64 KiB), response bodies read
// up to a bound and discarded. Each attempt is bounded by Timeout and ends
// as soon as its context is cancelled. There is no HTTP/2: each endpoint
// receives one POST per alert, so multiplexing would gain nothing, and
// fasthttp's client costs markedly less CPU per request than net/http's.
// An SSRF guard checks every address after DNS resolution, at connection
// time, so a name that resolves to loopback, private (RFC 1918, RFC 4193),
// link-local, shared (RFC 6598), multicast or other special-purpose
// addresses (RFC 6890), directly or embedded in IPv4-mapped, NAT64
// (RFC 6052), 6to4 (RFC 3056) or Teredo (RFC 4380) IPv6 addresses, is
// refused unless the operator allow-lists the range.
//
// Outcomes are classified into *delivery.Failure: 2xx is delivered; 408,
// 429 and 5xx are temporary (Retry-After honoured, RFC 9110 §10.2.3); 410
// is permanent and disables the endpoint; other 4xx and every 3xx are
// permanent; SSRF and URL-rule refusals (subscribers.WebhookURL) are
// permanent; connection errors, timeouts and TLS errors are temporary
// (delivery.ClassifyNetwork).
//
// Client certificates for mutual TLS are loaded only from
// webhooks.client_cert_dir (ClientCertPath).
package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/formats"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/singleflight"
)

// Signer makes a binary OpenPGP detached signature of data with the
// agency's signing key (crypto/pgp's Signer satisfies it).
type Signer interface {
	SignDetached(data []byte) ([]byte, error)
}

// Defaults for Config's zero values that are not configuration keys (the
// timeout and response bound are config.Default()'s webhooks settings).
const (
	DefaultUserAgent = "Herald-Webhooks/1"
	DefaultBodyCache = 128
	// MaxRetryAfter caps a receiver's Retry-After: Herald's retry window is
	// about a day, so a longer wait means "give up", which the schedule
	// decides, not the receiver.
	MaxRetryAfter = 24 * time.Hour
)

// Config configures the Notifier (the webhooks section of the
// configuration).
type Config struct {
	// Timeout bounds one delivery attempt: connect, TLS, request and
	// response. Default 10s.
	Timeout time.Duration
	// AllowInsecureLoopback allows plain http to loopback addresses, and
	// https to loopback, for development.
	AllowInsecureLoopback bool
	// AllowCIDRs lets the listed ranges through the SSRF guard (https only).
	AllowCIDRs []netip.Prefix
	// MaxResponseBytes bounds how much of a response body is read (and
	// discarded). Default 64 KiB.
	MaxResponseBytes int64
	// UserAgent is sent with every request. Default "Herald-Webhooks/1".
	UserAgent string
	// RootCAs verifies servers' certificates; nil means the system roots.
	// Tests set it to their receiver's CA.
	RootCAs *x509.CertPool
	// LookupIP resolves a host name; nil means the system resolver. Tests
	// set it to make names resolve to chosen addresses. Whatever it
	// returns passes through the SSRF guard.
	LookupIP func(ctx context.Context, host string) ([]netip.Addr, error)
	// Now returns the signing time; nil means time.Now.
	Now func() time.Time
	// BodyCache is how many alerts' signed bodies are kept. Default 128.
	BodyCache int
	// ClientCertDir is the only directory endpoints' client certificates
	// and keys may be loaded from (webhooks.client_cert_dir); empty
	// refuses client certificates. See ClientCertPath.
	ClientCertDir string
	// Agency is the agency's name as partners know it (email.issuer_name,
	// or the name on the signing key): the STIX identity, the MISP
	// organisation and the CAP senderName. Endpoints in the stix, misp and
	// cap formats need it; without it their deliveries fail for good
	// (ReasonConfig) and nothing is sent.
	Agency string
	// Sender is the CAP sender: the identifier of the agency's alerting
	// service, such as its alerts address (formats.Context.Sender). The
	// cap format needs it.
	Sender string
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = config.Default().Webhooks.Timeout
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = config.Default().Webhooks.MaxResponseBytes
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.BodyCache <= 0 {
		c.BodyCache = DefaultBodyCache
	}
	return c
}

// Notifier delivers webhook jobs. It is safe for concurrent use; one
// Notifier serves every delivery worker of a process.
type Notifier struct {
	cfg     Config
	signer  Signer
	log     *slog.Logger
	clients *clients

	flight singleflight.Group
	bodies *cache[*signedBody] // by rendering, the alert's content digest and its lineage
	routes *cache[*route]      // by URL and client certificate content
	// signers are the endpoints' Standard Webhooks signers, by their
	// secrets: decoded and keyed once, not at every delivery.
	signers *cache[*whsig.Signer]
}

// signedBody is a body, its media type and its detached signature, shared
// by every delivery of one alert in one format. Never modified after it is
// built.
type signedBody struct {
	body        []byte
	contentType string
	sig         []byte
	sigB64      string
}

var _ interface {
	Notify(context.Context, *delivery.Job, *subscribers.Subscriber) error
} = (*Notifier)(nil)

// New returns a Notifier. signer is required: Herald never sends an
// unsigned webhook. log may be nil.
func New(cfg Config, signer Signer, log *slog.Logger) (*Notifier, error) {
	if signer == nil {
		return nil, errors.New("webhook notifier: no signer: webhooks are never sent unsigned")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	for i, p := range cfg.AllowCIDRs {
		if !p.IsValid() {
			return nil, fmt.Errorf("webhook notifier: allow_cidrs[%d] is not a valid prefix", i)
		}
	}
	return &Notifier{
		cfg:     cfg,
		signer:  signer,
		log:     log,
		clients: newClients(cfg),
		bodies:  newCache[*signedBody](cfg.BodyCache),
		routes:  newCache[*route](maxRoutes),
		signers: newCache[*whsig.Signer](maxRoutes),
	}, nil
}

// Close closes idle connections. In-flight deliveries are not affected.
func (n *Notifier) Close() { n.clients.closeIdle() }

// Event types of the body's "type" field.
const (
	EventPublished = "alert.published"
	EventUpdated   = "alert.updated"
	EventCancelled = "alert.cancelled"
)

// NoticeNoLongerEligible is the "notice" field of a content-free cancel
// notice.
const NoticeNoLongerEligible = "no-longer-eligible"

// envelope is the JSON body of every webhook (docs/partner-webhooks.md).
type envelope struct {
	// Type is alert.published, alert.updated or alert.cancelled.
	Type string `json:"type"`
	// Notice is set on content-free notices only.
	Notice string `json:"notice,omitempty"`
	// Alert is the alert (PRODUCT.md §1), or a noticeAlert.
	Alert any `json:"alert"`
}

// noticeAlert is the alert object of a content-free notice.
type noticeAlert struct {
	ID         string        `json:"id"`
	Type       alerts.Type   `json:"type"`
	Status     alerts.Status `json:"status,omitempty"`
	References []string      `json:"references"`
}

// Body returns the body for an alert and its detached OpenPGP signature,
// built and signed once per alert however many deliveries ask at once.
// The returned slices are shared: do not modify them.
func (n *Notifier) Body(a *alerts.Alert) (body, pgpSig []byte, err error) {
	sb, err := n.signed(rendering{kindAlert, formats.FormatHerald}, a, [32]byte{}, nil)
	if err != nil {
		return nil, nil, err
	}
	return sb.body, sb.sig, nil
}

// NoticeBody returns the content-free cancel notice for an update or
// cancel (delivery.ModeCancelNotice) and its detached OpenPGP signature,
// built and signed once per alert:
//
//	{"type":"alert.cancelled","notice":"no-longer-eligible",
//	 "alert":{"id":"…","type":"cancel","status":"actual","references":["…"]}}
//
// The alert object carries only the follow-up's id, type "cancel", its
// status and the ids it supersedes: no title, text, indicators, TLP or
// marking.
func (n *Notifier) NoticeBody(a *alerts.Alert) (body, pgpSig []byte, err error) {
	sb, err := n.signed(rendering{kindNotice, formats.FormatHerald}, a, [32]byte{}, nil)
	if err != nil {
		return nil, nil, err
	}
	return sb.body, sb.sig, nil
}

// contentEnvelope is the body of a delivery with content: the alert,
// without the names of the other partners it was addressed to (the body is
// the same for every recipient) and without the issuing analyst's
// identity.
func contentEnvelope(a *alerts.Alert) envelope {
	c := *a
	c.Audience.Subscribers = nil
	c.IssuedBy, c.ApprovedBy, c.ApprovedAt = "", "", nil
	return envelope{Type: a.Event(), Alert: &c}
}

func noticeEnvelope(a *alerts.Alert) envelope {
	refs := a.References
	if refs == nil {
		refs = []string{}
	}
	return envelope{
		Type:   EventCancelled,
		Notice: NoticeNoLongerEligible,
		Alert:  noticeAlert{ID: a.ID, Type: alerts.TypeCancel, Status: a.Status, References: refs},
	}
}

// signed returns the signed body of rendering r for a, rendering and
// signing it at most once at a time per content (singleflight) and keeping
// the last BodyCache. The cache is keyed by the rendering (kind and
// format), the alert's content digest — digest, the SHA-256 of the alert
// bytes a job carries (delivery.Job.AlertDigest), or, when zero, of a's
// JSON encoding — and, for the formats that render it, the digest of the
// part of the lineage they read (rendering.lineage): never by the alert's
// id.
func (n *Notifier) signed(r rendering, a *alerts.Alert, digest [32]byte, lineage *delivery.Lineage) (*signedBody, error) {
	if a == nil || a.ID == "" {
		return nil, errors.New("build webhook body: alert has no id")
	}
	if digest == ([32]byte{}) {
		b, err := json.Marshal(a)
		if err != nil {
			return nil, fmt.Errorf("build webhook body for %s: %w", a.ID, err)
		}
		digest = sha256.Sum256(b)
	}
	key := r.kind + "\x00" + string(r.format) + "\x00" + string(digest[:])
	lineage = r.lineage(lineage)
	if r.usesLineage() {
		ld := lineage.Digest()
		key += string(ld[:])
	}
	if sb, ok := n.bodies.Get(key); ok {
		return sb, nil
	}
	v, err, _ := n.flight.Do(key, func() (any, error) {
		if sb, ok := n.bodies.Get(key); ok {
			return sb, nil
		}
		body, contentType, err := n.render(r, a, lineage)
		if err != nil {
			return nil, err
		}
		sig, err := n.signer.SignDetached(body)
		if err != nil {
			return nil, &signError{fmt.Errorf("sign webhook body for %s: %w", a.ID, err)}
		}
		if len(sig) == 0 {
			return nil, &signError{fmt.Errorf("sign webhook body for %s: empty signature", a.ID)}
		}
		sb := &signedBody{body: body, contentType: contentType, sig: sig, sigB64: base64.StdEncoding.EncodeToString(sig)}
		n.bodies.Add(key, sb)
		n.log.Debug("webhook body signed", "alert", a.ID, "kind", r.kind, "format", r.format, "bytes", len(body))
		return sb, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*signedBody), nil
}

// signError marks a failure to sign, as opposed to one to render.
type signError struct{ err error }

func (e *signError) Error() string { return e.err.Error() }
func (e *signError) Unwrap() error { return e.err }

// Notify delivers one job: job.Target is the endpoint's URL, found in
// sub.Webhooks. It returns nil when the endpoint answered 2xx, or a
// *delivery.Failure saying what went wrong and whether to retry. Its steps
// (check, route, body, send) return failures that do not name the
// endpoint; Notify names it, without query or credentials, once.
func (n *Notifier) Notify(ctx context.Context, job *delivery.Job, sub *subscribers.Subscriber) error {
	if job == nil || job.Alert == nil || sub == nil {
		return delivery.Permanent(delivery.ReasonInvalid, errors.New("deliver webhook: job without alert or subscriber"))
	}
	// Outcomes are logged at debug level only: build the logger only
	// when that level is on (the runner logs what matters).
	var log *slog.Logger
	if n.log.Enabled(ctx, slog.LevelDebug) {
		log = n.log.With("alert", job.Alert.ID, "subscriber", sub.ID, "delivery", job.ID, "endpoint", redact(job.Target))
	}
	f := n.deliver(ctx, job, sub, log)
	if f == nil {
		return nil
	}
	f.Err = fmt.Errorf("deliver webhook to %s: %w", redact(job.Target), f.Err)
	if log != nil {
		log.Debug("webhook not delivered", "reason", f.Reason, "temporary", f.Temporary, "error", f.Err)
	}
	return f
}

// deliver makes the attempt; log is nil unless debug logging is on.
func (n *Notifier) deliver(ctx context.Context, job *delivery.Job, sub *subscribers.Subscriber, log *slog.Logger) *delivery.Failure {
	ep, f := check(job, sub)
	if f != nil {
		return f
	}
	rt, f := n.route(ep)
	if f != nil {
		return f
	}
	sb, f := n.body(job, sub, ep)
	if f != nil {
		return f
	}
	return n.send(ctx, rt, job, ep.Secrets, sb, log)
}

// check finds the job's endpoint and checks that it may be called.
func check(job *delivery.Job, sub *subscribers.Subscriber) (*subscribers.Webhook, *delivery.Failure) {
	switch {
	case job.ID == "":
		return nil, delivery.Permanent(delivery.ReasonInvalid, errors.New("job has no delivery id"))
	case job.Channel != "" && job.Channel != delivery.ChannelWebhook:
		return nil, delivery.Permanent(delivery.ReasonInvalid, fmt.Errorf("job is for channel %q", job.Channel))
	}
	ep := endpoint(sub, job.Target)
	switch {
	case ep == nil:
		return nil, delivery.Permanent(delivery.ReasonInvalid, fmt.Errorf("subscriber %s has no such endpoint", sub.ID))
	case ep.Disabled:
		return nil, delivery.Permanent(delivery.ReasonGone, errors.New("endpoint is disabled"))
	case len(ep.Secrets) == 0:
		return nil, delivery.Permanent(delivery.ReasonConfig, errors.New("endpoint has no secret"))
	}
	return ep, nil
}

// body returns the signed body the job's mode calls for, in the
// endpoint's format.
func (n *Notifier) body(job *delivery.Job, sub *subscribers.Subscriber, ep *subscribers.Webhook) (*signedBody, *delivery.Failure) {
	format := formats.Format(ep.Format)
	if format == "" {
		format = formats.FormatHerald
	}
	if !format.Valid() {
		return nil, delivery.Permanent(delivery.ReasonConfig, fmt.Errorf("endpoint format %q is not one of herald, stix, misp, cap", ep.Format))
	}
	var r rendering
	switch job.Mode {
	case delivery.ModeSigned, "":
		if err := mayCarry(job.Alert, sub, ep); err != nil {
			return nil, delivery.Permanent(delivery.ReasonRefused, err)
		}
		r = rendering{kindAlert, format}
	case delivery.ModeCancelNotice:
		r = noticeRendering(format)
	default:
		return nil, delivery.Permanent(delivery.ReasonInvalid, fmt.Errorf("mode %q is not for webhooks", job.Mode))
	}
	if r.format != formats.FormatHerald && strings.TrimSpace(n.cfg.Agency) == "" {
		return nil, delivery.Permanent(delivery.ReasonConfig,
			fmt.Errorf("the %s format names the agency, and its name is not configured (email.issuer_name)", r.format))
	}
	sb, err := n.signed(r, job.Alert, job.AlertDigest, job.Lineage)
	var se *signError
	switch {
	case errors.As(err, &se):
		return nil, delivery.Permanent(delivery.ReasonSign, err)
	case err != nil:
		return nil, delivery.Permanent(delivery.ReasonInvalid, err)
	}
	return sb, nil
}

// send makes one attempt: the route's request with the body and this
// delivery's signatures; the response is read up to MaxResponseBytes and
// classified. The attempt ends by its deadline, Timeout from now or ctx's
// deadline if sooner, or as soon as ctx is cancelled.
func (n *Notifier) send(ctx context.Context, rt *route, job *delivery.Job, secrets []string, sb *signedBody, log *slog.Logger) *delivery.Failure {
	ts := n.cfg.Now()
	signer, err := n.webhookSigner(secrets)
	if err != nil {
		return delivery.Permanent(delivery.ReasonConfig, err)
	}
	sig, err := signer.Sign(job.ID, ts, sb.body)
	if err != nil {
		return delivery.Permanent(delivery.ReasonConfig, err)
	}
	if err := ctx.Err(); err != nil {
		return classifyError(ctx, err)
	}
	deadline := time.Now().Add(n.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	rt.request(req, n.cfg.UserAgent, sb, job.ID, strconv.FormatInt(ts.Unix(), 10), sig)
	r, err := rt.host.do(ctx, deadline, req, resp, n.cfg.MaxResponseBytes)
	if err != nil {
		return classifyError(ctx, err)
	}
	f := classifyStatus(r.status, r.retryAfter, n.cfg.Now())
	if f == nil {
		if log != nil {
			log.Debug("webhook delivered", "status", r.status, "proto", "HTTP/1.1")
		}
		return nil
	}
	f.Err = errors.New(r.statusLine() + r.excerpt)
	return f
}

// statusLine is the status code and the server's reason phrase, or the
// standard one when the server sent none: "503 Service Unavailable".
func (r response) statusLine() string {
	reason := r.reason
	if reason == "" {
		reason = http.StatusText(r.status)
	}
	return strconv.Itoa(r.status) + " " + reason
}

// webhookSigner returns the Standard Webhooks signer of an endpoint's secrets,
// making it on first use. It is keyed by the secrets themselves, so a
// partner's rotated secrets make a new one at once.
func (n *Notifier) webhookSigner(secrets []string) (*whsig.Signer, error) {
	key := strings.Join(secrets, "\x00")
	if s, ok := n.signers.Get(key); ok {
		return s, nil
	}
	s, err := whsig.NewSigner(secrets)
	if err != nil {
		return nil, err
	}
	n.signers.Add(key, s)
	return s, nil
}

// endpoint finds the webhook of sub with url target.
func endpoint(sub *subscribers.Subscriber, target string) *subscribers.Webhook {
	for i := range sub.Webhooks {
		if sub.Webhooks[i].URL == target {
			return &sub.Webhooks[i]
		}
	}
	return nil
}

// mayCarry re-checks, as a last line of defence, the rules of PRODUCT.md
// §3 rule 5 that the policy already applied: TLP:RED never goes by
// webhook, and the endpoint's max_tlp must reach the alert's TLP.
func mayCarry(a *alerts.Alert, sub *subscribers.Subscriber, ep *subscribers.Webhook) error {
	if a.TLP == alerts.TLPRed {
		return errors.New("TLP:RED never goes by webhook")
	}
	limit := ep.MaxTLP
	if limit == "" {
		limit = sub.Clearance
	}
	if !a.TLP.Valid() || a.TLP.Exceeds(limit) {
		return fmt.Errorf("alert %s exceeds the endpoint's max_tlp %s", a.TLP.Label(), limit)
	}
	return nil
}

// drain reads a response body up to limit bytes and discards it. It
// returns a short printable excerpt for error messages, and whether the
// body ended within the limit (so that the connection may be reused).
func drain(r io.Reader, limit int64) (excerpt string, complete bool) {
	var head [200]byte
	n, err := io.ReadFull(r, head[:min(int64(len(head)), max(limit, 0))])
	switch err {
	case nil:
		// One byte past the limit tells a body that ends at it from one
		// that goes on: io.EOF means fewer came.
		_, err = io.CopyN(io.Discard, r, limit-int64(n)+1)
		complete = err == io.EOF
	case io.EOF, io.ErrUnexpectedEOF:
		complete = true
	}
	return printable(head[:n]), complete
}

// printable returns ": " and b with every unprintable rune replaced by a
// space, trimmed, or "" for an empty b.
func printable(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	b = bytes.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, b)
	return ": " + string(bytes.TrimSpace(b))
}

// classifyStatus turns a response's status code and Retry-After into nil
// (2xx) or a Failure.
func classifyStatus(code int, retryAfter string, now time.Time) *delivery.Failure {
	switch {
	case code >= 200 && code < 300:
		return nil
	case code >= 300 && code < 400:
		return delivery.Permanent(delivery.ReasonRedirect, nil)
	case code == http.StatusGone:
		f := delivery.Permanent(delivery.ReasonGone, nil)
		f.Gone = true
		return f
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500 && code < 600:
		f := delivery.Temporary(delivery.ReasonHTTP5xx, nil)
		f.RetryAfter = RetryAfter(retryAfter, now)
		return f
	case code >= 400 && code < 500:
		return delivery.Permanent(delivery.ReasonHTTP4xx, nil)
	}
	return delivery.Temporary(delivery.ReasonUnknown, nil)
}

// RetryAfter parses a Retry-After header value (RFC 9110 §10.2.3): delay
// seconds or an HTTP date. It returns 0 for an absent, malformed or past
// value, and caps the wait at MaxRetryAfter.
func RetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

// redact returns scheme://host/path of a URL: no query, which may carry a
// partner's token, and no credentials.
func redact(raw string) string { return subscribers.RedactURL(raw) }
