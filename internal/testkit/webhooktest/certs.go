package webhooktest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/herald-alerts/herald/internal/sink"
)

// CA is a throwaway certificate authority (sink.CA) for receivers' server
// certificates and notifiers' client certificates.
type CA struct{ *sink.CA }

// NewCA makes a CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	ca, err := sink.NewCA("webhooktest CA")
	if err != nil {
		t.Fatalf("webhooktest: %v", err)
	}
	return &CA{ca}
}

// ClientCertFiles issues a client certificate with common name cn and
// writes it and its key as PEM files in a temporary directory, for
// subscribers.Webhook.ClientCert and ClientKey.
func (ca *CA) ClientCertFiles(t testing.TB, cn string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := ca.ClientCert(cn)
	if err != nil {
		t.Fatalf("webhooktest: %v", err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
