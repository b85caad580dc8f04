// Package kafkatest starts in-process Kafka-protocol clusters
// (github.com/twmb/franz-go/pkg/kfake) for tests and opens bus.Bus
// instances on them with consumer settings fast enough for tests.
package kafkatest

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/herald-alerts/herald/internal/bus"
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
	real  []string // the brokers' own listen addresses
	addrs []string // what clients dial: real, or the proxy's
	// Proxy is in front of the brokers when the cluster was started
	// WithProxy, else nil.
	Proxy *Proxy
}

// Start starts a cluster on 127.0.0.1 with free ports; Cleanup stops it.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	o := options{brokers: 1, partitions: 3, retryTiers: DefaultRetryTiers, prefix: bus.DefaultTopicPrefix, logLevel: slog.LevelWarn}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Cluster{t: t, opts: o}
	if o.proxy {
		c.Proxy = NewProxy(t)
	}
	c.start(nil)
	t.Cleanup(c.stop)
	return c
}

// start starts kfake; listen, when set, are the addresses to listen on
// again after a restart.
func (c *Cluster) start(listen []string) {
	c.t.Helper()
	var real, addrs []string
	i := 0
	kopts := []kfake.Opt{
		kfake.NumBrokers(c.opts.brokers),
		kfake.DefaultNumPartitions(c.opts.partitions),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			if listen != nil {
				address = listen[i]
			}
			ln, err := net.Listen(network, address)
			if err != nil {
				return nil, err
			}
			real = append(real, ln.Addr().String())
			if c.Proxy == nil {
				addrs = append(addrs, ln.Addr().String())
				i++
				return ln, nil
			}
			pi := i // a restart reuses the proxy's links
			if listen == nil {
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
	c.kc, c.real, c.addrs = kc, real, addrs
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

// Restart stops the cluster and starts it again on the same addresses;
// with DataDir it keeps its messages and committed offsets.
func (c *Cluster) Restart() {
	c.t.Helper()
	c.mu.Lock()
	listen := append([]string(nil), c.real...)
	c.mu.Unlock()
	c.stop()
	c.start(listen)
}

// FastConsumer returns consumer settings that make rebalances take ~100 ms
// and Reader.Close return at once (FIELD-NOTES: kafka-go against kfake).
func FastConsumer() bus.ConsumerConfig {
	return bus.ConsumerConfig{
		MaxWait:           100 * time.Millisecond,
		HeartbeatInterval: 100 * time.Millisecond,
		SessionTimeout:    time.Second,
		RebalanceTimeout:  time.Second,
		JoinGroupBackoff:  100 * time.Millisecond,
		RetryBackoffMin:   50 * time.Millisecond,
		RetryBackoffMax:   500 * time.Millisecond,
		DrainTimeout:      5 * time.Second,
	}
}

// Config returns a bus.Config for this cluster with fast consumer settings
// and CreateTopics on.
func (c *Cluster) Config() bus.Config {
	return bus.Config{
		Brokers:      c.Addrs(),
		TopicPrefix:  c.opts.prefix,
		ClientID:     "herald-test",
		Partitions:   c.opts.partitions,
		CreateTopics: true,
		Consumer:     FastConsumer(),
	}
}

// Open opens a Bus with cfg on t's logger, ensures Herald's topics and
// closes the Bus in Cleanup.
func (c *Cluster) Open(t testing.TB, cfg bus.Config) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, cfg, Logger(t, c.opts.logLevel))
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

// Config starts a cluster and returns a bus.Config for it (its Brokers field
// holds the cluster's address), for tests that open several Bus instances
// on one cluster.
func Config(t testing.TB, opts ...Option) bus.Config {
	t.Helper()
	return Start(t, opts...).Config()
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
