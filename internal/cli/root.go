// Package cli is Herald's command line: one cobra command per file, each
// turning flags and configuration into calls on the internal packages. Exit
// status: 0 success, 1 failure, 2 invalid input or usage.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitInvalid = 2
)

// Version is set at build time with -ldflags "-X …/internal/cli.Version=…".
var Version = "dev"

// invalidError marks invalid input or usage: exit status 2.
type invalidError struct{ err error }

func (e invalidError) Error() string { return e.err.Error() }
func (e invalidError) Unwrap() error { return e.err }

// invalid wraps err so that the command exits with status 2.
func invalid(err error) error {
	if err == nil {
		return nil
	}
	return invalidError{err}
}

// env is what every command shares: streams and the loaded configuration.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configFile     string
	logLevel       string
	cfg            *config.Config
	// tax is cfg's taxonomy (taxonomy.sectors, taxonomy.regions), made
	// once with it.
	tax *taxonomy.Taxonomy
}

// config loads and validates the configuration once, and makes its
// taxonomy (e.tax).
func (e *env) config() (*config.Config, error) {
	if e.cfg != nil {
		return e.cfg, nil
	}
	c, err := config.Load(e.configFile)
	if err != nil {
		return nil, invalid(err)
	}
	if e.logLevel != "" {
		c.Log.Level = e.logLevel
	}
	if err := c.Validate(); err != nil {
		return nil, invalid(err)
	}
	tax, err := c.Taxonomy.Build()
	if err != nil {
		return nil, invalid(err)
	}
	e.cfg, e.tax = c, tax
	return c, nil
}

// logger builds the slog logger the configuration asks for, on stderr.
func (e *env) logger(c *config.Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(e.stderr, opts))
	}
	return slog.New(slog.NewTextHandler(e.stderr, opts))
}

// client opens the bus as a client: with no brokers configured it connects
// to the embedded broker a running `herald serve` listens on, and never
// starts one itself. It authenticates with the publishing key, found where
// serve finds it.
func (e *env) client(ctx context.Context) (*bus.Bus, *config.Config, error) {
	c, err := e.config()
	if err != nil {
		return nil, nil, err
	}
	where := c.Kafka.Embedded.Listen
	if len(c.Kafka.Brokers) > 0 {
		where = strings.Join(c.Kafka.Brokers, ",")
	}
	b, err := app.OpenBus(ctx, c, true, e.logger(c))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to kafka at %s: %w", where, err)
	}
	if err := b.Ping(ctx); err != nil {
		b.Close()
		return nil, nil, fmt.Errorf("connect to kafka at %s (is `herald serve` running?): %w", where, err)
	}
	return b, c, nil
}

// newRoot builds the command tree.
func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:           "herald",
		Short:         "Disseminate modern slavery and human trafficking alerts to partner organisations",
		Long:          "Herald carries intelligence alerts from a crime agency's analysts to partner organisations\nby OpenPGP-signed email and signed webhooks, over Kafka.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.PersistentFlags().StringVar(&e.configFile, "config", "", "configuration file (YAML); every key can also be set by HERALD_… environment variables")
	root.PersistentFlags().StringVar(&e.logLevel, "log-level", "", "override log.level: debug, info, warn or error")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return invalid(err) })
	root.AddCommand(
		newServeCmd(e),
		newValidateCmd(e),
		newPublishCmd(e),
		newStatusCmd(e),
		newSubscribersCmd(e),
		newVersionCmd(e),
		newTokenCmd(e),
		newApproveCmd(e),
		newRejectCmd(e),
	)
	for _, add := range extraCommands {
		root.AddCommand(add(e))
	}
	// cobra adds its completion group only as the command runs: add it
	// now, so that it is a group like the others.
	root.InitDefaultCompletionCmd()
	root.SetHelpCommand(newHelpCmd())
	requireSubcommands(root)
	return root
}

// newHelpCmd is cobra's help command, except that an unknown topic is a
// usage error (exit status 2) where cobra's prints the usage and succeeds.
func newHelpCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		Long:  "Help provides help for any command in the application.\nSimply type herald help [path to command] for full details.",
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			if err != nil || cmd == nil || len(rest) > 0 {
				fmt.Fprint(c.ErrOrStderr(), c.Root().UsageString())
				return invalid(fmt.Errorf("unknown help topic %q", strings.Join(args, " ")))
			}
			cmd.InitDefaultHelpFlag()
			cmd.InitDefaultVersionFlag()
			return cmd.Help()
		},
	}
}

// requireSubcommands makes every command that only groups others (herald,
// herald keys, herald subscribers, herald completion…) a usage error, exit status 2, when it
// is run without one of them or with an unknown one, where cobra would
// print its help and succeed.
func requireSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		requireSubcommands(c)
	}
	if !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.SuggestionsMinimumDistance = 2 // cobra's own default, which SuggestionsFor does not apply
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		fmt.Fprint(cmd.ErrOrStderr(), cmd.UsageString())
		if len(args) > 0 {
			hint := ""
			if sug := cmd.SuggestionsFor(args[0]); len(sug) > 0 {
				hint = "; did you mean " + strings.Join(sug, " or ") + "?"
			}
			return invalid(fmt.Errorf("unknown command %q for %q%s", args[0], cmd.CommandPath(), hint))
		}
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		return invalid(fmt.Errorf("%s needs a command: %s", cmd.CommandPath(), strings.Join(names, ", ")))
	}
}

// extraCommands lets each command file register itself.
var extraCommands []func(*env) *cobra.Command

// Execute runs the command line and returns the exit status.
func Execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var v *alerts.ValidationError
	switch {
	case errors.As(err, &v):
		fmt.Fprintf(stderr, "herald: %s:\n", printable(v.What))
		for _, f := range v.Fields {
			fmt.Fprintf(stderr, "  %s: %s\n", printable(f.Field), printable(f.Message))
		}
	default:
		fmt.Fprintf(stderr, "herald: %s\n", printableLines(err.Error()))
	}
	if errors.As(err, &invalidError{}) || errors.As(err, &v) || isUsage(err) {
		return ExitInvalid
	}
	return ExitFailure
}

// isUsage recognises cobra's own usage errors.
func isUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "unknown command") || strings.HasPrefix(s, "accepts ") ||
		strings.HasPrefix(s, "requires ") || strings.Contains(s, "unknown flag") || strings.HasPrefix(s, "unknown shorthand")
}

// readInput reads a file name, or standard input for "-".
func (e *env) readInput(name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(e.stdin)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, invalid(err)
	}
	return b, nil
}

// writeJSON prints v as indented JSON in which every character printable
// would escape is a \u escape (jsonSafe).
func (e *env) writeJSON(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := e.stdout.Write(jsonSafe(buf.Bytes()))
	return err
}

// outputFlag adds --output text|json.
func outputFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVarP(p, "output", "o", "text", "output format: text or json")
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return invalid(fmt.Errorf("--output must be text or json, not %q", o))
	}
	return nil
}
