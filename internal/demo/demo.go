package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/publish"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/sink"
	"github.com/segmentio/kafka-go"
)

// Defaults of Options.
const (
	DefaultOutDir  = "demo-output"
	DefaultTimeout = 40 * time.Second
)

// Agency identity of the throwaway signing key.
const (
	agencyName  = "Herald demo agency, throwaway key"
	agencyEmail = "alerts@agency.example"
)

// Options configure Run.
type Options struct {
	// OutDir receives what the partners got; DefaultOutDir if empty. It is
	// created, or replaced if an earlier demo made it; any other non-empty
	// directory is refused.
	OutDir string
	// Timeout bounds the wait for every delivery to reach a final state;
	// DefaultTimeout if zero.
	Timeout time.Duration
	// Log receives Herald's own logs; nil discards them.
	Log *slog.Logger
	// Serve, if set, keeps everything running as a sandbox after the
	// checks, until the context ends (`herald demo --serve`).
	Serve *ServeOptions

	// tamper, set by tests, changes what was received or recorded before
	// the checks run, to show that they catch it.
	tamper func(*checker)
}

// Alert is one alert the demo published.
type Alert struct {
	// Label is the alert's number in the outcome table: "1", "2", "3".
	Label string
	*alerts.Alert
}

// Row is one line of the outcome table: one alert at one target of one
// partner.
type Row struct {
	Alert    string // the alert's Label
	Partner  string
	Channel  string
	Target   string
	Decision string
	// How is how the content was protected: signed, encrypted, key-notice,
	// cancel-notice, or "-" when nothing went.
	How   string
	State string
	// Rule is the policy rule that decided (PRODUCT.md §3).
	Rule string
	// Verified is "yes" when what arrived passed every check, "no" when
	// it did not (or nothing arrived), "-" when nothing was due, and
	// "ledger" for a pull target whose alert the ledger shows available
	// (nothing is sent by pull; the checks do not read the collection).
	Verified string
	// Files are what arrived at the target, relative to the output
	// folder.
	Files []string
}

// Result is what Run found.
type Result struct {
	Alerts []Alert
	Rows   []Row
	// Failures lists every check that did not hold; empty means success.
	Failures []string
	// OutDir is the absolute path of the output folder.
	OutDir string
	// Hints are commands to try on the output folder.
	Hints []string
	// Brokers is where the embedded broker listened; SMTP and Webhooks
	// are the addresses of the partners' mail server and webhook
	// receiver.
	Brokers  []string
	SMTP     string
	Webhooks string
	Elapsed  time.Duration
}

// OK reports whether every check held.
func (r *Result) OK() bool { return len(r.Failures) == 0 }

