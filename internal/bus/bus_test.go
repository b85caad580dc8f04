package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

const waitFor = 15 * time.Second
const tick = 10 * time.Millisecond

// consumeInBackground runs b.Consume until the test ends and returns a
// function that stops it and returns Consume's result.
func consumeInBackground(t *testing.T, b *bus.Bus, group string, topics []string, h bus.Handler) (stop func() error) {
	t.Helper()
	return inBackground(t, "consume", func(ctx context.Context) error { return b.Consume(ctx, group, topics, h) })
}

// inBackground runs run until the test ends or stop is called, and
// returns stop, which cancels run's context and returns run's result (an
// error naming what if it does not return in time).
func inBackground(t *testing.T, what string, run func(context.Context) error) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(waitFor):
				err = errors.New(what + " did not return after cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// recorder collects handled messages.
type recorder struct {
	mu   sync.Mutex
	msgs []kafka.Message
}

func (r *recorder) add(msgs []kafka.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
}

func (r *recorder) values() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.msgs))
	for i, m := range r.msgs {
		out[i] = string(m.Value)
	}
	return out
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func messages(prefix string, n int) []kafka.Message {
	out := make([]kafka.Message, n)
	for i := range out {
		out[i] = kafka.Message{
			Key:     fmt.Appendf(nil, "key-%d", i%7),
			Value:   fmt.Appendf(nil, "%s-%03d", prefix, i),
			Headers: []kafka.Header{{Key: "reason", Value: []byte("r" + fmt.Sprint(i))}},
		}
	}
	return out
}

func TestProduceConsumeRoundTrip(t *testing.T) {
	b := kafkatest.New(t)
	ctx := t.Context()
	sent := messages("m", 60)
	require.NoError(t, b.Producer(bus.TopicDeliveries).Write(ctx, sent...))
	require.NoError(t, b.Producer(bus.RetryTopic(1)).Write(ctx, messages("r", 5)...))

	var rec recorder
	stop := consumeInBackground(t, b, "round-trip", []string{bus.TopicDeliveries, bus.RetryTopic(1)}, func(_ context.Context, msgs []kafka.Message) error {
		rec.add(msgs)
		return nil
	})
	require.Eventually(t, func() bool { return rec.len() >= 65 }, waitFor, tick)
	require.NoError(t, stop())

	got := rec.values()
	want := []string{}
	for _, m := range append(sent, messages("r", 5)...) {
		want = append(want, string(m.Value))
	}
	assert.ElementsMatch(t, want, got, "every message exactly once in a clean run")

	// Per key, order is kept; headers and topics arrive intact.
	lastByKey := map[string]string{}
	for _, m := range rec.msgs {
		if m.Topic != b.Topic(bus.TopicDeliveries) {
			assert.Equal(t, "herald.retry.1", m.Topic)
			continue
		}
		k := string(m.Key)
		assert.Greater(t, string(m.Value), lastByKey[k], "order within key %s", k)
		lastByKey[k] = string(m.Value)
		var i int
		_, err := fmt.Sscanf(string(m.Value), "m-%d", &i)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprintf("r%d", i), bus.Header(m, "reason"))
		assert.Empty(t, bus.Header(m, "missing"))
	}
}

func TestConsumeCommitsOnlyAfterHandlerSucceeds(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	ctx := t.Context()
	require.NoError(t, b.Producer(bus.TopicDeliveries).Write(ctx, messages("a", 20)...))

	var rec recorder
	var failed atomic.Int32
	var failedBatch []string
	stop := consumeInBackground(t, b, "at-least-once", []string{bus.TopicDeliveries}, func(_ context.Context, msgs []kafka.Message) error {
		for _, m := range msgs {
			if string(m.Value) == "a-007" && failed.Add(1) <= 2 {
				for _, m := range msgs {
					failedBatch = append(failedBatch, string(m.Value))
				}
				return errors.New("downstream unavailable")
			}
		}
		rec.add(msgs)
		return nil
	})
	require.Eventually(t, func() bool { return slices.Contains(rec.values(), "a-007") }, waitFor, tick)
	require.Eventually(t, func() bool { return rec.len() >= 20 }, waitFor, tick)
	require.NoError(t, stop())
	assert.EqualValues(t, 3, failed.Load(), "the failed batch was fetched again until it succeeded")
	got := rec.values()
	for _, v := range messages("a", 20) {
		assert.Contains(t, got, string(v.Value))
	}
	for _, v := range failedBatch {
		assert.Contains(t, got, v, "messages of a failed batch are redelivered")
	}
	lag, err := b.Lag(ctx, "at-least-once", bus.TopicDeliveries)
	require.NoError(t, err)
	assert.Zero(t, lag)

	// A restarted worker (a new Bus, same group) resumes after the
	// committed offsets: it sees only what is new.
	require.NoError(t, b.Producer(bus.TopicDeliveries).Write(ctx, messages("b", 5)...))
	lag, err = b.Lag(ctx, "at-least-once", bus.TopicDeliveries)
	require.NoError(t, err)
	assert.EqualValues(t, 5, lag)

	b2 := c.Open(t, c.Config())
	var rec2 recorder
	stop2 := consumeInBackground(t, b2, "at-least-once", []string{bus.TopicDeliveries}, func(_ context.Context, msgs []kafka.Message) error {
		rec2.add(msgs)
		return nil
	})
	require.Eventually(t, func() bool { return rec2.len() >= 5 }, waitFor, tick)
	require.NoError(t, stop2())
	assert.ElementsMatch(t, []string{"b-000", "b-001", "b-002", "b-003", "b-004"}, rec2.values())
}

