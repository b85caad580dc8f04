package cli

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/spf13/cobra"
)

// newResignCmd is `herald keys resign`: after a rotation of the publishing
// key, vouch for the compacted subscribers topic's records in force under
// the new key, or with --dry-run only say which keys they need.
func newResignCmd(e *env) *cobra.Command {
	var subs, dryRun bool
	cmd := &cobra.Command{
		Use:   "resign --subscribers [--dry-run]",
		Short: "Vouch for the subscribers topic's records in force with the publishing key's first key (after a rotation)",
		Long: "The subscribers topic is compacted: the latest record of each partner, of each partner's own key\n" +
			"and secrets and of each endpoint state stays for ever, signed with the publishing key that wrote it.\n" +
			"resign writes, for every such record kept in force by another key of publishing.key_file, an\n" +
			"endorsement: a record of its own (key ~resign/ + the record's key) on the record's partition, signed\n" +
			"with the file's first key, that vouches for that record. It never writes a record again, so a change\n" +
			"made meanwhile (a suspension, a deletion) always stays in force. It records the run in the audit\n" +
			"trail, then prints how many records in force each key keeps, and exits 1 while any is kept by a\n" +
			"key other than the first: that key may not be removed yet. --dry-run only prints and exits so.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !subs {
				return invalid(errors.New("--subscribers is required: the subscribers topic is the one whose records Herald keeps for ever"))
			}
			return e.resignSubscribers(cmd.Context(), dryRun)
		},
	}
	cmd.Flags().BoolVar(&subs, "subscribers", false, "vouch for the subscribers topic's records in force")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "write nothing: print how many records in force each key keeps, and exit 1 while a key other than the first keeps any")
	return cmd
}

// resignSubscribers vouches for the subscribers topic's records in force
// (unless dryRun) and prints which keys they need.
func (e *env) resignSubscribers(ctx context.Context, dryRun bool) error {
	b, _, err := e.client(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	store := app.SubscriberStore{Bus: b, Audit: app.AuditLog(b, time.Now)}
	scan, err := store.ScanSigners(ctx)
	if err != nil {
		return err
	}
	if !dryRun {
		res, err := store.Resign(ctx, operator(), scan)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "vouched for %d records of the subscribers topic with key %s", res.Records, res.Key)
		if res.Changed > 0 {
			fmt.Fprintf(e.stdout, "; %d changed meanwhile (the newer record is in force)", res.Changed)
		}
		if res.Retired > 0 {
			fmt.Fprintf(e.stdout, "; retired %d endorsements no longer needed", res.Retired)
		}
		fmt.Fprintln(e.stdout)
		if scan, err = store.ScanSigners(ctx); err != nil {
			return err
		}
	}
	u := scan.Use()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tRECORDS IN FORCE")
	for i, k := range u.Keys {
		role := ""
		if i == 0 {
			role = " (signs)"
		}
		fmt.Fprintf(tw, "%s%s\t%d\n", k.ID, role, k.Records)
	}
	fmt.Fprintf(tw, "unverified\t%d\n", u.Unverified)
	if err := tw.Flush(); err != nil {
		return err
	}
	if u.Unverified > 0 {
		fmt.Fprintf(e.stderr, "herald: %d latest records of the subscribers topic are verified by no key of publishing.key_file and vouched for by no endorsement: every Herald process skips them (written by another client, or signed with a key already removed: put it back, second, and run `herald keys resign --subscribers`)\n", u.Unverified)
	}
	if u.Blocked > 0 {
		fmt.Fprintf(e.stderr, "herald: %d records in force in the subscribers topic are followed by a record signed with a key publishing.key_file does not hold: no endorsement can keep them once their key is removed (a newer record of a removed key looks the same as a forged one). Write each such partner's record again (`herald subscribers get ID > p.json`, then `herald subscribers put p.json`), then run `herald keys resign --subscribers` again\n", u.Blocked)
	}
	if n := u.Others(); n > 0 {
		return fmt.Errorf("%d records in force in the subscribers topic are kept by a key other than %s (they, or their endorsements, are signed with it): keep every key listed until `herald keys resign --subscribers` leaves none", n, u.Keys[0].ID)
	}
	if len(u.Keys) > 1 {
		fmt.Fprintf(e.stdout, "no record in force in the subscribers topic needs a key other than %s\n", u.Keys[0].ID)
	}
	return nil
}
