package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/view"
)

func init() { extraCommands = append(extraCommands, newAlertsCmd, newAuditCmd) }

// withView runs fn with the CLI's view of the cluster, kept in the user's
// cache folder between commands and caught up with Kafka first.
func (e *env) withView(ctx context.Context, fn func(*view.View) error) error {
	b, c, err := e.client(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	log := e.logger(c)
	v, closeView, err := app.OpenView(app.ClientViewDir(c), false, log, time.Now)
	if err != nil {
		return err
	}
	defer closeView()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- v.Run(rctx, b) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-v.Ready():
	case err := <-done:
		done <- err
		if err == nil {
			err = ctx.Err()
		}
		return fmt.Errorf("read kafka: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	return fn(v)
}

func newAlertsCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "alerts", Short: "The alert list: what went out, what waits for approval"}
	var state, before, output string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List alerts, newest first, with who issued and approved them and their deliveries",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			switch state {
			case "", record.StatePending, record.StatePublished, record.StateRejected, record.StateExpired, record.StateQuarantined:
			default:
				return invalid(fmt.Errorf("--state must be pending, published, rejected, expired or quarantined, not %q", state))
			}
			if limit < 0 || limit > view.MaxLimit {
				return invalid(fmt.Errorf("--limit must be between 1 and %d", view.MaxLimit))
			}
			return e.withView(cmd.Context(), func(v *view.View) error {
				items, next, err := v.List(view.ListQuery{State: state, Limit: limit, Before: before})
				if err != nil {
					return queryError(err)
				}
				if output == "json" {
					if items == nil {
						items = []view.Summary{}
					}
					return e.writeJSON(map[string]any{"alerts": items, "next": next})
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATE\tTLP\tMARKING\tISSUED BY\tAPPROVED BY\tDELIVERIES\tTITLE")
				for _, s := range items {
					approved := dash(s.ApprovedBy)
					if s.RejectedBy != "" {
						approved = "rejected by " + printable(s.RejectedBy)
					}
					deliveries := summarize(s.Counts)
					if s.State == record.StateQuarantined {
						deliveries = "none: quarantined (" + printable(s.QuarantineReason) + ")"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", printable(s.ID), s.State, printable(s.TLP.Label()),
						printable(string(s.Marking)), dash(s.IssuedBy), approved, deliveries, printable(s.Title))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if next != "" {
					fmt.Fprintf(e.stdout, "\nmore: herald alerts list --before %s\n", next)
				}
				return nil
			})
		},
	}
	list.Flags().StringVar(&state, "state", "", "only alerts in this state: pending, published, rejected, expired or quarantined")
	list.Flags().IntVar(&limit, "limit", view.DefaultLimit, "alerts per page (at most 500)")
	list.Flags().StringVar(&before, "before", "", "continue a list: the cursor the previous page printed, or an alert id")
	outputFlag(list, &output)
	cmd.AddCommand(list)
	return cmd
}

func newAuditCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "The audit trail: who did what, when"}
	var actor, action, object, since, until, before, output string
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List audit entries, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			q := view.AuditQuery{Actor: actor, Action: action, Object: object, Limit: limit, Before: before}
			var errs []error
			for _, t := range []struct {
				flag, val string
				dst       *time.Time
			}{{"--since", since, &q.Since}, {"--until", until, &q.Until}} {
				if t.val == "" {
					continue
				}
				at, err := parseWhen(t.val, time.Now())
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", t.flag, err))
				}
				*t.dst = at
			}
			if err := errors.Join(errs...); err != nil {
				return invalid(err)
			}
			return e.withView(cmd.Context(), func(v *view.View) error {
				entries, next, err := v.Audit(q)
				if err != nil {
					return queryError(err)
				}
				if output == "json" {
					return e.writeJSON(map[string]any{"entries": entries, "next": next})
				}
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tOBJECT\tOUTCOME\tDETAILS")
				for _, a := range entries {
					details := a.Reason
					if len(a.Details) > 0 {
						var parts []string
						for k, v := range a.Details {
							parts = append(parts, fmt.Sprintf("%s=%v", k, v))
						}
						details = strings.TrimSpace(details + " " + strings.Join(sortStrings(parts), " "))
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.At.UTC().Format(time.RFC3339), printable(a.Actor), printable(a.Action),
						printable(a.Object), printable(a.Outcome), dash(details))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if next != "" {
					fmt.Fprintf(e.stdout, "\nmore: herald audit list --before %s\n", next)
				}
				return nil
			})
		},
	}
	list.Flags().StringVar(&actor, "actor", "", "only entries by this actor, e.g. api:alice or cli:bob")
	list.Flags().StringVar(&action, "action", "", "only this action, e.g. alert.approve or subscriber.put")
	list.Flags().StringVar(&object, "object", "", "only objects starting with this, e.g. alert: or subscriber:acme")
	list.Flags().StringVar(&since, "since", "", "from this time (RFC 3339) or this long ago (e.g. 24h, 7d)")
	list.Flags().StringVar(&until, "until", "", "before this time (RFC 3339) or this long ago")
	list.Flags().IntVar(&limit, "limit", view.DefaultLimit, "entries per page (at most 500)")
	list.Flags().StringVar(&before, "before", "", "continue a list: the cursor the previous page printed")
	outputFlag(list, &output)
	cmd.AddCommand(list)
	return cmd
}

// parseWhen reads an RFC 3339 time, or a duration ago ("24h", "7d").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration ago", s)
	}
	return now.Add(-d), nil
}

func sortStrings(s []string) []string { slices.Sort(s); return s }

// queryError is an error of a query of the view: invalid input (exit 2,
// the flag named) when the view refused the query, else a failure to read
// the view (exit 1).
func queryError(err error) error {
	if qe, ok := errors.AsType[*view.QueryError](err); ok {
		return invalid(fmt.Errorf("--%s: %s", qe.Field, qe.Message))
	}
	return fmt.Errorf("read the view: %w", err)
}
