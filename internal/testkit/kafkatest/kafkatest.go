// Package kafkatest starts in-process Kafka-protocol clusters
// (github.com/twmb/franz-go/pkg/kfake) for tests and opens bus.Bus
// instances on them with consumer settings fast enough for tests.
package kafkatest

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
)

// DefaultRetryTiers is how many retry topics New creates: the length of
// Herald's default retry schedule.
const DefaultRetryTiers = 7

type options struct {
	brokers    int
	partitions int
	retryTiers int
	proxy      bool
	dataDir    string
	prefix     string
	kfake      []kfake.Opt
	logLevel   slog.Level
}

// Option configures Start, New and Config.
type Option func(*options)

// Brokers sets the number of brokers (default 1).
func Brokers(n int) Option { return func(o *options) { o.brokers = n } }

// Partitions sets the partition count of the topics Herald creates
// (default 3).
func Partitions(n int) Option { return func(o *options) { o.partitions = n } }

// RetryTiers sets how many retry topics New creates (default
// DefaultRetryTiers).
func RetryTiers(n int) Option { return func(o *options) { o.retryTiers = n } }

// WithProxy puts a Proxy in front of every broker; the cluster advertises
// the proxy's addresses.
func WithProxy() Option { return func(o *options) { o.proxy = true } }

// DataDir makes the cluster persist its state in dir, so that Restart (or a
// new cluster on the same dir) keeps messages and committed offsets.
func DataDir(dir string) Option { return func(o *options) { o.dataDir = dir } }

// TopicPrefix sets the topic prefix of the Config (default "herald.").
func TopicPrefix(p string) Option { return func(o *options) { o.prefix = p } }

// KfakeOpts passes extra options to kfake (SASL users, TLS, …).
func KfakeOpts(opts ...kfake.Opt) Option {
	return func(o *options) { o.kfake = append(o.kfake, opts...) }
}

// LogLevel sets the level of the test logger the Bus logs to (default
// Warn).
func LogLevel(l slog.Level) Option { return func(o *options) { o.logLevel = l } }

// Cluster is a running kfake cluster.
type Cluster struct {
	t     testing.TB
	opts  options
	mu    sync.Mutex
	kc    *kfake.Cluster
	addrs []string // what clients dial: the brokers', or the proxy's
	// Proxy is in front of the brokers when the cluster was started
	// WithProxy, else nil.
	Proxy *Proxy
}

// Start starts a cluster on 127.0.0.1 with free ports; Cleanup stops it.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	o := options{brokers: 1, partitions: 3, retryTiers: DefaultRetryTiers, prefix: config.Default().Kafka.TopicPrefix, logLevel: slog.LevelWarn}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cluster{t: t, opts: o}
	if o.proxy {
		c.Proxy = NewProxy(t)
	}
	c.start(false)
	t.Cleanup(c.stop)
	return c
}

// start starts kfake, its brokers on fresh ports (127.0.0.1:0). Behind a
// proxy, a restart points the proxy's existing addresses at them.
func (c *Cluster) start(restart bool) {
	c.t.Helper()
	var addrs []string
	i := 0
	kopts := []kfake.Opt{
		kfake.NumBrokers(c.opts.brokers),
		kfake.DefaultNumPartitions(c.opts.partitions),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			if c.Proxy == nil {
				addrs = append(addrs, ln.Addr().String())
				return ln, nil
			}
			pi := i // a restart reuses the proxy's links
			if !restart {
				if pi, err = c.Proxy.Listen(); err != nil {
					ln.Close()
					return nil, err
				}
			}
			c.Proxy.SetUpstream(pi, ln.Addr().String())
			adv := c.Proxy.Addrs()[pi]
			addrs = append(addrs, adv)
			i++
			a, _ := net.ResolveTCPAddr("tcp", adv)
			return advertisedListener{Listener: ln, addr: a}, nil
		}),
	}
	if c.opts.dataDir != "" {
		kopts = append(kopts, kfake.DataDir(c.opts.dataDir))
	}
	kopts = append(kopts, c.opts.kfake...)
	kc, err := kfake.NewCluster(kopts...)
	if err != nil {
		c.t.Fatalf("kafkatest: start kfake: %v", err)
	}
	c.mu.Lock()
	c.kc, c.addrs = kc, addrs
	c.mu.Unlock()
}

func (c *Cluster) stop() {
	c.mu.Lock()
	kc := c.kc
	c.kc = nil
	c.mu.Unlock()
	if kc != nil {
		kc.Close()
	}
}

