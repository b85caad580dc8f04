package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/herald-alerts/herald/alerts"
)

var topicPrefixRE = regexp.MustCompile(`^[A-Za-z0-9._-]{0,200}$`)

// validator collects problems, each named by its configuration key.
type validator struct{ *alerts.ValidationError }

func (v validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.Add(key, "must be positive, not %s", d)
	}
}

func (v validator) atLeast(key string, n, least int64) {
	if n < least {
		v.Add(key, "must be at least %d, not %d", least, n)
	}
}

func (v validator) hostPort(key, addr string) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		v.Add(key, "%q is not host:port", addr)
	}
}

func (v validator) file(key, path string) {
	if path == "" {
		return
	}
	if _, err := os.Stat(path); err != nil {
		v.Add(key, "%v", errors.Unwrap(err))
	}
}

// Validate checks every key and names each bad one. It is the only
// validation of the configuration: the packages that take a section trust
// it.
func (c *Config) Validate() error {
	v := validator{&alerts.ValidationError{What: "invalid configuration"}}
	c.validateKafka(v)
	v.file("signing.key_file", c.Signing.KeyFile)
	v.file("signing.passphrase_file", c.Signing.PassphraseFile)
	// With the embedded broker and no file, one is made on first start.
	if len(c.Kafka.Brokers) > 0 && c.Publishing.KeyFile == "" {
		v.Add("publishing.key_file", "is required with kafka.brokers: every role and the CLI authenticate what they write to Kafka with it (make one with `herald keys generate --publishing --out FILE`)")
	}
	v.file("publishing.key_file", c.Publishing.KeyFile)
	c.validateSMTP(v)
	for i, d := range c.Email.KeyExpiryWarning {
		v.positive(fmt.Sprintf("email.key_expiry_warning[%d]", i), d)
	}
	c.validateWebhooks(v)
	c.validateDelivery(v)
	for i, s := range c.Release.SecondAnalyst {
		if !alerts.NormalizeTLP(s).Valid() && !alerts.Marking(s).Valid() {
			v.Add(fmt.Sprintf("release.second_analyst[%d]", i), "%q is neither a TLP label (CLEAR, GREEN, AMBER, AMBER+STRICT, RED) nor a marking (OFFICIAL, OFFICIAL-SENSITIVE)", s)
		}
	}
	v.positive("release.pending_ttl", c.Release.PendingTTL)
	if _, err := c.Taxonomy.Build(); err != nil {
		bad, ok := errors.AsType[*alerts.ValidationError](err)
		if !ok {
			v.Add("taxonomy", "%v", err)
		} else {
			v.Fields = append(v.Fields, bad.Fields...)
		}
	}
	c.validateAPI(v)
	if c.Metrics.Listen != "" {
		v.hostPort("metrics.listen", c.Metrics.Listen)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		v.Add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		v.Add("log.format", "must be text or json, not %q", c.Log.Format)
	}
	return v.Err()
}