func TestConsumeDrainsInFlightBatchOnCancel(t *testing.T) {
	b := kafkatest.New(t)
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(t.Context(), messages("d", 3)...))

	entered := make(chan struct{})
	release := make(chan struct{})
	var handlerCtxErr error
	var once sync.Once
	var rec recorder
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(ctx, "drain", []string{bus.TopicReceipts}, func(hctx context.Context, msgs []kafka.Message) error {
			once.Do(func() {
				close(entered)
				<-release
				handlerCtxErr = hctx.Err()
			})
			rec.add(msgs)
			return nil
		})
	}()
	<-entered
	cancel() // a context derived from ctx would be cancelled synchronously here
	close(release)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Consume did not return after cancel")
	}
	assert.NoError(t, handlerCtxErr, "the handler's context outlives the cancelled consumer")
	require.NotZero(t, rec.len())

	lag, err := b.Lag(t.Context(), "drain", bus.TopicReceipts)
	require.NoError(t, err)
	assert.EqualValues(t, 3-rec.len(), lag, "the drained batch was committed")
}

func TestConsumerGroupMembersSplitPartitions(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Partitions(4))
	b1 := c.Open(t, c.Config())
	b2 := c.Open(t, c.Config())
	var rec1, rec2 recorder
	h := func(r *recorder) bus.Handler {
		return func(_ context.Context, msgs []kafka.Message) error { r.add(msgs); return nil }
	}
	consumeInBackground(t, b1, "split", []string{bus.TopicDeliveries}, h(&rec1))
	consumeInBackground(t, b2, "split", []string{bus.TopicDeliveries}, h(&rec2))

	ctx := t.Context()
	sent := 0
	require.Eventually(t, func() bool {
		batch := make([]kafka.Message, 40)
		for i := range batch {
			batch[i] = kafka.Message{Key: fmt.Appendf(nil, "sub-%d", sent+i), Value: fmt.Appendf(nil, "%d", sent+i)}
		}
		sent += len(batch)
		require.NoError(t, b1.Producer(bus.TopicDeliveries).Write(ctx, batch...))
		return rec1.len() > 0 && rec2.len() > 0
	}, waitFor, 100*time.Millisecond, "both members get partitions")

	// Every message is handled, by one member or the other.
	require.Eventually(t, func() bool {
		all := map[string]bool{}
		for _, v := range append(rec1.values(), rec2.values()...) {
			all[v] = true
		}
		return len(all) == sent
	}, waitFor, tick)
}

func TestConsumeFailsOnMissingTopic(t *testing.T) {
	b := kafkatest.New(t)
	err := b.Consume(t.Context(), "g", []string{"no-such-topic"}, func(context.Context, []kafka.Message) error { return nil })
	require.ErrorContains(t, err, "herald.no-such-topic")
}

