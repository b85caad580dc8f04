package app

import (
	"context"
	"fmt"
	"os"

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
}

// RetireKeys retires every key of the publishing key file of cfg but the
// first (busauth.Retire) at the end offsets b's brokers give for every
// partition of every topic Herald reads (bus.Topics, and retry topics of
// a longer delivery.retry_schedule still there), and, unless dryRun,
// writes the file back (busauth.WriteFile) when that changes it. A retired
// key keeps verifying what it signed before the call, so a rotation needs
// no waiting and loses no history; every Herald process must be running
// with the new key first (the file's first key signs), or whatever a
// process still signs with the old key afterwards is refused. A file of
// one key is refused with busauth.ErrOneKey. A rewrite is recorded in the
// audit trail (record.ActionKeysRetire) as actor, when log is not nil.
func RetireKeys(ctx context.Context, b *bus.Bus, cfg *config.Config, dryRun bool, actor string, log *audit.Log) (KeyRetirement, error) {
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
	if len(keys.IDs()) < 2 {
		return KeyRetirement{}, fmt.Errorf("publishing key %s: %w", path, busauth.ErrOneKey)
	}
	ends, err := topicEnds(ctx, b, cfg)
	if err != nil {
		return KeyRetirement{}, fmt.Errorf("retire publishing keys: %w", err)
	}
	out, done, err := busauth.Retire(data, ends)
	if err != nil {
		return KeyRetirement{}, fmt.Errorf("publishing key %s: %w", path, err)
	}
	res := KeyRetirement{File: path, Signing: keys.IDs()[0], Keys: done, Ends: ends, Changed: string(out) != string(data)}
	if res.Changed && !dryRun {
		if err := busauth.WriteFile(path, out); err != nil {
			return res, err
		}
		if log != nil {
			var now []string
			for _, k := range done {
				if !k.Already {
					now = append(now, k.ID)
				}
			}
			if err := log.Record(ctx, record.Audit{Actor: actor, Action: record.ActionKeysRetire, Object: "publishing-key:" + res.Signing,
				Details: map[string]any{"retired": now, "topics": len(ends)}}); err != nil {
				return res, fmt.Errorf("wrote %s, but could not record it in the audit trail: %w", path, err)
			}
		}
	}
	return res, nil
}

// topicEnds returns the end offset of every partition of every topic
// Herald reads, by topic without prefix.
func topicEnds(ctx context.Context, b *bus.Bus, cfg *config.Config) (busauth.Cutoffs, error) {
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
	ends := make(busauth.Cutoffs, len(offs))
	for topic, parts := range offs {
		e := make([]int64, len(parts))
		for i, p := range parts {
			if p.Partition != i {
				return nil, fmt.Errorf("topic %s: partition %d listed at %d", topic, p.Partition, i)
			}
			e[i] = p.End
		}
		ends[topic] = e
	}
	return ends, nil
}
