package cli

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/spf13/cobra"
)

// newResignCmd is `herald keys resign`: after a rotation of the publishing
// key, vouch for the compacted subscribers topic's records in force, and
// copy the compacted alert-ids topic's bindings in force, under the new
// key, or with --dry-run only say which keys they need.
func newResignCmd(e *env) *cobra.Command {
	var subs, ids, dryRun bool
	cmd := &cobra.Command{
		Use:   "resign (--subscribers | --alert-ids)... [--dry-run]",
		Short: "Re-sign the compacted topics' records in force with the publishing key's first key (after a rotation)",
		Long: "The subscribers topic is compacted: the latest record of each partner, of each partner's own key\n" +
			"and secrets and of each endpoint state stays for ever, signed with the publishing key that wrote it.\n" +
			"resign --subscribers writes, for every such record kept in force by another key of\n" +
			"publishing.key_file, an endorsement: a record of its own (key ~resign/ + the record's key) on the\n" +
			"record's partition, signed with the file's first key, that vouches for that record. It never writes a\n" +
			"record again, so a change made meanwhile (a suspension, a deletion) always stays in force.\n\n" +
			"The alert-ids topic is compacted too: the binding of each alert id to the alert first fanned out\n" +
			"under it stays for ever, signed with the key that wrote it. resign --alert-ids writes, for every\n" +
			"binding in force signed with another key and not yet copied, a copy of it (same key, same value)\n" +
			"signed with the first key: every reader keeps the first binding of an id, so the copy changes nothing\n" +
			"it holds until the other keys are removed, and then is the binding.\n\n" +
			"Each records its run in the audit trail (keys.resign.start before it writes, keys.resign when done),\n" +
			"then prints how many records in force each key keeps, and\n" +
			"the command exits 1 while any is kept by a key other than the first: that key may not be removed\n" +
			"yet. --dry-run only prints and exits so.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !subs && !ids {
				return invalid(errors.New("--subscribers or --alert-ids is required (both, after a rotation): the compacted topics whose records Herald keeps for ever"))
			}
			var err error
			if subs {
				err = e.resignSubscribers(cmd.Context(), dryRun, ids)
			}
			if ids {
				if errIDs := e.resignBindings(cmd.Context(), dryRun); errIDs != nil {
					if err != nil {
						fmt.Fprintf(e.stderr, "herald: %v\n", err)
					}
					return errIDs
				}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&subs, "subscribers", false, "vouch for the subscribers topic's records in force")
	cmd.Flags().BoolVar(&ids, "alert-ids", false, "copy the alert-ids topic's bindings in force signed with another key")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "write nothing: print how many records in force each key keeps, and exit 1 while a key other than the first keeps any")
	return cmd
}

// resignSubscribers vouches for the subscribers topic's records in force
// (unless dryRun) and prints which keys they need; named, the table's
// heading names the topic (another topic's table follows).
func (e *env) resignSubscribers(ctx context.Context, dryRun, named bool) error {
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
	if named {
		fmt.Fprintln(tw, "KEY\tRECORDS IN FORCE (subscribers)")
	} else {
		fmt.Fprintln(tw, "KEY\tRECORDS IN FORCE")
	}
	for i, k := range u.Keys {
		role := keyRole(b.Keyring(), i, k.ID)
		fmt.Fprintf(tw, "%s%s\t%d\n", k.ID, role, k.Records)
	}
	fmt.Fprintf(tw, "unverified\t%d\n", u.Unverified)
	if err := tw.Flush(); err != nil {
		return err
	}
	if u.Unverified > 0 {
		fmt.Fprintf(e.stderr, "herald: %d latest records of the subscribers topic are verified by no key of publishing.key_file and vouched for by no endorsement: every Herald process skips them (written by another client, or signed with a key already removed: put it back, second, and run `herald keys resign --subscribers`; after a compromise, put the partners missing from `herald subscribers list` again from your own copies instead)\n", u.Unverified)
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

// resignBindings copies the alert-ids topic's bindings in force signed
// with a key other than the first (unless dryRun) and prints which keys
// they need.
func (e *env) resignBindings(ctx context.Context, dryRun bool) error {
	b, _, err := e.client(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	store := app.BindingStore{Bus: b, Audit: app.AuditLog(b, time.Now)}
	scan, err := store.ScanBindings(ctx)
	if err != nil {
		return err
	}
	if !dryRun {
		res, err := store.ResignBindings(ctx, operator(), scan)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "copied %d bindings of the alert-ids topic with key %s\n", res.Records, res.Key)
		if scan, err = store.ScanBindings(ctx); err != nil {
			return err
		}
	}
	u := scan.Use()
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tBINDINGS IN FORCE (alert-ids)")
	for i, k := range u.Keys {
		role := keyRole(b.Keyring(), i, k.ID)
		fmt.Fprintf(tw, "%s%s\t%d\n", k.ID, role, k.Records)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if u.Conflicting > 0 {
		fmt.Fprintf(e.stderr, "herald: %d bindings in force in the alert-ids topic are followed under their id by a binding to another alert signed with %s: once the other keys are removed every process holds that one, and no copy can come before it. Herald writes one only for an id its processes had forgotten (after a compromise, the new key deployed alone before this command); otherwise find the writer (`herald status ID` of each id bound before the rotation says which alert was fanned out)\n", u.Conflicting, u.Keys[0].ID)
	}
	if n := u.Others(); n > 0 {
		return fmt.Errorf("%d bindings in force in the alert-ids topic are signed with a key other than %s: removing it forgets their alert ids; keep every key listed until `herald keys resign --alert-ids` leaves none", n, u.Keys[0].ID)
	}
	if len(u.Keys) > 1 {
		fmt.Fprintf(e.stdout, "no binding in force in the alert-ids topic needs a key other than %s\n", u.Keys[0].ID)
	}
	return nil
}

// keyRole says, after a key's id in resign's tables, what the key does:
// the first signs; a retired key keeps verifying what it signed before its
// retirement (`herald keys retire`), so its records need no re-signing.
func keyRole(keys *busauth.Keyring, i int, id string) string {
	if i == 0 {
		return " (signs)"
	}
	if _, retired := keys.Retired(id); retired {
		return " (retired)"
	}
	return ""
}