func (r *Result) failf(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// Run runs the demo. It returns an error when the demo could not run at
// all (a port, a key, the output folder); a run whose checks failed
// returns a Result with Failures and a nil error.
func Run(ctx context.Context, opt Options) (*Result, error) {
	start := time.Now()
	if opt.OutDir == "" {
		opt.OutDir = DefaultOutDir
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out, err := prepareOutDir(opt.OutDir)
	if err != nil {
		return nil, err
	}
	res := &Result{OutDir: out}

	tmp, err := os.MkdirTemp("", "herald-demo-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	now := time.Now()
	agencyPriv, agencyPub, err := pgp.GenerateKey(agencyName, agencyEmail, pgp.AlgoEd25519, now)
	if err != nil {
		return nil, fmt.Errorf("generate agency key: %w", err)
	}
	signer, err := pgp.LoadSigner(agencyPriv, nil, now)
	if err != nil {
		return nil, fmt.Errorf("load agency key: %w", err)
	}
	keyFile := filepath.Join(tmp, "agency.key.asc")
	if err := os.WriteFile(keyFile, agencyPriv, 0o600); err != nil {
		return nil, fmt.Errorf("write agency key: %w", err)
	}
	pubKeyFile := filepath.Join(tmp, "publishing.key")
	pubKey, err := busauth.Generate()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(pubKeyFile, pubKey, 0o600); err != nil {
		return nil, fmt.Errorf("write publishing key: %w", err)
	}

	// The partners' servers on 127.0.0.1, reached as in production: SMTP
	// with STARTTLS required and webhooks over HTTPS (HTTP/1.1, so that
	// captures read as HTTP/1.1 text), verified against a throwaway CA in
	// smtp.ca_file and webhooks.ca_file.
	ca, err := sink.NewCA("Herald demo throwaway CA")
	if err != nil {
		return nil, err
	}
	caFile := filepath.Join(tmp, "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o644); err != nil {
		return nil, fmt.Errorf("write throwaway ca: %w", err)
	}
	ib := &inbox{log: log}
	mails, err := sink.StartSMTP(sink.SMTPOptions{TLS: ca.ServerTLS(), StartTLS: true, Data: ib.mail,
		ErrorLog: slog.NewLogLogger(log.With("component", "demo-smtp-sink").Handler(), slog.LevelDebug)})
	if err != nil {
		return nil, err
	}
	defer mails.Close()
	hooks, err := sink.StartReceiver(sink.ReceiverOptions{TLS: ca.ServerTLS(), Raw: true,
		ErrorLog: slog.NewLogLogger(log.With("component", "demo-webhook-receiver").Handler(), slog.LevelDebug)})
	if err != nil {
		return nil, err
	}
	defer hooks.Close()
	hooks.Script(ib.hook)

	res.SMTP, res.Webhooks = mails.Addr, hooks.URL("")
	partners, err := samplePartners(hooks, now)
	if err != nil {
		return nil, err
	}
	cfg, err := demoConfig(keyFile, pubKeyFile, caFile, mails.Addr)
	if err != nil {
		return nil, err
	}
	roles := []string{app.RoleFanout, app.RoleDeliver}
	var sandbox *Sandbox
	var apiLn net.Listener
	if opt.Serve != nil {
		// Bound now and handed to the api role, so that the console URL
		// printed names a port nothing else can take meanwhile.
		apiLn, err = listenAPI(opt.Serve.Listen)
		if err != nil {
			return nil, err
		}
		defer apiLn.Close() // app.Run closes it too; this covers a failure before
		listen := apiLn.Addr().String()
		tokens, err := sandboxTokens()
		if err != nil {
			return nil, err
		}
		if err := serveConfig(cfg, listen, tokens); err != nil {
			return nil, err
		}
		roles = app.AllRoles
		sandbox = &Sandbox{Console: consoleURL(listen), Tokens: tokens, PublishingKeyFile: pubKeyFile}
	}
	tax, err := cfg.Taxonomy.Build()
	if err != nil {
		return nil, err
	}
	for _, p := range partners {
		if err := app.CheckSubscriber(cfg, tax, p.sub, now); err != nil {
			return nil, fmt.Errorf("sample partner %s: %w", p.sub.ID, err)
		}
	}

	b, err := app.OpenBus(ctx, cfg, false, log)
	if err != nil {
		return nil, fmt.Errorf("start embedded broker: %w", err)
	}
	defer b.Close()
	res.Brokers = b.Brokers()
	if err := b.EnsureTopics(ctx, len(cfg.Delivery.RetrySchedule)); err != nil {
		return nil, fmt.Errorf("create topics: %w", err)
	}
	for _, p := range partners {
		v, err := json.Marshal(p.sub)
		if err != nil {
			return nil, fmt.Errorf("encode partner %s: %w", p.sub.ID, err)
		}
		if err := b.Producer(bus.TopicSubscribers).Write(ctx, kafka.Message{Key: []byte(p.sub.ID), Value: v}); err != nil {
			return nil, fmt.Errorf("load partner %s: %w", p.sub.ID, err)
		}
	}

	// Herald itself: fan-out and delivery on the shared bus.
	runCtx, stop := context.WithCancel(ctx)
	started := make(chan *app.App, 1)
	appDone := make(chan error, 1)
	go func() {
		appDone <- app.Run(runCtx, cfg, log, app.Options{Bus: b, Roles: roles, APIListener: apiLn,
			Explicit: true, Started: func(a *app.App) { started <- a }})
	}()
	stopApp := func() error {
		stop()
		return <-appDone
	}
	var herald *app.App
	select {
	case herald = <-started:
	case err := <-appDone:
		stop()
		return nil, fmt.Errorf("start herald: %w", err)
	case <-ctx.Done():
		stopApp()
		return nil, ctx.Err()
	}

	pub := sampleAlerts(now)
	for i, a := range pub {
		res.Alerts = append(res.Alerts, Alert{Label: strconv.Itoa(i + 1), Alert: a})
	}
	ids := make([]string, len(pub))
	for i, a := range pub {
		ids[i] = a.ID
	}
	led := ledger.FromBus(b)
	publisher := app.Publisher(cfg, tax, b, publish.KafkaIndex{R: b}, herald.Registry(), time.Now)
	deadline := time.Now().Add(opt.Timeout)
	waitCtx, cancelWait := context.WithDeadline(ctx, deadline)
	defer cancelWait()
	var got map[string]*ledger.Alert
	err = func() error {
		if err := publishAll(waitCtx, publisher, pub[0], pub[1]); err != nil {
			return err
		}
		// A cancel goes to whoever received the alert it cancels, which
		// the fan-out learns from the ledger: publish it only once the
		// first alert's decisions are there.
		if _, err := poll(waitCtx, led, ids[:1], func(m map[string]*ledger.Alert) bool {
			return m[ids[0]] != nil && !m[ids[0]].FannedOut.IsZero()
		}); err != nil {
			return fmt.Errorf("waiting for alert %s to be fanned out: %w", ids[0], err)
		}
		if err := publishAll(waitCtx, publisher, pub[2]); err != nil {
			return err
		}
		want := map[string]int{}
		for _, e := range expectations() {
			want[ids[e.alert]]++
		}
		got, err = poll(waitCtx, led, ids, func(m map[string]*ledger.Alert) bool {
			for _, id := range ids {
				a := m[id]
				// Done: none pending or retrying (available, for a pull
				// target, is final until the partner pulls).
				if a == nil || a.FannedOut.IsZero() || len(a.Entries()) < want[id] || !a.Done() {
					return false
				}
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("waiting for every delivery to reach a final state: %w", err)
		}
		return nil
	}()
	if err != nil {
		if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			stopApp()
			return nil, err
		}
		// Out of time: report what happened so far.
		res.failf("%v (after %s)", err, opt.Timeout)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		got, _ = led.Lookup(rctx, ids)
		cancel()
	}
	if sandbox == nil {
		if err := stopApp(); err != nil {
			res.failf("herald stopped with an error: %v", err)
		}
	}

	c := &checker{res: res, alerts: pub, partners: partners, agencyPub: agencyPub, agencyFP: signer.Fingerprint(),
		ledger: got, mails: mails.Messages(), hooks: hooks.Requests(), now: time.Now()}
	if opt.tamper != nil {
		opt.tamper(c)
	}
	c.check()
	c.sandbox = sandbox != nil
	if err := c.write(agencyPub, opt.OutDir); err != nil {
		if sandbox != nil {
			stopApp()
		}
		return nil, fmt.Errorf("write %s: %w", out, err)
	}
	res.Elapsed = time.Since(start)
	if sandbox == nil {
		return res, nil
	}
	if !res.OK() {
		// A sandbox whose checks failed would teach the wrong thing.
		if err := stopApp(); err != nil {
			res.failf("herald stopped with an error: %v", err)
		}
		return res, nil
	}
	return res, serve(ctx, opt.Serve, res, sandbox, ib, partners, appDone, stopApp)
}

// serve opens the sandbox's inbox, says where everything is, and runs
// until ctx ends or Herald stops by itself (an error).
func serve(ctx context.Context, opt *ServeOptions, res *Result, sb *Sandbox, ib *inbox, partners []*partner,
	appDone chan error, stopApp func() error) error {
	if err := ib.start(filepath.Join(res.OutDir, "sandbox"), partners); err != nil {
		stopApp()
		return err
	}
	sb.Brokers = res.Brokers
	sb.EmailDir, sb.WebhookDir = ib.mailDir, ib.hookDir
	sb.AgencyKey = filepath.Join(res.OutDir, "agency.asc")
	sb.PartnersFile = filepath.Join(res.OutDir, "partners.json")
	sb.KeysDir = filepath.Join(res.OutDir, "keys")
	sb.Env = fmt.Sprintf("export HERALD_KAFKA_BROKERS=%s HERALD_PUBLISHING_KEY_FILE=%s",
		strings.Join(res.Brokers, ","), shellQuote(sb.PublishingKeyFile))
	if opt.Ready != nil {
		opt.Ready(res, sb)
	}
	select {
	case <-ctx.Done():
		return stopApp()
	case err := <-appDone:
		if err == nil {
			err = errors.New("herald stopped")
		}
		return fmt.Errorf("sandbox: %w", err)
	}
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:,=+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// demoConfig is Herald's configuration for the demo: the defaults (and any
// HERALD_… environment variables) with everything local and fast. Mail
// goes with STARTTLS required and webhooks over HTTPS, both verified
// against the throwaway CA; loopback is let through the webhooks' SSRF
// guard by webhooks.allow_cidrs, as an operator would for a partner on a
// private network, and plain HTTP stays forbidden.
func demoConfig(keyFile, publishingKeyFile, caFile, smtpAddr string) (*config.Config, error) {
	cfg, err := config.Load("")
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(smtpAddr)
	if err != nil {
		return nil, fmt.Errorf("smtp sink address %s: %w", smtpAddr, err)
	}
	cfg.Kafka.Brokers = nil
	cfg.Kafka.Embedded = config.Embedded{Listen: "127.0.0.1:0"}
	cfg.Kafka.CreateTopics = true
	cfg.Kafka.Partitions = 1
	cfg.Kafka.TLS = config.KafkaTLS{}
	cfg.Kafka.SASL = config.KafkaSASL{}
	// The embedded broker accepts short group timeouts: rebalances and
	// shutdown take milliseconds instead of seconds.
	cc := &cfg.Kafka.Consumer
	cc.MaxWait, cc.HeartbeatInterval, cc.SessionTimeout = 100*time.Millisecond, 100*time.Millisecond, time.Second
	cc.RebalanceTimeout, cc.JoinGroupBackoff, cc.DrainTimeout = time.Second, 100*time.Millisecond, 5*time.Second
	cfg.Signing = config.Signing{KeyFile: keyFile}
	cfg.Publishing.KeyFile = publishingKeyFile
	cfg.SMTP.Host = host
	cfg.SMTP.Port, _ = strconv.Atoi(port)
	cfg.SMTP.TLS = "starttls"
	cfg.SMTP.CAFile = caFile
	cfg.SMTP.Username, cfg.SMTP.PasswordFile = "", ""
	cfg.SMTP.From = "Agency MSHT Alerts <" + agencyEmail + ">"
	cfg.SMTP.Timeout = 10 * time.Second
	cfg.Webhooks.Timeout = 5 * time.Second
	cfg.Webhooks.AllowInsecureLoopback = false
	cfg.Webhooks.AllowCIDRs = []string{"127.0.0.0/8"}
	cfg.Webhooks.CAFile = caFile
	cfg.Delivery.RetrySchedule = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	cfg.Delivery.Breaker.Cooldown = 2 * time.Second
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("demo configuration: %w", err)
	}
	return cfg, nil
}

// The demo's two analysts: the first publishes, the second approves what
// needs a second analyst (PRODUCT.md §10).
const (
	Analyst       = "demo:analyst"
	SecondAnalyst = "demo:second-analyst"
)

// publishAll publishes alerts as the API would, as Analyst; an alert that
// waits for a second analyst is approved by SecondAnalyst, bound to the
// digest of what was published.
func publishAll(ctx context.Context, p *publish.Publisher, as ...*alerts.Alert) error {
	for _, a := range as {
		res, err := p.Publish(ctx, a, Analyst)
		if err != nil {
			return fmt.Errorf("sample alert %s: %w", a.ID, err)
		}
		if res.State == record.StatePending {
			if _, err := p.Approve(ctx, a.ID, SecondAnalyst, res.Digest); err != nil {
				return fmt.Errorf("approve sample alert %s: %w", a.ID, err)
			}
			at := time.Now()
			a.ApprovedBy, a.ApprovedAt = SecondAnalyst, &at
		}
	}
	return nil
}

// poll reads the ledger of ids until done holds or ctx ends.
func poll(ctx context.Context, led *ledger.Source, ids []string, done func(map[string]*ledger.Alert) bool) (map[string]*ledger.Alert, error) {
	t := time.NewTicker(150 * time.Millisecond)
	defer t.Stop()
	for {
		m, err := led.Lookup(ctx, ids)
		if err == nil && done(m) {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return m, context.Cause(ctx)
		case <-t.C:
		}
	}
}
