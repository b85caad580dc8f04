package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/internal/config"
)

// Handler processes a batch of messages from a consumer group. Returning nil
// means the work the messages carried is durable, and their offsets are
// committed; returning an error means none of them may be committed.
type Handler func(ctx context.Context, msgs []kafka.Message) error

// Consume joins consumer group group on topics (given without prefix) and
// hands the messages to handle in batches, per partition in offset order
// (one batch may mix partitions). A batch holds up to
// Config.Consumer.CommitBatch messages: whatever is available once the first
// one arrived, waiting at most Config.Consumer.Linger for more. A new group
// starts from the earliest offset.
//
// Offsets are committed only after handle returned nil. When handle or the
// commit fails, Consume logs it, waits (exponential back-off between
// RetryBackoffMin and RetryBackoffMax), leaves the group and joins again, so
// that the batch is fetched again from the last committed offset: delivery
// is at least once, and handle must be idempotent. A rebalance may also hand
// a batch to another member.
//
// Pipelining (the Pipeline option): up to n batches are handled at once,
// each handle call starting as soon as its batch is fetched, so that the
// fetch and the work of batch k+1 overlap the end of batch k (the writes
// of its outcomes, its commit). Offsets are still committed strictly in
// fetch order, each batch's only once its own handle call and those of
// every batch before it returned nil; when one fails, no later batch is
// committed either: Consume waits for the calls in flight, then fetches
// again from the last committed offset. Without the option one batch is
// handled at a time.
//
// Drain: when ctx is cancelled Consume stops fetching, lets the in-flight
// handle calls finish and commits their batches, then returns nil. The
// context handle receives is not cancelled with ctx, only
// Config.Consumer.DrainTimeout after it. Consume returns an error only for
// failures that retrying cannot fix: missing topics, or authentication and
// authorisation errors.
func (b *Bus) Consume(ctx context.Context, group string, topics []string, handle Handler, opts ...ConsumeOption) error {
	if group == "" || len(topics) == 0 || handle == nil {
		return errors.New("consume: group, topics and handler are required")
	}
	co := consumeOptions{pipeline: 1}
	for _, o := range opts {
		o(&co)
	}
	full := make([]string, len(topics))
	for i, t := range topics {
		full[i] = b.Topic(t)
	}
	log := b.log.With("group", group, "topics", full)

	// handle's context outlives ctx by DrainTimeout.
	hctx, hcancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer hcancel(nil)
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(b.cfg.Consumer.DrainTimeout, func() {
			hcancel(fmt.Errorf("consume group %s: drain timeout %s after shutdown", group, b.cfg.Consumer.DrainTimeout))
		})
		context.AfterFunc(hctx, func() { t.Stop() })
	})
	defer stop()

	bo := newBackoff(b.cfg.Consumer.RetryBackoffMin, b.cfg.Consumer.RetryBackoffMax)
	for {
		if ctx.Err() != nil {
			return nil
		}
		progressed, err := b.consumeSession(ctx, hctx, group, full, handle, co, log)
		if err == nil {
			return nil
		}
		if isFatal(err) {
			return fmt.Errorf("consume group %s: %w", group, err)
		}
		if progressed {
			bo.reset()
		}
		log.Warn("kafka consumer: will fetch again from the last committed offset", "error", err, "backoff", bo.current())
		if !bo.wait(ctx) {
			return nil
		}
	}
}

// ConsumeOption tunes Consume.
type ConsumeOption func(*consumeOptions)

type consumeOptions struct {
	pipeline int
	weigh    func(kafka.Message) int
	queue    int
}

// Queue bounds the messages the reader fetches ahead of the batches to n
// (at least 1) instead of max(100, CommitBatch): for a topic whose
// records are large and many times fewer than what they carry (the
// deliveries topic's packs), so that a backlog is not read into memory
// hundreds of records ahead.
func Queue(n int) ConsumeOption {
	return func(o *consumeOptions) { o.queue = max(1, n) }
}

// Weigh counts a batch's size in what weigh gives each message (at least
// one) rather than in messages: a batch then holds up to CommitBatch of
// that weight, and at least one message. The deliver runner weighs a
// record by the jobs it packs, so that a batch holds about as many jobs as
// when each job was a record of its own.
func Weigh(weigh func(kafka.Message) int) ConsumeOption {
	return func(o *consumeOptions) { o.weigh = weigh }
}

