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
// key, write the compacted subscribers topic's latest records again under
// the new key, or with --dry-run only say which keys they need.
func newResignCmd(e *env) *cobra.Command {
	var subs, dryRun bool
	cmd := &cobra.Command{
		Use:   "resign --subscribers [--dry-run]",
		Short: "Re-sign the subscribers topic's latest records with the publishing key's first key (after a rotation)",
		Long: "The subscribers topic is compacted: the latest record of each partner, of each partner's own key\n" +
			"and secrets and of each endpoint state stays for ever, signed with the publishing key that wrote it.\n" +
			"resign writes every latest record signed with another key of publishing.key_file again, key and\n" +
			"value unchanged, signed with the file's first key, leaving out any record changed meanwhile, and\n" +
			"records the run in the audit trail. It then prints how many latest records each key signs, and\n" +
			"exits 1 while any is signed with a key other than the first: that key may not be removed yet.\n" +
			"--dry-run only prints and exits so.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !subs {
				return invalid(errors.New("--subscribers is required: the subscribers topic is the one whose records Herald keeps for ever"))
			}
			return e.resignSubscribers(cmd.Context(), dryRun)
		},
	}
	cmd.Flags().BoolVar(&subs, "subscribers", false, "re-sign the subscribers topic")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "write nothing: print how many latest records each key signs, and exit 1 while a key other than the first signs any")
	return cmd
}

// resignSubscribers re-signs the subscribers topic (unless dryRun) and
// prints which keys its latest records need.
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
		fmt.Fprintf(e.stdout, "re-signed %d records of the subscribers topic with key %s", res.Records, res.Key)
		if res.Changed > 0 {
			fmt.Fprintf(e.stdout, "; left %d alone that changed meanwhile", res.Changed)
		}
		if res.Restored > 0 {
			fmt.Fprintf(e.stdout, "; wrote %d newer records again that a copy had landed after", res.Restored)
		}
		fmt.Fprintln(e.stdout)
		if scan, err = store.ScanSigners(ctx); err != nil {
			return err
		}
	}
	u := scan.Use()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tLATEST RECORDS")
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
		fmt.Fprintf(e.stderr, "herald: %d latest records of the subscribers topic are verified by no key of publishing.key_file: every Herald process skips them (written by another client, or signed with a key already removed: put it back, second, and run `herald keys resign --subscribers`)\n", u.Unverified)
	}
	if n := u.Others(); n > 0 {
		return fmt.Errorf("%d latest records of the subscribers topic are signed with a key other than %s: keep every key listed until `herald keys resign --subscribers` leaves none", n, u.Keys[0].ID)
	}
	if len(u.Keys) > 1 {
		fmt.Fprintf(e.stdout, "no latest record of the subscribers topic needs a key other than %s\n", u.Keys[0].ID)
	}
	return nil
}
