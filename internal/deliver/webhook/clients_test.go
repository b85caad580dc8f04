package webhook

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/herald-alerts/herald/internal/testkit/webhooktest"
	"github.com/stretchr/testify/require"
)

// TestCertFilesReadWhenTheirStampChanges: a client certificate's files
// are read when first used and again only when the paths they resolve to
// or their stamp change, not at every delivery.
func TestCertFilesReadWhenTheirStampChanges(t *testing.T) {
	ca := webhooktest.NewCA(t)
	cert, key := ca.ClientCertFiles(t, "stamped.agency.test")
	c := newClients(Config{}.withDefaults())
	names := certNames{"client.crt", "client.key"}
	first, err := c.cert(names, cert, key, "s1", "")
	require.NoError(t, err)

	require.NoError(t, os.Remove(cert))
	again, err := c.cert(names, cert, key, "s1", "")
	require.NoError(t, err, "the same paths and stamp: the files are not read")
	require.Same(t, first, again)
	_, err = c.cert(names, cert, key, "s2", "")
	require.ErrorContains(t, err, "no such file", "a new stamp: the files are read")
	_, err = c.cert(names, filepath.Join(filepath.Dir(cert), "renewed.crt"), key, "s1", "")
	require.ErrorContains(t, err, "no such file", "a new path: the files are read")
}