// Pipeline lets Consume handle up to n batches at once (see Consume); n
// below 1 counts as 1.
func Pipeline(n int) ConsumeOption {
	return func(o *consumeOptions) { o.pipeline = max(1, n) }
}

// errFatal marks errors that retrying cannot fix.
type errFatal struct{ err error }

func (e errFatal) Error() string { return e.err.Error() }
func (e errFatal) Unwrap() error { return e.err }

// isFatal reports whether err is fatal to a consumer: marked so, or an
// authentication or authorisation failure.
func isFatal(err error) bool {
	var f errFatal
	if errors.As(err, &f) {
		return true
	}
	for _, e := range []kafka.Error{
		kafka.SASLAuthenticationFailed, kafka.UnsupportedSASLMechanism, kafka.IllegalSASLState,
		kafka.TopicAuthorizationFailed, kafka.GroupAuthorizationFailed, kafka.ClusterAuthorizationFailed,
		kafka.InvalidGroupId,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// consumeSession runs one group membership: it returns nil when ctx ended,
// or the error that ended it. progressed reports whether a batch was
// committed.
func (b *Bus) consumeSession(ctx, hctx context.Context, group string, topics []string, handle Handler, co consumeOptions, log *slog.Logger) (progressed bool, err error) {
	pctx, cancel := withTimeout(ctx, "consume: check topics")
	err = b.Ping(pctx)
	var missing []string
	if err == nil {
		missing, err = b.missingTopics(pctx, topics)
	}
	cancel()
	switch {
	case ctx.Err() != nil:
		return false, nil
	case err != nil:
		return false, fmt.Errorf("check topics: %w", err)
	case len(missing) > 0:
		return false, errFatal{fmt.Errorf("topics do not exist: %v", missing)}
	}

	cc := b.cfg.Consumer
	queue := max(100, cc.CommitBatch)
	if co.queue > 0 {
		queue = co.queue
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           b.brokers,
		GroupID:           group,
		GroupTopics:       topics,
		Dialer:            b.dialer(),
		QueueCapacity:     queue,
		MinBytes:          1,
		MaxBytes:          10 << 20,
		MaxWait:           cc.MaxWait,
		HeartbeatInterval: cc.HeartbeatInterval,
		CommitInterval:    0, // synchronous commits, after the work is durable
		SessionTimeout:    cc.SessionTimeout,
		RebalanceTimeout:  cc.RebalanceTimeout,
		JoinGroupBackoff:  cc.JoinGroupBackoff,
		RetentionTime:     7 * 24 * time.Hour,
		StartOffset:       kafka.FirstOffset,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Debug("kafka reader: " + fmt.Sprintf(msg, args...))
		}),
	})
	defer func() {
		if cerr := r.Close(); cerr != nil {
			log.Debug("kafka consumer: close reader", "error", cerr)
		}
	}()

	return b.pipeline(ctx, hctx, r, handle, co)
}

// inflight is a batch handed to the handler, waiting for its result.
type inflight struct {
	batch []kafka.Message
	done  chan error // the handler's result; buffered
}

// pipeline fetches batches from r and hands each to handle in a goroutine
// of its own, at most depth at once, while committing them in fetch order
// as their handlers succeed. It returns when ctx ends (nil, after the
// batches in flight were handled and committed) or at the first failure
// of a handler, a commit or a fetch, once every handler in flight has
// returned; progressed reports whether a batch was committed.
func (b *Bus) pipeline(ctx, hctx context.Context, r *kafka.Reader, handle Handler, co consumeOptions) (progressed bool, err error) {
	depth := co.pipeline
	cc := b.cfg.Consumer
	// fctx ends fetching: with ctx, or when a batch cannot be committed.
	fctx, stopFetching := context.WithCancel(ctx)
	defer stopFetching()
	slots := make(chan struct{}, depth)  // a slot per batch handled and not yet committed
	queue := make(chan *inflight, depth) // in fetch order
	committed := make(chan error, 1)
	go func() {
		var failed error
		for f := range queue {
			err := <-f.done
			if failed == nil && err != nil {
				failed = fmt.Errorf("handler failed on %d messages from %s[%d]@%d: %w",
					len(f.batch), f.batch[0].Topic, f.batch[0].Partition, f.batch[0].Offset, err)
			}
			if failed == nil {
				if err := commit(ctx, r, f.batch); err != nil {
					failed = err
				} else {
					progressed = true
				}
			}
			if failed != nil {
				// Nothing after a batch that was not committed may be:
				// stop fetching, and only wait for the handlers in flight.
				stopFetching()
			}
			<-slots
		}
		committed <- failed
	}()

	var fetchErr error
	for {
		select {
		case slots <- struct{}{}:
		case <-fctx.Done():
		}
		if fctx.Err() != nil {
			break
		}
		m, err := r.FetchMessage(fctx)
		if err != nil {
			<-slots
			if fctx.Err() == nil {
				fetchErr = fmt.Errorf("fetch: %w", err)
			}
			break
		}
		batch := gather(fctx, r, append(make([]kafka.Message, 0, min(cc.CommitBatch, 1024)), m), cc, co.weigh)
		if fctx.Err() != nil && ctx.Err() == nil {
			<-slots // an earlier batch failed: this one would not be committed
			break
		}
		f := &inflight{batch: batch, done: make(chan error, 1)}
		queue <- f
		go func() { f.done <- handle(hctx, f.batch) }()
	}
	close(queue)
	if err := <-committed; err != nil {
		return progressed, err
	}
	return progressed, fetchErr
}

