package kafkatest_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

func readValues(t *testing.T, b *bus.Bus, topic string) []string {
	t.Helper()
	var out []string
	require.NoError(t, b.ReadAll(t.Context(), topic, func(m kafka.Message) error {
		out = append(out, string(m.Value))
		return nil
	}))
	return out
}

func TestNewCreatesTopicsOnAFreshCluster(t *testing.T) {
	b := kafkatest.New(t, kafkatest.RetryTiers(2), kafkatest.TopicPrefix("t."))
	assert.False(t, b.Embedded())
	assert.Equal(t, "t.alerts", b.Topic(bus.TopicAlerts))
	require.NoError(t, b.Ping(t.Context()))
	require.NoError(t, b.Producer(bus.RetryTopic(1)).Write(t.Context(), kafka.Message{Value: []byte("x")}))
	assert.Equal(t, []string{"x"}, readValues(t, b, bus.RetryTopic(1)))
}

func TestConfigServesSeveralBuses(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Brokers(3))
	require.Len(t, c.Addrs(), 3)
	cfg := c.Config()
	assert.Equal(t, c.Addrs(), cfg.Brokers)
	assert.Equal(t, 100*time.Millisecond, cfg.Consumer.MaxWait)
	a, b := c.Open(t, cfg), c.Open(t, cfg)
	require.NoError(t, a.Producer(bus.TopicAlerts).Write(t.Context(), kafka.Message{Key: []byte("k"), Value: []byte("from-a")}))
	assert.Equal(t, []string{"from-a"}, readValues(t, b, bus.TopicAlerts))
}

func TestRestartWithDataDirKeepsMessages(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.DataDir(t.TempDir()), kafkatest.WithProxy())
	b := c.Open(t, c.Config())
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(t.Context(), kafka.Message{Key: []byte("a"), Value: []byte("kept")}))
	addrs := c.Addrs()
	c.Restart()
	assert.Equal(t, addrs, c.Addrs(), "same addresses after a restart")
	// The old Bus reconnects to the restarted broker.
	require.Eventually(t, func() bool { return b.Ping(t.Context()) == nil }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, []string{"kept"}, readValues(t, c.Open(t, c.Config()), bus.TopicReceipts))
	assert.Equal(t, []string{"kept"}, readValues(t, b, bus.TopicReceipts))
}

func TestProxyBlockAndUnblock(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.WithProxy())
	b := c.Open(t, c.Config())
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	c.Proxy.Block()
	assert.Error(t, b.Ping(ctx))
	c.Proxy.Unblock()
	assert.NoError(t, b.Ping(t.Context()))
}
