package webhook

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/sink"
)

// TestCertNamesOfEveryPartnerAreKept: 100,000 partners (the registry
// docs/BENCHMARKS.md measures), each naming its own client certificate files, are
// all remembered: a second round of deliveries, in the same order as the
// first, finds every pair unchanged and reads no file again (nor makes a
// new pool, nor a new handshake). The pairs name the same bytes here, so
// that they share one pool and the test stays small.
func TestCertNamesOfEveryPartnerAreKept(t *testing.T) {
	const partners = 100_000
	ca, err := sink.NewCA("certnames test CA")
	require.NoError(t, err)
	certPEM, keyPEM, err := ca.ClientCert("partner.example")
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	require.NoError(t, os.WriteFile(certFile, certPEM, 0o600))
	require.NoError(t, os.WriteFile(keyFile, keyPEM, 0o600))
	stamp, err := fileStamp(certFile, keyFile)
	require.NoError(t, err)
	c := newClients(Config{}.withDefaults())
	names := func(i int) certNames { return certNames{fmt.Sprintf("p%d/tls.crt", i), fmt.Sprintf("p%d/tls.key", i)} }
	for i := range partners {
		_, err := c.cert(names(i), certFile, keyFile, stamp, stamp)
		require.NoError(t, err)
	}
	for i := range partners {
		if c.unchanged(names(i), stamp) == nil {
			t.Fatalf("partner %d's names were forgotten after the first round: its files would be read again", i)
		}
	}
}
