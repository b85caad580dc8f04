package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/keywatch"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/spf13/cobra"
)

// registry connects to Kafka and reads the current subscribers.
func (e *env) registry(ctx context.Context) (*subscribers.Registry, error) {
	b, _, err := e.client(ctx)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return loadRegistry(ctx, b)
}

// loadRegistry reads the whole subscribers topic into a registry, as
// every Herald process does (app.LoadRegistry); the records it skips are
// logged to the bus's log.
func loadRegistry(ctx context.Context, b *bus.Bus) (*subscribers.Registry, error) {
	return app.LoadRegistry(ctx, b, b.Log())
}

func newSubscribersCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "subscribers",
		Short: "Manage partner organisations (list, get, put, delete, import)",
	}
	var output, expiring string
	list := &cobra.Command{
		Use:   "list",
		Short: "List every subscriber, or with --expiring the OpenPGP keys that expire soon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			var within time.Duration
			if expiring != "" {
				d, err := config.ParseDuration(expiring)
				if err != nil || d <= 0 {
					return invalid(fmt.Errorf("--expiring must be a positive duration such as 30d or 72h, not %q", expiring))
				}
				within = d
			}
			reg, err := e.registry(cmd.Context())
			if err != nil {
				return err
			}
			subs := reg.List()
			if expiring != "" {
				return e.listExpiring(subs, within, output)
			}
			if output == "json" {
				if subs == nil {
					subs = []*subscribers.Subscriber{}
				}
				return e.writeJSON(subs)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tKIND\tSTATUS\tCLEARANCE\tSENSITIVE\tSECTORS\tEMAIL\tWEBHOOKS")
			for _, s := range subs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\t%s\t%d\t%d\n", printable(s.ID), printable(s.Name), printable(s.Kind), printable(s.Status),
					printable(string(s.Clearance)), s.Sensitive, printable(fmt.Sprint(s.Sectors)), len(s.Email), len(s.Webhooks))
			}
			return tw.Flush()
		},
	}
	outputFlag(list, &output)
	list.Flags().StringVar(&expiring, "expiring", "", "list the addresses whose OpenPGP key expires within this time (30d, 72h), those expired included")
	get := &cobra.Command{
		Use:   "get ID",
		Short: "Print one subscriber as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			reg, err := e.registry(cmd.Context())
			if err != nil {
				return err
			}
			// The record as written, so that it can be edited and put
			// back; endpoints Herald disabled are listed apart.
			s := reg.Record(args[0])
			if s == nil {
				return fmt.Errorf("no subscriber %q", printable(args[0]))
			}
			if states := reg.Endpoints(s.ID); len(states) > 0 {
				for _, st := range states {
					if st.Disabled {
						fmt.Fprintf(e.stderr, "herald: webhook %s is disabled (%s by %s at %s)\n", printable(subscribers.RedactURL(st.URL)),
							printable(st.Reason), printable(st.By), st.At.UTC().Format(time.RFC3339))
					}
				}
			}
			e.printPartnerManaged(reg, s)
			fmt.Fprintf(e.stderr, "herald: version %s (subscribers put --if-match %s refuses to replace the record if it changes meanwhile)\n", s.Version(), s.Version())
			return e.writeJSON(s)
		},
	}
	var ifMatch string
	put := &cobra.Command{
		Use:   "put FILE|-",
		Short: "Add or replace one subscriber (JSON or YAML)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.putSubscribers(cmd.Context(), args[0], true, ifMatch)
		},
	}
	put.Flags().StringVar(&ifMatch, "if-match", "", "replace the record only if it is still at this version (what `subscribers get` prints on stderr, or the API's ETag): a colleague's change made since, a suspension say, is never undone by your copy")
	imp := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Add or replace every subscriber in a YAML or JSON list; nothing is written if any is invalid",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.putSubscribers(cmd.Context(), args[0], false, "")
		},
	}
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a subscriber (a tombstone on the compacted topic)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, _, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			// The partner's own keys and secrets are cleared with the
			// record: those the registry holds for the id.
			reg, err := loadRegistry(cmd.Context(), b)
			if err != nil {
				return err
			}
			store := app.SubscriberStore{Bus: b, Audit: app.AuditLog(b, time.Now), Overlays: reg}
			if err := store.Delete(cmd.Context(), operator(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted %s\n", printable(args[0]))
			return nil
		},
	}
	cmd.AddCommand(list, get, put, imp, del)
	return cmd
}

