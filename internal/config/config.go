// Package config loads Herald's configuration (PRODUCT.md §9): the built-in
// defaults of Default, then an optional YAML file, then HERALD_… environment
// variables (HERALD_KAFKA_BROKERS, HERALD_SMTP_HOST, …). A misspelt key is an
// error naming it, and Validate names every bad field. It is the only package
// that touches viper, and Default is the only place a default is written:
// the packages that use a section take it from here.
package config

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/herald-alerts/herald/internal/taxonomy"
)

// Config is Herald's whole configuration.
type Config struct {
	Kafka      Kafka      `mapstructure:"kafka"`
	Signing    Signing    `mapstructure:"signing"`
	Publishing Publishing `mapstructure:"publishing"`
	SMTP       SMTP       `mapstructure:"smtp"`
	Email      Email      `mapstructure:"email"`
	Webhooks   Webhooks   `mapstructure:"webhooks"`
	Delivery   Delivery   `mapstructure:"delivery"`
	Release    Release    `mapstructure:"release"`
	Taxonomy   Taxonomy   `mapstructure:"taxonomy"`
	API        API        `mapstructure:"api"`
	View       View       `mapstructure:"view"`
	Metrics    Metrics    `mapstructure:"metrics"`
	Log        Log        `mapstructure:"log"`
}

// Kafka says where the bus is and how Herald uses it.
type Kafka struct {
	// Brokers are the bootstrap brokers (host:port) of a real cluster.
	// Empty: serve starts the embedded development broker.
	Brokers  []string `mapstructure:"brokers"`
	Embedded Embedded `mapstructure:"embedded"`
	// TopicPrefix starts every topic name.
	TopicPrefix string `mapstructure:"topic_prefix"`
	ClientID    string `mapstructure:"client_id"`
	// CreateTopics creates missing topics at start; when off they are
	// only checked.
	CreateTopics bool `mapstructure:"create_topics"`
	// Partitions of the topics Herald creates.
	Partitions int `mapstructure:"partitions"`
	// ReplicationFactor of the topics Herald creates; -1 takes the
	// broker's default (1 on the embedded broker).
	ReplicationFactor int            `mapstructure:"replication_factor"`
	Retention         KafkaRetention `mapstructure:"retention"`
	TLS               KafkaTLS       `mapstructure:"tls"`
	SASL              KafkaSASL      `mapstructure:"sasl"`
	Consumer          KafkaConsumer  `mapstructure:"consumer"`
}

// KafkaRetention is how long each topic keeps its records (retention.ms),
// set when Herald creates a topic and checked against existing topics at
// start (PRODUCT.md §6). Compacted topics (subscribers) keep their latest
// records for ever and have no key here.
type KafkaRetention struct {
	Alerts     time.Duration `mapstructure:"alerts"`
	Receipts   time.Duration `mapstructure:"receipts"`
	Audit      time.Duration `mapstructure:"audit"`
	Pending    time.Duration `mapstructure:"pending"`
	Dead       time.Duration `mapstructure:"dead"`
	Quarantine time.Duration `mapstructure:"quarantine"`
	Deliveries time.Duration `mapstructure:"deliveries"`
	// Retry applies to every retry topic (retry.0 … retry.N).
	Retry time.Duration `mapstructure:"retry"`
	// AcceptShorter lets roles start although an existing topic keeps
	// records for less time than configured (logged as a warning). The
	// records older than the topic's retention are then gone, and status,
	// updates, cancels and replays of older alerts fail.
	AcceptShorter bool `mapstructure:"accept_shorter"`
}