func (c *Config) validateKafka(v validator) {
	k := c.Kafka
	for i, b := range k.Brokers {
		v.hostPort(fmt.Sprintf("kafka.brokers[%d]", i), b)
	}
	if len(k.Brokers) == 0 {
		v.hostPort("kafka.embedded.listen", k.Embedded.Listen)
		if k.TLS.Enabled {
			v.Add("kafka.tls.enabled", "the embedded broker (no kafka.brokers) does not speak TLS")
		}
		if k.SASL.Mechanism != "" {
			v.Add("kafka.sasl.mechanism", "the embedded broker (no kafka.brokers) takes no authentication")
		}
	}
	if !topicPrefixRE.MatchString(k.TopicPrefix) {
		v.Add("kafka.topic_prefix", "%q may hold only letters, digits, '.', '_' and '-'", k.TopicPrefix)
	}
	if k.ClientID == "" {
		v.Add("kafka.client_id", "is required")
	}
	v.atLeast("kafka.partitions", int64(k.Partitions), 1)
	if k.ReplicationFactor < -1 || k.ReplicationFactor == 0 {
		v.Add("kafka.replication_factor", "must be -1 (the broker's default) or at least 1, not %d", k.ReplicationFactor)
	}
	r := k.Retention
	for _, d := range []struct {
		key  string
		v    time.Duration
		want time.Duration
		why  string
	}{
		{"alerts", r.Alerts, 400 * Day, "updates, cancels and status answer from it"},
		{"receipts", r.Receipts, 400 * Day, "status and rule 7 answer from it"},
		{"audit", r.Audit, 400 * Day, "the audit trail answers from it"},
		{"pending", r.Pending, c.Release.PendingTTL, "pending alerts wait there for approval"},
		{"dead", r.Dead, Day, "dead letters wait there for a replay"},
		{"quarantine", r.Quarantine, 400 * Day, "the alert list and status say from it which alerts the fan-out refused"},
		{"deliveries", r.Deliveries, Day, "jobs wait there for a worker"},
		{"retry", r.Retry, 2 * slices.Max(append([]time.Duration{12 * time.Hour}, c.Delivery.RetrySchedule...)), "jobs wait there for their retry time"},
	} {
		if d.v < d.want {
			v.Add("kafka.retention."+d.key, "%s is shorter than %s: %s", d.v, d.want, d.why)
		}
	}
	// What answers from one topic about another's records needs them as
	// long as its own (said once a duration passes its own minimum).
	if r.Alerts >= 400*Day && r.Alerts < r.Receipts {
		v.Add("kafka.retention.alerts", "%s is shorter than kafka.retention.receipts (%s): a receipt would outlive its alert, and a status page, a pull collection or an update built afresh from Kafka would find the receipt without the alert", r.Alerts, r.Receipts)
	}
	if r.Alerts >= 400*Day && r.Quarantine >= 400*Day && r.Quarantine < r.Alerts {
		v.Add("kafka.retention.quarantine", "%s is shorter than kafka.retention.alerts (%s): an alert the fan-out refused would outlive its quarantine record, and the alert list and status would call it published", r.Quarantine, r.Alerts)
	}
	if r.Receipts >= 400*Day && r.Dead > r.Receipts {
		v.Add("kafka.retention.dead", "%s is longer than kafka.retention.receipts (%s): a dead letter replayed after its receipts are gone could not be checked against what was delivered or cancelled since", r.Dead, r.Receipts)
	}
	if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
		v.Add("kafka.tls.cert_file", "cert_file and key_file go together")
	}
	if !k.TLS.Enabled && (k.TLS.CAFile != "" || k.TLS.CertFile != "" || k.TLS.InsecureSkipVerify) {
		v.Add("kafka.tls.enabled", "TLS files or options are set but TLS is not enabled")
	}
	v.file("kafka.tls.ca_file", k.TLS.CAFile)
	v.file("kafka.tls.cert_file", k.TLS.CertFile)
	v.file("kafka.tls.key_file", k.TLS.KeyFile)
	switch k.SASL.Mechanism {
	case "":
		if k.SASL.Username != "" || k.SASL.PasswordFile != "" {
			v.Add("kafka.sasl.mechanism", "credentials are set but no mechanism")
		}
	case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
		if k.SASL.Username == "" {
			v.Add("kafka.sasl.username", "required with mechanism %s", k.SASL.Mechanism)
		}
		if k.SASL.PasswordFile == "" && os.Getenv("HERALD_KAFKA_SASL_PASSWORD") == "" {
			v.Add("kafka.sasl.password_file", "required with mechanism %s (or HERALD_KAFKA_SASL_PASSWORD)", k.SASL.Mechanism)
		}
	default:
		v.Add("kafka.sasl.mechanism", "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not %q", k.SASL.Mechanism)
	}
	v.file("kafka.sasl.password_file", k.SASL.PasswordFile)
	cc := k.Consumer
	if cc.SessionTimeout < time.Second {
		v.Add("kafka.consumer.session_timeout", "must be at least 1s, not %s", cc.SessionTimeout)
	}
	if cc.HeartbeatInterval <= 0 || cc.HeartbeatInterval*3 > cc.SessionTimeout {
		v.Add("kafka.consumer.heartbeat_interval", "must be positive and at most a third of session_timeout, not %s", cc.HeartbeatInterval)
	}
	v.positive("kafka.consumer.rebalance_timeout", cc.RebalanceTimeout)
	v.positive("kafka.consumer.join_group_backoff", cc.JoinGroupBackoff)
	if cc.MaxWait <= 0 || cc.MaxWait > 5*time.Second {
		v.Add("kafka.consumer.max_wait", "must be between 0 and 5s (shutdown waits for it), not %s", cc.MaxWait)
	}
	v.atLeast("kafka.consumer.commit_batch", int64(cc.CommitBatch), 1)
	if cc.Linger < 0 || cc.Linger > time.Second {
		v.Add("kafka.consumer.linger", "must be between 0 and 1s, not %s", cc.Linger)
	}
	v.positive("kafka.consumer.retry_backoff_min", cc.RetryBackoffMin)
	if cc.RetryBackoffMax < cc.RetryBackoffMin {
		v.Add("kafka.consumer.retry_backoff_max", "must not be shorter than retry_backoff_min")
	}
	v.positive("kafka.consumer.drain_timeout", cc.DrainTimeout)
}

