package bus

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/crypto/busauth"
)

// Producer writes messages to one topic. It is safe for concurrent use and
// owned by the Bus that made it.
type Producer struct {
	topic string // full name
	name  string // without prefix: what the authenticator covers
	w     *kafka.Writer
	keys  *busauth.Keyring
}

// Producer returns the producer for topic (given without prefix), creating
// it on first use. Messages are partitioned by key with the murmur2 hash of
// the Java client's default partitioner, so Herald, Kafka's own tools and any
// Java producer put the same key on the same partition (which a compacted
// topic needs). Jobs for the deliveries and retry topics are compressed with
// LZ4: a batch of them repeats the same alert.
func (b *Bus) Producer(topic string) *Producer {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.producers[topic]; ok {
		return p
	}
	w := &kafka.Writer{
		Addr:                   kafka.TCP(b.brokers...),
		Topic:                  b.Topic(topic),
		Balancer:               &kafka.Murmur2Balancer{},
		BatchSize:              1000,
		BatchBytes:             1 << 20, // kfake's and Kafka's default message.max.bytes is 1 MiB + 12.
		BatchTimeout:           200 * time.Microsecond,
		WriteTimeout:           requestTimeout,
		ReadTimeout:            requestTimeout,
		RequiredAcks:           kafka.RequireAll,
		AllowAutoTopicCreation: false,
		Transport:              b.transport,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			b.log.Debug("kafka writer: "+fmt.Sprintf(msg, args...), "topic", b.Topic(topic))
		}),
	}
	if topic == TopicDeliveries || strings.HasPrefix(topic, "retry.") {
		w.Compression = kafka.Lz4
	}
	p := &Producer{topic: w.Topic, name: topic, w: w, keys: b.keys}
	if b.closed {
		// A closed Bus hands out a closed producer: Write fails cleanly.
		_ = w.Close()
		return p
	}
	b.producers[topic] = p
	return p
}

// Topic returns the full name of the topic p writes to.
func (p *Producer) Topic() string { return p.topic }

// Write writes msgs and returns only when every broker replica in sync has
// acknowledged all of them (acks=all), or with an error. Messages of one
// key keep their order. Leave Topic and Partition of the messages empty.
// Every message gets a herald-auth header authenticating it for this topic
// (replacing any it had); msgs and their header slices are not modified.
func (p *Producer) Write(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if p.keys == nil {
		return fmt.Errorf("write %d messages to %s: %w", len(msgs), p.topic, ErrNoKeyring)
	}
	signed := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		hs := make([]kafka.Header, 0, len(m.Headers)+1)
		for _, h := range m.Headers {
			if h.Key != busauth.Header {
				hs = append(hs, h)
			}
		}
		m.Headers = append(hs, kafka.Header{Key: busauth.Header, Value: []byte(p.keys.Sign(p.name, m.Key, m.Value))})
		signed[i] = m
	}
	msgs = signed
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("write %d messages to %s: %w", len(msgs), p.topic, cause(ctx, err))
	}
	return nil
}
