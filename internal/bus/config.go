package bus

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"time"
)

// Topic names without the configured prefix (PRODUCT.md §6).
const (
	// TopicAlerts carries published alerts, keyed by alert id.
	TopicAlerts = "alerts"
	// TopicSubscribers carries subscriber records, keyed by subscriber id;
	// compacted, and an empty value (tombstone) deletes the subscriber.
	TopicSubscribers = "subscribers"
	// TopicDeliveries carries delivery jobs, keyed by subscriber id.
	TopicDeliveries = "deliveries"
	// TopicDead carries jobs that failed for good, keyed by subscriber id.
	TopicDead = "dead"
	// TopicQuarantine carries invalid or forbidden messages found on the
	// alerts topic, with the original key and value.
	TopicQuarantine = "quarantine"
	// TopicReceipts carries every decision and delivery attempt, keyed by
	// alert id.
	TopicReceipts = "receipts"
)

// RetryTopic returns the name (without prefix) of the retry topic for tier,
// the index of the wait in the retry schedule: "retry.0", "retry.1", …
func RetryTopic(tier int) string { return fmt.Sprintf("retry.%d", tier) }

// Defaults applied by Open to zero fields of Config.
const (
	DefaultTopicPrefix    = "herald."
	DefaultClientID       = "herald"
	DefaultEmbeddedListen = "127.0.0.1:9092"
	// DefaultPartitions is the partition count of the topics Herald creates.
	// Six lets up to six members of a consumer group share the work, and it
	// is cheap on the embedded broker too.
	DefaultPartitions = 6
)

// Config configures the connection to Kafka. The zero value, after Open fills
// in defaults, starts the embedded broker on 127.0.0.1:9092; note that
// CreateTopics is false in the zero value: use DefaultConfig to get
// Herald's documented defaults.
type Config struct {
	// Brokers are the bootstrap brokers as host:port. When empty, Open
	// starts the embedded development broker.
	Brokers []string
	// TopicPrefix is put in front of every topic name; default "herald.".
	TopicPrefix string
	// ClientID identifies Herald to the brokers; default "herald".
	ClientID string
	// Embedded configures the embedded broker used when Brokers is empty.
	Embedded EmbeddedConfig
	// TLS configures encryption to the brokers.
	TLS TLSConfig
	// SASL configures authentication to the brokers.
	SASL SASLConfig
	// Partitions is the partition count of topics that EnsureTopics
	// creates; default DefaultPartitions. Existing topics are not changed.
	Partitions int
	// ReplicationFactor of the topics that EnsureTopics creates. Zero means
	// 1 on the embedded broker and the broker's default.replication.factor
	// otherwise; -1 always means the broker's default.
	ReplicationFactor int
	// CreateTopics makes EnsureTopics create missing topics; when false it
	// only checks that they exist. DefaultConfig sets it.
	CreateTopics bool
	// Consumer tunes consumer groups.
	Consumer ConsumerConfig
}

// EmbeddedConfig configures the embedded single-node development broker.
type EmbeddedConfig struct {
	// Listen is the host:port the broker listens on and advertises; default
	// 127.0.0.1:9092. Port 0 picks a free port (see Bus.Brokers).
	Listen string
	// DataDir, when set, persists messages and committed offsets there
	// across restarts; when empty everything lives in memory.
	DataDir string
}

// TLSConfig configures TLS to the brokers.
type TLSConfig struct {
	// Enabled turns TLS on. With no CAFile the system roots verify the
	// brokers.
	Enabled bool
	// CAFile is a PEM bundle of the CAs that verify the brokers.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and key for mutual
	// TLS; both or neither.
	CertFile, KeyFile string
	// InsecureSkipVerify disables verification of the brokers'
	// certificates. Development only.
	InsecureSkipVerify bool
	// ServerName overrides the name verified in the brokers' certificates.
	ServerName string
}

// SASL mechanisms understood by SASLConfig.Mechanism.
const (
	SASLPlain       = "PLAIN"
	SASLSCRAMSHA256 = "SCRAM-SHA-256"
	SASLSCRAMSHA512 = "SCRAM-SHA-512"
)

// SASLConfig configures SASL authentication to the brokers.
type SASLConfig struct {
	// Mechanism is "" (no SASL), "PLAIN", "SCRAM-SHA-256" or
	// "SCRAM-SHA-512". PLAIN sends the password as is: use it only with TLS.
	Mechanism string
	// Username and Password are the credentials. The password is never
	// logged.
	Username, Password string
}

// ConsumerConfig tunes consumer groups (Bus.Consume).
type ConsumerConfig struct {
	// MaxWait bounds how long a fetch waits for new data at the broker; it
	// also bounds how long shutdown waits for a fetch. Default 500ms; keep it
	// at most 1s.
	MaxWait time.Duration
	// HeartbeatInterval is how often a member heartbeats; default 3s.
	HeartbeatInterval time.Duration
	// SessionTimeout is how long the coordinator waits for a heartbeat
	// before it evicts a member; default 30s. Brokers reject values under
	// group.min.session.timeout.ms (6s by default).
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the coordinator waits for members to
	// rejoin during a rebalance; default 30s.
	RebalanceTimeout time.Duration
	// JoinGroupBackoff is the wait before rejoining after an error;
	// default 1s.
	JoinGroupBackoff time.Duration
	// CommitBatch is the most messages handed to one handler call and
	// committed together; default 100.
	CommitBatch int
	// Linger is how long a batch waits for more messages once it has one;
	// default 5ms.
	Linger time.Duration
	// RetryBackoffMin and RetryBackoffMax bound the exponential wait after a
	// failed handler call or commit before the batch is fetched again;
	// defaults 200ms and 30s.
	RetryBackoffMin, RetryBackoffMax time.Duration
	// DrainTimeout is how long an in-flight handler call may go on after
	// Consume's context is cancelled before its own context is cancelled;
	// default 30s.
	DrainTimeout time.Duration
}

