package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/audit"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/record"
)

// KeyRetirement is what RetireKeys did, or, in a dry run, would do.
type KeyRetirement struct {
	// File is the publishing key file (PublishingKeyFile).
	File string
	// Signing is the id of the first key, which signs and stays in use.
	Signing string
	// Keys are the other keys, in the file's order, each retired now or
	// before (busauth.Retirement.Already).
	Keys []busauth.Retirement
	// Ends are the end offsets of Herald's topics when RetireKeys asked:
	// the cutoffs of the keys retired now.
	Ends busauth.Cutoffs
	// Changed says the file changed (or, in a dry run, would): some key
	// was retired now.
	Changed bool
	// Checked are the topics whose last records were read for keys
	// retired now (StillSigningTopics); none when no key is retired now.
	Checked []string
	// Late are the records found that say a process may still sign with a
	// key retired now, newest per key, topic and partition.
	Late []LateRecord
}

// RetireOptions say how RetireKeys runs.
type RetireOptions struct {
	// DryRun writes nothing.
	DryRun bool
	// Force retires even when the check finds Late records.
	Force bool
	// Since is the window before now in which a record signed with a key
	// retired now is late when no record of the first key follows it on
	// its partition; 0 leaves only the order of the records.
	Since time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Actor and Log record a rewrite in the audit trail (none when Log is
	// nil).
	Actor string
	Log   *audit.Log
}

// StillSigningTopics are the topics whose last records RetireKeys reads
// before retiring a key: those Herald's running roles write on every
// action (alerts and pending by the API and command line, audit by every
// change, receipts, deliveries and alert-ids by the fan-out and the
// delivery workers), so that any process forgotten at step 2 of the
// rotation soon leaves a record in one of them. The subscribers topic
// (rare writes, compacted), dead, quarantine and the retry tiers (written
// on failures only, by processes that write receipts too) are left out.
var StillSigningTopics = []string{bus.TopicAlerts, bus.TopicAlertIDs, bus.TopicAudit, bus.TopicDeliveries, bus.TopicPending, bus.TopicReceipts}

// StillSigningTail is how many of the last records of each partition of
// StillSigningTopics RetireKeys reads.
const StillSigningTail = 20

// LateRecord is a record, among the last of its partition, signed with a
// key RetireKeys would retire now, late enough to say that a process may
// still sign with that key: the first key signed a record before it on
// its partition (After), or it was written within RetireOptions.Since
// and the first key signed none after it. Timestamps are the writer's
// (Kafka's CreateTime): this is a safety net against a process forgotten
// at a rotation, not a proof about anyone holding the key.
type LateRecord struct {
	// Key is the id of the key that signed it.
	Key string
	// Topic is the topic without prefix.
	Topic     string
	Partition int
	Offset    int64
	// Time is the record's Kafka timestamp.
	Time time.Time
	// After is the offset of the newest record the first key signed
	// before it on the partition, -1 when found by its time alone.
	After     int64
	AfterTime time.Time
	// Count is how many such records of the key the partition's last
	// records hold; the fields above are the newest's.
	Count int
}

// ErrStillSigning is RetireKeys' answer when it finds LateRecords and was
// not forced: nothing was written.
var ErrStillSigning = errors.New("a process may still sign with a key that would be retired")

// RetireKeys retires every key of the publishing key file of cfg but the
// first (busauth.Retire) at the end offsets b's brokers give for every
// partition of every topic Herald reads (bus.Topics, and retry topics of
// a longer delivery.retry_schedule still there), and, unless opt.DryRun,
// writes the file back (busauth.WriteFile) when that changes it. A retired
// key keeps verifying what it signed before the call, so a rotation needs
// no waiting and loses no history; every Herald process must be running
// with the new key first (the file's first key signs), or whatever a
// process still signs with the old key afterwards is refused. So, before
// retiring a key, it reads the last StillSigningTail records of every
// partition of StillSigningTopics, authenticated by b (b must hold the
// file's keys), and when it finds LateRecords of a key it would retire it
// returns them with ErrStillSigning and writes nothing, unless opt.Force.
// A file of one key is refused with busauth.ErrOneKey. A rewrite is
// recorded in the audit trail (record.ActionKeysRetire) as opt.Actor,
// when opt.Log is not nil.
func RetireKeys(ctx context.Context, b *bus.Bus, cfg *config.Config, opt RetireOptions) (KeyRetirement, error) {
	path, err := PublishingKeyFile(cfg)
	if err != nil {
		return KeyRetirement{}, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return KeyRetirement{}, fmt.Errorf("read publishing key: %w", err)
	}
	keys, err := busauth.Parse(data)
	if err != nil {
		return KeyRetirement{}, fmt.Errorf("publishing key %s: %w", path, err)
	}
	offs, err := topicOffsets(ctx, b, cfg)
	if err != nil {
		return KeyRetirement{}, fmt.Errorf("retire publishing keys: %w", err)
	}
	ends := make(busauth.Cutoffs, len(offs))
	for topic, parts := range offs {
		e := make([]int64, len(parts))
		for i, p := range parts {
			e[i] = p.End
		}
		ends[topic] = e
	}
	out, done, err := busauth.Retire(data, ends)
	if err != nil {
		return KeyRetirement{}, fmt.Errorf("publishing key %s: %w", path, err)
	}
	res := KeyRetirement{File: path, Signing: keys.IDs()[0], Keys: done, Ends: ends, Changed: string(out) != string(data)}
	var now []string
	for _, k := range done {
		if !k.Already {
			now = append(now, k.ID)
		}
	}
	if len(now) > 0 {
		clock := opt.Now
		if clock == nil {
			clock = time.Now
		}
		res.Checked = slices.Clone(StillSigningTopics)
		res.Late, err = lateRecords(ctx, b, offs, res.Signing, now, clock().Add(-opt.Since), opt.Since > 0)
		if err != nil {
			return res, fmt.Errorf("retire publishing keys: check that no process still signs with the old key: %w", err)
		}
		if len(res.Late) > 0 && !opt.Force {
			return res, ErrStillSigning
		}
	}
	if res.Changed && !opt.DryRun {
		if err := busauth.WriteFile(path, out); err != nil {
			return res, err
		}
		if opt.Log != nil {
			details := map[string]any{"retired": now, "topics": len(ends)}
			if len(res.Late) > 0 {
				details["forced_past_late_records"] = len(res.Late) // --force: what the check found
			}
			if err := opt.Log.Record(ctx, record.Audit{Actor: opt.Actor, Action: record.ActionKeysRetire, Object: "publishing-key:" + res.Signing,
				Details: details}); err != nil {
				return res, fmt.Errorf("wrote %s, but could not record it in the audit trail: %w", path, err)
			}
		}
	}
	return res, nil
}

// topicOffsets returns the offsets of every partition of every topic
// Herald reads, by topic without prefix, partition 0 first.
func topicOffsets(ctx context.Context, b *bus.Bus, cfg *config.Config) (map[string][]bus.PartitionOffsets, error) {
	tiers := len(cfg.Delivery.RetrySchedule)
	var names []string
	for _, t := range bus.Topics(cfg.Kafka, tiers) {
		names = append(names, t.Name)
	}
	retired, err := b.RetiredRetryTiers(ctx, tiers)
	if err != nil {
		return nil, err
	}
	for _, n := range retired {
		names = append(names, bus.RetryTopic(n))
	}
	offs, err := b.Offsets(ctx, names...)
	if err != nil {
		return nil, err
	}
	for topic, parts := range offs {
		for i, p := range parts {
			if p.Partition != i {
				return nil, fmt.Errorf("topic %s: partition %d listed at %d", topic, p.Partition, i)
			}
		}
	}
	return offs, nil
}

// lateRecords reads the last StillSigningTail records below offs's ends
// of every partition of StillSigningTopics and returns, newest per key,
// topic and partition, the LateRecords of the keys retiring: records they
// signed after the newest record on the partition that signing signed,
// or, when signing signed none after them, at or after since (if
// window). Records b does not authenticate are no one's and skipped.
func lateRecords(ctx context.Context, b *bus.Bus, offs map[string][]bus.PartitionOffsets, signing string, retiring []string, since time.Time, window bool) ([]LateRecord, error) {
	var late []LateRecord
	for _, topic := range StillSigningTopics {
		for _, p := range offs[topic] {
			from := max(p.Start, p.End-StillSigningTail)
			if from >= p.End {
				continue
			}
			var tail []kafka.Message
			var signers []string
			err := b.ReadRange(ctx, topic, p.Partition, from, p.End, func(m kafka.Message) error {
				if id, err := b.SignedBy(m); err == nil { // else not signed by a key of the file: no one's
					tail, signers = append(tail, m), append(signers, id)
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
			late = append(late, lateIn(topic, p.Partition, tail, signers, signing, retiring, since, window)...)
		}
	}
	return late, nil
}

// lateIn is lateRecords for the authenticated last records of one
// partition, in offset order, and the keys that signed them.
func lateIn(topic string, partition int, tail []kafka.Message, signers []string, signing string, retiring []string, since time.Time, window bool) []LateRecord {
	boundary := -1 // index of the newest record the first key signed
	for i, id := range signers {
		if id == signing {
			boundary = i
		}
	}
	var late []LateRecord
	for i := boundary + 1; i < len(tail); i++ {
		m, id := tail[i], signers[i]
		if !slices.Contains(retiring, id) {
			continue
		}
		r := LateRecord{Key: id, Topic: topic, Partition: partition, Offset: m.Offset, Time: m.Time, After: -1}
		switch {
		case boundary >= 0:
			r.After, r.AfterTime = tail[boundary].Offset, tail[boundary].Time
		case !window || m.Time.Before(since):
			continue
		}
		j := slices.IndexFunc(late, func(l LateRecord) bool { return l.Key == id })
		if j < 0 {
			r.Count = 1
			late = append(late, r)
			continue
		}
		r.Count = late[j].Count + 1
		late[j] = r
	}
	return late
}
