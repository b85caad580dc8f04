package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/spf13/cobra"
)

func init() { extraCommands = append(extraCommands, newKeysCmd) }

func newKeysCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Generate and export the agency's OpenPGP signing key; retire or re-sign after a publishing key rotation"}
	var name, addr, algo, out, passFile string
	var publishing bool
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Generate an agency signing key (Ed25519 with a Curve25519 encryption subkey by default)",
		Long: "Generate writes the armoured private key to --out (mode 0600) and the public key to --out.pub.\n" +
			"Point signing.key_file at the private key; give partners the public key (or let them fetch\n" +
			"GET /v1/signing-key).",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if publishing {
				return e.generatePublishingKey(out)
			}
			if name == "" || addr == "" || out == "" {
				return invalid(fmt.Errorf("--name, --email and --out are required"))
			}
			var pass []byte
			if passFile != "" {
				b, err := os.ReadFile(passFile)
				if err != nil {
					return invalid(err)
				}
				pass = trimNewline(b)
			}
			if _, err := os.Stat(out); err == nil {
				return invalid(fmt.Errorf("%s exists: refusing to overwrite a key", out))
			}
			priv, pub, err := pgp.GenerateKeyWithPassphrase(name, addr, algo, time.Now(), pass)
			if err != nil {
				return invalid(err)
			}
			if err := os.WriteFile(out, priv, 0o600); err != nil {
				return err
			}
			if err := os.WriteFile(out+".pub", pub, 0o644); err != nil {
				return err
			}
			s, err := pgp.LoadSigner(priv, pass, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "private key: %s\npublic key:  %s.pub\nfingerprint: %s\n", out, out, s.Fingerprint())
			return nil
		},
	}
	gen.Flags().StringVar(&name, "name", "", "the key's user name, e.g. \"Agency alerts\"")
	gen.Flags().StringVar(&addr, "email", "", "the key's email address (usually smtp.from)")
	gen.Flags().StringVar(&algo, "algo", "ed25519", "ed25519 or rsa3072")
	gen.Flags().StringVar(&out, "out", "", "file for the private key; the public key goes to FILE.pub")
	gen.Flags().StringVar(&passFile, "passphrase-file", "", "encrypt the private key with the passphrase in this file")
	gen.Flags().BoolVar(&publishing, "publishing", false, "make the publishing key (publishing.key_file) instead: the key that authenticates what Herald writes to Kafka")
	export := &cobra.Command{
		Use:   "export",
		Short: "Print the agency's public key (from signing.key_file)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c, err := e.config()
			if err != nil {
				return err
			}
			s, err := app.LoadSigner(c, time.Now())
			if err != nil {
				return invalid(err)
			}
			if s == nil {
				return invalid(app.ErrNoSigner)
			}
			_, err = e.stdout.Write(s.PublicKeyArmored())
			return err
		},
	}
	cmd.AddCommand(gen, export, newResignCmd(e), newRetireCmd(e))
	return cmd
}

// generatePublishingKey writes a new publishing key file (mode 0600).
func (e *env) generatePublishingKey(out string) error {
	if out == "" {
		return invalid(fmt.Errorf("--out is required"))
	}
	data, err := busauth.Generate()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if os.IsExist(err) {
			return invalid(fmt.Errorf("%s exists: refusing to overwrite a key", out))
		}
		return invalid(err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	k, err := busauth.Parse(data)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "publishing key: %s (key id %s)\nset publishing.key_file to it in every Herald process and CLI of this cluster (to rotate the key in use, put its line first in that file instead: docs/operator-guide.md)\n", out, k.IDs()[0])
	return nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
