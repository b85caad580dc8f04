package pgptest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Tool runs an external OpenPGP implementation (GnuPG's gpg or Sequoia's
// sq) for interoperability tests. A missing tool fails the test: CI
// installs both, and a skipped interoperability test would pass silently.
type Tool struct {
	t    testing.TB
	name string
	path string
	home string // GNUPGHOME for gpg
	dir  string // scratch files
}

// GPG returns gpg with a fresh, private GNUPGHOME.
func GPG(t testing.TB) *Tool { return tool(t, "gpg") }

// SQ returns Sequoia's sq.
func SQ(t testing.TB) *Tool { return tool(t, "sq") }

func tool(t testing.TB, name string) *Tool {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required for this test and is not installed (apt-get install gnupg sq): %v", name, err)
	}
	dir := t.TempDir()
	home := filepath.Join(dir, "gnupg")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	tl := &Tool{t: t, name: name, path: path, home: home, dir: dir}
	if name == "gpg" {
		t.Cleanup(func() {
			// Stop the agent this GNUPGHOME started, if any.
			exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		})
	}
	return tl
}

// File writes data to a scratch file and returns its path.
func (tl *Tool) File(name string, data []byte) string {
	tl.t.Helper()
	p := filepath.Join(tl.dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		tl.t.Fatal(err)
	}
	return p
}

// Run runs the tool with args and returns stdout, stderr and the error.
func (tl *Tool) Run(args ...string) (stdout, stderr []byte, err error) {
	tl.t.Helper()
	if tl.name == "gpg" {
		args = append([]string{"--homedir", tl.home, "--batch", "--no-tty", "--pinentry-mode", "loopback", "--trust-model", "always"}, args...)
	}
	cmd := exec.Command(tl.path, args...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+tl.home, "SQ_HOME="+tl.dir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.Bytes(), errb.Bytes(), err
}

// MustRun runs the tool and fails the test if it exits non-zero.
func (tl *Tool) MustRun(args ...string) []byte {
	tl.t.Helper()
	out, errb, err := tl.Run(args...)
	if err != nil {
		tl.t.Fatalf("%s %v: %v\n%s", tl.name, args, err, errb)
	}
	return out
}

// Import imports armoured keys into gpg's keyring.
func (tl *Tool) Import(armored string) {
	tl.t.Helper()
	tl.MustRun("--import", tl.File("import.asc", []byte(armored)))
}

// VerifyDetached checks a detached signature of data with the tool and
// returns its error (nil when the signature is good). For gpg the
// signer's key must have been imported; sq is given signerCert.
func (tl *Tool) VerifyDetached(signerCert string, data, sig []byte) error {
	tl.t.Helper()
	d, s := tl.File("data", data), tl.File("data.sig", sig)
	var errb []byte
	var err error
	if tl.name == "gpg" {
		_, errb, err = tl.Run("--verify", s, d)
	} else {
		_, errb, err = tl.Run("verify", "--signer-cert", tl.File("signer.asc", []byte(signerCert)), "--detached", s, d)
	}
	if err != nil {
		return &ToolError{Tool: tl.name, Err: err, Stderr: string(errb)}
	}
	return nil
}

// Decrypt decrypts an OpenPGP message. For gpg the secret key must have
// been imported; sq is given secretKey.
func (tl *Tool) Decrypt(secretKey string, msg []byte) ([]byte, error) {
	tl.t.Helper()
	m := tl.File("msg.asc", msg)
	var out, errb []byte
	var err error
	if tl.name == "gpg" {
		out, errb, err = tl.Run("--decrypt", m)
	} else {
		out, errb, err = tl.Run("decrypt", "--recipient-key", tl.File("secret.asc", []byte(secretKey)), m)
	}
	if err != nil {
		return nil, &ToolError{Tool: tl.name, Err: err, Stderr: string(errb)}
	}
	return out, nil
}

// ToolError is a failed run of an external tool.
type ToolError struct {
	Tool   string
	Err    error
	Stderr string
}

func (e *ToolError) Error() string { return e.Tool + ": " + e.Err.Error() + ": " + e.Stderr }
