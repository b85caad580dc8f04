package cli

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/publish"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"
)

// parseAlertInput decodes JSON (strictly) or, if it is not JSON, YAML
// (publish.DecodeBody); then normalises.
func parseAlertInput(data []byte) (*alerts.Alert, error) {
	a, err := publish.DecodeBody(publish.Body{Data: data, YAML: true})
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
			if _, err := e.config(); err != nil {
				return err
			}
			if err := a.Validate(time.Now(), e.tax); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "valid: %s %s [%s] %s\n", printable(string(a.Type)), printable(a.TLP.Label()), printable(string(a.Marking)), printable(a.Title))
			return nil
		},
	}
}

// operator names the analyst at the command line, as issued_by,
// approved_by and the audit trail record it: the operating-system user.
func operator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli:unknown"
}

// publisher returns the alert publisher on b (Kafka itself answers what
// is already held under an id) and the registry it checks alerts against,
// which the dry run decides over. c is e.config()'s.
func (e *env) publisher(ctx context.Context, b *bus.Bus, c *config.Config) (*publish.Publisher, *subscribers.Registry, error) {
	reg, err := loadRegistry(ctx, b)
	if err != nil {
		return nil, nil, err
	}
	return app.Publisher(c, e.tax, b, publish.KafkaIndex{R: b}, reg, time.Now), reg, nil
}

// publishError maps the publisher's errors onto exit statuses: a used id is
// invalid input (2); the author approving, or an alert not waiting, is a
// failure (1).
func publishError(err error) error {
	var conflict *publish.ConflictError
	if errors.As(err, &conflict) {
		return invalid(err)
	}
	return err
}

// inputFirst returns the error of data if it is not an alert, else err:
// the publisher could not be reached (err) to read data and record its
// refusal.
func inputFirst(data []byte, err error) error {
	if _, ierr := parseAlertInput(data); ierr != nil {
		return ierr
	}
	return err
}

// dryRun prints the policy's decisions for the alert in data, publishing
// nothing.
func (e *env) dryRun(ctx context.Context, data []byte, output string) error {
	a, err := parseAlertInput(data)
	if err != nil {
		return err
	}
	b, c, err := e.client(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	p, reg, err := e.publisher(ctx, b, c)
	if err != nil {
		return err
	}
	prep, err := p.Prepare(ctx, a, operator())
	if err != nil {
		return publishError(err)
	}
	ds, _ := fanout.DecideAll(a, reg, prep.Prior, time.Now(), app.PolicyOptions(c))
	if prep.NeedsRelease && output == "text" {
		fmt.Fprintf(e.stdout, "%s %s: publishing waits for a second analyst (release.second_analyst)\n\n", a.TLP.Label(), a.Marking)
	}
	return e.printDecisions(ds, output)
}

func newPublishCmd(e *env) *cobra.Command {
	var dryRun bool
	var output, as string
	cmd := &cobra.Command{
		Use:   "publish FILE|-",
		Short: "Publish an alert to Kafka, or with --dry-run show who would get it",
		Long: "Publish validates the alert, assigns an id if it has none, and writes it to the alerts topic;\n" +
			"an alert whose TLP or marking is listed in release.second_analyst waits for another analyst\n" +
			"(herald approve). The same alert published again changes nothing; another alert under a used\n" +
			"id is refused. With --dry-run nothing is published: it prints the policy's decision for every\n" +
			"target of every registered partner: first those sharing a sector with the alert or named in it,\n" +
			"as the fan-out decides them, then every other partner, by id, withheld with the rule that says so.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if as != "" {
				return invalid(errors.New("--as is no longer accepted: issued_by is your operating-system identity (" + operator() + "), so that nobody can publish in another analyst's name"))
			}
			data, err := e.readInput(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if dryRun {
				return e.dryRun(ctx, data, output)
			}
			// The publisher reads the alert and records a refusal in the
			// audit trail; if it cannot be reached, what is wrong with the
			// alert is said first, as nobody fixes Kafka by fixing a file.
			b, c, err := e.client(ctx)
			if err != nil {
				return inputFirst(data, err)
			}
			defer b.Close()
			p, _, err := e.publisher(ctx, b, c)
			if err != nil {
				return inputFirst(data, err)
			}
			_, res, err := p.PublishBody(ctx, publish.Body{Data: data, YAML: true}, operator())
			var input *publish.InputError
			switch {
			case errors.As(err, &input):
				return invalid(input.Err)
			case err != nil:
				return publishError(err)
			}
			switch {
			case output == "json":
				return e.writeJSON(res)
			case res.Unchanged:
				fmt.Fprintf(e.stderr, "herald: the identical alert is already held (%s): nothing was published again\n", res.State)
			}
			if res.State == record.StatePending {
				fmt.Fprintf(e.stdout, "%s\tawaiting approval (until %s)\n", printable(res.ID), res.ExpiresAt.Format(time.RFC3339))
				return nil
			}
			fmt.Fprintln(e.stdout, printable(res.ID))
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the decision for every partner and target; publish nothing")
	cmd.Flags().StringVar(&as, "as", "", "no longer accepted: issued_by is your operating-system identity")
	_ = cmd.Flags().MarkHidden("as")
	outputFlag(cmd, &output)
	return cmd
}

func newApproveCmd(e *env) *cobra.Command {
	var digest, output string
	cmd := &cobra.Command{
		Use:   "approve ALERT_ID",
		Short: "Release an alert that waits for a second analyst (not your own)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.release(cmd.Context(), output, func(p *publish.Publisher) (*publish.Result, error) {
				return p.Approve(cmd.Context(), args[0], operator(), digest)
			})
		},
	}
	cmd.Flags().StringVar(&digest, "digest", "", "approve only if the waiting alert has this digest (what you previewed)")
	outputFlag(cmd, &output)
	return cmd
}

