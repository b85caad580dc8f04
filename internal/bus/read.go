package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

// fetchMaxBytes bounds one fetch response; it must exceed the largest
// message (1 MiB by default).
const fetchMaxBytes = 8 << 20

// partitionRange is what ReadAll and Follow read of one partition: from
// start up to (not including) end, the high watermark when they began.
type partitionRange struct {
	partition  int
	start, end int64
}

// ranges lists every partition of topic (full name) with its first offset
// and high watermark.
func (b *Bus) ranges(ctx context.Context, topic string) ([]partitionRange, error) {
	ctx, cancel := withTimeout(ctx, "list offsets of "+topic)
	defer cancel()
	md, err := b.client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("read metadata of %s: %w", topic, cause(ctx, err))
	}
	if len(md.Topics) != 1 || md.Topics[0].Name != topic {
		return nil, fmt.Errorf("read metadata of %s: topic missing from the answer", topic)
	}
	if err := md.Topics[0].Error; err != nil {
		return nil, fmt.Errorf("read metadata of %s: %w", topic, err)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	res, err := b.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, cause(ctx, err))
	}
	var out []partitionRange
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("list offsets of %s[%d]: %w", topic, po.Partition, po.Error)
		}
		out = append(out, partitionRange{partition: po.Partition, start: po.FirstOffset, end: po.LastOffset})
	}
	if len(out) != len(md.Topics[0].Partitions) {
		return nil, fmt.Errorf("list offsets of %s: %d of %d partitions answered", topic, len(out), len(md.Topics[0].Partitions))
	}
	slices.SortFunc(out, func(a, b partitionRange) int { return a.partition - b.partition })
	return out, nil
}

// HighWatermarks returns, for every partition of topic (given without
// prefix), the offset the next message written to it will get.
func (b *Bus) HighWatermarks(ctx context.Context, topic string) (map[int]int64, error) {
	rs, err := b.ranges(ctx, b.Topic(topic))
	if err != nil {
		return nil, err
	}
	out := make(map[int]int64, len(rs))
	for _, r := range rs {
		out[r.partition] = r.end
	}
	return out, nil
}

// ReadAll calls fn with every message of topic (given without prefix), from
// the first offset of each partition to its high watermark when ReadAll
// began, partition after partition, then returns. It uses no consumer group
// and commits nothing. A tombstone has a nil Value. An error from fn stops
// the read and is returned as is. Broker errors are retried a few times
// (resuming where the read stopped) before ReadAll gives up.
func (b *Bus) ReadAll(ctx context.Context, topic string, fn func(kafka.Message) error) error {
	return b.readRanges(ctx, topic, nil, fn)
}

// ReadKeys is ReadAll restricted to the messages whose key is one of keys.
// It reads only the partitions those keys are written to (the producers'
// Murmur2 partitioner, as Java clients use), so finding one alert's
// receipts costs one partition, not the whole topic.
func (b *Bus) ReadKeys(ctx context.Context, topic string, keys []string, fn func(kafka.Message) error) error {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	part := func(n int) map[int]bool {
		ids := make([]int, n)
		for i := range ids {
			ids[i] = i
		}
		var bal kafka.Murmur2Balancer
		m := map[int]bool{}
		for k := range want {
			m[bal.Balance(kafka.Message{Key: []byte(k)}, ids...)] = true
		}
		return m
	}
	return b.readRanges(ctx, topic, part, func(m kafka.Message) error {
		if !want[string(m.Key)] {
			return nil
		}
		return fn(m)
	})
}

// readRanges reads every partition of topic, or, when only is not nil,
// those in only(number of partitions).
func (b *Bus) readRanges(ctx context.Context, topic string, only func(n int) map[int]bool, fn func(kafka.Message) error) error {
	full := b.Topic(topic)
	var rs []partitionRange
	err := retry(ctx, func() error {
		var err error
		rs, err = b.ranges(ctx, full)
		return err
	})
	if err != nil {
		return fmt.Errorf("read all of %s: %w", full, err)
	}
	wrapped := func(m kafka.Message) error {
		if err := fn(m); err != nil {
			return fnError{err}
		}
		return nil
	}
	var keep map[int]bool
	if only != nil {
		keep = only(len(rs))
	}
	for _, r := range rs {
		if keep != nil && !keep[r.partition] {
			continue
		}
		off := r.start
		err := retry(ctx, func() error {
			var err error
			off, err = b.readPartition(ctx, full, r.partition, off, r.end, 100*time.Millisecond, wrapped)
			return err
		})
		var fe fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		if err != nil {
			return fmt.Errorf("read all of %s: %w", full, err)
		}
	}
	return nil
}

