package webhook_test

import (
	"context"
	"os"
	"testing"

	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/webhooktest"
	"github.com/stretchr/testify/require"
)

// TestCertificateRotationStepIsNotPermanent: once an endpoint's client
// certificate is loaded, an operator replacing the files one after the
// other (or removing the old one before copying the new) does not make a
// delivery fail for good: a pair that does not load, or a file missing,
// is a temporary failure, retried on the schedule.
func TestCertificateRotationStepIsNotPermanent(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.RequireClientCert(ca))
	notPermanent := func(t *testing.T, err error) {
		t.Helper()
		if err == nil {
			return
		}
		var f *delivery.Failure
		require.ErrorAs(t, err, &f)
		require.True(t, f.Temporary, "a rotation in progress dead-letters the delivery: %v", err)
	}

	t.Run("new certificate, old key", func(t *testing.T) {
		n, sub, job, _ := mtlsEndpoint(t, ca, rc, "a-rotate-half")
		require.NoError(t, n.Notify(context.Background(), job, sub))
		renewed, _ := ca.ClientCertFiles(t, "second.agency.test")
		data, err := os.ReadFile(renewed)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(sub.Webhooks[0].ClientCert, data, 0o600))
		notPermanent(t, n.Notify(context.Background(), job, sub))
	})
	t.Run("old certificate removed before the new is copied", func(t *testing.T) {
		n, sub, job, _ := mtlsEndpoint(t, ca, rc, "a-rotate-rm")
		require.NoError(t, n.Notify(context.Background(), job, sub))
		require.NoError(t, os.Remove(sub.Webhooks[0].ClientCert))
		notPermanent(t, n.Notify(context.Background(), job, sub))
	})
}
