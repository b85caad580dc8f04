package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/audit"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/deliver"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/publish"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// keyChecks keeps the verdicts on the keys the policy judges
// (pgp.RecipientCache), not the keys: parsing a key is by far the most
// expensive part of evaluating the policy, and the same keys are checked
// for every alert; a verdict holds until the next time the key's judgment
// can change. The email notifier (which judges with it before it parses a
// key to encrypt to) and the key-expiry watch (withKeyWatch) use it too:
// one process-wide verdict cache.
var keyChecks pgp.RecipientCache

// KeyCheck reports why an armoured recipient key cannot be used to encrypt
// at now.
func KeyCheck(armored string, now time.Time) error {
	return keyChecks.Check(armored, now)
}

// WebhookConfig maps the configuration onto the webhook notifier's.
func WebhookConfig(cfg *config.Config) (webhook.Config, error) {
	wc := webhook.Config{Timeout: cfg.Webhooks.Timeout, AllowInsecureLoopback: cfg.Webhooks.AllowInsecureLoopback,
		MaxResponseBytes: cfg.Webhooks.MaxResponseBytes, UserAgent: "Herald/1 (+webhooks)", ClientCertDir: cfg.Webhooks.ClientCertDir,
		Agency: Agency(cfg, nil), Sender: CAPSender(cfg)}
	pool, err := config.CertPool(cfg.Webhooks.CAFile)
	if err != nil {
		return wc, fmt.Errorf("webhooks.ca_file: %w", err)
	}
	wc.RootCAs = pool
	for i, c := range cfg.Webhooks.AllowCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return wc, fmt.Errorf("webhooks.allow_cidrs[%d]: %w", i, err)
		}
		wc.AllowCIDRs = append(wc.AllowCIDRs, p)
	}
	return wc, nil
}

// EmailConfig maps the configuration onto the email notifier's.
func EmailConfig(cfg *config.Config) (email.Config, error) {
	pw, err := config.ReadSecret(cfg.SMTP.PasswordFile, "HERALD_SMTP_PASSWORD")
	if err != nil {
		return email.Config{}, fmt.Errorf("smtp.password_file: %w", err)
	}
	pool, err := config.CertPool(cfg.SMTP.CAFile)
	if err != nil {
		return email.Config{}, fmt.Errorf("smtp.ca_file: %w", err)
	}
	return email.Config{Host: cfg.SMTP.Host, Port: cfg.SMTP.Port, TLS: cfg.SMTP.TLS, Username: cfg.SMTP.Username,
		Password: pw, From: cfg.SMTP.From, Pool: cfg.SMTP.Pool, Timeout: cfg.SMTP.Timeout, RootCAs: pool,
		IssuerName: cfg.Email.IssuerName}, nil
}

// unconfigured fails every job of a channel the operator has not set up,
// temporarily, so that the jobs wait through the retry schedule for the
// configuration to be fixed and then go to the dead-letter topic.
type unconfigured struct{ why string }

func (u unconfigured) Notify(context.Context, *delivery.Job, *subscribers.Subscriber) error {
	return delivery.Temporary(delivery.ReasonConfig, errors.New(u.why))
}

// Notifiers builds the email and webhook notifiers from the configuration.
func Notifiers(cfg *config.Config, signer *pgp.Signer, a *App) (map[string]deliver.Notifier, func(), error) {
	ns := map[string]deliver.Notifier{}
	closers := []func(){}
	if cfg.Webhooks.AllowInsecureLoopback {
		a.log.Warn("webhooks.allow_insecure_loopback is on (development only): webhooks may go to loopback addresses, over plain http:// too")
	}
	if cfg.SMTP.Host == "" {
		a.log.Warn("email channel not configured (smtp.host is empty): email deliveries wait and retry until it is")
		ns[delivery.ChannelEmail] = unconfigured{"smtp.host is not configured"}
	} else {
		ec, err := EmailConfig(cfg)
		if err != nil {
			return nil, nil, err
		}
		links, err := AckLinks(a.bus)
		if err != nil {
			return nil, nil, fmt.Errorf("acknowledgement links: %w", err)
		}
		ec.AckURL = AckURL(cfg, links, a.now)
		ec.Keys = &keyChecks // the policy's verdicts: an unusable key is refused unparsed
		n, err := email.New(ec, signer, a.log.With("channel", "email"))
		if err != nil {
			return nil, nil, fmt.Errorf("email channel: %w", err)
		}
		ns[delivery.ChannelEmail] = n
		closers = append(closers, func() { n.Close() })
	}
	wc, err := WebhookConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	wc.Agency = Agency(cfg, signer)
	wn, err := webhook.New(wc, signer, a.log.With("channel", "webhook"))
	if err != nil {
		return nil, nil, fmt.Errorf("webhook channel: %w", err)
	}
	ns[delivery.ChannelWebhook] = wn
	return ns, func() {
		for _, c := range closers {
			c()
		}
	}, nil
}

