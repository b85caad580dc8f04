// Package config loads Herald's configuration (PRODUCT.md §9): built-in
// defaults, then an optional YAML file, then HERALD_… environment variables
// (HERALD_KAFKA_BROKERS, HERALD_SMTP_HOST, …). A misspelt key is an error
// naming it, and Validate names every bad field. It is the only package that
// touches viper.
package config

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/herald-alerts/herald/alerts"
	"github.com/spf13/viper"
)

// Config is Herald's whole configuration.
type Config struct {
	Kafka    Kafka    `mapstructure:"kafka"`
	Signing  Signing  `mapstructure:"signing"`
	SMTP     SMTP     `mapstructure:"smtp"`
	Webhooks Webhooks `mapstructure:"webhooks"`
	Delivery Delivery `mapstructure:"delivery"`
	API      API      `mapstructure:"api"`
	Metrics  Metrics  `mapstructure:"metrics"`
	Log      Log      `mapstructure:"log"`
}

// Metrics configures a separate Prometheus listener, for processes that do
// not run the api role.
type Metrics struct {
	Listen string `mapstructure:"listen"`
}

// Kafka says where the bus is.
type Kafka struct {
	Brokers           []string      `mapstructure:"brokers"`
	Embedded          Embedded      `mapstructure:"embedded"`
	TopicPrefix       string        `mapstructure:"topic_prefix"`
	ClientID          string        `mapstructure:"client_id"`
	CreateTopics      bool          `mapstructure:"create_topics"`
	Partitions        int           `mapstructure:"partitions"`
	ReplicationFactor int           `mapstructure:"replication_factor"`
	TLS               KafkaTLS      `mapstructure:"tls"`
	SASL              KafkaSASL     `mapstructure:"sasl"`
	Consumer          KafkaConsumer `mapstructure:"consumer"`
}

// KafkaConsumer tunes the consumer groups: how fast a dead worker's
// partitions move to another, and how much work one commit covers.
type KafkaConsumer struct {
	SessionTimeout    time.Duration `mapstructure:"session_timeout"`
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval"`
	RebalanceTimeout  time.Duration `mapstructure:"rebalance_timeout"`
	MaxWait           time.Duration `mapstructure:"max_wait"`
	CommitBatch       int           `mapstructure:"commit_batch"`
}

// Embedded configures the in-process development broker.
type Embedded struct {
	Listen  string `mapstructure:"listen"`
	DataDir string `mapstructure:"data_dir"`
}