// printPartnerManaged names on standard error the keys and webhook
// secrets the partner of rec (its record as written) manages itself, in
// force over the record's own (api.PartnerManagedOf, as the API lists
// them): keys by fingerprint, secrets redacted.
func (e *env) printPartnerManaged(reg *subscribers.Registry, rec *subscribers.Subscriber) {
	m := api.PartnerManagedOf(reg, rec, time.Now())
	for _, k := range m.Keys {
		if !k.InForce {
			continue // an address the record no longer lists
		}
		which := "an unreadable key"
		if k.Fingerprint != "" {
			which = "key " + k.Fingerprint
		}
		fmt.Fprintf(e.stderr, "herald: %s uses the partner's own %s, not the record's (by %s at %s)\n", printable(k.Address),
			which, printable(k.By), k.At.UTC().Format(time.RFC3339))
	}
	for _, s := range m.Secrets {
		if !s.InForce {
			continue
		}
		fmt.Fprintf(e.stderr, "herald: webhook %s uses the partner's own secrets %s, not the record's (by %s at %s)\n",
			printable(subscribers.RedactURL(s.URL)), strings.Join(s.Secrets, ", "), printable(s.By), s.At.UTC().Format(time.RFC3339))
	}
}

// listExpiring prints the keys of subs that expire within within of now,
// soonest first: subscriber, address, fingerprint and expiry.
func (e *env) listExpiring(subs []*subscribers.Subscriber, within time.Duration, output string) error {
	now := time.Now()
	keys := keywatch.Expiring(subs, now, within)
	if output == "json" {
		if keys == nil {
			keys = []keywatch.Key{}
		}
		return e.writeJSON(keys)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBSCRIBER\tSTATUS\tADDRESS\tFINGERPRINT\tEXPIRES\tIN")
	for _, k := range keys {
		in := "expired"
		if left := k.Expires.Sub(now); left > 0 {
			in = fmt.Sprintf("%dd%dh", int(left/(24*time.Hour)), int(left%(24*time.Hour)/time.Hour))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", printable(k.Subscriber), printable(k.Status), printable(k.Address),
			printable(k.Fingerprint), k.Expires.UTC().Format(time.RFC3339), in)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\n%d keys expire within %s\n", len(keys), printable(fmtDays(within)))
	return nil
}

// fmtDays writes a duration of whole days as "30d".
func fmtDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// putSubscribers validates every record in the input and, only if all are
// valid, writes them to the subscribers topic.
func (e *env) putSubscribers(ctx context.Context, file string, single bool, ifMatch string) error {
	data, err := e.readInput(file)
	if err != nil {
		return err
	}
	subs, err := subscribers.DecodeList(data)
	if err != nil {
		return invalid(err)
	}
	if single && len(subs) != 1 {
		return invalid(fmt.Errorf("put takes one subscriber; the input has %d (use import for a list)", len(subs)))
	}
	c, err := e.config()
	if err != nil {
		return err
	}
	now := time.Now()
	var errs []error
	seen := map[string]bool{}
	for _, s := range subs {
		if err := app.CheckSubscriber(c, e.tax, s, now); err != nil {
			errs = append(errs, err)
		}
		if seen[s.ID] {
			errs = append(errs, fmt.Errorf("subscriber %s appears twice", s.ID))
		}
		seen[s.ID] = true
	}
	if len(errs) > 0 {
		for _, err := range errs[1:] {
			fmt.Fprintf(e.stderr, "herald: %s\n", printableLines(err.Error()))
		}
		return invalid(errs[0])
	}
	b, _, err := e.client(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	reg, err := loadRegistry(ctx, b)
	if err != nil {
		return err
	}
	if ifMatch != "" {
		want := `"` + strings.Trim(strings.TrimSpace(ifMatch), `"`) + `"`
		if cur := reg.Record(subs[0].ID); cur == nil || cur.Version() != want {
			now := "it has been deleted"
			if cur != nil {
				now = "it is now at version " + cur.Version()
			}
			return fmt.Errorf("subscriber %s changed since version %s (%s): nothing was written; get it again, make your change to that, and put it with the new version", printable(subs[0].ID), printable(want), now)
		}
	}
	// Compared with the records as written: a partner's own key or secret
	// stays in force unless the record changes it.
	store := app.SubscriberStore{Bus: b, Audit: app.AuditLog(b, time.Now), Overlays: reg}
	if err := store.Put(ctx, operator(), "", subs, reg.Record); err != nil {
		return err
	}
	for _, s := range subs {
		fmt.Fprintf(e.stdout, "put %s\n", printable(s.ID))
	}
	return nil
}
