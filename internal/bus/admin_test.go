package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/testkit/logtest"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

func TestEnsureTopicsIsIdempotentAndCompactsSubscribersAndAlertIDs(t *testing.T) {
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
		"herald.quarantine", "herald.receipts", "herald.pending", "herald.audit",
		"herald.retry.0", "herald.retry.1", "herald.retry.2", "herald.retry.3", "herald.alert-ids"}
	assert.ElementsMatch(t, want, names)

	// What the brokers report, read back through the admin API: the
	// subscribers and alert-ids topics compacted (never deleting by
	// time), every other topic kept as long as configured (alerts,
	// receipts and audit 400 days).
	var res []kafka.DescribeConfigRequestResource
	for _, n := range want {
		res = append(res, kafka.DescribeConfigRequestResource{ResourceType: kafka.ResourceTypeTopic, ResourceName: n,
			ConfigNames: []string{"cleanup.policy", "retention.ms"}})
	}
	got, err := client.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: res})
	require.NoError(t, err)
	cfgs := map[string]map[string]string{}
	for _, r := range got.Resources {
		require.NoError(t, r.Error)
		cfgs[r.ResourceName] = map[string]string{}
		for _, e := range r.ConfigEntries {
			cfgs[r.ResourceName][e.ConfigName] = e.ConfigValue
		}
	}
	const day = int64(24 * 60 * 60 * 1000)
	assert.Equal(t, "compact", cfgs["herald.subscribers"]["cleanup.policy"])
	assert.Equal(t, "compact", cfgs["herald.alert-ids"]["cleanup.policy"])
	for name, days := range map[string]int64{"herald.alerts": 400, "herald.receipts": 400, "herald.audit": 400,
		"herald.pending": 400, "herald.dead": 400, "herald.quarantine": 400, "herald.deliveries": 7, "herald.retry.0": 7} {
		assert.Equal(t, "delete", cfgs[name]["cleanup.policy"], name)
		assert.Equal(t, fmt.Sprint(days*day), cfgs[name]["retention.ms"], name)
	}
	require.NoError(t, checkRetention(ctx, b, []string{bus.TopicAlerts, bus.TopicReceipts, bus.TopicSubscribers, bus.TopicAudit, bus.TopicAlertIDs}, 4))
}

func TestCheckRetentionRefusesShortTopics(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.RetryTiers(1))
	// Topics made as a stock cluster would: seven days, or made by an
	// operator who forgot the retention of receipts.
	short := c.Config()
	short.Retention.Receipts = 7 * config.Day
	short.Retention.Alerts = 30 * config.Day
	b := c.Open(t, short)
	// A topic created by hand with no configuration: the broker's 7 days.
	client := &kafka.Client{Addr: kafka.TCP(b.Brokers()...)}
	_, err := client.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: "stock.audit", NumPartitions: 1, ReplicationFactor: 1},
	}})
	require.NoError(t, err)

	check := c.Open(t, c.Config())
	err = checkRetention(t.Context(), check, []string{bus.TopicReceipts, bus.TopicAlerts, bus.TopicDeliveries}, 1)
	var re *bus.RetentionError
	require.ErrorAs(t, err, &re)
	assert.ErrorContains(t, err, "herald.receipts keeps records for 7d, kafka.retention.receipts asks for 400d")
	assert.ErrorContains(t, err, "herald.alerts keeps records for 30d, kafka.retention.alerts asks for 400d")
	assert.NotContains(t, err.Error(), "herald.deliveries")
	assert.ErrorContains(t, err, "kafka.retention.accept_shorter")

	stock := c.Config()
	stock.TopicPrefix = "stock."
	sb := c.OpenWith(t, stock, c.Options(t))
	err = checkRetention(t.Context(), sb, []string{bus.TopicAudit}, 1)
	assert.ErrorContains(t, err, "stock.audit keeps records for 7d, kafka.retention.audit asks for 400d")

	accept := c.Config()
	accept.Retention.AcceptShorter = true
	require.NoError(t, checkRetention(t.Context(), c.Open(t, accept), []string{bus.TopicReceipts}, 1), "the operator accepted it")

	compacted := c.Config()
	compacted.TopicPrefix = "compacted."
	_, err = client.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: "compacted.subscribers", NumPartitions: 1, ReplicationFactor: 1},
		{Topic: "compacted.receipts", NumPartitions: 1, ReplicationFactor: 1,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}},
	}})
	require.NoError(t, err)
	cb := c.OpenWith(t, compacted, c.Options(t))
	err = checkRetention(t.Context(), cb, []string{bus.TopicSubscribers, bus.TopicReceipts}, 1)
	assert.ErrorContains(t, err, "compacted.subscribers is not compacted")
	assert.ErrorContains(t, err, "compacted.receipts is compacted")
}