// deliverRole builds the deliver role; it needs the signing key.
func (a *App) deliverRole() (func(context.Context) error, error) {
	if a.signer == nil {
		return nil, ErrNoSigner
	}
	ns, closeAll, err := Notifiers(a.cfg, a.signer, a)
	if err != nil {
		return nil, err
	}
	r := deliver.New(deliver.Config{
		Delivery: a.cfg.Delivery,
		Group:    GroupDeliver,
		// An attempt never outlives its channel's own deadline by much, so
		// a handed-off attempt's lease comes due soon after.
		AttemptTimeout: max(a.cfg.Webhooks.Timeout, a.cfg.SMTP.Timeout) + 5*time.Second,
		Now:            a.now,
		Log:            a.log.With("role", RoleDeliver),
		Policy:         PolicyOptions(a.cfg),
	}, a.bus, a.registry, ns)
	a.metrics.MustRegister(r.Collectors()...)
	return func(ctx context.Context) error {
		defer closeAll()
		return r.Run(ctx)
	}, nil
}

// CheckSubscriber normalises and validates a record for registration: its
// fields and keys (Subscriber.Validate, which applies the webhook URL rule
// allowing plain-http loopback), then its webhook URLs against the
// operator's webhook settings (webhook.CheckTarget: plain http only when
// webhooks.allow_insecure_loopback is on, and the SSRF guard), and its
// client certificate files against webhooks.client_cert_dir
// (webhook.ClientCertPath; the transport checks them again before loading).
// Its sectors and regions are checked against tax, the configured
// taxonomy (cfg.Taxonomy.Build, made once by the caller).
func CheckSubscriber(cfg *config.Config, tax *taxonomy.Taxonomy, s *subscribers.Subscriber, now time.Time) error {
	s.Normalize()
	err := s.Validate(tax, func(armored string) error { return pgp.CheckKeyParses(armored) })
	v := &alerts.ValidationError{}
	if !errors.As(err, &v) && err != nil {
		return err
	}
	v.What = "invalid subscriber " + s.ID
	wc, err := WebhookConfig(cfg)
	if err != nil {
		return err
	}
	for i, w := range s.Webhooks {
		f := fmt.Sprintf("webhooks[%d]", i)
		if _, _, err := subscribers.WebhookURL(w.URL, true); err == nil {
			// (Validate reported a URL that breaks the rule itself.)
			if err := webhook.CheckTarget(w.URL, wc); err != nil {
				v.Add(f+".url", "%v", err)
			}
		}
		for _, file := range [...]struct{ field, name string }{{".client_cert", w.ClientCert}, {".client_key", w.ClientKey}} {
			if file.name == "" {
				continue // none, or Validate reported the missing half
			}
			if _, err := webhook.ClientCertPath(wc.ClientCertDir, file.name); err != nil {
				v.Add(f+file.field, "%v", err)
			}
		}
	}
	return v.Err()
}

// Preview is the decide step that analysts see before an alert goes: the
// console's and the API's preview and review, and the command line's dry
// run. It decides for every registered partner (fanout.DecideAll), where
// the fan-out decides only the candidates (fanout.Decide).
func Preview(reg fanout.Partners, opt policy.Options) api.Decider {
	return func(al *alerts.Alert, prior map[string]*ledger.Alert, now time.Time) ([]policy.Decision, int) {
		return fanout.DecideAll(al, reg, prior, now, opt)
	}
}

