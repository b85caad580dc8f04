package bus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// benchBatch is how many messages one Write carries in the benchmarks.
const benchBatch = 1000

func benchMessages(n int) []kafka.Message {
	value := make([]byte, 1024)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Key: fmt.Appendf(nil, "subscriber-%d", i%50), Value: value}
	}
	return msgs
}

// BenchmarkProduce measures synchronous (acks=all) writes of 1 KiB messages,
// 1,000 per Write, to a 3-partition topic on kfake. b.N counts messages.
func BenchmarkProduce(b *testing.B) {
	for _, topic := range []string{bus.TopicReceipts, bus.TopicDeliveries} {
		b.Run(topic, func(b *testing.B) {
			bb := kafkatest.New(b, kafkatest.RetryTiers(0))
			p := bb.Producer(topic)
			msgs := benchMessages(benchBatch)
			ctx := context.Background()
			b.SetBytes(1024)
			b.ResetTimer()
			for sent := 0; sent < b.N; sent += benchBatch {
				if err := p.Write(ctx, msgs[:min(benchBatch, b.N-sent)]...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
		})
	}
}

// BenchmarkConsume measures a consumer group reading 1 KiB messages and
// committing every CommitBatch (100) messages. b.N counts messages.
func BenchmarkConsume(b *testing.B) {
	bb := kafkatest.New(b, kafkatest.RetryTiers(0))
	ctx := context.Background()
	msgs := benchMessages(benchBatch)
	for sent := 0; sent < b.N; sent += benchBatch {
		if err := bb.Producer(bus.TopicReceipts).Write(ctx, msgs[:min(benchBatch, b.N-sent)]...); err != nil {
			b.Fatal(err)
		}
	}
	var got atomic.Int64
	done := make(chan struct{})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b.SetBytes(1024)
	b.ResetTimer()
	returned := make(chan error, 1)
	go func() {
		returned <- bb.Consume(cctx, "bench", []string{bus.TopicReceipts}, func(_ context.Context, batch []kafka.Message) error {
			if got.Add(int64(len(batch))) >= int64(b.N) {
				select {
				case <-done:
				default:
					close(done)
				}
			}
			return nil
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatal("consumer did not finish")
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
	cancel()
	if err := <-returned; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkProduceOne measures one synchronous (acks=all) write of one
// small message at a time: the latency an idle producer adds to each hop
// of an alert.
func BenchmarkProduceOne(b *testing.B) {
	bb := kafkatest.New(b, kafkatest.RetryTiers(0))
	p := bb.Producer(bus.TopicReceipts)
	msg := benchMessages(1)
	ctx := context.Background()
	b.ResetTimer()
	for range b.N {
		if err := p.Write(ctx, msg...); err != nil {
			b.Fatal(err)
		}
	}
}
