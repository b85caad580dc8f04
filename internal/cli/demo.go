package cli

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/herald-alerts/herald/internal/demo"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newDemoCmd) }

func newDemoCmd(e *env) *cobra.Command {
	var out string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Quick start: run Herald end to end in this process and check every signature",
		Long: "Demo starts the embedded Kafka broker, a local mail server and webhook receivers on\n" +
			"127.0.0.1 (free ports), makes a throwaway agency key and partner keys, loads sample partners,\n" +
			"runs the fan-out and delivery workers, publishes a TLP:GREEN alert, a TLP:AMBER\n" +
			"OFFICIAL-SENSITIVE alert and a cancel of the first, and then checks what every partner\n" +
			"received: signatures, encryption, no AMBER content in clear, and every decision against the\n" +
			"dissemination policy. It prints the outcome table and writes the emails (.eml), webhook\n" +
			"requests, keys and partner records to --out, for `herald verify` to try on.\n" +
			"Nothing outside this process is touched and no configuration is needed. Exit status 0 when\n" +
			"every check held, 1 otherwise.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			if e.logLevel != "" {
				if err := level.UnmarshalText([]byte(e.logLevel)); err != nil {
					return invalid(fmt.Errorf("--log-level: %w", err))
				}
			}
			log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
			fmt.Fprintln(e.stdout, "Herald demo: starting an embedded broker, a mail server and webhook receivers on 127.0.0.1 …")
			res, err := demo.Run(cmd.Context(), demo.Options{OutDir: out, Log: log})
			if errors.Is(err, demo.ErrOutDir) {
				return invalid(fmt.Errorf("demo: %w", err))
			}
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			fmt.Fprintln(e.stdout)
			res.Print(e.stdout)
			fmt.Fprintf(e.stdout, "\nWhat the partners received, the agency key and the partners' keys: %s\n", res.OutDir)
			if len(res.Hints) > 0 {
				fmt.Fprintln(e.stdout, "Check them as a partner would:")
				for _, h := range res.Hints {
					fmt.Fprintf(e.stdout, "  %s\n", h)
				}
			}
			if !res.OK() {
				return errors.New("demo: some checks failed (listed above)")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", demo.DefaultOutDir, "folder for what the partners received (replaced if an earlier demo made it)")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "show Herald's own logs at info level (default: warnings only)")
	return cmd
}
