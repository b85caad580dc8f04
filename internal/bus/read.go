package bus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/listoffsets"
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
	all, err := b.rangesOf(ctx, []string{topic})
	if err != nil {
		return nil, err
	}
	return all[topic], nil
}

// rangesOf lists every partition of each of topics (full names) with its
// first offset and high watermark, sorted by partition, in one metadata
// request and two list-offsets requests per partition leader (listOffsets).
func (b *Bus) rangesOf(ctx context.Context, topics []string) (map[string][]partitionRange, error) {
	what := strings.Join(topics, ", ")
	ctx, cancel := withTimeout(ctx, "list offsets of "+what)
	defer cancel()
	md, err := b.client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("read metadata of %s: %w", what, cause(ctx, err))
	}
	parts := make(map[string]int, len(topics))
	byLeader := make(map[int]map[string][]int32)
	for _, t := range md.Topics {
		if !slices.Contains(topics, t.Name) {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("read metadata of %s: %w", t.Name, t.Error)
		}
		parts[t.Name] = len(t.Partitions)
		for _, p := range t.Partitions {
			if byLeader[p.Leader.ID] == nil {
				byLeader[p.Leader.ID] = make(map[string][]int32)
			}
			byLeader[p.Leader.ID][t.Name] = append(byLeader[p.Leader.ID][t.Name], int32(p.ID))
		}
	}
	for _, t := range topics {
		if _, ok := parts[t]; !ok {
			return nil, fmt.Errorf("read metadata of %s: topic missing from the answer", t)
		}
	}
	first, last, err := b.listOffsets(ctx, byLeader)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", what, cause(ctx, err))
	}
	out := make(map[string][]partitionRange, len(topics))
	for _, topic := range topics {
		var rs []partitionRange
		for tp, start := range first {
			if tp.topic != topic {
				continue
			}
			end, ok := last[tp]
			if !ok {
				return nil, fmt.Errorf("list offsets of %s[%d]: no high watermark in the answer", topic, tp.partition)
			}
			rs = append(rs, partitionRange{partition: tp.partition, start: start, end: end})
		}
		if len(rs) != parts[topic] {
			return nil, fmt.Errorf("list offsets of %s: %d of %d partitions answered", topic, len(rs), parts[topic])
		}
		slices.SortFunc(rs, func(a, b partitionRange) int { return a.partition - b.partition })
		out[topic] = rs
	}
	return out, nil
}

// topicPartition names one partition of a topic (full name).
type topicPartition struct {
	topic     string
	partition int
}

// listOffsets asks each partition leader for the first offsets and the
// high watermarks of its partitions (leader id → topic → partitions): two
// requests per leader, sent side by side.
func (b *Bus) listOffsets(ctx context.Context, byLeader map[int]map[string][]int32) (first, last map[topicPartition]int64, err error) {
	type answer struct {
		last bool
		res  map[topicPartition]int64
		err  error
	}
	answers := make(chan answer, 2*len(byLeader))
	for _, topics := range byLeader {
		for _, latest := range []bool{false, true} {
			go func() {
				res, err := b.listOffsetsOf(ctx, topics, latest)
				answers <- answer{last: latest, res: res, err: err}
			}()
		}
	}
	first, last = make(map[topicPartition]int64), make(map[topicPartition]int64)
	var errs []error
	for range 2 * len(byLeader) {
		a := <-answers
		if a.err != nil {
			errs = append(errs, a.err)
			continue
		}
		into := first
		if a.last {
			into = last
		}
		for tp, o := range a.res {
			into[tp] = o
		}
	}
	return first, last, errors.Join(errs...)
}

// listOffsetsRequest is kafka-go's ListOffsets request (the same fields,
// so kafka-go encodes it as one) without its Split method: kafka-go splits
// a ListOffsets request into one request per partition and timestamp, 24
// round trips (about 1 ms of CPU) to read two topics of six partitions;
// Kafka answers for every partition of one leader at once, as long as no
// partition is asked twice in one request. Each listOffsetsRequest holds
// partitions of one leader (Broker routes it there).
type listOffsetsRequest listoffsets.Request

// ApiKey implements protocol.Message.
func (r *listOffsetsRequest) ApiKey() protocol.ApiKey { return protocol.ListOffsets }

