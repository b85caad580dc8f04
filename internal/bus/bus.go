package bus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/config"
)

// Timeouts for single requests to the brokers when the caller's context has
// no earlier deadline.
const (
	dialTimeout    = 10 * time.Second
	requestTimeout = 30 * time.Second
)

// Bus is a connection to a Kafka cluster, or to the embedded broker it
// started. It is safe for concurrent use. Close it after every Consume,
// ReadAll and Follow call has returned.
type Bus struct {
	cfg     config.Kafka
	log     *slog.Logger
	brokers []string
	cluster *kfake.Cluster // nil unless embedded

	tls       *tls.Config
	sasl      sasl.Mechanism
	transport *kafka.Transport // producers
	admin     *kafka.Transport // client
	client    *kafka.Client

	keys     *busauth.Keyring
	rejected func(m kafka.Message, err error)

	mu        sync.Mutex
	producers map[string]*Producer
	closed    bool
	// producersClosed tells the producers the Bus was closed.
	producersClosed atomic.Bool
	// senders are the producers' goroutines sending queued writes.
	senders sync.WaitGroup
}

// Options are what Open needs besides the kafka section of the
// configuration.
type Options struct {
	// Password is the SASL password (kafka.sasl.password_file, read by the
	// caller).
	Password string
	// Log receives the bus's events; nil discards them.
	Log *slog.Logger
	// Keyring authenticates every record the bus writes and checks the
	// records read (PRODUCT.md §3 rule 1). Without one nothing written
	// carries an authenticator and nothing read is authentic.
	Keyring *busauth.Keyring
	// Rejected, if set, is told of every record Authentic refused (for a
	// metric); the bus logs them itself.
	Rejected func(m kafka.Message, err error)
}

// Open connects to the brokers of cfg, or, when cfg.Brokers is empty, starts
// the embedded single-node development broker on cfg.Embedded.Listen and
// connects to it. cfg is trusted as validated by config.Validate. Open makes
// no request to external brokers: use Ping or EnsureTopics to find out
// whether they can be reached.
func Open(ctx context.Context, cfg config.Kafka, opt Options) (*Bus, error) {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Brokers = slices.Clone(cfg.Brokers)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open kafka bus: %w", err)
	}
	b := &Bus{
		cfg:       cfg,
		log:       log,
		brokers:   cfg.Brokers,
		producers: make(map[string]*Producer),
		keys:      opt.Keyring,
		rejected:  opt.Rejected,
	}
	var err error
	if b.tls, err = tlsConfig(cfg.TLS); err != nil {
		return nil, fmt.Errorf("open kafka bus: %w", err)
	}
	if b.sasl, err = mechanism(cfg.SASL, opt.Password); err != nil {
		return nil, fmt.Errorf("open kafka bus: %w", err)
	}
	if len(cfg.Brokers) == 0 {
		if err := b.startEmbedded(); err != nil {
			return nil, err
		}
	}
	b.transport = &kafka.Transport{
		DialTimeout: dialTimeout,
		IdleTimeout: 30 * time.Second,
		MetadataTTL: 6 * time.Second,
		ClientID:    cfg.ClientID,
		TLS:         b.tls,
		SASL:        b.sasl,
	}
	// Admin requests and whole-topic reads get a transport of their own
	// whose metadata cache (which kafka-go answers metadata requests from)
	// refreshes every second, so that topics created elsewhere show soon.
	b.admin = &kafka.Transport{
		DialTimeout: dialTimeout,
		IdleTimeout: 30 * time.Second,
		MetadataTTL: time.Second,
		ClientID:    cfg.ClientID,
		TLS:         b.tls,
		SASL:        b.sasl,
	}
	b.client = &kafka.Client{Addr: kafka.TCP(b.brokers...), Timeout: requestTimeout, Transport: b.admin}
	return b, nil
}

