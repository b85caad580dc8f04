package webhook_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/webhooktest"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/stretchr/testify/require"
)

func testAlert(id string) *alerts.Alert {
	now := time.Now().UTC().Truncate(time.Second)
	return &alerts.Alert{
		ID: id, Type: alerts.TypeAlert, Status: alerts.StatusActual,
		Title:      "Labour exploitation at car washes <&> in the North West",
		Summary:    "Workers housed on site, wages withheld.",
		Body:       "Indicators follow.\nReport matches.",
		Indicators: []alerts.Indicator{{Type: "phone", Value: "+44 7700 900123", Context: "recruiter"}},
		Severity:   alerts.SeveritySevere,
		Audience:   alerts.Audience{Sectors: []string{"car-washes"}, Subscribers: []string{"acme-bank", "other-partner"}},
		Marking:    alerts.MarkingOfficial, TLP: alerts.TLPGreen,
		Handling: alerts.Handling{Code: "P"},
		IssuedBy: "analyst-7", IssuedAt: &now,
	}
}

func testSecret(t testing.TB) string {
	s, err := whsig.NewSecret()
	require.NoError(t, err)
	return s
}

func testSub(urls ...string) *subscribers.Subscriber {
	s := &subscribers.Subscriber{ID: "acme-bank", Name: "Acme Bank", Kind: subscribers.KindBusiness,
		Clearance: alerts.TLPAmber, Status: subscribers.StatusActive}
	for _, u := range urls {
		s.Webhooks = append(s.Webhooks, subscribers.Webhook{URL: u, Secrets: []string{fixedSecret}, MaxTLP: alerts.TLPAmber})
	}
	return s
}

// fixedSecret is the secret testSub gives every endpoint.
const fixedSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func testJob(a *alerts.Alert, sub *subscribers.Subscriber, target string) *delivery.Job {
	return &delivery.Job{
		ID: delivery.ID(a.ID, sub.ID, target), Alert: a, Subscriber: sub.ID,
		Channel: delivery.ChannelWebhook, Target: target, Mode: delivery.ModeSigned,
	}
}

func newNotifier(t testing.TB, cfg webhook.Config, signer webhook.Signer) *webhook.Notifier {
	t.Helper()
	n, err := webhook.New(cfg, signer, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(n.Close)
	return n
}

// loopbackJob returns a notifier of cfg, with plain http to loopback
// allowed and Timeout 5s unless cfg sets one, and a partner whose endpoint
// is rc's /h with a job of alert id for it.
func loopbackJob(t *testing.T, rc *webhooktest.Receiver, cfg webhook.Config, id string) (*webhook.Notifier, *subscribers.Subscriber, *delivery.Job) {
	t.Helper()
	cfg.AllowInsecureLoopback = true
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	n := newNotifier(t, cfg, webhooktest.NewSigner(t))
	target := rc.URL("/h")
	sub := testSub(target)
	return n, sub, testJob(testAlert(id), sub, target)
}

// failure asserts err is a *delivery.Failure with reason and temporariness.
func failure(t *testing.T, err error, reason string, temporary bool) *delivery.Failure {
	t.Helper()
	require.Error(t, err)
	var f *delivery.Failure
	require.True(t, errors.As(err, &f), "not a *delivery.Failure: %T %v", err, err)
	require.Equal(t, reason, f.Reason, "error: %v", err)
	require.Equal(t, temporary, f.Temporary, "error: %v", err)
	return f
}

// gpgVerify checks a binary detached signature of body with gpg, in a
// temporary GNUPGHOME holding only pub. It fails the test if gpg is
// missing: CI installs it.
func gpgVerify(t *testing.T, pub, body, sig []byte) error {
	t.Helper()
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		t.Fatalf("gpg is required for this test (apt-get install gnupg): %v", err)
	}
	home, err := os.MkdirTemp("", "gnupg") // short path: gpg-agent's socket must fit
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		os.RemoveAll(home)
	})
	require.NoError(t, os.Chmod(home, 0o700))
	files := map[string][]byte{"agency.asc": pub, "body.json": body, "body.sig": sig}
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(home, name), data, 0o600))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, gpg, append([]string{"--homedir", home, "--batch", "--no-tty"}, args...)...)
		return cmd.CombinedOutput()
	}
	if out, err := run("--import", filepath.Join(home, "agency.asc")); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}
	out, err := run("--verify", filepath.Join(home, "body.sig"), filepath.Join(home, "body.json"))
	if err != nil {
		return errors.New(string(out))
	}
	return nil
}

// loopbackTLS is a config that reaches TLS receivers on 127.0.0.1 through
// the name partner.test, loopback allow-listed.
func loopbackTLS(ca *webhooktest.CA) webhook.Config {
	return webhook.Config{
		Timeout:    5 * time.Second,
		RootCAs:    ca.Pool(),
		AllowCIDRs: mustPrefixes("127.0.0.0/8"),
		LookupIP:   webhooktest.Resolver(map[string][]string{"partner.test": {"127.0.0.1"}}),
	}
}