func newRejectCmd(e *env) *cobra.Command {
	var reason, digest, output string
	cmd := &cobra.Command{
		Use:   "reject ALERT_ID --reason TEXT",
		Short: "Refuse an alert that waits for a second analyst, saying why",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.release(cmd.Context(), output, func(p *publish.Publisher) (*publish.Result, error) {
				return p.Reject(cmd.Context(), args[0], operator(), reason, digest)
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the alert may not go out (required)")
	cmd.Flags().StringVar(&digest, "digest", "", "reject only if the waiting alert has this digest")
	outputFlag(cmd, &output)
	return cmd
}

// release runs an approval or rejection and prints its result.
func (e *env) release(ctx context.Context, output string, act func(*publish.Publisher) (*publish.Result, error)) error {
	if err := checkOutput(output); err != nil {
		return err
	}
	b, c, err := e.client(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	p, _, err := e.publisher(ctx, b, c)
	if err != nil {
		return err
	}
	res, err := act(p)
	if err != nil {
		var v *alerts.ValidationError
		if errors.As(err, &v) {
			return err
		}
		return publishError(err)
	}
	if output == "json" {
		return e.writeJSON(res)
	}
	fmt.Fprintf(e.stdout, "%s\t%s\n", printable(res.ID), res.State)
	return nil
}

// printDecisions prints decisions as a table or the JSON array of
// {subscriber, target, decision, rule, …}.
func (e *env) printDecisions(ds []policy.Decision, output string) error {
	// Analysts see webhook URLs without credentials, query or fragment.
	shown := make([]policy.Decision, len(ds))
	for i, d := range ds {
		d.Target = subscribers.RedactTarget(d.Target)
		shown[i] = d
	}
	ds = shown
	if output == "json" {
		return e.writeJSON(ds)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SUBSCRIBER\tTARGET\tDECISION\tMODE\tRULE\tREASON")
	counts := map[string]int{}
	for _, d := range ds {
		counts[d.Decision]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", printable(d.Subscriber), dash(subscribers.RedactTarget(d.Target)), printable(d.Decision), dash(d.Mode), printable(d.Rule), printable(d.Reason))
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

// notFannedOut answers status for an alert with no receipts: waiting for
// a second analyst, rejected, expired, quarantined by the fan-out (with
// the reason and error), published moments ago, or unknown (exit 1). The
// text names who issued it; with --output json the array is empty (no
// rows) and the same sentence goes to standard error.
func (e *env) notFannedOut(ctx context.Context, b *bus.Bus, id, output string) error {
	ex, err := publish.KafkaIndex{R: b}.Existing(ctx, id)
	if err != nil {
		return err
	}
	if ex == nil {
		return fmt.Errorf("no alert %s: not published (check the id), or quarantined", printable(id))
	}
	state := ex.State(time.Now())
	rel := ex.Release
	var msg string
	switch {
	case state == record.StatePending:
		msg = fmt.Sprintf("alert %s waits for a second analyst: issued by %s at %s, expires %s", printable(id),
			printable(rel.Submitted.By), rel.Submitted.At.Format(time.RFC3339), rel.Submitted.ExpiresAt.Format(time.RFC3339))
	case state == record.StateRejected:
		msg = fmt.Sprintf("alert %s, issued by %s, was rejected by %s at %s: %s", printable(id), printable(rel.Submitted.By),
			printable(rel.Rejected.By), rel.Rejected.At.Format(time.RFC3339), printable(rel.Rejected.Reason))
	case state == record.StateExpired:
		msg = fmt.Sprintf("alert %s, issued by %s, expired at %s without a second analyst's approval", printable(id),
			printable(rel.Submitted.By), rel.Submitted.ExpiresAt.Format(time.RFC3339))
	default:
		q, err := quarantined(ctx, b, id, ex)
		if err != nil {
			return err
		}
		if q != nil {
			msg = quarantinedMessage(id, ex, q)
			break
		}
		if !ex.FannedOut.IsZero() {
			msg = receiptsGone(id, ex)
			break
		}
		msg = publishedNotFannedOut(id, ex)
	}
	if output == "json" {
		// The same shape as for a fanned-out alert (its rows: none yet,
		// or never); where it stands goes to standard error.
		if !strings.HasSuffix(msg, reachedNoOne) && ex.FannedOut.IsZero() {
			msg += "; no deliveries yet"
		}
		fmt.Fprintf(e.stderr, "herald: %s\n", msg)
		return e.writeJSON([]statusRow{})
	}
	fmt.Fprintln(e.stdout, msg)
	return nil
}

// reachedNoOne ends what status says of an alert that never went out.
const reachedNoOne = "it reached no one"

// quarantined returns the quarantine record that marks ex, the alert
// published under id, as the view judges it: of the records of the
// quarantine topic under id that are authentic, headers and all
// (bus.AuthenticHeaders), and that refused ex's very record
// (view.Quarantine.Marks), the one view.Quarantine.Before puts first; nil
// when none does. It asks only about an alert with no receipts: one that
// was fanned out stays so.
func quarantined(ctx context.Context, b *bus.Bus, id string, ex *publish.Existing) (*view.Quarantine, error) {
	if ex.Published == "" {
		return nil, nil
	}
	var best *view.Quarantine
	err := b.ReadKeys(ctx, bus.TopicQuarantine, []string{id}, func(m kafka.Message) error {
		if !b.AuthenticHeaders(m) {
			return nil
		}
		qid, q, err := view.QuarantineOf(m)
		if err != nil || q == nil || qid != id || !q.Marks(ex.Published, ex.Partition, ex.Offset) {
			return nil
		}
		if best == nil || q.Before(best) {
			best = q
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read quarantine: %w", err)
	}
	return best, nil
}

// quarantinedMessage says that the fan-out refused a published alert, why,
// and that it reached no one.
func quarantinedMessage(id string, ex *publish.Existing, q *view.Quarantine) string {
	by := ""
	if ex.IssuedBy != "" {
		by = ", " + byline(ex.IssuedBy, ex.ApprovedBy) + ","
	}
	why := printable(q.Reason)
	if q.Error != "" {
		why += ": " + printable(q.Error)
	}
	return fmt.Sprintf("alert %s%s was quarantined by the fan-out at %s (%s); %s", printable(id), by,
		q.Time.UTC().Format(time.RFC3339), why, reachedNoOne)
}

// publishedNotFannedOut says where a published alert with no receipts
// stands, naming who issued it and, if a second analyst released it, who
// approved it.
func publishedNotFannedOut(id string, ex *publish.Existing) string {
	by := ""
	if ex.IssuedBy != "" {
		by = ", " + byline(ex.IssuedBy, ex.ApprovedBy) + ","
	}
	return fmt.Sprintf("alert %s%s is published; the fan-out has not recorded its decisions yet", printable(id), by)
}

// receiptsGone says that an alert with no receipts was fanned out, as its
// binding on the alert-ids topic says: its receipts left the receipts
// topic with retention, and who got it is no longer known.
func receiptsGone(id string, ex *publish.Existing) string {
	by := ""
	if ex.IssuedBy != "" {
		by = ", " + byline(ex.IssuedBy, ex.ApprovedBy) + ","
	}
	return fmt.Sprintf("alert %s%s was fanned out at %s; its receipts have left the receipts topic (retention): who got it is no longer known",
		printable(id), by, ex.FannedOut.UTC().Format(time.RFC3339))
}

// byline names who issued an alert and, if a second analyst released it,
// who approved it: "issued by X, approved by Y".
func byline(issuedBy, approvedBy string) string {
	s := "issued by " + printable(issuedBy)
	if approvedBy != "" {
		s += ", approved by " + printable(approvedBy)
	}
	return s
}

// statusRow is one row of `herald status --output json`: the ledger's
// entry of one partner's target, then what the receipts say of the
// partner's acknowledgement (on every row of a partner that acknowledged)
// and of who issued and approved the alert. The fields after the entry's
// were added to it; none of the entry's was renamed.
type statusRow struct {
	ledger.Entry
	AcknowledgedAt time.Time `json:"acknowledged_at,omitzero"`
	AcknowledgedBy string    `json:"acknowledged_by,omitempty"`
	IssuedBy       string    `json:"issued_by,omitempty"`
	ApprovedBy     string    `json:"approved_by,omitempty"`
}

// statusRows returns the JSON rows of the alert's entries.
func statusRows(la *ledger.Alert, entries []ledger.Entry) []statusRow {
	rows := make([]statusRow, len(entries))
	for i, en := range entries {
		rows[i] = statusRow{Entry: en, IssuedBy: la.IssuedBy, ApprovedBy: la.ApprovedBy}
		if k, ok := la.Ack(en.Subscriber, en.Incarnation); ok {
			rows[i].AcknowledgedAt, rows[i].AcknowledgedBy = k.At, k.By
		}
	}
	return rows
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
				return e.notFannedOut(ctx, b, args[0], output)
			}
			entries := la.Entries()
			for i := range entries {
				entries[i].Target = subscribers.RedactTarget(entries[i].Target)
			}
			if output == "json" {
				return e.writeJSON(statusRows(la, entries))
			}
			fmt.Fprintf(e.stdout, "alert %s  %s  %s  %s  %s\n\n", printable(la.ID), printable(string(la.Type)), printable(la.TLP.Label()), printable(string(la.Marking)), byline(la.IssuedBy, la.ApprovedBy))
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SUBSCRIBER\tTARGET\tDECISION\tRULE\tSTATE\tATTEMPTS\tNEXT ATTEMPT\tLAST ERROR")
			for _, en := range entries {
				next := "-"
				if en.State == delivery.StateRetrying && !en.RetryAt.IsZero() {
					next = en.RetryAt.UTC().Format(time.RFC3339)
				}
				lastErr := en.LastError
				if en.State == delivery.StateDelivered {
					lastErr = "" // an earlier attempt's error no longer matters
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", printable(en.Subscriber), dash(en.Target), printable(en.Decision), printable(en.Rule), printable(en.State), en.Attempts, next, dash(lastErr))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "\n%s\n", summarize(la.Counts()))
			if acks := la.Acknowledgements(); len(acks) > 0 {
				fmt.Fprintln(e.stdout)
				for _, k := range acks {
					note := ""
					if k.Note != "" {
						note = ": " + printable(k.Note)
					}
					fmt.Fprintf(e.stdout, "%s acknowledged at %s (%s)%s\n", printable(k.Subscriber), k.At.UTC().Format(time.RFC3339), printable(k.By), note)
				}
			}
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
	for _, st := range delivery.States {
		if n := counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	if len(parts) == 0 {
		return "no targets"
	}
	return strings.Join(parts, ", ")
}