// TestCheckRetentionRefusesTopicsThatDeleteByTimeOrSize: a subscribers
// topic compacted and also deleting (cleanup.policy=compact,delete) loses a
// partner's latest record, tombstone or overlay once it is older than
// retention.ms; a topic that keeps records long enough by time but deletes
// its oldest segments beyond retention.bytes loses them whenever it grows
// past that size. Both are refused, and topics Herald creates keep every
// record whatever the broker's log.retention.bytes.
func TestCheckRetentionRefusesTopicsThatDeleteByTimeOrSize(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.RetryTiers(1),
		kafkatest.KfakeOpts(kfake.BrokerConfigs(map[string]string{"log.retention.bytes": "1073741824"})))
	b := c.Open(t, c.Config()) // creates the topics, on a broker deleting beyond 1 GiB by default
	require.NoError(t, checkRetention(t.Context(), b, []string{bus.TopicSubscribers, bus.TopicReceipts, bus.TopicAlerts}, 1),
		"the topics Herald creates keep every record")
	client := &kafka.Client{Addr: kafka.TCP(b.Brokers()...)}
	// kfake reports a broker's default under the broker's name only, so
	// ask whether the topic itself sets retention.bytes.
	got, err := client.DescribeConfigs(t.Context(), &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: "herald.receipts", ConfigNames: []string{"retention.bytes"}}}})
	require.NoError(t, err)
	require.Len(t, got.Resources, 1)
	var set []string
	for _, e := range got.Resources[0].ConfigEntries {
		if e.ConfigSource == 1 { // DYNAMIC_TOPIC_CONFIG
			set = append(set, e.ConfigName+"="+e.ConfigValue)
		}
	}
	assert.Equal(t, []string{"retention.bytes=-1"}, set, "set on the topic, above the broker's log.retention.bytes")

	forever := fmt.Sprint(int64(500 * config.Day / time.Millisecond))
	_, err = client.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: "other.subscribers", NumPartitions: 1, ReplicationFactor: 1,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact,delete"}}},
		{Topic: "other.receipts", NumPartitions: 1, ReplicationFactor: 1,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: forever},
				{ConfigName: "retention.bytes", ConfigValue: "1073741824"}}},
		{Topic: "other.alerts", NumPartitions: 1, ReplicationFactor: 1,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: forever},
				{ConfigName: "retention.bytes", ConfigValue: "1073741824"}}},
		{Topic: "other.audit", NumPartitions: 1, ReplicationFactor: 1,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: forever},
				{ConfigName: "retention.bytes", ConfigValue: "-1"}}},
	}})
	require.NoError(t, err)
	other := c.Config()
	other.TopicPrefix = "other."
	ob := c.OpenWith(t, other, c.Options(t))
	err = checkRetention(t.Context(), ob, []string{bus.TopicSubscribers, bus.TopicReceipts, bus.TopicAlerts, bus.TopicAudit}, 1)
	var re *bus.RetentionError
	require.ErrorAs(t, err, &re)
	assert.ErrorContains(t, err, "other.subscribers also deletes records older than 7d (cleanup.policy=compact,delete)")
	assert.ErrorContains(t, err, "other.receipts deletes its oldest records beyond 1073741824 bytes a partition (retention.bytes)")
	assert.ErrorContains(t, err, "other.alerts deletes its oldest records beyond 1073741824 bytes a partition (retention.bytes)")
	assert.NotContains(t, err.Error(), "other.audit")
}

// TestCheckRetentionRefusesCompactDeleteOnTopicsThatKeepEveryRecord: a
// receipts topic that keeps records long enough by time and size but is
// also compacted (cleanup.policy=compact,delete) keeps only the latest
// receipt of each alert once compaction runs, so an alert's history goes
// with it: refused, as a topic only compacted is.
func TestCheckRetentionRefusesCompactDeleteOnTopicsThatKeepEveryRecord(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.RetryTiers(1))
	client := &kafka.Client{Addr: kafka.TCP(c.Addrs()...)}
	forever := fmt.Sprint(int64(500 * config.Day / time.Millisecond))
	_, err := client.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: "both.receipts", NumPartitions: 1, ReplicationFactor: 1,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact,delete"},
				{ConfigName: "retention.ms", ConfigValue: forever}, {ConfigName: "retention.bytes", ConfigValue: "-1"}}},
	}})
	require.NoError(t, err)
	both := c.Config()
	both.TopicPrefix = "both."
	err = checkRetention(t.Context(), c.OpenWith(t, both, c.Options(t)), []string{bus.TopicReceipts}, 1)
	var re *bus.RetentionError
	require.ErrorAs(t, err, &re)
	assert.ErrorContains(t, err, "both.receipts is compacted")
}