// KafkaConsumer tunes the consumer groups: how fast a dead worker's
// partitions move to another, and how much work one commit covers.
type KafkaConsumer struct {
	SessionTimeout    time.Duration `mapstructure:"session_timeout"`
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval"`
	RebalanceTimeout  time.Duration `mapstructure:"rebalance_timeout"`
	JoinGroupBackoff  time.Duration `mapstructure:"join_group_backoff"`
	// MaxWait bounds how long a fetch waits at the broker when there is
	// nothing to read; shutdown waits for it.
	MaxWait time.Duration `mapstructure:"max_wait"`
	// CommitBatch is the most messages handed to a worker at once and
	// committed together; for the deliveries topic, the most jobs (a
	// record may pack many: the record that reaches it is the last).
	CommitBatch int `mapstructure:"commit_batch"`
	// Linger is how long a batch waits for more messages once it has one,
	// only while more are known to be waiting.
	Linger time.Duration `mapstructure:"linger"`
	// RetryBackoffMin and RetryBackoffMax bound the wait before a failed
	// batch is fetched again.
	RetryBackoffMin time.Duration `mapstructure:"retry_backoff_min"`
	RetryBackoffMax time.Duration `mapstructure:"retry_backoff_max"`
	// DrainTimeout is how long in-flight work may go on after shutdown
	// begins.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
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

// SASL mechanisms of KafkaSASL.Mechanism.
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

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

// Publishing locates the key that authenticates the records Herald writes
// to Kafka (PRODUCT.md §3 rule 1). Empty: with the embedded broker a key
// is made on first start (beside data_dir, or in memory); with a real
// cluster it is required.
type Publishing struct {
	KeyFile string `mapstructure:"key_file"`
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

// SMTP TLS modes.
const (
	SMTPStartTLS = "starttls"
	SMTPImplicit = "implicit"
	SMTPNone     = "none"
)

// Email configures what partners' email says.
type Email struct {
	// IssuerName names the agency in partner-facing text; empty takes the
	// name on the signing key.
	IssuerName string `mapstructure:"issuer_name"`
	// KeyExpiryWarning lists how long before a partner's key expires it
	// is warned, once per threshold.
	KeyExpiryWarning []time.Duration `mapstructure:"key_expiry_warning"`
}

// Webhooks configures webhook delivery.
type Webhooks struct {
	Timeout               time.Duration `mapstructure:"timeout"`
	AllowInsecureLoopback bool          `mapstructure:"allow_insecure_loopback"`
	AllowCIDRs            []string      `mapstructure:"allow_cidrs"`
	MaxResponseBytes      int64         `mapstructure:"max_response_bytes"`
	CAFile                string        `mapstructure:"ca_file"`
	// ClientCertDir is the only directory webhooks[].client_cert and
	// client_key may name files in; empty refuses client certificates.
	ClientCertDir string `mapstructure:"client_cert_dir"`
}

// Delivery configures the delivery workers.
type Delivery struct {
	RetrySchedule []time.Duration `mapstructure:"retry_schedule"`
	Concurrency   int             `mapstructure:"concurrency"`
	PerEndpoint   int             `mapstructure:"per_endpoint"`
	// Jitter spreads each retry wait by ± this fraction.
	Jitter  float64 `mapstructure:"jitter"`
	Breaker Breaker `mapstructure:"breaker"`
}

// Breaker configures the per-endpoint circuit breaker.
type Breaker struct {
	Failures int           `mapstructure:"failures"`
	Cooldown time.Duration `mapstructure:"cooldown"`
}

// Taxonomy is the sectors and regions alerts and partners are addressed by
// (PRODUCT.md §1, §9). Each list, when not empty, replaces its built-in
// default whole (taxonomy.DefaultSectors, taxonomy.DefaultRegions); Build
// makes the taxonomy of it. An environment variable gives each as a JSON
// array of objects (objectsFromString).
type Taxonomy struct {
	// Sectors: empty is the built-in sectors.
	Sectors []taxonomy.Sector `mapstructure:"sectors"`
	// Regions: empty is the built-in ITL1 regions and UK. UK
	// (taxonomy.AllRegions) is a region whether or not a list names it.
	Regions []taxonomy.Region `mapstructure:"regions"`
}

// Release configures release by a second analyst (PRODUCT.md §10).
type Release struct {
	// SecondAnalyst lists the TLP labels and markings whose alerts wait
	// for a second analyst's approval; empty turns release off.
	SecondAnalyst []string `mapstructure:"second_analyst"`
	// PendingTTL is how long an alert waits for approval before it
	// expires.
	PendingTTL time.Duration `mapstructure:"pending_ttl"`
}

// API configures the HTTP API.
type API struct {
	Listen string `mapstructure:"listen"`
	// PublicURL is the address partners and analysts reach the API at,
	// for links in email (acknowledgement pages); empty derives it from
	// Listen.
	PublicURL string  `mapstructure:"public_url"`
	Tokens    []Token `mapstructure:"tokens"`
}

// Token is one bearer token, stored as the hex SHA-256 of the token.
type Token struct {
	Name string `mapstructure:"name"`
	Role string `mapstructure:"role"` // analyst, admin or partner
	// Subscriber binds a partner token to one subscriber id.
	Subscriber string `mapstructure:"subscriber"`
	SHA256     string `mapstructure:"sha256"`
}

// Roles of API tokens.
const (
	RoleAnalyst = "analyst"
	RoleAdmin   = "admin"
	RolePartner = "partner"
)

// View configures the materialised view the api and fanout roles keep of
// Kafka (alerts, receipts, release, audit), rebuilt from Kafka when lost.
type View struct {
	// Dir holds the view's files; empty: <kafka.embedded.data_dir>/view
	// when the embedded broker persists, otherwise a temporary directory
	// removed at exit.
	Dir string `mapstructure:"dir"`
}

// Metrics configures a separate Prometheus listener, for processes that do
// not run the api role.
type Metrics struct {
	Listen string `mapstructure:"listen"`
}

// Log configures logging.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // text or json
}

// Day is 24 hours; durations in the configuration may be written in days
// ("400d").
const Day = 24 * time.Hour

// Default returns Herald's built-in configuration: the one place where a
// default is written. config.example.yaml documents the same values (a
// test keeps them in step).
func Default() Config {
	return Config{
		Kafka: Kafka{
			Brokers:           []string{},
			Embedded:          Embedded{Listen: "127.0.0.1:9092"},
			TopicPrefix:       "herald.",
			ClientID:          "herald",
			CreateTopics:      true,
			Partitions:        6,
			ReplicationFactor: -1,
			Retention: KafkaRetention{
				Alerts: 400 * Day, Receipts: 400 * Day, Audit: 400 * Day, Pending: 400 * Day,
				Dead: 400 * Day, Quarantine: 400 * Day, Deliveries: 7 * Day, Retry: 7 * Day,
			},
			Consumer: KafkaConsumer{
				SessionTimeout:    10 * time.Second,
				HeartbeatInterval: time.Second,
				RebalanceTimeout:  10 * time.Second,
				JoinGroupBackoff:  time.Second,
				MaxWait:           500 * time.Millisecond,
				CommitBatch:       500,
				Linger:            5 * time.Millisecond,
				RetryBackoffMin:   200 * time.Millisecond,
				RetryBackoffMax:   30 * time.Second,
				DrainTimeout:      30 * time.Second,
			},
		},
		SMTP: SMTP{Port: 25, TLS: SMTPStartTLS, Pool: 4, Timeout: 30 * time.Second},
		Email: Email{
			KeyExpiryWarning: []time.Duration{30 * Day, 7 * Day},
		},
		Webhooks: Webhooks{Timeout: 10 * time.Second, AllowCIDRs: []string{}, MaxResponseBytes: 64 << 10},
		Delivery: Delivery{
			RetrySchedule: []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute,
				30 * time.Minute, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour},
			Concurrency: 64,
			PerEndpoint: 4,
			Jitter:      0.2,
			Breaker:     Breaker{Failures: 5, Cooldown: 30 * time.Second},
		},
		Release: Release{
			SecondAnalyst: []string{"AMBER", "AMBER+STRICT", "RED", "OFFICIAL-SENSITIVE"},
			PendingTTL:    24 * time.Hour,
		},
		Taxonomy: Taxonomy{Sectors: []taxonomy.Sector{}, Regions: []taxonomy.Region{}},
		API:      API{Listen: "127.0.0.1:8080", Tokens: []Token{}},
		Log:      Log{Level: "info", Format: "text"},
	}
}