// DefaultConfig returns Herald's documented defaults: the embedded broker on
// 127.0.0.1:9092, prefix "herald.", and missing topics created at start.
func DefaultConfig() Config {
	c := Config{CreateTopics: true}
	c.setDefaults()
	return c
}

func (c *Config) setDefaults() {
	if c.TopicPrefix == "" {
		c.TopicPrefix = DefaultTopicPrefix
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if len(c.Brokers) == 0 && c.Embedded.Listen == "" {
		c.Embedded.Listen = DefaultEmbeddedListen
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	cc := &c.Consumer
	setDur(&cc.MaxWait, 500*time.Millisecond)
	setDur(&cc.HeartbeatInterval, 3*time.Second)
	setDur(&cc.SessionTimeout, 30*time.Second)
	setDur(&cc.RebalanceTimeout, 30*time.Second)
	setDur(&cc.JoinGroupBackoff, time.Second)
	setDur(&cc.Linger, 5*time.Millisecond)
	setDur(&cc.RetryBackoffMin, 200*time.Millisecond)
	setDur(&cc.RetryBackoffMax, 30*time.Second)
	setDur(&cc.DrainTimeout, 30*time.Second)
	if cc.CommitBatch == 0 {
		cc.CommitBatch = 100
	}
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

var topicPrefixRE = regexp.MustCompile(`^[A-Za-z0-9._-]{0,200}$`)

// Validate reports every invalid field of c, named by its configuration key
// (kafka.…). Open calls it after applying defaults.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("kafka.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	for i, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad(fmt.Sprintf("brokers[%d]", i), "%q is not host:port", b)
		}
	}
	if !topicPrefixRE.MatchString(c.TopicPrefix) {
		bad("topic_prefix", "%q may hold only letters, digits, '.', '_' and '-'", c.TopicPrefix)
	}
	if len(c.Brokers) == 0 {
		if _, _, err := net.SplitHostPort(c.Embedded.Listen); err != nil {
			bad("embedded.listen", "%q is not host:port", c.Embedded.Listen)
		}
		if c.TLS.Enabled {
			bad("tls.enabled", "the embedded broker (no kafka.brokers) does not speak TLS")
		}
		if c.SASL.Mechanism != "" {
			bad("sasl.mechanism", "the embedded broker (no kafka.brokers) takes no authentication")
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		bad("tls.cert_file", "cert_file and key_file go together")
	}
	if !c.TLS.Enabled && (c.TLS.CAFile != "" || c.TLS.CertFile != "" || c.TLS.InsecureSkipVerify) {
		bad("tls.enabled", "TLS files or options are set but TLS is not enabled")
	}
	switch c.SASL.Mechanism {
	case "":
		if c.SASL.Username != "" || c.SASL.Password != "" {
			bad("sasl.mechanism", "credentials are set but no mechanism")
		}
	case SASLPlain, SASLSCRAMSHA256, SASLSCRAMSHA512:
		if c.SASL.Username == "" {
			bad("sasl.username", "required with mechanism %s", c.SASL.Mechanism)
		}
		if c.SASL.Password == "" {
			bad("sasl.password", "required with mechanism %s", c.SASL.Mechanism)
		}
	default:
		bad("sasl.mechanism", "%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.SASL.Mechanism)
	}
	if c.Partitions < 1 {
		bad("partitions", "must be at least 1, not %d", c.Partitions)
	}
	if c.ReplicationFactor < -1 {
		bad("replication_factor", "must be -1 (broker default) or more, not %d", c.ReplicationFactor)
	}
	cc := c.Consumer
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"max_wait", cc.MaxWait}, {"heartbeat_interval", cc.HeartbeatInterval},
		{"session_timeout", cc.SessionTimeout}, {"rebalance_timeout", cc.RebalanceTimeout},
		{"join_group_backoff", cc.JoinGroupBackoff}, {"linger", cc.Linger},
		{"retry_backoff_min", cc.RetryBackoffMin}, {"retry_backoff_max", cc.RetryBackoffMax},
		{"drain_timeout", cc.DrainTimeout},
	} {
		if d.v < 0 {
			bad("consumer."+d.key, "must not be negative")
		}
	}
	if cc.HeartbeatInterval >= cc.SessionTimeout {
		bad("consumer.heartbeat_interval", "must be shorter than session_timeout")
	}
	if cc.RetryBackoffMin > cc.RetryBackoffMax {
		bad("consumer.retry_backoff_min", "must not exceed retry_backoff_max")
	}
	if cc.CommitBatch < 1 {
		bad("consumer.commit_batch", "must be at least 1, not %d", cc.CommitBatch)
	}
	return errors.Join(errs...)
}
