package bus_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

func TestEnsureTopicsIsIdempotentAndCompactsSubscribers(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Partitions(5), kafkatest.RetryTiers(2))
	b := c.Open(t, c.Config()) // creates the topics
	ctx := t.Context()
	require.NoError(t, b.EnsureTopics(ctx, 2), "second run finds everything")
	require.NoError(t, b.EnsureTopics(ctx, 4), "more tiers adds only the new retry topics")

	client := &kafka.Client{Addr: kafka.TCP(b.Brokers()...)}
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	require.NoError(t, err)
	var names []string
	for _, tp := range md.Topics {
		names = append(names, tp.Name)
		assert.Len(t, tp.Partitions, 5, tp.Name)
	}
	want := []string{"herald.alerts", "herald.subscribers", "herald.deliveries", "herald.dead",
		"herald.quarantine", "herald.receipts", "herald.retry.0", "herald.retry.1", "herald.retry.2", "herald.retry.3"}
	assert.ElementsMatch(t, want, names)

	res, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: "herald.subscribers", ConfigNames: []string{"cleanup.policy"}},
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: "herald.deliveries", ConfigNames: []string{"cleanup.policy"}},
	}})
	require.NoError(t, err)
	policy := map[string]string{}
	for _, r := range res.Resources {
		require.NoError(t, r.Error)
		for _, e := range r.ConfigEntries {
			policy[r.ResourceName] = e.ConfigValue
		}
	}
	assert.Equal(t, "compact", policy["herald.subscribers"])
	assert.Equal(t, "delete", policy["herald.deliveries"])
}

func TestEnsureTopicsWithoutCreateNamesMissingTopics(t *testing.T) {
	c := kafkatest.Start(t)
	cfg := c.Config()
	cfg.CreateTopics = false
	cfg.TopicPrefix = "other."
	b, err := bus.Open(t.Context(), cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	err = b.EnsureTopics(t.Context(), 1)
	require.Error(t, err)
	for _, name := range []string{"other.alerts", "other.subscribers", "other.retry.0"} {
		assert.ErrorContains(t, err, name)
	}
	assert.NotContains(t, err.Error(), "other.retry.1")
}

func TestConfigValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(*bus.Config)
		field string
	}{
		{"broker without port", func(c *bus.Config) { c.Brokers = []string{"kafka1"} }, "kafka.brokers[0]"},
		{"bad prefix", func(c *bus.Config) { c.TopicPrefix = "herald/" }, "kafka.topic_prefix"},
		{"unknown mechanism", func(c *bus.Config) {
			c.Brokers = []string{"k:9092"}
			c.SASL = bus.SASLConfig{Mechanism: "GSSAPI", Username: "u", Password: "p"}
		}, "kafka.sasl.mechanism"},
		{"scram without password", func(c *bus.Config) {
			c.Brokers = []string{"k:9092"}
			c.SASL = bus.SASLConfig{Mechanism: bus.SASLSCRAMSHA512, Username: "u"}
		}, "kafka.sasl.password"},
		{"sasl on embedded", func(c *bus.Config) { c.SASL = bus.SASLConfig{Mechanism: bus.SASLPlain, Username: "u", Password: "p"} }, "kafka.sasl.mechanism"},
		{"tls on embedded", func(c *bus.Config) { c.TLS.Enabled = true }, "kafka.tls.enabled"},
		{"cert without key", func(c *bus.Config) {
			c.Brokers = []string{"k:9092"}
			c.TLS = bus.TLSConfig{Enabled: true, CertFile: "c.pem"}
		}, "kafka.tls.cert_file"},
		{"bad listen", func(c *bus.Config) { c.Embedded.Listen = "9092" }, "kafka.embedded.listen"},
		{"zero partitions", func(c *bus.Config) { c.Partitions = -1 }, "kafka.partitions"},
		{"heartbeat too slow", func(c *bus.Config) { c.Consumer.HeartbeatInterval = c.Consumer.SessionTimeout }, "kafka.consumer.heartbeat_interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := bus.DefaultConfig()
			require.NoError(t, cfg.Validate())
			tc.edit(&cfg)
			err := cfg.Validate()
			require.Error(t, err)
			assert.ErrorContains(t, err, tc.field)
			_, err = bus.Open(t.Context(), cfg, nil)
			assert.ErrorContains(t, err, tc.field, "Open validates")
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	cfg := bus.DefaultConfig()
	assert.Equal(t, "127.0.0.1:9092", cfg.Embedded.Listen)
	assert.Equal(t, "herald.", cfg.TopicPrefix)
	assert.True(t, cfg.CreateTopics)
	assert.Equal(t, "retry.0", bus.RetryTopic(0))
	assert.Equal(t, "retry.6", bus.RetryTopic(6))
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openEmbedded(t *testing.T, listen, dataDir string) (*bus.Bus, *syncBuffer) {
	t.Helper()
	var logs syncBuffer
	cfg := bus.DefaultConfig()
	cfg.Embedded = bus.EmbeddedConfig{Listen: listen, DataDir: dataDir}
	cfg.Partitions = 2
	cfg.Consumer = kafkatest.FastConsumer()
	b, err := bus.Open(t.Context(), cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, b.EnsureTopics(t.Context(), 1))
	return b, &logs
}

func TestEmbeddedBrokerOnFixedPort(t *testing.T) {
	addr := freeAddr(t)
	b, logs := openEmbedded(t, addr, "")
	assert.True(t, b.Embedded())
	assert.Equal(t, []string{addr}, b.Brokers())
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Contains(t, logs.String(), fmt.Sprintf("no kafka.brokers configured: started the embedded single-node development broker on %s (in memory: everything is lost on exit)", addr))
	require.NoError(t, b.Ping(t.Context()))

	// A plain kafka-go client reaches it on that address.
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "herald.alerts", BatchTimeout: 1, RequiredAcks: kafka.RequireAll}
	require.NoError(t, w.WriteMessages(t.Context(), kafka.Message{Key: []byte("k"), Value: []byte("v")}))
	require.NoError(t, w.Close())
	var got []string
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicAlerts, func(m kafka.Message) error { got = append(got, string(m.Value)); return nil }))
	lag, err := b.Lag(t.Context(), "never-consumed", bus.TopicAlerts)
	require.NoError(t, err)
	assert.EqualValues(t, 1, lag, "a group that never committed lags by everything")
	assert.Equal(t, []string{"v"}, got)

	// The port is taken while the broker runs.
	cfg := bus.DefaultConfig()
	cfg.Embedded.Listen = addr
	_, err = bus.Open(t.Context(), cfg, nil)
	require.ErrorContains(t, err, "start embedded kafka broker on "+addr)

	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "Close is idempotent")
	assert.Error(t, b.Producer(bus.TopicAlerts).Write(t.Context(), kafka.Message{Value: []byte("x")}), "a closed bus does not write")
}

