package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strings"

	"github.com/herald-alerts/herald/internal/bench"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newBenchCmd) }

func newBenchCmd(e *env) *cobra.Command {
	var (
		quick       bool
		output      string
		cpuprofile  string
		serveBinary string
		runs        []string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure fan-out, delivery, latency, status and memory against the raw transport limit",
		Long: "Bench runs Herald's fan-out and delivery in this process against an embedded broker, loopback\n" +
			"webhook receivers and a loopback SMTP sink, beside raw net/http and go-smtp clients sending the\n" +
			"same bytes, and prints each figure with its goal. Goals are reported, not enforced: the exit\n" +
			"status is 1 only when a run fails (something it sent was not delivered, a status answer was wrong,\n" +
			"or the serve process failed). For loopback delivery it sets\n" +
			"webhooks.allow_insecure_loopback and webhooks.allow_cidrs 127.0.0.0/8, smtp.tls none, and a short\n" +
			"retry schedule on its own copy of the configuration; the delivery settings are used as configured.\n" +
			"The status run times GET /v1/alerts/{id}/deliveries against a receipts topic of 1,000,000 receipts;\n" +
			"the workers and roles runs measure a separate `herald serve --roles fanout,deliver` process (this\n" +
			"program, started again) against a broker in this one: its peak memory with 100,000 partners, and\n" +
			"its CPU time per webhook delivery (Herald's work alone, without the broker and receivers).\n" +
			"--quick runs a version of every run that takes seconds (a status history of 50,000 receipts).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := e.config()
			if err != nil {
				return err
			}
			// Herald's per-alert info logs would drown the progress lines.
			lc := *c
			if e.logLevel == "" {
				lc.Log.Level = "warn"
			}
			opt := bench.Options{Quick: quick, Config: c, Log: e.logger(&lc), Progress: e.stderr, Runs: runs}
			if serveBinary != "" {
				if _, err := os.Stat(serveBinary); err != nil {
					return invalid(fmt.Errorf("--serve-binary: %w", err))
				}
				opt.Serve = func(_ context.Context, args ...string) *exec.Cmd { return exec.Command(serveBinary, args...) }
			}
			if cpuprofile != "" {
				f, err := os.Create(cpuprofile)
				if err != nil {
					return invalid(fmt.Errorf("--cpuprofile: %w", err))
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("start CPU profile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			for _, r := range runs {
				if !slices.Contains(bench.AllRuns, r) {
					return invalid(fmt.Errorf("--run: unknown run %q: want %s", r, strings.Join(bench.AllRuns, ", ")))
				}
			}
			results, runErr := bench.Run(cmd.Context(), opt)
			if output == "json" {
				err = bench.WriteJSON(e.stdout, results)
			} else {
				err = bench.WriteTable(e.stdout, bench.ThisMachine(), results)
			}
			return errors.Join(runErr, err)
		},
	}
	cmd.Flags().BoolVar(&quick, "quick", false, "run a seconds-long version of every run (for CI)")
	cmd.Flags().StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run, this process only, to FILE (go tool pprof -top FILE)")
	cmd.Flags().StringVar(&serveBinary, "serve-binary", "", "run this herald program as the serve process of the workers and roles runs instead of this one, to compare\n"+
		"builds on one harness (it must read the keys the bench sets; 73479c6, issue 12's baseline, does)")
	cmd.Flags().StringSliceVar(&runs, "run", nil, "run only these (fanout, webhook, email, latency, status, workers, roles; comma-separated), e.g. to profile one")
	outputFlag(cmd, &output)
	return cmd
}
