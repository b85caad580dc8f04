package cli

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/spf13/cobra"
)

// newRetireCmd is `herald keys retire`: at the end of a rotation of the
// publishing key, retire every key of publishing.key_file but the first
// at the current end of Herald's topics.
func newRetireCmd(e *env) *cobra.Command {
	var dryRun, force bool
	var since time.Duration
	cmd := &cobra.Command{
		Use:   "retire [--dry-run] [--since DURATION] [--force]",
		Short: "Retire every publishing key but the first: it keeps verifying what it signed, and nothing written after (ends a rotation)",
		Long: "Retire asks the brokers for the end offset of every partition of every topic Herald reads and\n" +
			"rewrites publishing.key_file (mode 0600, at once; comments kept) so that every key but the first\n" +
			"is marked retired with those offsets: \"hbk1.… retired alerts=12,0,7;receipts=…\". A retired key\n" +
			"verifies only the records below its offset on their topic and partition, which the brokers\n" +
			"assign and no writer chooses: every record it signed before stays readable for as long as it is\n" +
			"kept, and a record written with it afterwards is refused. It never signs nor derives partners'\n" +
			"acknowledgement links. A key already retired keeps its offsets.\n\n" +
			"Run it once every Herald process runs with the new key first in the file, then deploy the\n" +
			"rewritten file to every process and command line and restart them. The file must hold at\n" +
			"least two keys. --dry-run prints what it would do and writes nothing.\n\n" +
			"Before retiring a key it reads the last 20 records of every partition of the topics Herald's\n" +
			"running processes write on every action (alerts, alert-ids, audit, deliveries, pending,\n" +
			"receipts). A record the key to retire signed after one the first key signed on the same\n" +
			"partition, or within --since of now with none of the first key's after it, says a process may\n" +
			"still run with the old file: it prints each (key, topic, partition, offset, time), writes\n" +
			"nothing and exits 1. --force retires anyway. Timestamps are the writers': this is a safety net\n" +
			"against a process forgotten at a rotation, not a security check.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since < 0 {
				return invalid(fmt.Errorf("--since %s: want a duration of 0 or more", since))
			}
			c, err := e.config()
			if err != nil {
				return err
			}
			keys, err := app.PublishingKeys(c, false, nil)
			if err != nil {
				return err
			}
			if len(keys.IDs()) < 2 {
				return invalid(busauth.ErrOneKey)
			}
			b, _, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			res, err := app.RetireKeys(cmd.Context(), b, c, app.RetireOptions{DryRun: dryRun, Force: force, Since: since,
				Actor: operator(), Log: app.AuditLog(b, time.Now)})
			if errors.Is(err, busauth.ErrOneKey) {
				return invalid(err)
			}
			if errors.Is(err, app.ErrStillSigning) {
				fmt.Fprintf(e.stdout, "key %s signs and stays in use\n", res.Signing)
				e.printLate(res, since)
				return fmt.Errorf("%w: nothing retired; finish step 2 (deploy the file to every process and restart them), then run it again (--force retires anyway)", err)
			}
			if err != nil {
				return err
			}
			e.printRetirement(res, dryRun, since)
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be retired, and at which offsets, and write nothing")
	cmd.Flags().DurationVar(&since, "since", 10*time.Minute, "a record the old key signed this recently, with none of the first key's after it on its partition, stops the retirement (0: only the order of records)")
	cmd.Flags().BoolVar(&force, "force", false, "retire even when records say a process may still sign with the old key")
	return cmd
}

// printLate says what the check of RetireKeys read, and the records it
// found that say a process may still sign with a key to retire.
func (e *env) printLate(res app.KeyRetirement, since time.Duration) {
	if len(res.Checked) == 0 {
		return
	}
	window := ""
	if since > 0 {
		window = ", nor in the last " + since.String()
	}
	if len(res.Late) == 0 {
		fmt.Fprintf(e.stdout, "checked the last %d records of every partition of %s: no key to retire signed one after key %s did%s\n",
			app.StillSigningTail, strings.Join(res.Checked, ", "), res.Signing, window)
		return
	}
	for _, l := range res.Late {
		more := ""
		if l.Count > 1 {
			more = fmt.Sprintf(" (and %d records before it)", l.Count-1)
		}
		why := fmt.Sprintf("after key %s signed offset %d at %s", res.Signing, l.After, stamp(l.AfterTime))
		if l.After < 0 {
			why = fmt.Sprintf("within --since %s, and key %s signed nothing after it", since, res.Signing)
		}
		fmt.Fprintf(e.stdout, "key %s signed %s partition %d offset %d at %s%s, %s: a process may still sign with it\n",
			l.Key, l.Topic, l.Partition, l.Offset, stamp(l.Time), more, why)
	}
}

// stamp writes a record's timestamp, in UTC to the second.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// printRetirement says what RetireKeys did; since is its window.
func (e *env) printRetirement(res app.KeyRetirement, dryRun bool, since time.Duration) {
	fmt.Fprintf(e.stdout, "key %s signs and stays in use\n", res.Signing)
	e.printLate(res, since)
	verb := "retired"
	if dryRun {
		verb = "would retire"
	}
	for _, k := range res.Keys {
		if k.Already {
			fmt.Fprintf(e.stdout, "key %s was retired before: its offsets are kept (%s)\n", k.ID, topicSummary(k.Cutoffs))
			continue
		}
		fmt.Fprintf(e.stdout, "%s key %s at the end of %s\n", verb, k.ID, topicSummary(k.Cutoffs))
	}
	switch {
	case !res.Changed:
		fmt.Fprintf(e.stdout, "%s unchanged: every key but the first was retired already\n", res.File)
	case dryRun:
		fmt.Fprintf(e.stdout, "dry run: %s not written\n", res.File)
	default:
		fmt.Fprintf(e.stdout, "wrote %s: deploy this file to every process and command line and restart them\n", res.File)
	}
}

// topicSummary names the topics of c with how many partitions each has.
func topicSummary(c busauth.Cutoffs) string {
	if len(c) == 0 {
		return "no topic"
	}
	names := slices.Sorted(maps.Keys(c))
	n := len(c[names[0]])
	if !slices.ContainsFunc(names, func(t string) bool { return len(c[t]) != n }) {
		return fmt.Sprintf("%d topics (%s each): %s", len(names), partitions(n), strings.Join(names, ", "))
	}
	parts := make([]string, len(names))
	for i, t := range names {
		parts[i] = fmt.Sprintf("%s (%s)", t, partitions(len(c[t])))
	}
	return fmt.Sprintf("%d topics: %s", len(names), strings.Join(parts, ", "))
}

// partitions says how many partitions n is.
func partitions(n int) string {
	if n == 1 {
		return "1 partition"
	}
	return strconv.Itoa(n) + " partitions"
}