// startEmbedded starts the kfake broker and points the Bus at it.
func (b *Bus) startEmbedded() error {
	listen := b.cfg.Embedded.Listen
	var advertised string
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.ClusterID("herald-embedded"),
		kfake.DefaultNumPartitions(b.cfg.Partitions),
		// A development broker accepts the fast group settings tests use.
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
		kfake.WithLogger(kfakeLogger{b.log.With("component", "embedded-kafka")}),
		// kfake always asks for 127.0.0.1:port; listen where configured
		// instead, and advertise an address clients can dial.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, listen)
			if err != nil {
				return nil, err
			}
			adv := advertise(ln.Addr())
			advertised = adv.String()
			return addrListener{Listener: ln, addr: adv}, nil
		}),
	}
	where := "in memory: everything is lost on exit"
	if dir := b.cfg.Embedded.DataDir; dir != "" {
		opts = append(opts, kfake.DataDir(dir))
		where = "persisting to " + dir
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("start embedded kafka broker on %s: %w", listen, err)
	}
	b.cluster = c
	b.brokers = []string{advertised}
	b.log.Warn(fmt.Sprintf("no kafka.brokers configured: started the embedded single-node development broker on %s (%s)", advertised, where),
		"listen", advertised, "data_dir", b.cfg.Embedded.DataDir)
	return nil
}

// advertise turns a listener address into one clients can dial: an
// unspecified host (0.0.0.0, ::) becomes the loopback address.
func advertise(a net.Addr) *net.TCPAddr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	}
	out := *ta
	if out.IP == nil || out.IP.IsUnspecified() {
		out.IP = net.IPv4(127, 0, 0, 1)
	}
	return &out
}

// addrListener reports addr as its address: kfake advertises its listener's
// address in metadata.
type addrListener struct {
	net.Listener
	addr net.Addr
}

func (l addrListener) Addr() net.Addr { return l.addr }

// kfakeLogger passes the embedded broker's warnings and errors to slog.
type kfakeLogger struct{ log *slog.Logger }

func (l kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	switch level {
	case kfake.LogLevelError:
		l.log.Error(fmt.Sprintf(format, args...))
	case kfake.LogLevelWarn:
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

// Close closes the producers (later writes fail), drops idle connections and, for
// the embedded broker, shuts it down (saving its state when it has a
// DataDir). It is safe to call more than once.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.producers = nil
	b.producersClosed.Store(true)
	b.mu.Unlock()

	// Writes in flight end (a retry sees the Bus closed); nothing else is
	// pending in the producers.
	b.senders.Wait()
	b.transport.CloseIdleConnections()
	b.admin.CloseIdleConnections()
	if b.cluster != nil {
		b.cluster.Close()
	}
	return nil
}

// Brokers returns the bootstrap brokers in use: the configured ones, or the
// embedded broker's address.
func (b *Bus) Brokers() []string { return slices.Clone(b.brokers) }

// Embedded reports whether the Bus runs the embedded development broker.
func (b *Bus) Embedded() bool { return b.cluster != nil }

// Topic returns the full name of topic: the configured prefix + topic.
func (b *Bus) Topic(name string) string { return b.cfg.TopicPrefix + name }

// withTimeout bounds ctx by requestTimeout unless it ends earlier.
func withTimeout(ctx context.Context, what string) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, requestTimeout, fmt.Errorf("%s: no answer from kafka within %s", what, requestTimeout))
}

// Ping connects to the bootstrap brokers in turn, with TLS and SASL as
// configured, until one answers an ApiVersions request; for readiness
// probes. (A kafka-go Client would answer metadata from its cache.) A wrong
// password or certificate fails at once.
func (b *Bus) Ping(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx, "ping kafka")
	defer cancel()
	var errs []error
	for _, addr := range b.brokers {
		err := b.pingBroker(ctx, addr)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, cause(ctx, err)))
	}
	return fmt.Errorf("ping kafka: %w", errors.Join(errs...))
}

func (b *Bus) pingBroker(ctx context.Context, addr string) error {
	conn, err := b.dialer().DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return err
		}
	}
	_, err = conn.ApiVersions()
	return err
}

// cause prefers the context's cause when ctx ended, so timeouts say what
// timed out.
func cause(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if c := context.Cause(ctx); c != nil && !errors.Is(err, c) {
			return fmt.Errorf("%w (%w)", c, err)
		}
	}
	return err
}

