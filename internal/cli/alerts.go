package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"
)

// parseAlertInput decodes JSON (strictly) or, if it is not JSON, YAML; then
// normalises.
func parseAlertInput(data []byte) (*alerts.Alert, error) {
	var a *alerts.Alert
	var err error
	if json.Valid(data) {
		a, err = alerts.Decode(data)
	} else {
		a, err = alerts.DecodeYAML(data)
	}
	if err != nil {
		return nil, invalid(err)
	}
	a.Normalize()
	return a, nil
}

func newValidateCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE|-",
		Short: "Check an alert (JSON or YAML) and report every bad field",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := e.readInput(args[0])
			if err != nil {
				return err
			}
			a, err := parseAlertInput(data)
			if err != nil {
				return err
			}
			if err := a.Validate(time.Now(), taxonomy.Default()); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "valid: %s %s [%s] %s\n", printable(string(a.Type)), printable(a.TLP.Label()), printable(string(a.Marking)), printable(a.Title))
			return nil
		},
	}
}

// issuer names the analyst publishing from the command line.
func issuer(as string) string {
	if as != "" {
		return as
	}
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli:unknown"
}

func newPublishCmd(e *env) *cobra.Command {
	var dryRun bool
	var output, as string
	cmd := &cobra.Command{
		Use:   "publish FILE|-",
		Short: "Publish an alert to Kafka, or with --dry-run show who would get it",
		Long: "Publish validates the alert, assigns an id if it has none, and writes it to the alerts topic.\n" +
			"With --dry-run nothing is published: it prints the policy's decision for every partner and target.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			data, err := e.readInput(args[0])
			if err != nil {
				return err
			}
			a, err := parseAlertInput(data)
			if err != nil {
				return err
			}
			now := time.Now().UTC()
			if a.ID == "" {
				a.ID = alerts.NewID(now)
			}
			a.IssuedBy, a.IssuedAt = issuer(as), &now
			if err := a.Validate(now, taxonomy.Default()); err != nil {
				return err
			}
			ctx := cmd.Context()
			b, c, err := e.client(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			var prior map[string]*ledger.Alert
			if len(a.References) > 0 {
				if prior, err = checkReferences(ctx, b, a); err != nil {
					return err
				}
			}
			if dryRun {
				reg, err := loadRegistry(ctx, b)
				if err != nil {
					return err
				}
				return e.printDecisions(app.Preview(a, reg.List(), prior, now, app.PolicyOptions(c)), output)
			}
			v, err := json.Marshal(a)
			if err != nil {
				return err
			}
			if err := b.Producer(bus.TopicAlerts).Write(ctx, kafka.Message{Key: []byte(a.ID), Value: v}); err != nil {
				return fmt.Errorf("publish alert %s: %w", a.ID, err)
			}
			fmt.Fprintln(e.stdout, printable(a.ID))
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the decision for every partner and target; publish nothing")
	cmd.Flags().StringVar(&as, "as", "", "the analyst issuing the alert (default cli:$USER)")
	outputFlag(cmd, &output)
	return cmd
}

// checkReferences applies rule 7 before publishing an update or cancel
// and returns what the ledger knows of the referenced alerts.
func checkReferences(ctx context.Context, b *bus.Bus, a *alerts.Alert) (map[string]*ledger.Alert, error) {
	found, err := ledger.FromBus(b).Lookup(ctx, a.References)
	if err != nil {
		return nil, err
	}
	if errs := ledger.CheckReferences(a, found); len(errs) > 0 {
		return nil, &alerts.ValidationError{What: "invalid " + string(a.Type), Fields: errs}
	}
	return found, nil
}

// printDecisions prints decisions as a table or the JSON array of
// {subscriber, target, decision, rule, …}.
func (e *env) printDecisions(ds []policy.Decision, output string) error {
	if output == "json" {
		if ds == nil {
			ds = []policy.Decision{}
		}
		return e.writeJSON(ds)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBSCRIBER\tTARGET\tDECISION\tMODE\tRULE\tREASON")
	counts := map[string]int{}
	for _, d := range ds {
		counts[d.Decision]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", printable(d.Subscriber), dash(d.Target), printable(d.Decision), dash(d.Mode), printable(d.Rule), printable(d.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\n%d deliver, %d notice, %d withhold\n", counts["deliver"], counts["notice"], counts["withhold"])
	return nil
}

// dash renders s for a table cell: printable, or "-" when empty.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return printable(s)
}

func newStatusCmd(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status ALERT_ID",
		Short: "Show who got an alert, who did not, and why (from the receipts topic)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			ctx := cmd.Context()
			b, _, err := e.client(ctx)
			if err != nil {
				return err
			}
			defer b.Close()
			found, err := ledger.FromBus(b).Lookup(ctx, args[:1])
			if err != nil {
				return err
			}
			la := found[args[0]]
			if la == nil {
				return errors.New("no receipts for alert " + args[0] + ": not fanned out (yet), quarantined, or unknown")
			}
			entries := la.Entries()
			if output == "json" {
				if entries == nil {
					entries = []ledger.Entry{}
				}
				return e.writeJSON(entries)
			}
			fmt.Fprintf(e.stdout, "alert %s  %s  %s  %s  issued by %s\n\n", printable(la.ID), printable(string(la.Type)), printable(la.TLP.Label()), printable(string(la.Marking)), printable(la.IssuedBy))
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SUBSCRIBER\tTARGET\tDECISION\tRULE\tSTATE\tATTEMPTS\tLAST ERROR")
			for _, en := range entries {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", printable(en.Subscriber), dash(en.Target), printable(en.Decision), printable(en.Rule), printable(en.State), en.Attempts, dash(en.LastError))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "\n%s\n", summarize(la.Counts()))
			return nil
		},
	}
	outputFlag(cmd, &output)
	return cmd
}

// summarize renders state counts as "6 delivered, 1 withheld", in a fixed
// order.
func summarize(counts map[string]int) string {
	var parts []string
	for _, st := range []string{delivery.StateDelivered, delivery.StatePending, delivery.StateRetrying, delivery.StateDead,
		delivery.StateExpired, delivery.StateDisabled, delivery.StateWithheld} {
		if n := counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	if len(parts) == 0 {
		return "no targets"
	}
	return strings.Join(parts, ", ")
}