// Keys returns every leaf key of the configuration with its default, as
// viper names it ("kafka.consumer.max_wait").
func Keys() map[string]any {
	out := map[string]any{}
	leaves(reflect.ValueOf(Default()), "", out)
	return out
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	durationsType = reflect.TypeFor[[]time.Duration]()
)

func leaves(v reflect.Value, prefix string, out map[string]any) {
	t := v.Type()
	for i := range t.NumField() {
		key := prefix + t.Field(i).Tag.Get("mapstructure")
		f := v.Field(i)
		if f.Kind() == reflect.Struct && f.Type() != durationType {
			leaves(f, key+".", out)
			continue
		}
		out[key] = f.Interface()
	}
}

// Load reads the configuration: Default, then file (if not ""), then
// HERALD_… environment variables. Unknown keys in the file are an error
// naming them. It does not validate: call Validate.
func Load(file string) (*Config, error) {
	v := viper.New()
	for k, val := range Keys() {
		v.SetDefault(k, val)
	}
	v.SetEnvPrefix("HERALD")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	src := "defaults and environment"
	if file != "" {
		src = file
		v.SetConfigFile(file)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("read config %s: %w", file, err)
		}
	}
	var c Config
	hook := mapstructure.ComposeDecodeHookFunc(
		objectsFromString,
		stringToDurations,
		stringToDuration,
		mapstructure.StringToSliceHookFunc(","),
	)
	if err := v.UnmarshalExact(&c, viper.DecodeHook(hook)); err != nil {
		return nil, fmt.Errorf("config %s: %w", src, err)
	}
	// Environment variables for list keys arrive as one string.
	c.Kafka.Brokers = splitList(c.Kafka.Brokers)
	c.Webhooks.AllowCIDRs = splitList(c.Webhooks.AllowCIDRs)
	c.Release.SecondAnalyst = splitList(c.Release.SecondAnalyst)
	// An empty list in the file ("sectors:") decodes as nil.
	if c.Taxonomy.Sectors == nil {
		c.Taxonomy.Sectors = []taxonomy.Sector{}
	}
	if c.Taxonomy.Regions == nil {
		c.Taxonomy.Regions = []taxonomy.Region{}
	}
	return &c, nil
}