// commit commits the offsets of batch, synchronously.
func commit(ctx context.Context, r *kafka.Reader, batch []kafka.Message) error {
	cctx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), requestTimeout,
		fmt.Errorf("commit offsets: no answer from kafka within %s", requestTimeout))
	defer cancel()
	if err := cause(cctx, r.CommitMessages(cctx, batch...)); err != nil {
		return fmt.Errorf("commit %d messages: %w", len(batch), err)
	}
	return nil
}

// drainWait is how long gather waits for a message the reader may already
// hold: long enough to take what is queued, short against a delivery.
const drainWait = 100 * time.Microsecond

// gather adds to batch what the reader already holds and, only while the
// brokers report more waiting behind the last message (a backlog), what
// arrives within Linger, up to CommitBatch messages (or, with weigh, up to
// CommitBatch of their weight: the message that reaches it is the last).
// One alert at a time is handed on at once; a burst is handed on in large
// batches.
//
// While there is a backlog, one context bounded by the linger deadline
// serves every fetch of the batch (a context and a timer per message cost
// about as much as the rest of taking it).
func gather(ctx context.Context, r *kafka.Reader, batch []kafka.Message, cc config.KafkaConsumer, weigh func(kafka.Message) int) []kafka.Message {
	weight := 0
	add := func(m kafka.Message) {
		batch = append(batch, m)
		if weigh != nil {
			weight += max(1, weigh(m))
		} else {
			weight++
		}
	}
	first := batch[0]
	batch = batch[:0]
	add(first)
	deadline := time.Now().Add(cc.Linger)
	var linger context.Context // bounded by deadline; made when first needed
	if cc.Linger > drainWait {
		var cancel context.CancelFunc
		defer func() {
			if cancel != nil {
				cancel()
			}
		}()
		lingerCtx := func() context.Context {
			if linger == nil {
				linger, cancel = context.WithDeadline(ctx, deadline)
			}
			return linger
		}
		for weight < cc.CommitBatch {
			last := batch[len(batch)-1]
			if last.HighWaterMark <= last.Offset+1 || time.Until(deadline) <= drainWait {
				break // no backlog: wait no longer than drainWait
			}
			m, err := r.FetchMessage(lingerCtx())
			if err != nil {
				return batch
			}
			add(m)
		}
	}
	for weight < cc.CommitBatch {
		last := batch[len(batch)-1]
		wait := drainWait
		if last.HighWaterMark > last.Offset+1 {
			wait = max(drainWait, time.Until(deadline))
		}
		lctx, cancel := context.WithTimeout(ctx, wait)
		m, err := r.FetchMessage(lctx)
		cancel()
		if err != nil {
			return batch
		}
		add(m)
	}
	return batch
}

// dialer returns a kafka-go Dialer with the Bus's TLS and SASL settings, for
// readers.
func (b *Bus) dialer() *kafka.Dialer {
	return &kafka.Dialer{
		ClientID:      b.cfg.ClientID,
		Timeout:       dialTimeout,
		DualStack:     true,
		KeepAlive:     30 * time.Second,
		TLS:           b.tls,
		SASLMechanism: b.sasl,
	}
}
