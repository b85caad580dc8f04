package cli

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/herald-alerts/herald/alerts"
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
	var role, name, subscriber string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Print a new bearer token and the api.tokens entry (its SHA-256) to put in the configuration",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			switch role {
			case config.RoleAnalyst, config.RoleAdmin:
				if subscriber != "" {
					return invalid(fmt.Errorf("--subscriber is only for --role partner"))
				}
			case config.RolePartner:
				if subscriber == "" {
					return invalid(fmt.Errorf("--subscriber is required with --role partner: the id of the partner the token acts for"))
				}
				if !alerts.ValidID(subscriber) {
					return invalid(fmt.Errorf("--subscriber %q is not a subscriber id", subscriber))
				}
			default:
				return invalid(fmt.Errorf("--role must be analyst, admin or partner, not %q", role))
			}
			if name == "" {
				// The contract's form has no --name: a partner's token is
				// named after its partner, anyone else's after its role
				// with a random suffix, so that two people's tokens never
				// share a name (issued_by, the second-analyst rule and
				// the audit trail tell people apart by it).
				n, err := defaultTokenName(role, subscriber)
				if err != nil {
					return err
				}
				name = n
			}
			if !alerts.ValidID(name) {
				return invalid(fmt.Errorf("--name %q must be a short name: letters, digits, '.', '_' and '-'", name))
			}
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return err
			}
			tok := "hrld_" + base64.RawURLEncoding.EncodeToString(b)
			fmt.Fprintf(e.stdout, "token (give it to %s; it is not stored anywhere):\n  %s\n", name, tok)
			bound := ""
			if subscriber != "" {
				bound = ", subscriber: " + subscriber
			}
			fmt.Fprintf(e.stdout, "configuration entry under api.tokens:\n  - {name: %s, role: %s%s, sha256: %s}\n", name, role, bound, config.HashToken(tok))
			return nil
		},
	}
	gen.Flags().StringVar(&role, "role", "", "analyst, admin or partner")
	gen.Flags().StringVar(&subscriber, "subscriber", "", "with --role partner: the subscriber id the token acts for")
	gen.Flags().StringVar(&name, "name", "", "who the token is for (shown in issued_by, the audit trail and logs); default: the partner's id or the role, and a random suffix (e.g. analyst-3f9a2c, northbank-07d1e4), to be edited in the entry")
	cmd.AddCommand(gen)
	return cmd
}

// defaultTokenName names a token generated without --name: the
// partner's id (for a partner token) or the role, and 6 random hex digits,
// so that two tokens never share a name (config refuses that), a
// partner's second token included.
func defaultTokenName(role, subscriber string) (string, error) {
	prefix := role
	if role == config.RolePartner {
		prefix = subscriber
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token name: %w", err)
	}
	return fmt.Sprintf("%s-%x", prefix, b), nil
}
