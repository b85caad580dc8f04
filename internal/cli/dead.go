package cli

import (
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/deliver"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newDeadCmd) }

func newDeadCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "dead", Short: "Inspect and replay dead-lettered deliveries"}
	var f deliver.DeadFilter
	var output string
	list := &cobra.Command{
		Use:   "list",
		Short: "List dead letters: deliveries that failed for good, with the reason and attempts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			b, _, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			dl, err := deliver.ListDead(cmd.Context(), b, f)
			if err != nil {
				return err
			}
			if output == "json" {
				type row struct {
					Alert      string    `json:"alert,omitempty"`
					Subscriber string    `json:"subscriber,omitempty"`
					Channel    string    `json:"channel,omitempty"`
					Target     string    `json:"target,omitempty"`
					DeliveryID string    `json:"delivery_id,omitempty"`
					Reason     string    `json:"reason"`
					Error      string    `json:"error,omitempty"`
					Attempts   int       `json:"attempts"`
					At         time.Time `json:"at"`
					Partition  int       `json:"partition"`
					Offset     int64     `json:"offset"`
				}
				rows := []row{}
				for _, d := range dl {
					r := row{Reason: d.Reason, Error: d.Error, At: d.Time, Partition: d.Partition, Offset: d.Offset}
					r.Alert, r.Subscriber, r.Target = d.Names()
					if j := d.Job; j != nil {
						r.Channel, r.DeliveryID, r.Attempts = j.Channel, j.ID, len(j.History)
					}
					rows = append(rows, r)
				}
				return e.writeJSON(rows)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AT\tALERT\tSUBSCRIBER\tTARGET\tREASON\tATTEMPTS\tERROR")
			for _, d := range dl {
				alert, sub, target := d.Names()
				attempts := 0
				if j := d.Job; j != nil {
					attempts = len(j.History)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Time.UTC().Format(time.RFC3339), unknown(alert), unknown(sub), unknown(target), dash(d.Reason), attempts, dash(d.Error))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "\n%d dead letters\n", len(dl))
			return nil
		},
	}
	outputFlag(list, &output)
	var all bool
	replay := &cobra.Command{
		Use:   "replay",
		Short: "Re-queue dead letters (after the partner fixed their side); already-delivered ones are skipped",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.Empty() && !all {
				return invalid(errors.New("name --subscriber and/or --alert, or --all to replay every dead letter"))
			}
			b, _, err := e.client(cmd.Context())
			if err != nil {
				return err
			}
			defer b.Close()
			n, err := deliver.Replay(cmd.Context(), b, f, time.Now())
			if err != nil {
				return err
			}
			object := "dead:all"
			switch {
			case f.Subscriber != "":
				object = "subscriber:" + f.Subscriber
			case f.Alert != "":
				object = "alert:" + f.Alert
			}
			if err := app.AuditLog(b, time.Now).Record(cmd.Context(), record.Audit{Actor: operator(), Action: record.ActionDeadReplay,
				Object: object, Details: map[string]any{"requeued": n, "subscriber": f.Subscriber, "alert": f.Alert}}); err != nil {
				fmt.Fprintf(e.stderr, "herald: the replay is done but was not recorded in the audit trail: %v\n", err)
			}
			fmt.Fprintf(e.stdout, "re-queued %d deliveries\n", n)
			return nil
		},
	}
	replay.Flags().BoolVar(&all, "all", false, "replay every dead letter")
	for _, c := range []*cobra.Command{list, replay} {
		c.Flags().StringVar(&f.Subscriber, "subscriber", "", "only this subscriber's dead letters")
		c.Flags().StringVar(&f.Alert, "alert", "", "only this alert's dead letters")
	}
	cmd.AddCommand(list, replay)
	return cmd
}

// unknown returns s as printable, or "?" when the dead letter does not
// name it.
func unknown(s string) string {
	if s == "" {
		return "?"
	}
	return printable(s)
}