func (c *Config) validateSMTP(v validator) {
	s := c.SMTP
	switch s.TLS {
	case SMTPStartTLS, SMTPImplicit, SMTPNone:
	default:
		v.Add("smtp.tls", "must be starttls, implicit or none, not %q", s.TLS)
	}
	if s.Port < 1 || s.Port > 65535 {
		v.Add("smtp.port", "must be 1-65535, not %d", s.Port)
	}
	if s.Host != "" && s.From == "" {
		v.Add("smtp.from", "required when smtp.host is set")
	}
	if s.Host != "" && s.TLS == SMTPNone && s.Username != "" && !loopbackHost(s.Host) {
		v.Add("smtp.tls", "none with AUTH (smtp.username) would send the password in the clear: allowed only to a relay on loopback, not %q", s.Host)
	}
	v.atLeast("smtp.pool", int64(s.Pool), 1)
	v.positive("smtp.timeout", s.Timeout)
	v.file("smtp.password_file", s.PasswordFile)
	v.file("smtp.ca_file", s.CAFile)
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

func (c *Config) validateWebhooks(v validator) {
	w := c.Webhooks
	v.positive("webhooks.timeout", w.Timeout)
	for i, s := range w.AllowCIDRs {
		if _, err := netip.ParsePrefix(s); err != nil {
			v.Add(fmt.Sprintf("webhooks.allow_cidrs[%d]", i), "%q is not a CIDR", s)
		}
	}
	v.atLeast("webhooks.max_response_bytes", w.MaxResponseBytes, 1)
	v.file("webhooks.ca_file", w.CAFile)
	if w.ClientCertDir != "" {
		if st, err := os.Stat(w.ClientCertDir); err != nil || !st.IsDir() {
			v.Add("webhooks.client_cert_dir", "%q is not a directory", w.ClientCertDir)
		}
	}
}

func (c *Config) validateDelivery(v validator) {
	d := c.Delivery
	if len(d.RetrySchedule) == 0 {
		v.Add("delivery.retry_schedule", "needs at least one wait")
	}
	for i, w := range d.RetrySchedule {
		v.positive(fmt.Sprintf("delivery.retry_schedule[%d]", i), w)
	}
	v.atLeast("delivery.concurrency", int64(d.Concurrency), 1)
	v.atLeast("delivery.per_endpoint", int64(d.PerEndpoint), 1)
	if d.Jitter < 0 || d.Jitter >= 1 {
		v.Add("delivery.jitter", "must be at least 0 and below 1, not %v", d.Jitter)
	}
	v.atLeast("delivery.breaker.failures", int64(d.Breaker.Failures), 1)
	v.positive("delivery.breaker.cooldown", d.Breaker.Cooldown)
}

func (c *Config) validateAPI(v validator) {
	v.hostPort("api.listen", c.API.Listen)
	if u := c.API.PublicURL; u != "" {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" || p.User != nil || p.RawQuery != "" || p.Fragment != "" {
			v.Add("api.public_url", "%q is not an absolute http(s) URL without credentials, query or fragment", u)
		}
	}
	names := map[string]bool{}
	for i, t := range c.API.Tokens {
		f := fmt.Sprintf("api.tokens[%d]", i)
		if t.Name == "" {
			v.Add(f+".name", "is required: it is who the token acts as")
		} else if names[t.Name] {
			v.Add(f+".name", "%q is used by another token", t.Name)
		}
		names[t.Name] = true
		switch t.Role {
		case RoleAnalyst, RoleAdmin:
			if t.Subscriber != "" {
				v.Add(f+".subscriber", "only partner tokens are bound to a subscriber")
			}
		case RolePartner:
			if t.Subscriber == "" {
				v.Add(f+".subscriber", "a partner token must name the subscriber it acts for")
			}
		default:
			v.Add(f+".role", "must be analyst, admin or partner, not %q", t.Role)
		}
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			v.Add(f+".sha256", "must be the hex SHA-256 of the token (herald token generate prints it)")
		}
	}
}