// missingTopics returns the topics of want that metadata does not show as
// usable (known, with a leader for every partition).
func (b *Bus) missingTopics(ctx context.Context, want []string) ([]string, error) {
	md, err := b.client.Metadata(ctx, &kafka.MetadataRequest{Topics: want})
	if err != nil {
		return nil, fmt.Errorf("read metadata: %w", cause(ctx, err))
	}
	ok := make(map[string]bool)
	for _, t := range md.Topics {
		if t.Error != nil || len(t.Partitions) == 0 {
			if t.Error != nil && !errors.Is(t.Error, kafka.UnknownTopicOrPartition) && !errors.Is(t.Error, kafka.LeaderNotAvailable) {
				return nil, fmt.Errorf("metadata of %s: %w", t.Name, t.Error)
			}
			continue
		}
		ok[t.Name] = !slices.ContainsFunc(t.Partitions, func(p kafka.Partition) bool { return p.Error != nil || p.Leader.Host == "" })
	}
	var missing []string
	for _, t := range want {
		if !ok[t] {
			missing = append(missing, t)
		}
	}
	return missing, nil
}

// ErrNoKeyring is Authenticate's answer on a Bus opened without a keyring.
var ErrNoKeyring = errors.New("no publishing key: records cannot be authenticated")

// Authenticate checks that m, as read from one of Herald's topics, was
// written by a Herald process holding the publishing key: its herald-auth
// header authenticates its topic, key and value.
func (b *Bus) Authenticate(m kafka.Message) error {
	_, err := b.SignedBy(m)
	return err
}

// SignedBy is Authenticate that also returns the id of the keyring's key
// (busauth.Keyring.IDs) that signed m: what a publishing key rotation
// counts (`herald keys resign`). The id is returned only with a nil error.
// It is the one home of the check of a record read: it gives the keyring
// m's partition and offset, below which a retired key still verifies
// (busauth.Cutoffs).
func (b *Bus) SignedBy(m kafka.Message) (string, error) {
	if b.keys == nil {
		return "", ErrNoKeyring
	}
	topic, ok := strings.CutPrefix(m.Topic, b.cfg.TopicPrefix)
	if !ok {
		return "", fmt.Errorf("topic %q is not one of Herald's", m.Topic)
	}
	return b.keys.SignedAt(topic, placeOf(m), m.Key, m.Value, Header(m, busauth.Header))
}

// placeOf returns where m lies, as the keyring bounds a retired key.
func placeOf(m kafka.Message) busauth.Place {
	return busauth.Place{Partition: m.Partition, Offset: m.Offset}
}

// Authentic reports whether m is authentic (see Authenticate); when it is
// not, it logs the record's place and the reason, and tells
// Options.Rejected. Readers of Herald's topics skip what it refuses. A
// record signed with a key the keyring does not hold is told apart in the
// log: after a rotation removed a key, Herald's own older records are
// refused so, and an operator should not read them as a stranger's. So is
// a record signed with a retired key after its retirement: written by a
// process still running with the key, or by someone else holding it.
func (b *Bus) Authentic(m kafka.Message) bool {
	err := b.Authenticate(m)
	msg := "ignoring a record not written by Herald"
	switch {
	case errors.Is(err, busauth.ErrUnknownKey):
		msg = "ignoring a record signed with a key publishing.key_file does not hold (Herald's before that key was removed, or not Herald's)"
	case errors.Is(err, busauth.ErrRetiredKey):
		msg = "ignoring a record signed with a key retired before this record was written (a process still running with the key before `herald keys retire`, or not Herald's)"
	}
	return b.refuse(m, msg, err)
}

