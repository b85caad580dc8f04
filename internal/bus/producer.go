package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/crypto/busauth"
)

// Producer writes messages to one topic. It is safe for concurrent use and
// owned by the Bus that made it.
//
// A write is sent at once when its partition is idle: nothing waits for a
// batch to fill. While a partition has a request in flight, the writes
// that arrive for it wait and then go together in the next request (up to
// maxRequestBytes): batches grow with the backlog and only with it.
// (kafka-go's Writer holds every write for its BatchTimeout, which the
// runtime's timers stretch to about a millisecond when the process is
// idle: 1.4 ms per one-message write against kfake, 0.09 ms for the same
// produce request sent at once; and it allocates a batch of BatchSize
// messages for each partition a write touches.) One request at a time per
// partition also keeps the order of messages of one key across writes.
type Producer struct {
	topic    string // full name
	name     string // without prefix: what the authenticator covers
	client   *kafka.Client
	compress kafka.Compression
	keys     *busauth.Keyring
	closed   *atomic.Bool    // the Bus's
	senders  *sync.WaitGroup // the Bus's: Close waits for them

	balancer kafka.Murmur2Balancer

	mu         sync.Mutex
	partitions []int // 0..n-1, as last read from metadata
	readAt     time.Time
	queues     map[int]*partitionQueue
}

// partitionQueue holds the writes waiting for one partition while a
// request to it is in flight.
type partitionQueue struct {
	mu      sync.Mutex
	busy    bool // a sender is running
	pending []*pendingWrite
}

// pendingWrite is a part of a Write waiting for its request's answer.
type pendingWrite struct {
	ctx  context.Context // the writer's: a write given up is not sent
	msgs []kafka.Message
	size int
	done chan error // buffered
}

// Limits of one produce request, and of retrying one.
const (
	// maxRequestBytes bounds the records of one produce request:
	// kfake's and Kafka's default message.max.bytes is 1 MiB + 12.
	maxRequestBytes = 1 << 20
	// maxAttempts, writeBackoffMin and writeBackoffMax retry a request
	// that failed temporarily (a leader moving, a broker restarting), as
	// kafka-go's Writer does by default.
	maxAttempts     = 10
	writeBackoffMin = 100 * time.Millisecond
	writeBackoffMax = time.Second
	// partitionsTTL is how long a producer trusts the partition count it
	// read (the transport answers from its metadata cache).
	partitionsTTL = 5 * time.Second
)

// Producer returns the producer for topic (given without prefix), creating
// it on first use. Messages are partitioned by key with the murmur2 hash of
// the Java client's default partitioner, so Herald, Kafka's own tools and any
// Java producer put the same key on the same partition (which a compacted
// topic needs). Jobs for the deliveries and retry topics are compressed with
// LZ4 (a batch of them repeats the same alert), and so are receipts (two per
// delivery, much alike): the broker stores and serves a fraction of the
// bytes, for less CPU than copying them costs.
func (b *Bus) Producer(topic string) *Producer {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.producers[topic]; ok {
		return p
	}
	p := &Producer{
		topic:   b.Topic(topic),
		name:    topic,
		client:  &kafka.Client{Addr: kafka.TCP(b.brokers...), Timeout: requestTimeout, Transport: b.transport},
		keys:    b.keys,
		closed:  &b.producersClosed,
		senders: &b.senders,
	}
	if topic == TopicDeliveries || topic == TopicReceipts || strings.HasPrefix(topic, "retry.") {
		p.compress = kafka.Lz4
	}
	if b.closed {
		// A closed Bus hands out a closed producer: Write fails cleanly.
		return p
	}
	b.producers[topic] = p
	return p
}

// Topic returns the full name of the topic p writes to.
func (p *Producer) Topic() string { return p.topic }

// errProducerClosed is Write's answer once the Bus is closed.
var errProducerClosed = errors.New("the bus is closed")

// Write writes msgs and returns only when every broker replica in sync has
// acknowledged all of them (acks=all), or with an error. Messages of one
// key keep their order. Leave Topic and Partition of the messages empty.
// Every message gets a herald-auth header authenticating it for this topic
// and, when it carries other headers, a herald-auth-headers header
// authenticating them (replacing any it had); msgs and their header slices
// are not modified.
//
// A request that fails temporarily is retried (up to 10 attempts, 100 ms
// to 1 s apart); when Write returns an error, any of the messages may or
// may not have been written.
func (p *Producer) Write(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := p.write(ctx, msgs, nil); err != nil {
		return fmt.Errorf("write %d messages to %s: %w", len(msgs), p.topic, cause(ctx, err))
	}
	return nil
}

