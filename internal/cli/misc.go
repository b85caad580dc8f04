package cli

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/herald-alerts/herald/internal/config"
	"github.com/spf13/cobra"
)

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Herald's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			rev := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						rev = " " + s.Value
					}
				}
			}
			fmt.Fprintf(e.stdout, "herald %s%s %s/%s %s\n", Version, rev, runtime.GOOS, runtime.GOARCH, runtime.Version())
			return nil
		},
	}
}

func newTokenCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Make API bearer tokens"}
	var role, name string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print a new bearer token and the api.tokens entry (its SHA-256) to put in the configuration",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if role != config.RoleAnalyst && role != config.RoleAdmin {
				return invalid(fmt.Errorf("--role must be analyst or admin, not %q", role))
			}
			if name == "" {
				return invalid(fmt.Errorf("--name is required"))
			}
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			tok := "hrld_" + base64.RawURLEncoding.EncodeToString(b)
			fmt.Fprintf(e.stdout, "token (give it to %s; it is not stored anywhere):\n  %s\n", name, tok)
			fmt.Fprintf(e.stdout, "configuration entry under api.tokens:\n  - {name: %s, role: %s, sha256: %s}\n", name, role, config.HashToken(tok))
			return nil
		},
	}
	gen.Flags().StringVar(&role, "role", "", "analyst or admin")
	gen.Flags().StringVar(&name, "name", "", "who the token is for (shown in issued_by and logs)")
	cmd.AddCommand(gen)
	return cmd
}