// objectsFromString decodes a list of objects (api.tokens,
// taxonomy.sectors, taxonomy.regions) given as one string, as an
// environment variable gives it: a JSON array of objects with the keys
// the file uses ([{"slug": "seasonal-labour", "name": "Seasonal"}]). The
// objects are then decoded as the file's are, so a misspelt key is named.
func objectsFromString(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice || to.Elem().Kind() != reflect.Struct {
		return data, nil
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(data.(string)), &list); err != nil {
		return nil, fmt.Errorf(`in an environment variable must be a JSON array of objects with the keys the file uses, such as [{"key": "value"}]: %w`, err)
	}
	return list, nil
}

// stringToDuration decodes durations written as Go durations ("90s",
// "2h30m") or as whole days ("400d").
func stringToDuration(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from.Kind() != reflect.String {
		return data, nil
	}
	return ParseDuration(data.(string))
}

// stringToDurations decodes a list of durations given as one string, as
// an environment variable gives it: comma-separated, each as
// stringToDuration reads it ("10s, 1m, 5m"; "720h,7d").
func stringToDurations(from, to reflect.Type, data any) (any, error) {
	if to != durationsType || from.Kind() != reflect.String {
		return data, nil
	}
	out := []time.Duration{}
	for _, p := range splitList([]string{data.(string)}) {
		d, err := ParseDuration(p)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// ParseDuration parses a Go duration or a number of days ("400d").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok && days != "" && !strings.ContainsAny(days, "hmsuµn") {
		var n int64
		if _, err := fmt.Sscanf(days, "%d", &n); err != nil || fmt.Sprint(n) != days {
			return 0, fmt.Errorf("%q is not a duration", s)
		}
		return time.Duration(n) * Day, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration", s)
	}
	return d, nil
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

// HashToken returns the hex SHA-256 under which a bearer token is stored.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
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
