package webhook_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/testkit/webhooktest"
	"github.com/stretchr/testify/require"
)

// secretDir is a client_cert_dir laid out as a Kubernetes secret volume:
// tls.crt and tls.key are links through ..data to a timestamped
// directory, and a renewal writes a new timestamped directory, swaps
// ..data to it in one rename and removes the old one, as the kubelet's
// atomic writer does. The path the files resolve to changes at every
// renewal.
type secretDir struct {
	t   *testing.T
	dir string
	gen int
	cur string // the timestamped directory ..data leads to
}

// newSecretDir makes a secret volume holding certPEM and keyPEM.
func newSecretDir(t *testing.T, certPEM, keyPEM []byte) *secretDir {
	t.Helper()
	s := &secretDir{t: t, dir: t.TempDir()}
	s.swap(certPEM, keyPEM)
	for _, f := range []string{"tls.crt", "tls.key"} {
		require.NoError(t, os.Symlink(filepath.Join("..data", f), filepath.Join(s.dir, f)))
	}
	return s
}

// swap puts certPEM and keyPEM in a new timestamped directory, points
// ..data at it and removes the directory it led to before.
func (s *secretDir) swap(certPEM, keyPEM []byte) {
	s.t.Helper()
	s.gen++
	ts := fmt.Sprintf("..2026_11_30_10_00_%02d.%09d", s.gen, s.gen)
	require.NoError(s.t, os.Mkdir(filepath.Join(s.dir, ts), 0o700))
	require.NoError(s.t, os.WriteFile(filepath.Join(s.dir, ts, "tls.crt"), certPEM, 0o600))
	require.NoError(s.t, os.WriteFile(filepath.Join(s.dir, ts, "tls.key"), keyPEM, 0o600))
	tmp := filepath.Join(s.dir, "..data_tmp")
	require.NoError(s.t, os.Symlink(ts, tmp))
	require.NoError(s.t, os.Rename(tmp, filepath.Join(s.dir, "..data")))
	if s.cur != "" {
		require.NoError(s.t, os.RemoveAll(filepath.Join(s.dir, s.cur)))
	}
	s.cur = ts
}

// renew swaps in a new certificate for cn from ca.
func (s *secretDir) renew(ca *webhooktest.CA, cn string) {
	s.t.Helper()
	certPEM, keyPEM, err := ca.ClientCert(cn)
	require.NoError(s.t, err)
	s.swap(certPEM, keyPEM)
}

// secretEndpoint is a notifier whose client_cert_dir is a secret volume
// holding a certificate for first.agency.test, and a job for a partner
// whose endpoint on rc names tls.crt and tls.key in it.
func secretEndpoint(t *testing.T, ca *webhooktest.CA, rc *webhooktest.Receiver, id string) (*webhook.Notifier, *secretDir, func() error) {
	t.Helper()
	certPEM, keyPEM, err := ca.ClientCert("first.agency.test")
	require.NoError(t, err)
	sd := newSecretDir(t, certPEM, keyPEM)
	cfg := loopbackTLS(ca)
	cfg.ClientCertDir = sd.dir
	n := newNotifier(t, cfg, webhooktest.NewSigner(t))
	target := rc.URLFor("partner.test", "/mtls")
	sub := testSub(target)
	sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = "tls.crt", "tls.key"
	job := testJob(testAlert(id), sub, target)
	return n, sd, func() error { return n.Notify(context.Background(), job, sub) }
}

// TestSymlinkSwapRenewalsKeepOnePool: renewals that swap a secret
// volume's ..data link to a new directory each time, so the files resolve
// to a new path each time, leave one client-certificate pool, not one per
// renewal, and every delivery presents the newest certificate; the old
// pools' idle connections are closed.
func TestSymlinkSwapRenewalsKeepOnePool(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.RequireClientCert(ca))
	n, sd, deliver := secretEndpoint(t, ca, rc, "a-swap")
	require.NoError(t, deliver())
	for i := 2; i <= 6; i++ {
		cn := fmt.Sprintf("gen%d.agency.test", i)
		sd.renew(ca, cn)
		require.NoError(t, deliver())
		reqs := rc.Requests()
		require.Equal(t, cn, reqs[len(reqs)-1].ClientCN, "renewal %d", i)
		require.Equal(t, 1, webhook.MTLSPools(n), "renewal %d", i)
	}
	require.EqualValues(t, 6, rc.Conns(), "one handshake per certificate")
	require.Eventually(t, func() bool { return rc.ActiveConns() == 1 }, 5*time.Second, 10*time.Millisecond,
		"the old certificates' idle connections are closed")
}

// TestSymlinkSwapToTheSameBytesKeepsThePool: a swap of ..data to a new
// directory holding the same certificate and key keeps the pool and its
// kept-alive connection: no new handshake.
func TestSymlinkSwapToTheSameBytesKeepsThePool(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.RequireClientCert(ca))
	n, sd, deliver := secretEndpoint(t, ca, rc, "a-swap-same")
	require.NoError(t, deliver())
	certPEM, err := os.ReadFile(filepath.Join(sd.dir, "tls.crt"))
	require.NoError(t, err)
	keyPEM, err := os.ReadFile(filepath.Join(sd.dir, "tls.key"))
	require.NoError(t, err)
	sd.swap(certPEM, keyPEM)
	require.NoError(t, deliver())
	require.Equal(t, 1, webhook.MTLSPools(n))
	require.EqualValues(t, 1, rc.Conns(), "the kept-alive connection carries the delivery after the swap")
	require.Equal(t, 2, rc.Count())
}

