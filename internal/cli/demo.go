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
	var out, listen string
	var verbose, serve bool
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
			"every check held, 1 otherwise.\n\n" +
			"With --serve the whole stack keeps running after the checks, as a sandbox: the API and web\n" +
			"console listen on --listen (a free port on 127.0.0.1 by default), and it prints the console's\n" +
			"URL, tokens for two analysts (release by a second analyst), an administrator and a partner,\n" +
			"the line that points the herald command line at the sandbox, and the folders where the\n" +
			"partners' emails and webhook requests land as they arrive. Ctrl-C stops everything (exit 0).",
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
			if cmd.Flags().Changed("listen") && !serve {
				return invalid(errors.New("--listen is only for --serve"))
			}
			opt := demo.Options{OutDir: out, Log: log}
			if serve {
				opt.Serve = &demo.ServeOptions{Listen: listen, Ready: func(res *demo.Result, sb *demo.Sandbox) {
					printResult(e, res)
					fmt.Fprintln(e.stdout)
					sb.Print(e.stdout)
				}}
			}
			fmt.Fprintln(e.stdout, "Herald demo: starting an embedded broker, a mail server and webhook receivers on 127.0.0.1 …")
			res, err := demo.Run(cmd.Context(), opt)
			if errors.Is(err, demo.ErrOutDir) {
				return invalid(fmt.Errorf("demo: %w", err))
			}
			if serve && res != nil && res.OK() {
				// The sandbox printed its result when it was ready.
				if err != nil {
					return fmt.Errorf("demo: %w", err)
				}
				fmt.Fprintln(e.stdout, "Herald sandbox stopped.")
				return nil
			}
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			printResult(e, res)
			if !res.OK() {
				return errors.New("demo: some checks failed (listed above)")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", demo.DefaultOutDir, "folder for what the partners received (replaced if an earlier demo made it)")
	cmd.Flags().BoolVar(&serve, "serve", false, "keep everything running as a sandbox after the checks, with the API and console, until Ctrl-C")
	cmd.Flags().StringVar(&listen, "listen", demo.DefaultListen, "with --serve: the API and console's address (port 0: a free port)")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "show Herald's own logs at info level (default: warnings only)")
	return cmd
}

// printResult prints the demo's outcome table and where its files are.
func printResult(e *env, res *demo.Result) {
	fmt.Fprintln(e.stdout)
	res.Print(e.stdout)
	fmt.Fprintf(e.stdout, "\nWhat the partners received, the agency key and the partners' keys: %s\n", res.OutDir)
	if len(res.Hints) > 0 {
		fmt.Fprintln(e.stdout, "Check them as a partner would:")
		for _, h := range res.Hints {
			fmt.Fprintf(e.stdout, "  %s\n", h)
		}
	}
}