// Broker implements protocol.BrokerMessage: the leader of the request's
// first partition, which leads them all.
func (r *listOffsetsRequest) Broker(cluster protocol.Cluster) (protocol.Broker, error) {
	return (*listoffsets.Request)(r).Broker(cluster)
}

// listOffsetsOf asks one leader for the first offset (or, latest, the high
// watermark) of each of its partitions.
func (b *Bus) listOffsetsOf(ctx context.Context, topics map[string][]int32, latest bool) (map[topicPartition]int64, error) {
	ts := kafka.FirstOffset
	if latest {
		ts = kafka.LastOffset
	}
	req := &listOffsetsRequest{ReplicaID: -1}
	for topic, ps := range topics {
		rt := listoffsets.RequestTopic{Topic: topic}
		for _, p := range ps {
			rt.Partitions = append(rt.Partitions, listoffsets.RequestPartition{Partition: p, CurrentLeaderEpoch: -1, Timestamp: ts})
		}
		req.Topics = append(req.Topics, rt)
	}
	m, err := b.admin.RoundTrip(ctx, b.client.Addr, req)
	if err != nil {
		return nil, err
	}
	res, ok := m.(*listoffsets.Response)
	if !ok {
		return nil, fmt.Errorf("list offsets: unexpected answer %T", m)
	}
	out := make(map[topicPartition]int64)
	for _, t := range res.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return nil, fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, kafka.Error(p.ErrorCode))
			}
			out[topicPartition{t.Topic, int(p.Partition)}] = p.Offset
		}
	}
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
	var keep map[int]bool
	if only != nil {
		keep = only(len(rs))
	}
	for _, r := range rs {
		if keep != nil && !keep[r.partition] {
			continue
		}
		var fe fnError
		if err := b.readSpan(ctx, full, r.partition, r.start, r.end, fn); errors.As(err, &fe) {
			return fe.err
		} else if err != nil {
			return fmt.Errorf("read all of %s: %w", full, err)
		}
	}
	return nil
}

// readSpan calls fn with the messages of full[partition] from offset
// from up to until, retrying broker errors (retry) from where it got to;
// an error of fn comes back as an fnError.
func (b *Bus) readSpan(ctx context.Context, full string, partition int, from, until int64, fn func(kafka.Message) error) error {
	wrapped := func(m kafka.Message) error {
		if err := fn(m); err != nil {
			return fnError{err}
		}
		return nil
	}
	off := from
	return retry(ctx, func() error {
		var err error
		off, err = b.readPartition(ctx, full, partition, off, until, 100*time.Millisecond, wrapped)
		return err
	})
}

// ReadRange calls fn with the messages of topic (given without prefix)
// [partition] from offset from up to (not including) until, in offset
// order, then returns: the last records of a partition, given its offsets
// (Offsets). Offsets with no message (deleted by retention, compacted
// away) are skipped. Like ReadAll it uses no consumer group, returns an
// error from fn as is, and retries broker errors a few times.
func (b *Bus) ReadRange(ctx context.Context, topic string, partition int, from, until int64, fn func(kafka.Message) error) error {
	full := b.Topic(topic)
	var fe fnError
	if err := b.readSpan(ctx, full, partition, from, until, fn); errors.As(err, &fe) {
		return fe.err
	} else if err != nil {
		return fmt.Errorf("read %s[%d] from %d to %d: %w", full, partition, from, until, err)
	}
	return nil
}