// TestIdenticalCertificateFilesShareAPool: two endpoints whose client
// certificates are named by different paths but hold the same bytes
// share one pool, and so its connections.
func TestIdenticalCertificateFilesShareAPool(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.RequireClientCert(ca))
	cert, key := ca.ClientCertFiles(t, "shared.agency.test")
	dir := filepath.Dir(cert)
	for _, f := range [][2]string{{cert, "copy.crt"}, {key, "copy.key"}} {
		data, err := os.ReadFile(f[0])
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f[1]), data, 0o600))
	}
	cfg := loopbackTLS(ca)
	cfg.ClientCertDir = dir
	n := newNotifier(t, cfg, webhooktest.NewSigner(t))
	a, b := rc.URLFor("partner.test", "/a"), rc.URLFor("partner.test", "/b")
	sub := testSub(a, b)
	sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = cert, key
	sub.Webhooks[1].ClientCert, sub.Webhooks[1].ClientKey = "copy.crt", "copy.key"
	alert := testAlert("a-shared")
	require.NoError(t, n.Notify(context.Background(), testJob(alert, sub, a), sub))
	require.NoError(t, n.Notify(context.Background(), testJob(alert, sub, b), sub))
	require.Equal(t, 1, webhook.MTLSPools(n))
	require.EqualValues(t, 1, rc.Conns(), "the second endpoint reuses the first's connection")
}

// TestCertNamesBeyondTheBoundAreReleased: once more pairs of client
// certificate names are in use than are remembered, the least recently
// used pair's pool is dropped; a delivery through it again reads its
// files, makes a new pool and prepares its route again, which keeps its
// connection for the next delivery.
func TestCertNamesBeyondTheBoundAreReleased(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.RequireClientCert(ca))
	dir := t.TempDir()
	for _, cn := range []string{"a", "b"} {
		certPEM, keyPEM, err := ca.ClientCert(cn + ".agency.test")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, cn+".crt"), certPEM, 0o600))
		require.NoError(t, os.WriteFile(filepath.Join(dir, cn+".key"), keyPEM, 0o600))
	}
	cfg := loopbackTLS(ca)
	cfg.ClientCertDir = dir
	n := newNotifier(t, cfg, webhooktest.NewSigner(t))
	webhook.LimitCertNames(n, 1)
	a, b := rc.URLFor("partner.test", "/a"), rc.URLFor("partner.test", "/b")
	sub := testSub(a, b)
	sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = "a.crt", "a.key"
	sub.Webhooks[1].ClientCert, sub.Webhooks[1].ClientKey = "b.crt", "b.key"
	alert := testAlert("a-bound")
	deliver := func(target, cn string) {
		t.Helper()
		require.NoError(t, n.Notify(context.Background(), testJob(alert, sub, target), sub))
		reqs := rc.Requests()
		require.Equal(t, cn, reqs[len(reqs)-1].ClientCN)
	}
	deliver(a, "a.agency.test")
	deliver(b, "b.agency.test")
	require.Equal(t, 1, webhook.MTLSPools(n), "a's pool is dropped")
	require.Eventually(t, func() bool { return rc.ActiveConns() == 1 }, 5*time.Second, 10*time.Millisecond,
		"and its idle connection closed")

	webhook.LimitCertNames(n, 2)
	conns := rc.Conns()
	deliver(a, "a.agency.test")
	deliver(a, "a.agency.test")
	require.Equal(t, conns+1, rc.Conns(), "a's route is prepared again, on its new pool")
	n.Close()
	require.Eventually(t, func() bool { return rc.ActiveConns() == 0 }, 5*time.Second, 10*time.Millisecond)
}

// TestLinkSwappedOutOfTheDirIsRefusedAtTheNextDelivery: after a delivery
// with the certificate in the secret volume, ..data is swapped to a
// directory outside client_cert_dir holding another valid certificate.
// The next delivery resolves the names again (they no longer lead to the
// files checked before) and is refused: nothing is sent with a file from
// outside the directory. Swapped back in, delivery resumes.
func TestLinkSwappedOutOfTheDirIsRefusedAtTheNextDelivery(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.RequireClientCert(ca))
	_, sd, deliver := secretEndpoint(t, ca, rc, "a-swap-out")
	require.NoError(t, deliver())
	require.NoError(t, deliver())
	require.Equal(t, 2, rc.Count())

	outside := t.TempDir()
	certPEM, keyPEM, err := ca.ClientCert("outside.agency.test")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(outside, "tls.crt"), certPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "tls.key"), keyPEM, 0o600))
	tmp := filepath.Join(sd.dir, "..data_tmp")
	require.NoError(t, os.Symlink(outside, tmp))
	require.NoError(t, os.Rename(tmp, filepath.Join(sd.dir, "..data")))

	err = deliver()
	require.ErrorContains(t, err, "must name a file in webhooks.client_cert_dir")
	require.Equal(t, 2, rc.Count(), "nothing sent with a certificate from outside the directory")

	require.NoError(t, os.Symlink(sd.cur, tmp))
	require.NoError(t, os.Rename(tmp, filepath.Join(sd.dir, "..data")))
	require.NoError(t, deliver())
	require.Equal(t, 3, rc.Count())
	reqs := rc.Requests()
	require.Equal(t, "first.agency.test", reqs[len(reqs)-1].ClientCN)
}