// write places msgs by partitions (nil: as last read) and writes them.
func (p *Producer) write(ctx context.Context, msgs []kafka.Message, partitions []int) error {
	if err := p.ready(msgs); err != nil {
		return err
	}
	if partitions == nil {
		var err error
		if partitions, err = p.readPartitions(ctx); err != nil {
			return err
		}
	}
	pl := &Placement{partitions: partitions, balancer: p.balancer}
	// Sign and place every message; keep each partition's in order.
	byPartition := make([][]kafka.Message, len(partitions))
	for _, m := range msgs {
		m.Headers = sign(p.keys, p.name, &m)
		part := pl.Partition(m.Key)
		byPartition[part] = append(byPartition[part], m)
	}
	var used []int
	for part, ms := range byPartition {
		if len(ms) > 0 {
			used = append(used, part)
		}
	}
	if len(used) == 1 {
		return p.writePartition(ctx, used[0], byPartition[used[0]])
	}
	errs := make([]error, len(used))
	var wg sync.WaitGroup
	for i, part := range used {
		wg.Go(func() { errs[i] = p.writePartition(ctx, part, byPartition[part]) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Placement is where a producer's keys go by one reading of its topic's
// partition count (Producer.Placement). Writers that pack the messages of
// several keys into one record (the fan-out's jobs) group keys by it and
// write the records with WriteTo under the same placement, so that every
// key's messages go where a record of their own would have gone, even if
// partitions are added in between.
type Placement struct {
	partitions []int
	balancer   kafka.Murmur2Balancer
}

// Partition returns the partition key goes to.
func (pl *Placement) Partition(key []byte) int {
	return pl.balancer.Balance(kafka.Message{Key: key}, pl.partitions...)
}

// Placement returns where Write places keys now: by the topic's partition
// count as last read (at most partitionsTTL ago).
func (p *Producer) Placement(ctx context.Context) (*Placement, error) {
	partitions, err := p.readPartitions(ctx)
	if err != nil {
		return nil, fmt.Errorf("place messages on %s: %w", p.topic, cause(ctx, err))
	}
	return &Placement{partitions: partitions, balancer: p.balancer}, nil
}

// WriteTo is Write with every message placed by pl, whatever the topic's
// partition count is now (partitions are only ever added, so pl's remain).
func (p *Producer) WriteTo(ctx context.Context, pl *Placement, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := p.write(ctx, msgs, pl.partitions); err != nil {
		return fmt.Errorf("write %d messages to %s: %w", len(msgs), p.topic, cause(ctx, err))
	}
	return nil
}

// WriteToPartition is Write with every message placed on partition,
// whatever its key: for a record that must follow another one of a
// different key in the same partition's order (an endorsement written
// after the record it names, `herald keys resign`). The messages are
// signed, sized and ordered as Write does; partition must exist.
// (kafka-go's Writer ignores kafka.Message.Partition: this is the way to
// choose one.)
func (p *Producer) WriteToPartition(ctx context.Context, partition int, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := p.writeToPartition(ctx, partition, msgs); err != nil {
		return fmt.Errorf("write %d messages to %s partition %d: %w", len(msgs), p.topic, partition, cause(ctx, err))
	}
	return nil
}

func (p *Producer) writeToPartition(ctx context.Context, partition int, msgs []kafka.Message) error {
	if err := p.ready(msgs); err != nil {
		return err
	}
	partitions, err := p.readPartitions(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(partitions, partition) {
		return fmt.Errorf("no partition %d: the topic has %d", partition, len(partitions))
	}
	signed := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		m.Headers = sign(p.keys, p.name, &m)
		signed[i] = m
	}
	return p.writePartition(ctx, partition, signed)
}

// ready refuses msgs when p cannot write them: p closed, no keyring to
// sign with, or a message too big for a request.
func (p *Producer) ready(msgs []kafka.Message) error {
	if p.closed.Load() {
		return errProducerClosed
	}
	if p.keys == nil {
		return ErrNoKeyring
	}
	return checkSizes(msgs)
}

// checkSizes refuses msgs if one is too big for a request.
func checkSizes(msgs []kafka.Message) error {
	for i := range msgs {
		if n := messageSize(&msgs[i]); n > maxRequestBytes {
			return fmt.Errorf("message %d is %d bytes, more than the %d a request may carry", i, n, maxRequestBytes)
		}
	}
	return nil
}

// readPartitions returns the topic's partitions, from the transport's
// metadata cache at most every partitionsTTL.
func (p *Producer) readPartitions(ctx context.Context) ([]int, error) {
	p.mu.Lock()
	parts, at := p.partitions, p.readAt
	p.mu.Unlock()
	if len(parts) > 0 && time.Since(at) < partitionsTTL {
		return parts, nil
	}
	ctx, cancel := withTimeout(ctx, "read the partitions of "+p.topic)
	defer cancel()
	md, err := p.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{p.topic}})
	if err != nil {
		return nil, fmt.Errorf("read metadata: %w", err)
	}
	for _, t := range md.Topics {
		if t.Name != p.topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("metadata: %w", t.Error)
		}
		if len(t.Partitions) == 0 {
			break
		}
		parts = make([]int, len(t.Partitions))
		for i := range parts {
			parts[i] = i
		}
		p.mu.Lock()
		p.partitions, p.readAt = parts, time.Now()
		p.mu.Unlock()
		return parts, nil
	}
	return nil, fmt.Errorf("metadata: %w", kafka.UnknownTopicOrPartition)
}

// writePartition writes msgs to one partition, in order, and waits for
// their answer: it queues them (in parts of at most maxRequestBytes) behind
// the writes waiting for the partition, and starts its sender if idle.
func (p *Producer) writePartition(ctx context.Context, partition int, msgs []kafka.Message) error {
	q := p.queue(partition)
	var parts []*pendingWrite
	for len(msgs) > 0 {
		n, size := 0, 0
		for n < len(msgs) {
			s := messageSize(&msgs[n])
			if n > 0 && size+s > maxRequestBytes {
				break
			}
			size += s
			n++
		}
		parts = append(parts, &pendingWrite{ctx: ctx, msgs: msgs[:n], size: size, done: make(chan error, 1)})
		msgs = msgs[n:]
	}
	q.mu.Lock()
	q.pending = append(q.pending, parts...)
	start := !q.busy
	q.busy = true
	q.mu.Unlock()
	if start {
		p.senders.Go(func() { p.send(partition, q) })
	}
	for _, w := range parts {
		select {
		case err := <-w.done:
			if err != nil {
				return fmt.Errorf("partition %d: %w", partition, err)
			}
		case <-ctx.Done():
			return fmt.Errorf("partition %d: %w", partition, ctx.Err())
		}
	}
	return nil
}

// queue returns the queue of partition, creating it.
func (p *Producer) queue(partition int) *partitionQueue {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.queues == nil {
		p.queues = make(map[int]*partitionQueue)
	}
	q := p.queues[partition]
	if q == nil {
		q = &partitionQueue{}
		p.queues[partition] = q
	}
	return q
}

// send sends the writes waiting in q, as many as fit in one request at a
// time, until none is left.
func (p *Producer) send(partition int, q *partitionQueue) {
	for {
		q.mu.Lock()
		n, size := 0, 0
		for n < len(q.pending) && (n == 0 || size+q.pending[n].size <= maxRequestBytes) {
			size += q.pending[n].size
			n++
		}
		if n == 0 {
			q.busy = false
			q.mu.Unlock()
			return
		}
		// The queue's array lets go of the writes taken: slicing them off
		// alone would keep them, and every message they carry, alive
		// until an append happens to move the array.
		batch := slices.Clone(q.pending[:n])
		clear(q.pending[:n])
		q.pending = q.pending[n:]
		if len(q.pending) == 0 {
			q.pending = nil
		}
		q.mu.Unlock()

		// Writes whose writer gave up are not sent.
		live := batch[:0:0]
		var msgs []kafka.Message
		for _, w := range batch {
			if err := w.ctx.Err(); err != nil {
				w.done <- err
				continue
			}
			live = append(live, w)
			msgs = append(msgs, w.msgs...)
		}
		if len(live) == 0 {
			continue
		}
		// The request is bound by the writers' contexts: it ends when
		// the last of them does.
		ctx, cancel := context.WithCancel(context.Background())
		stops := make([]func() bool, 0, len(live))
		remaining := atomic.Int32{}
		remaining.Store(int32(len(live)))
		for _, w := range live {
			stops = append(stops, context.AfterFunc(w.ctx, func() {
				if remaining.Add(-1) == 0 {
					cancel()
				}
			}))
		}
		err := p.produce(ctx, partition, msgs)
		for _, stop := range stops {
			stop()
		}
		cancel()
		for _, w := range live {
			w.done <- err
		}
	}
}

// produce sends one produce request, retrying temporary failures.
func (p *Producer) produce(ctx context.Context, partition int, msgs []kafka.Message) error {
	var err error
	bo := newBackoff(writeBackoffMin, writeBackoffMax)
	for attempt := range maxAttempts {
		if attempt > 0 {
			if !bo.wait(ctx) {
				return errors.Join(err, ctx.Err())
			}
			if p.closed.Load() {
				return errors.Join(err, errProducerClosed)
			}
		}
		err = p.produceOnce(ctx, partition, msgs)
		if err == nil || !retriable(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (p *Producer) produceOnce(ctx context.Context, partition int, msgs []kafka.Message) error {
	ctx, cancel := withTimeout(ctx, "produce")
	defer cancel()
	res, err := p.client.Produce(ctx, &kafka.ProduceRequest{
		Topic:        p.topic,
		Partition:    partition,
		RequiredAcks: kafka.RequireAll,
		Compression:  p.compress,
		Records:      &records{msgs: msgs},
	})
	if err != nil {
		return err
	}
	if res.Error != nil {
		return res.Error
	}
	for i, e := range res.RecordErrors {
		return fmt.Errorf("record %d: %w", i, e)
	}
	return nil
}

// retriable reports whether a failed request may succeed if sent again,
// as kafka-go's Writer judges it: a Kafka error that says so, or a
// connection refused, reset or cut.
func retriable(err error) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || (errors.As(err, &ne) && ne.Timeout())
}

// sign returns the headers of m as written to topic (without prefix): its
// other headers, in order, then herald-auth and, when there are other
// headers, herald-auth-headers, replacing any of these it had. A record
// without other headers (delivery jobs, receipts) gets herald-auth only.
func sign(keys *busauth.Keyring, topic string, m *kafka.Message) []kafka.Header {
	hs := make([]kafka.Header, 0, len(m.Headers)+1)
	for _, h := range m.Headers {
		if busauth.Covers(h.Key) {
			hs = append(hs, h)
		}
	}
	auth := keys.Sign(topic, m.Key, m.Value)
	if len(hs) == 0 {
		return append(hs, kafka.Header{Key: busauth.Header, Value: []byte(auth)})
	}
	return append(hs,
		kafka.Header{Key: busauth.Header, Value: []byte(auth)},
		kafka.Header{Key: busauth.HeadersHeader, Value: []byte(keys.SignHeaders(topic, auth, headerSeq(hs)))})
}

// headerSeq returns hs as name and value pairs, in order.
func headerSeq(hs []kafka.Header) iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		for _, h := range hs {
			if !yield(h.Key, h.Value) {
				return
			}
		}
	}
}

// messageSize estimates what m adds to a produce request (its record's
// size, with some room for the varints) once Write has signed it: the same
// before signing (Write's size check) and after (the request split).
func messageSize(m *kafka.Message) int {
	n := len(m.Key) + len(m.Value) + 32
	others := false
	for _, h := range m.Headers {
		if busauth.Covers(h.Key) {
			n += len(h.Key) + len(h.Value) + 8
			others = true
		}
	}
	n += len(busauth.Header) + 96 // herald-auth
	if others {
		n += len(busauth.HeadersHeader) + 96 // herald-auth-headers
	}
	return n
}

// records reads messages as kafka-go records, reusing one record.
type records struct {
	msgs  []kafka.Message
	i     int
	rec   kafka.Record
	key   bytesReader
	value bytesReader
}

// ReadRecord implements kafka.RecordReader.
func (r *records) ReadRecord() (*kafka.Record, error) {
	if r.i >= len(r.msgs) {
		return nil, io.EOF
	}
	m := &r.msgs[r.i]
	r.i++
	r.rec = kafka.Record{Time: m.Time, Headers: m.Headers}
	if m.Key != nil {
		r.key.Reset(m.Key)
		r.rec.Key = &r.key
	}
	if m.Value != nil {
		r.value.Reset(m.Value)
		r.rec.Value = &r.value
	}
	return &r.rec, nil
}

// bytesReader is a kafka.Bytes over a byte slice.
type bytesReader struct{ bytes.Reader }

func (*bytesReader) Close() error { return nil }