// TestCheckRetentionOfFailsOnlyTheReadersOfAShortTopic: with several
// readers checked at once, a topic that keeps records for too short a time
// fails only the readers that read it, each with its own topics named once;
// a reader of right topics is absent; accept_shorter fails none and warns
// once per topic.
func TestCheckRetentionOfFailsOnlyTheReadersOfAShortTopic(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.RetryTiers(1))
	short := c.Config()
	short.Retention.Audit = 7 * config.Day
	short.Retention.Retry = config.Day
	c.Open(t, short) // creates the topics so

	groups := map[string][]string{
		"api":     {bus.TopicAlerts, bus.TopicSubscribers, bus.TopicAudit},
		"fanout":  {bus.TopicAlerts, bus.TopicSubscribers, bus.TopicReceipts},
		"deliver": {bus.TopicDeliveries, bus.TopicSubscribers, bus.RetryTopic(0), bus.RetryTopic(0)},
	}
	failed, err := c.Open(t, c.Config()).CheckRetentionOf(t.Context(), groups, 1)
	require.NoError(t, err)
	require.Len(t, failed, 2, "%v", failed)
	var re *bus.RetentionError
	require.ErrorAs(t, failed["api"], &re)
	assert.Equal(t, []string{"herald.audit keeps records for 7d, kafka.retention.audit asks for 400d; raise its retention.ms"}, re.Problems)
	require.ErrorAs(t, failed["deliver"], &re)
	assert.Equal(t, []string{"herald.retry.0 keeps records for 1d, kafka.retention.retry asks for 7d; raise its retention.ms"}, re.Problems, "named once")
	assert.NotContains(t, failed, "fanout")

	_, err = c.Open(t, c.Config()).CheckRetentionOf(t.Context(), map[string][]string{"x": {"nope"}}, 1)
	assert.ErrorContains(t, err, "nope is not one of Herald's topics")

	var logs logtest.Buffer
	accept := c.Config()
	accept.Retention.AcceptShorter = true
	opts := c.Options(t)
	opts.Log = slog.New(slog.NewTextHandler(&logs, nil))
	failed, err = c.OpenWith(t, accept, opts).CheckRetentionOf(t.Context(), groups, 1)
	require.NoError(t, err)
	assert.Empty(t, failed)
	assert.Equal(t, 1, strings.Count(logs.String(), "herald.audit keeps records for 7d"), logs.String())
	assert.Equal(t, 1, strings.Count(logs.String(), "herald.retry.0 keeps records for 1d"), logs.String())
}

// checkRetention checks names as the topics of one reader: the
// *RetentionError of that reader, if any, or CheckRetentionOf's error.
func checkRetention(ctx context.Context, b *bus.Bus, names []string, retryTiers int) error {
	failed, err := b.CheckRetentionOf(ctx, map[string][]string{"": names}, retryTiers)
	if err != nil {
		return err
	}
	return failed[""]
}

func TestEnsureTopicsWithoutCreateNamesMissingTopics(t *testing.T) {
	c := kafkatest.Start(t)
	cfg := c.Config()
	cfg.CreateTopics = false
	cfg.TopicPrefix = "other."
	b, err := bus.Open(t.Context(), cfg, bus.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	err = b.EnsureTopics(t.Context(), 1)
	require.Error(t, err)
	for _, name := range []string{"other.alerts", "other.subscribers", "other.retry.0"} {
		assert.ErrorContains(t, err, name)
	}
	assert.NotContains(t, err.Error(), "other.retry.1")
}

// TestCheckRetentionNamesAMissingTopic: an upgraded process whose
// deployment runs with kafka.create_topics off and lacks a topic this
// release added (alert-ids) does not start, and the error says that the
// topic does not exist and what to do, not only the broker's error code.
func TestCheckRetentionNamesAMissingTopic(t *testing.T) {
	c := kafkatest.Start(t)
	cfg := c.Config()
	b, err := bus.Open(t.Context(), cfg, bus.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, b.Close()) })
	require.NoError(t, b.EnsureTopics(t.Context(), 0))
	admin := &kafka.Client{Addr: kafka.TCP(c.Addrs()...), Timeout: 10 * time.Second}
	res, err := admin.DeleteTopics(t.Context(), &kafka.DeleteTopicsRequest{Topics: []string{b.Topic(bus.TopicAlertIDs)}})
	require.NoError(t, err)
	require.NoError(t, res.Errors[b.Topic(bus.TopicAlertIDs)])

	err = checkRetention(t.Context(), b, []string{bus.TopicAlerts, bus.TopicAlertIDs}, 0)
	require.Error(t, err)
	assert.ErrorContains(t, err, b.Topic(bus.TopicAlertIDs)+" does not exist")
	assert.ErrorContains(t, err, "kafka.create_topics")
	assert.ErrorIs(t, err, kafka.UnknownTopicOrPartition)
}

func TestRetryTopic(t *testing.T) {
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

func openEmbedded(t *testing.T, listen, dataDir string) (*bus.Bus, *logtest.Buffer) {
	t.Helper()
	var logs logtest.Buffer
	cfg := config.Default().Kafka
	cfg.Embedded = config.Embedded{Listen: listen, DataDir: dataDir}
	cfg.Partitions = 2
	cfg.Consumer = kafkatest.FastConsumer()
	b, err := bus.Open(t.Context(), cfg, bus.Options{Keyring: kafkatest.Keyring(), Log: slog.New(slog.NewTextHandler(&logs, nil))})
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
	cfg := config.Default().Kafka
	cfg.Embedded.Listen = addr
	_, err = bus.Open(t.Context(), cfg, bus.Options{})
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