// advertisedListener makes kfake advertise addr (the proxy) instead of its
// own listen address.
type advertisedListener struct {
	net.Listener
	addr net.Addr
}

func (l advertisedListener) Addr() net.Addr { return l.addr }

// Kfake returns the running kfake cluster, for fault injection.
func (c *Cluster) Kfake() *kfake.Cluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kc
}

// Addrs returns the addresses clients dial (the proxy's, WithProxy).
func (c *Cluster) Addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.addrs...)
}

// Restart stops the cluster and starts it again behind the same proxy
// addresses, so clients reconnect where they were; the brokers themselves
// listen on fresh ports (a port closed and listened on again may be taken
// in between). It needs WithProxy. With DataDir the cluster keeps its
// messages and committed offsets.
func (c *Cluster) Restart() {
	c.t.Helper()
	if c.Proxy == nil {
		c.t.Fatalf("kafkatest: Restart needs WithProxy: clients keep the proxy's addresses while the brokers' ports change")
	}
	c.stop()
	c.start(true)
}

// FastConsumer returns consumer settings that make rebalances take ~100 ms
// and Reader.Close return at once (FIELD-NOTES: kafka-go against kfake).
func FastConsumer() config.KafkaConsumer {
	c := config.Default().Kafka.Consumer
	c.MaxWait = 100 * time.Millisecond
	c.HeartbeatInterval = 100 * time.Millisecond
	c.SessionTimeout = time.Second
	c.RebalanceTimeout = time.Second
	c.JoinGroupBackoff = 100 * time.Millisecond
	c.RetryBackoffMin = 50 * time.Millisecond
	c.RetryBackoffMax = 500 * time.Millisecond
	c.DrainTimeout = 5 * time.Second
	c.CommitBatch = 100
	return c
}

// testKey is the publishing key every test bus and test process shares.
var testKey = []byte("kafkatest publishing key 32 byte")

// Keyring returns the publishing keyring every test bus shares, so that
// what one Bus writes another authenticates.
func Keyring() *busauth.Keyring {
	k, err := busauth.New(testKey)
	if err != nil {
		panic(err)
	}
	return k
}

// KeyFile writes the shared test publishing key to a file (for
// publishing.key_file of Herald processes under test) and returns its path.
func KeyFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "publishing.key")
	if err := os.WriteFile(p, busauth.Format(testKey), 0o600); err != nil {
		t.Fatalf("kafkatest: write publishing key: %v", err)
	}
	return p
}

// Config returns the kafka section of the configuration for this cluster,
// with fast consumer settings and CreateTopics on.
func (c *Cluster) Config() config.Kafka {
	k := config.Default().Kafka
	k.Brokers = c.Addrs()
	k.TopicPrefix = c.opts.prefix
	k.ClientID = "herald-test"
	k.Partitions = c.opts.partitions
	k.CreateTopics = true
	k.Consumer = FastConsumer()
	return k
}

// Options returns the bus options tests use: the shared test keyring and a
// logger writing to t.
func (c *Cluster) Options(t testing.TB) bus.Options {
	return bus.Options{Keyring: Keyring(), Log: Logger(t, c.opts.logLevel)}
}

// Open opens a Bus with cfg and the test keyring on t's logger, ensures
// Herald's topics and closes the Bus in Cleanup.
func (c *Cluster) Open(t testing.TB, cfg config.Kafka) *bus.Bus {
	t.Helper()
	return c.OpenWith(t, cfg, c.Options(t))
}

// OpenWith is Open with other bus options (another keyring, none).
func (c *Cluster) OpenWith(t testing.TB, cfg config.Kafka, opt bus.Options) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, cfg, opt)
	if err != nil {
		t.Fatalf("kafkatest: open bus: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("kafkatest: close bus: %v", err)
		}
	})
	if err := b.EnsureTopics(ctx, c.opts.retryTiers); err != nil {
		t.Fatalf("kafkatest: ensure topics: %v", err)
	}
	return b
}

// New starts a cluster and returns a Bus on it with Herald's topics
// created; Cleanup closes both.
func New(t testing.TB, opts ...Option) *bus.Bus {
	t.Helper()
	c := Start(t, opts...)
	return c.Open(t, c.Config())
}

// Logger returns a slog.Logger that writes records at level and above to
// t.Log, and drops them once the test has finished.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(w.close)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return len(p), nil
	}
	w.t.Helper()
	w.t.Log(string(p[:len(p)-min(1, len(p))]))
	return len(p), nil
}

func (w *testWriter) close() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