// retry calls f until it succeeds, up to four times more after transient
// errors, with back-off from 100ms. Errors from a caller's function
// (fnError), fatal errors and the end of ctx are not retried.
func retry(ctx context.Context, f func() error) error {
	bo := readBackoff()
	for attempt := 0; ; attempt++ {
		err := f()
		var fe fnError
		if err == nil || attempt == 4 || errors.As(err, &fe) || isFatal(err) || ctx.Err() != nil {
			return err
		}
		if !bo.wait(ctx) {
			return err
		}
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
	if !b.until(ctx, "follow kafka topic "+full, func() (err error) { rs, err = b.ranges(ctx, full); return err }) {
		return nil
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
	bo := readBackoff()
	for ctx.Err() == nil {
		next, err := b.readPartition(ctx, topic, r.partition, off, -1, b.cfg.Consumer.MaxWait, wrapped)
		if next > off {
			bo.reset()
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
		b.log.Warn("follow kafka topic: will retry", "topic", topic, "partition", r.partition, "offset", off, "error", err, "backoff", bo.current())
		if !bo.wait(ctx) {
			return nil
		}
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

// PartitionOffsets says where one partition of a topic begins and ends.
type PartitionOffsets struct {
	Partition int
	// Start is the first offset still held: records below it were deleted
	// (retention).
	Start int64
	// End is the high watermark: the offset the next record written to the
	// partition will get.
	End int64
}

// Offsets returns, for each of topics (given without prefix), every
// partition with its first offset and high watermark, sorted by partition,
// keyed by the topic as given. It asks the brokers once for all topics.
func (b *Bus) Offsets(ctx context.Context, topics ...string) (map[string][]PartitionOffsets, error) {
	full := make([]string, len(topics))
	for i, t := range topics {
		full[i] = b.Topic(t)
	}
	all, err := b.rangesOf(ctx, full)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]PartitionOffsets, len(topics))
	for i, t := range topics {
		ps := make([]PartitionOffsets, 0, len(all[full[i]]))
		for _, r := range all[full[i]] {
			ps = append(ps, PartitionOffsets{Partition: r.partition, Start: r.start, End: r.end})
		}
		out[t] = ps
	}
	return out, nil
}

// ReadAt returns the message at offset of topic[partition] (topic given
// without prefix), or ok false when the partition holds no message at that
// offset: deleted by retention, compacted away, or not written yet.
func (b *Bus) ReadAt(ctx context.Context, topic string, partition int, offset int64) (m kafka.Message, ok bool, err error) {
	full := b.Topic(topic)
	err = retry(ctx, func() error {
		msgs, _, err := b.fetchBatch(ctx, full, partition, offset, 10*time.Millisecond)
		if err != nil {
			return err
		}
		if len(msgs) > 0 && msgs[0].Offset == offset {
			m, ok = msgs[0], true
		}
		return nil
	})
	if errors.Is(err, ErrNotResumable) {
		return kafka.Message{}, false, nil // beyond the end: nothing there
	}
	if err != nil {
		return kafka.Message{}, false, fmt.Errorf("read %s[%d]@%d: %w", full, partition, offset, err)
	}
	return m, ok, nil
}

// ErrNotResumable is FollowFrom's answer when the offsets it was asked to
// resume from do not fit the topic: an offset beyond a partition's high
// watermark, or a partition the topic does not have. The topic was deleted
// and created again, or this is another cluster.
var ErrNotResumable = errors.New("offsets do not fit the topic (recreated, or another cluster)")

// Batch is what FollowFrom hands its function: the messages of one fetch
// from one partition, in offset order.
type Batch struct {
	// Topic is the topic without prefix, as given to FollowFrom.
	Topic     string
	Partition int
	// Messages may be empty when only Next moved: records were deleted
	// (retention) below the offset the partition was to be read from.
	Messages []kafka.Message
	// Next is the offset to read next: after the last message, or further
	// when records were skipped.
	Next int64
}

// FollowFrom is Follow for readers that keep their own offsets: it reads
// topic (given without prefix) from the offsets in from (partition → next
// offset to read; a partition absent from from is read from its first
// offset) and keeps following new messages until ctx ends, when it returns
// nil. fn receives a Batch per fetch, never concurrently; the batches of one
// partition arrive in offset order. A partition whose offset lies below its
// first offset (records deleted by retention) moves on to the first offset,
// and fn is told with a Batch holding no message. FollowFrom returns fn's
// first error, or an error wrapping ErrNotResumable (at once, or when it
// finds out while following); broker errors are logged and retried.
// Partitions added after FollowFrom began are not read.
func (b *Bus) FollowFrom(ctx context.Context, topic string, from map[int]int64, fn func(Batch) error) error {
	full := b.Topic(topic)
	var rs []partitionRange
	if !b.until(ctx, "follow kafka topic "+full, func() (err error) { rs, err = b.ranges(ctx, full); return err }) {
		return nil
	}
	have := make(map[int]partitionRange, len(rs))
	for _, r := range rs {
		have[r.partition] = r
	}
	for p, off := range from {
		r, ok := have[p]
		switch {
		case !ok:
			return fmt.Errorf("follow %s from stored offsets: partition %d does not exist (%d partitions): %w", full, p, len(rs), ErrNotResumable)
		case off > r.end:
			return fmt.Errorf("follow %s from stored offsets: offset %d of partition %d is beyond its high watermark %d: %w", full, off, p, r.end, ErrNotResumable)
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu       sync.Mutex // serialises fn
		wg       sync.WaitGroup
		first    error
		firstErr sync.Once
	)
	call := func(bt Batch) error {
		mu.Lock()
		defer mu.Unlock()
		return fn(bt)
	}
	for _, r := range rs {
		wg.Go(func() {
			err := b.followBatches(ctx, topic, full, r, from, call)
			if err != nil {
				firstErr.Do(func() { first = err })
				cancel(err)
			}
		})
	}
	wg.Wait()
	return first
}

// followBatches reads one partition for FollowFrom until ctx ends. It
// returns fn's errors and ErrNotResumable; other errors are logged and
// retried.
func (b *Bus) followBatches(ctx context.Context, topic, full string, r partitionRange, from map[int]int64, fn func(Batch) error) error {
	stored, ok := from[r.partition]
	off := stored
	if !ok || off < r.start {
		off = r.start
	}
	if !ok || off != stored {
		if err := fn(Batch{Topic: topic, Partition: r.partition, Next: off}); err != nil {
			return err
		}
	}
	bo := readBackoff()
	for ctx.Err() == nil {
		msgs, next, err := b.fetchBatch(ctx, full, r.partition, off, b.cfg.Consumer.MaxWait)
		if err == nil {
			bo.reset()
			if len(msgs) > 0 || next != off {
				if err := fn(Batch{Topic: topic, Partition: r.partition, Messages: msgs, Next: next}); err != nil {
					return err
				}
			}
			off = next
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrNotResumable) {
			return err
		}
		b.log.Warn("follow kafka topic: will retry", "topic", full, "partition", r.partition, "offset", off, "error", err, "backoff", bo.current())
		if !bo.wait(ctx) {
			return nil
		}
	}
	return nil
}

// fetchBatch makes one fetch of topic (full name) [partition] at off and
// returns its messages at or above off and the offset to fetch next. An
// offset below the partition's first offset moves to the first offset (no
// message); one beyond its high watermark is ErrNotResumable.
func (b *Bus) fetchBatch(ctx context.Context, topic string, partition int, off int64, maxWait time.Duration) ([]kafka.Message, int64, error) {
	fctx, cancel := context.WithTimeoutCause(ctx, requestTimeout+maxWait,
		fmt.Errorf("fetch %s[%d]@%d: no answer from kafka within %s", topic, partition, off, requestTimeout+maxWait))
	defer cancel()
	res, err := b.client.Fetch(fctx, &kafka.FetchRequest{
		Topic: topic, Partition: partition, Offset: off,
		MinBytes: 1, MaxBytes: fetchMaxBytes, MaxWait: maxWait,
	})
	if err != nil {
		return nil, off, fmt.Errorf("fetch %s[%d]@%d: %w", topic, partition, off, cause(fctx, err))
	}
	if res.Error != nil {
		if c, ok := res.Records.(io.Closer); ok {
			c.Close()
		}
		if !errors.Is(res.Error, kafka.OffsetOutOfRange) {
			return nil, off, fmt.Errorf("fetch %s[%d]@%d: %w", topic, partition, off, res.Error)
		}
		if res.LogStartOffset > off {
			return nil, res.LogStartOffset, nil
		}
		// Out of range and not below the start: beyond the end, unless
		// the answer was stale; ask for the partition's range to be sure.
		rs, rerr := b.ranges(fctx, topic)
		if rerr != nil {
			return nil, off, fmt.Errorf("fetch %s[%d]@%d: %w", topic, partition, off, res.Error)
		}
		for _, r := range rs {
			if r.partition != partition {
				continue
			}
			if off < r.start {
				return nil, r.start, nil
			}
			if off > r.end {
				return nil, off, errFatal{fmt.Errorf("fetch %s[%d]@%d: beyond the high watermark %d: %w", topic, partition, off, r.end, ErrNotResumable)}
			}
			return nil, off, fmt.Errorf("fetch %s[%d]@%d: %w", topic, partition, off, res.Error)
		}
		return nil, off, errFatal{fmt.Errorf("fetch %s[%d]@%d: partition gone: %w", topic, partition, off, ErrNotResumable)}
	}
	var msgs []kafka.Message
	_, next, err := readRecords(topic, partition, off, -1, res, func(m kafka.Message) error {
		msgs = append(msgs, m)
		return nil
	})
	if err != nil {
		return nil, off, err
	}
	return msgs, next, nil
}
