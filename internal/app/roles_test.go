package app_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/subscribers"
)

// TestCheckSubscriberWebhooks: registration applies the webhook URL rule
// with the operator's settings, and refuses client certificate files
// outside webhooks.client_cert_dir with one message whether or not they
// exist, naming the field.
func TestCheckSubscriberWebhooks(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "certs")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	for _, f := range []string{filepath.Join(dir, "acme.crt"), filepath.Join(dir, "acme.key"), filepath.Join(root, "stolen.key")} {
		require.NoError(t, os.WriteFile(f, []byte("pem"), 0o600))
	}
	require.NoError(t, os.Symlink(filepath.Join(root, "stolen.key"), filepath.Join(dir, "link.key")))

	const outside = "must name a file in webhooks.client_cert_dir"
	tests := []struct {
		name      string
		certDir   string
		loopback  bool
		hook      subscribers.Webhook
		fieldErrs map[string]string // field → message substring; nil for valid
	}{
		{name: "https", hook: subscribers.Webhook{URL: "https://hooks.acme.example/h"}},
		{name: "plain http to loopback, allowed", loopback: true, hook: subscribers.Webhook{URL: "http://127.0.0.1:9000/h"}},
		{name: "plain http to loopback, not allowed", hook: subscribers.Webhook{URL: "http://127.0.0.1:9000/h"},
			fieldErrs: map[string]string{"webhooks[0].url": "must use https"}},
		{name: "plain http elsewhere", loopback: true, hook: subscribers.Webhook{URL: "http://hooks.acme.example/h"},
			fieldErrs: map[string]string{"webhooks[0].url": "must use https"}},
		{name: "private address", hook: subscribers.Webhook{URL: "https://10.1.2.3/h"},
			fieldErrs: map[string]string{"webhooks[0].url": "private-use"}},
		{name: "client certificate in the directory", certDir: dir,
			hook: subscribers.Webhook{URL: "https://hooks.acme.example/h", ClientCert: "acme.crt", ClientKey: filepath.Join(dir, "acme.key")}},
		{name: "client certificate not deployed yet", certDir: dir,
			hook: subscribers.Webhook{URL: "https://hooks.acme.example/h", ClientCert: "next.crt", ClientKey: "next.key"}},
		{name: "no client_cert_dir", hook: subscribers.Webhook{URL: "https://hooks.acme.example/h", ClientCert: "acme.crt", ClientKey: "acme.key"},
			fieldErrs: map[string]string{"webhooks[0].client_cert": "client certificates are refused", "webhooks[0].client_key": "client certificates are refused"}},
		{name: "escapes with ../", certDir: dir,
			hook:      subscribers.Webhook{URL: "https://hooks.acme.example/h", ClientCert: "../stolen.key", ClientKey: "../missing.key"},
			fieldErrs: map[string]string{"webhooks[0].client_cert": outside, "webhooks[0].client_key": outside}},
		{name: "absolute paths outside", certDir: dir,
			hook:      subscribers.Webhook{URL: "https://hooks.acme.example/h", ClientCert: "/etc/passwd", ClientKey: "/nonexistent/k.pem"},
			fieldErrs: map[string]string{"webhooks[0].client_cert": outside, "webhooks[0].client_key": outside}},
		{name: "link leading out", certDir: dir,
			hook:      subscribers.Webhook{URL: "https://hooks.acme.example/h", ClientCert: "acme.crt", ClientKey: "link.key"},
			fieldErrs: map[string]string{"webhooks[0].client_key": outside}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Webhooks.ClientCertDir, cfg.Webhooks.AllowInsecureLoopback = tt.certDir, tt.loopback
			tt.hook.Secrets = []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}
			s := &subscribers.Subscriber{ID: "acme", Name: "Acme", Kind: subscribers.KindBusiness,
				Clearance: alerts.TLPGreen, Webhooks: []subscribers.Webhook{tt.hook}}
			err := app.CheckSubscriber(&cfg, taxonomy.Default(), s, time.Now())
			if tt.fieldErrs == nil {
				require.NoError(t, err)
				return
			}
			var v *alerts.ValidationError
			require.True(t, errors.As(err, &v), "%v", err)
			got := map[string]string{}
			for _, f := range v.Fields {
				got[f.Field] = f.Message
			}
			require.Len(t, got, len(tt.fieldErrs), "%v", err)
			for field, want := range tt.fieldErrs {
				require.Contains(t, got[field], want, field)
			}
			if tt.fieldErrs["webhooks[0].client_key"] == outside && tt.fieldErrs["webhooks[0].client_cert"] == outside {
				require.Equal(t, got["webhooks[0].client_cert"], got["webhooks[0].client_key"],
					"one answer for outside, whether the file exists or not")
			}
		})
	}
}

// TestKeyCheckJudgesTheTimeOfEachCheck: a key's check is cached by the
// key's bytes, but whether the key can be encrypted to is judged at the
// time asked, so a key that expires between two checks a minute apart is
// refused by the second (the policy then sends a key notice), not trusted
// for the rest of a cached result's life.
func TestKeyCheckJudgesTheTimeOfEachCheck(t *testing.T) {
	key := pgptest.ExpiringKey(t, "soc@bank.example", 2*time.Minute)
	now := time.Now()
	require.NoError(t, app.KeyCheck(key, now), "usable before it expires")
	require.Error(t, app.KeyCheck(key, now.Add(3*time.Minute)), "expired a minute ago")
	require.NoError(t, app.KeyCheck(key, now.Add(time.Minute)), "and still usable before")
}