// retry calls f until it succeeds, up to four times more after transient
// errors, with back-off from 100ms. Errors from a caller's function
// (fnError), fatal errors and the end of ctx are not retried.
func retry(ctx context.Context, f func() error) error {
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := f()
		var fe fnError
		if err == nil || attempt == 4 || errors.As(err, &fe) || isFatal(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// readPartition fetches topic[partition] from offset from and calls fn for
// each message until it reaches offset until; until < 0 never ends. It
// returns the offset after the last message read. Messages below from in a
// returned batch are skipped. An offset fetched out of range (records
// deleted by retention) moves on to the log start.
func (b *Bus) readPartition(ctx context.Context, topic string, partition int, from, until int64, maxWait time.Duration, fn func(kafka.Message) error) (int64, error) {
	off := from
	for until < 0 || off < until {
		fctx, cancel := context.WithTimeoutCause(ctx, requestTimeout+maxWait,
			fmt.Errorf("fetch %s[%d]@%d: no answer from kafka within %s", topic, partition, off, requestTimeout+maxWait))
		res, err := b.client.Fetch(fctx, &kafka.FetchRequest{
			Topic: topic, Partition: partition, Offset: off,
			MinBytes: 1, MaxBytes: fetchMaxBytes, MaxWait: maxWait,
		})
		if err != nil {
			err = cause(fctx, err)
			cancel()
			return off, fmt.Errorf("fetch %s[%d]@%d: %w", topic, partition, off, err)
		}
		if res.Error != nil {
			cancel()
			if errors.Is(res.Error, kafka.OffsetOutOfRange) && res.LogStartOffset > off {
				off = res.LogStartOffset
				continue
			}
			return off, fmt.Errorf("fetch %s[%d]@%d: %w", topic, partition, off, res.Error)
		}
		n, next, err := readRecords(topic, partition, off, until, res, fn)
		cancel()
		if err != nil {
			return off, err
		}
		off = next
		if n == 0 && until >= 0 && res.HighWatermark > off {
			// Records in [off, until) were removed (compaction) and the
			// broker had nothing more below until: the range is read.
			return off, nil
		}
		if ctx.Err() != nil {
			return off, ctx.Err()
		}
	}
	return off, nil
}

// readRecords passes the records of res at or above off (and below until,
// unless until < 0) to fn. It returns how many it passed and the next
// offset to fetch.
func readRecords(topic string, partition int, off, until int64, res *kafka.FetchResponse, fn func(kafka.Message) error) (int, int64, error) {
	if c, ok := res.Records.(io.Closer); ok {
		defer c.Close()
	}
	n := 0
	for {
		rec, err := res.Records.ReadRecord()
		if errors.Is(err, io.EOF) {
			return n, off, nil
		}
		if err != nil {
			return n, off, fmt.Errorf("decode records of %s[%d]@%d: %w", topic, partition, off, err)
		}
		if rec.Offset < off {
			continue
		}
		if until >= 0 && rec.Offset >= until {
			return n, off, nil
		}
		m := kafka.Message{
			Topic:         topic,
			Partition:     partition,
			Offset:        rec.Offset,
			HighWaterMark: res.HighWatermark,
			Time:          rec.Time,
		}
		if m.Key, err = readBytes(rec.Key); err == nil {
			m.Value, err = readBytes(rec.Value)
		}
		if err != nil {
			return n, off, fmt.Errorf("read record %s[%d]@%d: %w", topic, partition, rec.Offset, err)
		}
		for _, h := range rec.Headers {
			m.Headers = append(m.Headers, kafka.Header{Key: h.Key, Value: slices.Clone(h.Value)})
		}
		if err := fn(m); err != nil {
			return n, off, err
		}
		n++
		off = rec.Offset + 1
	}
}

// readBytes copies a record field; a null field stays nil.
func readBytes(b protocol.Bytes) ([]byte, error) {
	if b == nil {
		return nil, nil
	}
	defer b.Close()
	out := make([]byte, b.Len())
	_, err := io.ReadFull(b, out)
	return out, err
}

// Follow calls fn with every message of topic (given without prefix), from
// the first offset of every partition, then keeps following new messages
// until ctx ends, when it returns nil. caughtUp, if not nil, is called once,
// when every partition has been read up to its high watermark as of the
// call (at once for an empty topic). fn is never called concurrently;
// messages of one partition arrive in offset order. A tombstone has a nil
// Value. Follow returns the first error from fn; broker errors are logged
// and retried. Partitions added after Follow began are not read.
func (b *Bus) Follow(ctx context.Context, topic string, fn func(kafka.Message) error, caughtUp func()) error {
	full := b.Topic(topic)
	var rs []partitionRange
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if rs, err = b.ranges(ctx, full); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		b.log.Warn("follow kafka topic: will retry", "topic", full, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu        sync.Mutex // serialises fn and guards behind
		behind    = len(rs)
		wg        sync.WaitGroup
		fnErr     error
		fnErrOnce sync.Once
	)
	reached := func() {
		behind--
		if behind == 0 && caughtUp != nil {
			caughtUp()
		}
	}
	mu.Lock()
	for _, r := range rs {
		if r.start >= r.end {
			reached()
		}
	}
	mu.Unlock()
	if len(rs) == 0 && caughtUp != nil {
		caughtUp()
	}
	call := func(m kafka.Message) error {
		mu.Lock()
		defer mu.Unlock()
		return fn(m)
	}
	for _, r := range rs {
		wg.Go(func() {
			err := b.followPartition(ctx, full, r, call, func() { mu.Lock(); reached(); mu.Unlock() })
			if err != nil {
				fnErrOnce.Do(func() { fnErr = err })
				cancel(err)
			}
		})
	}
	wg.Wait()
	return fnErr
}

// followPartition reads r and beyond until ctx ends. It calls reached once
// when it passes r.end (unless r was empty to start with). It returns only
// fn's errors; broker errors are logged and retried.
func (b *Bus) followPartition(ctx context.Context, topic string, r partitionRange, fn func(kafka.Message) error, reached func()) error {
	off := r.start
	signalled := r.start >= r.end
	wrapped := func(m kafka.Message) error {
		if err := fn(m); err != nil {
			return fnError{err}
		}
		if !signalled && m.Offset+1 >= r.end {
			signalled = true
			reached()
		}
		return nil
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		next, err := b.readPartition(ctx, topic, r.partition, off, -1, b.cfg.Consumer.MaxWait, wrapped)
		if next > off {
			backoff = 100 * time.Millisecond
		}
		off = next
		if ctx.Err() != nil {
			return nil
		}
		var fe fnError
		if errors.As(err, &fe) {
			return fe.err
		}
		if !signalled && off >= r.end {
			// The rest of the range was compacted away.
			signalled = true
			reached()
		}
		b.log.Warn("follow kafka topic: will retry", "topic", topic, "partition", r.partition, "offset", off, "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

// fnError carries an error returned by the caller's function through
// readPartition.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }
func (e fnError) Unwrap() error { return e.err }

// Lag returns how many messages of topic (given without prefix) group has
// not committed yet, summed over partitions. A partition the group never
// committed counts from its first offset.
func (b *Bus) Lag(ctx context.Context, group, topic string) (int64, error) {
	full := b.Topic(topic)
	var rs []partitionRange
	err := retry(ctx, func() error {
		var err error
		rs, err = b.ranges(ctx, full)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("lag of %s on %s: %w", group, full, err)
	}
	ctx, cancel := withTimeout(ctx, "fetch offsets of "+group)
	defer cancel()
	parts := make([]int, len(rs))
	for i, r := range rs {
		parts[i] = r.partition
	}
	res, err := b.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{full: parts}})
	if err == nil {
		err = res.Error
	}
	committed := make(map[int]int64)
	switch {
	case errors.Is(err, kafka.GroupIdNotFound):
		// The group never committed: everything is lag.
	case err != nil:
		return 0, fmt.Errorf("lag of %s on %s: fetch committed offsets: %w", group, full, cause(ctx, err))
	}
	for _, p := range res.Topics[full] {
		if p.Error != nil {
			return 0, fmt.Errorf("lag of %s on %s[%d]: %w", group, full, p.Partition, p.Error)
		}
		committed[p.Partition] = p.CommittedOffset
	}
	var lag int64
	for _, r := range rs {
		c, ok := committed[r.partition]
		if !ok || c < r.start {
			c = r.start
		}
		lag += max(0, r.end-c)
	}
	return lag, nil
}