func TestEmbeddedBrokerPersistsToDataDir(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	b, logs := openEmbedded(t, addr, dir)
	assert.Contains(t, logs.String(), "(persisting to "+dir+")")
	ctx := t.Context()
	require.NoError(t, b.Producer(bus.TopicDeliveries).Write(ctx, messages("p", 8)...))
	var rec recorder
	stop := consumeInBackground(t, b, "persist", []string{bus.TopicDeliveries}, func(_ context.Context, msgs []kafka.Message) error {
		rec.add(msgs)
		return nil
	})
	require.Eventually(t, func() bool { return rec.len() == 8 }, waitFor, tick)
	require.NoError(t, stop())
	require.NoError(t, b.Close())

	b2, _ := openEmbedded(t, addr, dir)
	var again []string
	require.NoError(t, b2.ReadAll(ctx, bus.TopicDeliveries, func(m kafka.Message) error { again = append(again, string(m.Value)); return nil }))
	slices.Sort(again)
	assert.Equal(t, []string{"p-000", "p-001", "p-002", "p-003", "p-004", "p-005", "p-006", "p-007"}, again, "messages survive a restart")
	lag, err := b2.Lag(ctx, "persist", bus.TopicDeliveries)
	require.NoError(t, err)
	assert.Zero(t, lag, "committed offsets survive a restart")

	require.NoError(t, b2.Producer(bus.TopicDeliveries).Write(ctx, kafka.Message{Key: []byte("k"), Value: []byte("after-restart")}))
	var rec2 recorder
	stop2 := consumeInBackground(t, b2, "persist", []string{bus.TopicDeliveries}, func(_ context.Context, msgs []kafka.Message) error {
		rec2.add(msgs)
		return nil
	})
	require.Eventually(t, func() bool { return rec2.len() >= 1 }, waitFor, tick)
	require.NoError(t, stop2())
	assert.Equal(t, []string{"after-restart"}, rec2.values(), "the group resumes after its committed offsets")
	assert.False(t, strings.Contains(logs.String(), "level=ERROR"), logs.String())
}