// KafkaTLS configures TLS to the brokers.
type KafkaTLS struct {
	Enabled            bool   `mapstructure:"enabled"`
	CAFile             string `mapstructure:"ca_file"`
	CertFile           string `mapstructure:"cert_file"`
	KeyFile            string `mapstructure:"key_file"`
	ServerName         string `mapstructure:"server_name"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
}

// KafkaSASL configures SASL authentication to the brokers.
type KafkaSASL struct {
	Mechanism    string `mapstructure:"mechanism"` // "", PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
	Username     string `mapstructure:"username"`
	PasswordFile string `mapstructure:"password_file"`
}

// Signing locates the agency's OpenPGP signing key.
type Signing struct {
	KeyFile        string `mapstructure:"key_file"`
	PassphraseFile string `mapstructure:"passphrase_file"`
}

// SMTP configures the outgoing mail relay.
type SMTP struct {
	Host         string        `mapstructure:"host"`
	Port         int           `mapstructure:"port"`
	TLS          string        `mapstructure:"tls"` // starttls, implicit, none
	Username     string        `mapstructure:"username"`
	PasswordFile string        `mapstructure:"password_file"`
	From         string        `mapstructure:"from"`
	Pool         int           `mapstructure:"pool"`
	Timeout      time.Duration `mapstructure:"timeout"`
	CAFile       string        `mapstructure:"ca_file"`
}

// Webhooks configures webhook delivery.
type Webhooks struct {
	Timeout               time.Duration `mapstructure:"timeout"`
	AllowInsecureLoopback bool          `mapstructure:"allow_insecure_loopback"`
	AllowCIDRs            []string      `mapstructure:"allow_cidrs"`
	MaxResponseBytes      int64         `mapstructure:"max_response_bytes"`
	CAFile                string        `mapstructure:"ca_file"`
}

// Delivery configures the delivery workers.
type Delivery struct {
	RetrySchedule []time.Duration `mapstructure:"retry_schedule"`
	Concurrency   int             `mapstructure:"concurrency"`
	PerEndpoint   int             `mapstructure:"per_endpoint"`
	Breaker       Breaker         `mapstructure:"breaker"`
}

// Breaker configures the per-endpoint circuit breaker.
type Breaker struct {
	Failures int           `mapstructure:"failures"`
	Cooldown time.Duration `mapstructure:"cooldown"`
}

// API configures the HTTP API.
type API struct {
	Listen string  `mapstructure:"listen"`
	Tokens []Token `mapstructure:"tokens"`
}

// Token is one bearer token, stored as the hex SHA-256 of the token.
type Token struct {
	Name   string `mapstructure:"name"`
	Role   string `mapstructure:"role"` // analyst or admin
	SHA256 string `mapstructure:"sha256"`
}

// Log configures logging.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // text or json
}

// Roles of API tokens.
const (
	RoleAnalyst = "analyst"
	RoleAdmin   = "admin"
)

// HashToken returns the hex SHA-256 under which a bearer token is stored.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// defaults are the built-in settings; every key appears here so that
// HERALD_… environment variables bind to it.
var defaults = map[string]any{
	"kafka.brokers":                     []string{},
	"kafka.embedded.listen":             "127.0.0.1:9092",
	"kafka.embedded.data_dir":           "",
	"kafka.topic_prefix":                "herald.",
	"kafka.client_id":                   "herald",
	"kafka.create_topics":               true,
	"kafka.partitions":                  6,
	"kafka.replication_factor":          -1,
	"kafka.tls.enabled":                 false,
	"kafka.tls.ca_file":                 "",
	"kafka.tls.cert_file":               "",
	"kafka.tls.key_file":                "",
	"kafka.tls.server_name":             "",
	"kafka.tls.insecure_skip_verify":    false,
	"kafka.consumer.session_timeout":    "10s",
	"kafka.consumer.heartbeat_interval": "1s",
	"kafka.consumer.rebalance_timeout":  "10s",
	"kafka.consumer.max_wait":           "500ms",
	"kafka.consumer.commit_batch":       500,
	"kafka.sasl.mechanism":              "",
	"kafka.sasl.username":               "",
	"kafka.sasl.password_file":          "",
	"signing.key_file":                  "",
	"signing.passphrase_file":           "",
	"smtp.host":                         "",
	"smtp.port":                         25,
	"smtp.tls":                          "starttls",
	"smtp.username":                     "",
	"smtp.password_file":                "",
	"smtp.from":                         "",
	"smtp.pool":                         4,
	"smtp.timeout":                      "30s",
	"smtp.ca_file":                      "",
	"webhooks.timeout":                  "10s",
	"webhooks.allow_insecure_loopback":  false,
	"webhooks.allow_cidrs":              []string{},
	"webhooks.max_response_bytes":       65536,
	"webhooks.ca_file":                  "",
	"delivery.retry_schedule":           []string{"10s", "1m", "5m", "30m", "2h", "6h", "12h"},
	"delivery.concurrency":              64,
	"delivery.per_endpoint":             4,
	"delivery.breaker.failures":         5,
	"delivery.breaker.cooldown":         "30s",
	"api.listen":                        "127.0.0.1:8080",
	"api.tokens":                        []any{},
	"metrics.listen":                    "",
	"log.level":                         "info",
	"log.format":                        "text",
}

// Load reads the configuration: defaults, then file (if not ""), then
// HERALD_… environment variables. Unknown keys in the file are an error
// naming them. It does not validate: call Validate.
func Load(file string) (*Config, error) {
	v := viper.New()
	for k, val := range defaults {
		v.SetDefault(k, val)
	}
	v.SetEnvPrefix("HERALD")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if file != "" {
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("read config %s: %w", file, err)
		}
	}
	var c Config
	hook := mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)
	if err := v.UnmarshalExact(&c, viper.DecodeHook(hook)); err != nil {
		src := "defaults and environment"
		if file != "" {
			src = file
		}
		return nil, fmt.Errorf("config %s: %w", src, err)
	}
	// Environment variables for list keys arrive as one string.
	c.Kafka.Brokers = splitList(c.Kafka.Brokers)
	c.Webhooks.AllowCIDRs = splitList(c.Webhooks.AllowCIDRs)
	return &c, nil
}

func splitList(in []string) []string {
	out := []string{}
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// Validate checks every field and names each bad one.
func (c *Config) Validate() error {
	v := &alerts.ValidationError{What: "invalid configuration"}
	for i, b := range c.Kafka.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			v.Add(fmt.Sprintf("kafka.brokers[%d]", i), "%q is not host:port", b)
		}
	}
	if len(c.Kafka.Brokers) == 0 {
		if _, _, err := net.SplitHostPort(c.Kafka.Embedded.Listen); err != nil {
			v.Add("kafka.embedded.listen", "%q is not host:port", c.Kafka.Embedded.Listen)
		}
	}
	if c.Kafka.TopicPrefix != "" && strings.ContainsAny(c.Kafka.TopicPrefix, " /\\") {
		v.Add("kafka.topic_prefix", "%q is not a valid topic prefix", c.Kafka.TopicPrefix)
	}
	if c.Kafka.Consumer.SessionTimeout < time.Second {
		v.Add("kafka.consumer.session_timeout", "must be at least 1s")
	}
	if c.Kafka.Consumer.HeartbeatInterval <= 0 || c.Kafka.Consumer.HeartbeatInterval*3 > c.Kafka.Consumer.SessionTimeout {
		v.Add("kafka.consumer.heartbeat_interval", "must be positive and at most a third of session_timeout")
	}
	if c.Kafka.Consumer.RebalanceTimeout <= 0 {
		v.Add("kafka.consumer.rebalance_timeout", "must be positive")
	}
	if c.Kafka.Consumer.MaxWait <= 0 || c.Kafka.Consumer.MaxWait > 5*time.Second {
		v.Add("kafka.consumer.max_wait", "must be between 0 and 5s (shutdown waits for it)")
	}
	if c.Kafka.Consumer.CommitBatch < 1 {
		v.Add("kafka.consumer.commit_batch", "must be at least 1")
	}
	if c.Kafka.Partitions < 1 {
		v.Add("kafka.partitions", "must be at least 1")
	}
	switch c.Kafka.SASL.Mechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.Kafka.SASL.Mechanism != "" && c.Kafka.SASL.Username == "" {
			v.Add("kafka.sasl.username", "required with SASL")
		}
	default:
		v.Add("kafka.sasl.mechanism", "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not %q", c.Kafka.SASL.Mechanism)
	}
	checkFile(v, "kafka.tls.ca_file", c.Kafka.TLS.CAFile)
	checkFile(v, "kafka.tls.cert_file", c.Kafka.TLS.CertFile)
	checkFile(v, "kafka.tls.key_file", c.Kafka.TLS.KeyFile)
	checkFile(v, "kafka.sasl.password_file", c.Kafka.SASL.PasswordFile)
	checkFile(v, "signing.key_file", c.Signing.KeyFile)
	checkFile(v, "signing.passphrase_file", c.Signing.PassphraseFile)
	checkFile(v, "smtp.password_file", c.SMTP.PasswordFile)
	checkFile(v, "smtp.ca_file", c.SMTP.CAFile)
	checkFile(v, "webhooks.ca_file", c.Webhooks.CAFile)
	switch c.SMTP.TLS {
	case "starttls", "implicit", "none":
	default:
		v.Add("smtp.tls", "must be starttls, implicit or none, not %q", c.SMTP.TLS)
	}
	if c.SMTP.Port < 1 || c.SMTP.Port > 65535 {
		v.Add("smtp.port", "must be 1-65535")
	}
	if c.SMTP.Host != "" && c.SMTP.From == "" {
		v.Add("smtp.from", "required when smtp.host is set")
	}
	if c.SMTP.Pool < 1 {
		v.Add("smtp.pool", "must be at least 1")
	}
	if c.Webhooks.Timeout <= 0 {
		v.Add("webhooks.timeout", "must be positive")
	}
	for i, s := range c.Webhooks.AllowCIDRs {
		if _, err := netip.ParsePrefix(s); err != nil {
			v.Add(fmt.Sprintf("webhooks.allow_cidrs[%d]", i), "%q is not a CIDR", s)
		}
	}
	if len(c.Delivery.RetrySchedule) == 0 {
		v.Add("delivery.retry_schedule", "needs at least one wait")
	}
	for i, d := range c.Delivery.RetrySchedule {
		if d <= 0 {
			v.Add(fmt.Sprintf("delivery.retry_schedule[%d]", i), "must be positive")
		}
	}
	if c.Delivery.Concurrency < 1 {
		v.Add("delivery.concurrency", "must be at least 1")
	}
	if c.Delivery.PerEndpoint < 1 {
		v.Add("delivery.per_endpoint", "must be at least 1")
	}
	if _, _, err := net.SplitHostPort(c.API.Listen); err != nil {
		v.Add("api.listen", "%q is not host:port", c.API.Listen)
	}
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			v.Add("metrics.listen", "%q is not host:port", c.Metrics.Listen)
		}
	}
	for i, t := range c.API.Tokens {
		f := fmt.Sprintf("api.tokens[%d]", i)
		if t.Role != RoleAnalyst && t.Role != RoleAdmin {
			v.Add(f+".role", "must be analyst or admin, not %q", t.Role)
		}
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			v.Add(f+".sha256", "must be the hex SHA-256 of the token (herald token generate prints it)")
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.Add("log.level", "must be debug, info, warn or error")
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.Add("log.format", "must be text or json")
	}
	return v.Err()
}

func checkFile(v *alerts.ValidationError, field, path string) {
	if path == "" {
		return
	}
	if _, err := os.Stat(path); err != nil {
		v.Add(field, "%v", errors.Unwrap(err))
	}
}

// CertPool reads a PEM bundle of CA certificates; "" gives nil (the
// system roots).
func CertPool(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// ReadSecret returns the trimmed contents of file, or the environment
// variable env when file is "", or "" when neither is set.
func ReadSecret(file, env string) (string, error) {
	if file == "" {
		return os.Getenv(env), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