func TestReadAllAndFollowWithTombstones(t *testing.T) {
	b := kafkatest.New(t)
	ctx := t.Context()
	p := b.Producer(bus.TopicSubscribers)
	require.NoError(t, p.Write(ctx,
		kafka.Message{Key: []byte("acme"), Value: []byte(`{"id":"acme"}`)},
		kafka.Message{Key: []byte("bolt"), Value: []byte(`{"id":"bolt"}`)},
		kafka.Message{Key: []byte("care"), Value: []byte(`{"id":"care"}`)},
		kafka.Message{Key: []byte("bolt"), Value: nil}, // tombstone
		kafka.Message{Key: []byte("empty"), Value: []byte{}},
	))

	var all []kafka.Message
	require.NoError(t, b.ReadAll(ctx, bus.TopicSubscribers, func(m kafka.Message) error { all = append(all, m); return nil }))
	require.Len(t, all, 5)
	var tomb, empty int
	for _, m := range all {
		assert.Equal(t, "herald.subscribers", m.Topic)
		if m.Value == nil {
			tomb++
			assert.Equal(t, "bolt", string(m.Key))
		} else if len(m.Value) == 0 {
			empty++
		}
	}
	assert.Equal(t, 1, tomb, "one tombstone, with a nil value")
	assert.Equal(t, 1, empty, "an empty value is not a tombstone")

	// ReadAll stops at the high watermark as of the call, and returns fn's error.
	sentinel := errors.New("stop")
	assert.ErrorIs(t, b.ReadAll(ctx, bus.TopicSubscribers, func(kafka.Message) error { return sentinel }), sentinel)
	require.NoError(t, b.ReadAll(ctx, bus.TopicDead, func(kafka.Message) error { return sentinel }), "empty topic")

	// Follow materialises the registry, says when it caught up, and keeps going.
	var mu sync.Mutex
	registry := map[string]string{}
	snapshot := func() map[string]string { mu.Lock(); defer mu.Unlock(); return maps(registry) }
	var caught atomic.Int32
	var snapAtCatchUp map[string]string
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.Follow(fctx, bus.TopicSubscribers, func(m kafka.Message) error {
			mu.Lock()
			defer mu.Unlock()
			if m.Value == nil {
				delete(registry, string(m.Key))
			} else {
				registry[string(m.Key)] = string(m.Value)
			}
			return nil
		}, func() {
			caught.Add(1)
			mu.Lock()
			snapAtCatchUp = maps(registry)
			mu.Unlock()
		})
	}()
	require.Eventually(t, func() bool { return caught.Load() == 1 }, waitFor, tick)
	mu.Lock()
	assert.Equal(t, map[string]string{"acme": `{"id":"acme"}`, "care": `{"id":"care"}`, "empty": ""}, snapAtCatchUp)
	mu.Unlock()

	require.NoError(t, p.Write(ctx,
		kafka.Message{Key: []byte("dove"), Value: []byte(`{"id":"dove"}`)},
		kafka.Message{Key: []byte("acme"), Value: nil},
	))
	require.Eventually(t, func() bool {
		s := snapshot()
		_, hasAcme := s["acme"]
		return s["dove"] != "" && !hasAcme
	}, waitFor, tick)
	cancel()
	require.NoError(t, <-done)
	assert.EqualValues(t, 1, caught.Load(), "caughtUp is called once")
}

func TestFollowEmptyTopicCatchesUpAtOnceAndReturnsFnError(t *testing.T) {
	b := kafkatest.New(t)
	ctx := t.Context()
	caught := make(chan struct{})
	sentinel := errors.New("bad record")
	done := make(chan error, 1)
	go func() {
		done <- b.Follow(ctx, bus.TopicAlerts, func(kafka.Message) error { return sentinel }, func() { close(caught) })
	}()
	select {
	case <-caught:
	case <-time.After(waitFor):
		t.Fatal("caughtUp not called for an empty topic")
	}
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(ctx, kafka.Message{Key: []byte("x"), Value: []byte("y")}))
	select {
	case err := <-done:
		assert.ErrorIs(t, err, sentinel)
	case <-time.After(waitFor):
		t.Fatal("Follow did not return fn's error")
	}
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestWeighBoundsABatchByWeight: with Weigh, a batch holds up to
// CommitBatch (100 here) of its messages' weight, the message that reaches
// it last, rather than up to CommitBatch messages; every message is handed
// on once.
func TestWeighBoundsABatchByWeight(t *testing.T) {
	b := kafkatest.New(t, kafkatest.Partitions(1))
	ctx := t.Context()
	require.NoError(t, b.Producer(bus.TopicDeliveries).Write(ctx, messages("w", 40)...))
	var mu sync.Mutex
	var sizes []int
	seen := 0
	stop := inBackground(t, "consume", func(ctx context.Context) error {
		return b.Consume(ctx, "weighed", []string{bus.TopicDeliveries}, func(_ context.Context, msgs []kafka.Message) error {
			mu.Lock()
			sizes = append(sizes, len(msgs))
			seen += len(msgs)
			mu.Unlock()
			return nil
		}, bus.Weigh(func(kafka.Message) int { return 30 }))
	})
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return seen >= 40 }, waitFor, tick)
	require.NoError(t, stop())
	for _, n := range sizes {
		require.LessOrEqual(t, n, 4, "batches %v: 4 messages of weight 30 reach 100", sizes)
	}
	require.Equal(t, 40, seen)
}
