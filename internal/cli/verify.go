package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newVerifyCmd) }

func newVerifyCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "verify", Short: "Check, as a partner would, that a webhook or email really came from the agency"}
	var secrets []string
	var keyFile string
	var tolerance time.Duration
	wh := &cobra.Command{
		Use:   "webhook FILE|-",
		Short: "Verify a captured webhook request (raw HTTP request: request line, headers, body)",
		Args:  cobra.ExactArgs(1),
	}
	wh.RunE = func(cmd *cobra.Command, args []string) error {
		if len(secrets) == 0 {
			return invalid(errors.New("--secret whsec_… is required"))
		}
		raw, err := e.readInput(args[0])
		if err != nil {
			return err
		}
		var key []byte
		if keyFile != "" {
			if key, err = os.ReadFile(keyFile); err != nil {
				return invalid(err)
			}
		}
		rep, err := webhook.VerifyRequest(bytes.NewReader(raw), secrets, key, time.Now(), tolerance)
		if rep != nil {
			// The id, event, alert id and notice come from the captured
			// request: escape each within its line.
			shown := *rep
			shown.ID, shown.Event, shown.AlertID, shown.Notice, shown.PGPSigner =
				printable(rep.ID), printable(rep.Event), printable(rep.AlertID), printable(rep.Notice), printable(rep.PGPSigner)
			fmt.Fprintln(e.stdout, printableLines(shown.String()))
		}
		if err != nil {
			return fmt.Errorf("webhook NOT verified: %w", err)
		}
		if !rep.OK() {
			return errors.New("webhook NOT verified")
		}
		return nil
	}
	wh.Flags().StringArrayVar(&secrets, "secret", nil, "the endpoint's whsec_ secret (repeat during rotation)")
	wh.Flags().StringVar(&keyFile, "key", "", "the agency's public key, to check herald-pgp-signature too")
	wh.Flags().DurationVar(&tolerance, "tolerance", 5*time.Minute, "how old webhook-timestamp may be")

	var agencyKey, secretKey, passFile string
	em := &cobra.Command{
		Use:   "email FILE.eml|-",
		Short: "Verify a received email's PGP/MIME signature (and decrypt it with --secret-key)",
		Args:  cobra.ExactArgs(1),
	}
	em.RunE = func(cmd *cobra.Command, args []string) error {
		if agencyKey == "" {
			return invalid(errors.New("--key agency.asc is required"))
		}
		raw, err := e.readInput(args[0])
		if err != nil {
			return err
		}
		pub, err := os.ReadFile(agencyKey)
		if err != nil {
			return invalid(err)
		}
		var sec, pass []byte
		if secretKey != "" {
			if sec, err = os.ReadFile(secretKey); err != nil {
				return invalid(err)
			}
		}
		if passFile != "" {
			b, err := os.ReadFile(passFile)
			if err != nil {
				return invalid(err)
			}
			pass = trimNewline(b)
		}
		v, err := email.Verify(raw, pub, sec, pass)
		if err != nil {
			return fmt.Errorf("email NOT verified: %w", err)
		}
		fmt.Fprintf(e.stdout, "good signature from the agency key %s (encrypted: %t)\n\n%s", printable(v.Signer), v.Encrypted, printableLines(v.Text))
		return nil
	}
	em.Flags().StringVar(&agencyKey, "key", "", "the agency's public key (herald keys export, or GET /v1/signing-key)")
	em.Flags().StringVar(&secretKey, "secret-key", "", "your private key, to decrypt an encrypted message")
	em.Flags().StringVar(&passFile, "passphrase-file", "", "passphrase of --secret-key")
	cmd.AddCommand(wh, em)
	return cmd
}