// Publisher returns the publisher of alerts on b, answering what is
// already held from index, checking audiences against tax, the configured
// taxonomy (cfg.Taxonomy.Build, made once by the caller).
func Publisher(cfg *config.Config, tax *taxonomy.Taxonomy, b *bus.Bus, index publish.Index, reg publish.Registry, now func() time.Time) *publish.Publisher {
	return &publish.Publisher{
		Index:    index,
		Registry: reg,
		Taxonomy: tax,
		Release:  cfg.Release,
		Alerts:   b.Producer(bus.TopicAlerts),
		Pending:  b.Producer(bus.TopicPending),
		Audit:    AuditLog(b, now),
		Now:      now,
	}
}

// AuditLog returns the audit trail writer on b.
func AuditLog(b *bus.Bus, now func() time.Time) *audit.Log {
	return &audit.Log{P: b.Producer(bus.TopicAudit), Now: now}
}

// metricsListener serves GET /metrics alone on addr.
func (a *App) metricsListener(addr string) (func(context.Context) error, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics, promhttp.HandlerOpts{Registry: a.metrics}))
	return a.listen("metrics.listen", addr, mux)
}

// listen binds addr and returns a function serving h on it (serve).
func (a *App) listen(key, addr string, h http.Handler) (func(context.Context) error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return a.serve(key, ln, h), nil
}

// serve returns a function serving h on ln until ctx ends, then shutting
// down gracefully.
func (a *App) serve(key string, ln net.Listener, h http.Handler) func(context.Context) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute}
	a.log.Info("listening", "key", key, "addr", ln.Addr().String())
	return func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- hs.Serve(ln) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return hs.Shutdown(sctx)
	}
}

func (a *App) apiRole() (func(context.Context) error, error) {
	var pub []byte
	if a.signer != nil {
		pub = a.signer.PublicKeyArmored()
	} else {
		a.log.Warn("no signing key configured (signing.key_file): GET /v1/signing-key answers 503 and nothing can be delivered")
	}
	if len(a.cfg.API.Tokens) == 0 {
		a.log.Warn("the api role has no tokens (api.tokens): nobody can sign in to the console or use the API; make one with `herald token generate --role analyst --name NAME`")
	}
	opt := PolicyOptions(a.cfg)
	index := ViewIndex{V: a.view}
	links, err := AckLinks(a.bus)
	if err != nil {
		return nil, fmt.Errorf("acknowledgement links: %w", err)
	}
	auditLog := AuditLog(a.bus, a.now)
	store := SubscriberStore{Bus: a.bus, Audit: auditLog, Overlays: a.registry}
	srv := &api.Server{
		Publisher:       Publisher(a.cfg, a.taxonomy, a.bus, index, a.registry, a.now),
		Decide:          Preview(a.registry, opt),
		Audit:           auditLog,
		Desk:            a.view,
		Directory:       a.registry,
		Endpoints:       store,
		Overlays:        store,
		Ledger:          index,
		Registry:        a.registry,
		Writer:          store,
		CheckSubscriber: func(s *subscribers.Subscriber) error { return CheckSubscriber(a.cfg, a.taxonomy, s, a.now()) },
		Taxonomy:        a.taxonomy,
		SigningKey:      pub,
		Partner: api.Partners{
			Deliveries: a.view,
			Receipts:   ReceiptWriter{P: a.bus.Producer(bus.TopicReceipts)},
			Dead:       DeadLetters{Bus: a.bus, Now: a.now},
			Links:      links,
			Sync:       a.follower.Sync,
		},
		Pull:   a.pullServer(),
		Tokens: a.cfg.API.Tokens,
		Ready: func(ctx context.Context) error {
			// Ready for the API's traffic: a role of this process stopped
			// at start (a topic's retention) does not take the API out
			// of service; herald_role_up and the error log say it.
			select {
			case <-a.view.Ready():
			default:
				return errors.New("the view of kafka is still catching up")
			}
			return a.bus.Ping(ctx)
		},
		Metrics: a.metrics,
		Now:     a.now,
		Log:     a.log.With("role", RoleAPI),
	}
	ln := a.apiListener // bound by Run's caller (Options.APIListener)
	if ln == nil {
		if ln, err = net.Listen("tcp", a.cfg.API.Listen); err != nil {
			return nil, fmt.Errorf("api.listen: %w", err)
		}
	}
	// api.listen on port 0 takes a free port: links in email and APIAddr
	// name the one bound.
	a.cfg.API.Listen = ln.Addr().String()
	return a.serve("api.listen", ln, srv.Handler()), nil
}
