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

// TestQuickStampOnlyForTheFilesChecked: a delivery stamps the names (the
// quick stamp) before it resolves and reads the files; a renewal that
// swaps ..data in between leaves it reading the new files with the old
// directory's quick stamp. Swapped back to the old directory (a rollback:
// its files untouched, so they stamp as before), the names must not be
// taken as unchanged: the pool holds the new directory's certificate, not
// the one the names lead to.
func TestQuickStampOnlyForTheFilesChecked(t *testing.T) {
	ca := webhooktest.NewCA(t)
	dir := t.TempDir()
	gen := func(name, cn string) string {
		certPEM, keyPEM, err := ca.ClientCert(cn)
		require.NoError(t, err)
		d := filepath.Join(dir, name)
		require.NoError(t, os.Mkdir(d, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(d, "tls.crt"), certPEM, 0o600))
		require.NoError(t, os.WriteFile(filepath.Join(d, "tls.key"), keyPEM, 0o600))
		return name
	}
	swap := func(to string) {
		tmp := filepath.Join(dir, "..data_tmp")
		require.NoError(t, os.Symlink(to, tmp))
		require.NoError(t, os.Rename(tmp, filepath.Join(dir, "..data")))
	}
	old, renewed := gen("..old", "old.agency.test"), gen("..new", "new.agency.test")
	swap(old)
	for _, f := range []string{"tls.crt", "tls.key"} {
		require.NoError(t, os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)))
	}
	names := certNames{"tls.crt", "tls.key"}
	c := newClients(Config{}.withDefaults())

	quick, err := namesStamp(dir, names) // the delivery stamps the names…
	require.NoError(t, err)
	swap(renewed) // …a renewal swaps ..data…
	certFile, err := ClientCertPath(dir, names.cert)
	require.NoError(t, err)
	keyFile, err := ClientCertPath(dir, names.key)
	require.NoError(t, err)
	stamp, err := fileStamp(certFile, keyFile)
	require.NoError(t, err)
	m, err := c.cert(names, certFile, keyFile, stamp, quick) // …and it reads the renewed files
	require.NoError(t, err)

	swap(old) // rolled back
	now, err := namesStamp(dir, names)
	require.NoError(t, err)
	require.Equal(t, quick, now, "the old files stamp as before")
	require.Nil(t, c.unchanged(names, now), "the pool holds the renewed certificate, not the one the names lead to")

	// Without a swap in between, the quick path serves the pool.
	certFile, _ = ClientCertPath(dir, names.cert)
	keyFile, _ = ClientCertPath(dir, names.key)
	stamp, err = fileStamp(certFile, keyFile)
	require.NoError(t, err)
	m2, err := c.cert(names, certFile, keyFile, stamp, now)
	require.NoError(t, err)
	require.NotSame(t, m, m2)
	require.Same(t, m2, c.unchanged(names, now))
}