// refuse reports whether err is nil; when it is not, it logs m's place
// with msg and err, and tells Options.Rejected: the one way a reader
// skips a record it does not trust.
func (b *Bus) refuse(m kafka.Message, msg string, err error) bool {
	if err == nil {
		return true
	}
	b.log.Warn(msg, "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "key", truncateKey(m.Key), "error", err)
	if b.rejected != nil {
		b.rejected(m, err)
	}
	return false
}

// CountRefused tells Options.Rejected of m, a record a reader skipped
// because Authenticate refused it with err, without logging it: for a
// reader that reports such records together (one line for a whole load)
// instead of one line each, as Authentic does.
func (b *Bus) CountRefused(m kafka.Message, err error) {
	if b.rejected != nil {
		b.rejected(m, err)
	}
}

// AuthenticateHeaders checks that m is authentic (Authenticate) and that
// so are its other headers (those not herald-auth or herald-auth-headers):
// its herald-auth-headers header authenticates them, in order, for its
// topic and its herald-auth. A record without other headers needs none.
// Readers that act on a header's value (a quarantine record's source, a
// dead letter's reason, a lease) check it first: write access to a topic
// lets anyone copy an authentic record with headers of their own.
// Records written before Herald covered headers have none, and fail.
func (b *Bus) AuthenticateHeaders(m kafka.Message) error {
	if err := b.Authenticate(m); err != nil {
		return err
	}
	return b.authenticateOthers(m)
}

// authenticateOthers checks the other headers of m, an authentic record.
func (b *Bus) authenticateOthers(m kafka.Message) error {
	if !slices.ContainsFunc(m.Headers, func(h kafka.Header) bool { return busauth.Covers(h.Key) }) {
		return nil
	}
	topic := strings.TrimPrefix(m.Topic, b.cfg.TopicPrefix) // Authenticate checked the prefix
	if err := b.keys.VerifyHeadersAt(topic, placeOf(m), Header(m, busauth.Header), headerSeq(m.Headers), Header(m, busauth.HeadersHeader)); err != nil {
		return fmt.Errorf("headers of the record: %w", err)
	}
	return nil
}

// AuthenticHeaders reports whether m and its headers are authentic (see
// AuthenticateHeaders); when they are not, it logs the record's place and
// the reason, and tells Options.Rejected, as Authentic does.
func (b *Bus) AuthenticHeaders(m kafka.Message) bool {
	return b.Authentic(m) && b.refuse(m, "ignoring a record whose headers Herald did not write", b.authenticateOthers(m))
}

// Log returns the logger the bus logs its events to (Options.Log), for a
// reader that reports what it skipped where the bus reports it.
func (b *Bus) Log() *slog.Logger { return b.log }

// Keyring returns the keyring the bus authenticates with, or nil.
func (b *Bus) Keyring() *busauth.Keyring { return b.keys }

// truncateKey shortens k, a record's key, for a log line (alerts.Clip).
func truncateKey(k []byte) string { return alerts.Clip(string(k), 80, "…") }

// Header returns the value of the first header of m named key, or "". It
// checks nothing: a reader that acts on the value of a header other than
// herald-auth authenticates the headers first (AuthenticateHeaders).
func Header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Headers of a record refused by a worker and copied to the quarantine or
// dead-letter topic.
const (
	// HeaderReason is why the record was refused: a fixed word (fanout's
	// quarantine reasons, delivery's failure reasons).
	HeaderReason = "reason"
	// HeaderError is the refusal in words.
	HeaderError = "error"
	// HeaderSource is where the record was found: topic/partition/offset.
	HeaderSource = "source"
)

// Rejection returns a copy of m, as read, for the quarantine or dead-letter
// topic: the same key and value, with the refusal's reason, error and
// source as its only headers. It is the one home of that metadata. None of
// m's own headers is kept: the producer covers every header of the copy
// with herald-auth-headers, and Herald vouches only for headers it chose
// (a refused record's headers stay where source names).
func Rejection(m kafka.Message, reason string, err error) kafka.Message {
	return kafka.Message{Key: m.Key, Value: m.Value, Headers: []kafka.Header{
		{Key: HeaderReason, Value: []byte(reason)},
		{Key: HeaderError, Value: []byte(err.Error())},
		{Key: HeaderSource, Value: []byte(Source(m))},
	}}
}

// Source names where m was read, as the source header of a Rejection
// says it: topic/partition/offset.
func Source(m kafka.Message) string {
	return m.Topic + "/" + strconv.Itoa(m.Partition) + "/" + strconv.FormatInt(m.Offset, 10)
}

// AsWritten returns m as a reader of topic (given without prefix) would
// see it once this bus had written it: its Topic set and its herald-auth
// header (and herald-auth-headers, when it has other headers) added, as
// Producer.Write adds them. Benchmarks and tests hand such messages straight to a
// worker's handler.
func (b *Bus) AsWritten(topic string, m kafka.Message) kafka.Message {
	m.Topic = b.Topic(topic)
	if b.keys != nil {
		m.Headers = sign(b.keys, topic, &m)
	}
	return m
}
