package webhook_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/webhooktest"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// TestDeliverSigned delivers one alert over TLS and checks everything a
// partner sees: headers, body, the Standard Webhooks signature with the
// reference library (two secrets: rotation), and the OpenPGP signature
// with gpg.
func TestDeliverSigned(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.TLS(ca))
	signer := webhooktest.NewSigner(t)
	n := newNotifier(t, loopbackTLS(ca), signer)

	a := testAlert("a-signed-1")
	target := rc.URLFor("partner.test", "/hooks/herald?token=abc")
	old, cur := testSecret(t), testSecret(t)
	sub := testSub(target)
	sub.Webhooks[0].Secrets = []string{old, cur}
	job := testJob(a, sub, target)

	require.NoError(t, n.Notify(context.Background(), job, sub))
	reqs := rc.Requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, http.MethodPost, r.Method)
	require.Equal(t, "/hooks/herald?token=abc", r.Path)
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	require.Equal(t, webhook.DefaultUserAgent, r.Header.Get("User-Agent"))
	require.Equal(t, job.ID, r.Header.Get(whsig.HeaderID))
	require.Len(t, r.Header.Values(whsig.HeaderSignature), 1)

	body, pgpSig, err := n.Body(a)
	require.NoError(t, err)
	require.Equal(t, body, r.Body, "the body sent is the alert's one signed body")
	require.Equal(t, base64.StdEncoding.EncodeToString(pgpSig), r.Header.Get(whsig.HeaderPGPSignature))

	var got map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &got))
	require.Equal(t, "alert.published", got["type"])
	al := got["alert"].(map[string]any)
	require.Equal(t, a.ID, al["id"])
	require.Equal(t, a.Title, al["title"])
	require.Equal(t, "GREEN", al["tlp"])
	require.NotContains(t, al, "issued_by", "the analyst's identity is not sent")
	require.NotContains(t, al["audience"], "subscribers", "other partners' names are not sent")
	require.Len(t, a.Audience.Subscribers, 2, "the job's alert is not modified")

	// Standard Webhooks: Herald's own verifier and the reference library,
	// with each of the two secrets.
	require.NoError(t, whsig.Verify(r.Header, r.Body, []string{cur}, time.Now(), 0))
	for _, s := range []string{old, cur} {
		wh, err := standardwebhooks.NewWebhook(s)
		require.NoError(t, err)
		require.NoError(t, wh.Verify(r.Body, r.Header), "reference library")
	}
	wh, err := standardwebhooks.NewWebhook(testSecret(t))
	require.NoError(t, err)
	require.Error(t, wh.Verify(r.Body, r.Header), "a secret not configured must not verify")

	// OpenPGP: gpg verifies the decoded header against the body, and
	// rejects a tampered body.
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get(whsig.HeaderPGPSignature))
	require.NoError(t, err)
	pub := signer.PublicArmored(t)
	require.NoError(t, gpgVerify(t, pub, r.Body, sig))
	tampered := append([]byte(nil), r.Body...)
	tampered[len(tampered)-3] ^= 1
	require.Error(t, gpgVerify(t, pub, tampered, sig), "gpg must reject a tampered body")
}

func TestRetriesKeepID(t *testing.T) {
	rc := webhooktest.New(t)
	rc.FailThenSucceed(2, http.StatusServiceUnavailable)
	n, sub, job := loopbackJob(t, rc, webhook.Config{}, "a-retry")
	for range 2 {
		failure(t, n.Notify(context.Background(), job, sub), delivery.ReasonHTTP5xx, true)
	}
	require.NoError(t, n.Notify(context.Background(), job, sub))
	reqs := rc.Requests()
	require.Len(t, reqs, 3)
	for _, r := range reqs {
		require.Equal(t, job.ID, r.Header.Get(whsig.HeaderID), "every retry carries the same webhook-id")
		require.Equal(t, reqs[0].Body, r.Body)
	}
}

func TestStatusClasses(t *testing.T) {
	rc := webhooktest.New(t)
	now := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	n, sub, job := loopbackJob(t, rc, webhook.Config{Now: func() time.Time { return now }}, "a-status")

	tests := []struct {
		name       string
		step       webhooktest.Step
		reason     string // "" for delivered
		temporary  bool
		retryAfter time.Duration
		gone       bool
	}{
		{"200", webhooktest.Status(200), "", false, 0, false},
		{"202", webhooktest.Status(202), "", false, 0, false},
		{"204", webhooktest.Status(204), "", false, 0, false},
		{"301", webhooktest.Redirect(301, "https://elsewhere.test/"), delivery.ReasonRedirect, false, 0, false},
		{"304", webhooktest.Status(304), delivery.ReasonRedirect, false, 0, false},
		{"308", webhooktest.Redirect(308, "/other"), delivery.ReasonRedirect, false, 0, false},
		{"400", webhooktest.Body(400, "bad\x00 request"), delivery.ReasonHTTP4xx, false, 0, false},
		{"401", webhooktest.Status(401), delivery.ReasonHTTP4xx, false, 0, false},
		{"404", webhooktest.Status(404), delivery.ReasonHTTP4xx, false, 0, false},
		{"422", webhooktest.Status(422), delivery.ReasonHTTP4xx, false, 0, false},
		{"410", webhooktest.Status(410), delivery.ReasonGone, false, 0, true},
		{"408", webhooktest.Status(408), delivery.ReasonHTTP5xx, true, 0, false},
		{"429 seconds", webhooktest.RetryAfter(429, "120"), delivery.ReasonHTTP5xx, true, 2 * time.Minute, false},
		{"503 date", webhooktest.RetryAfter(503, now.Add(90*time.Second).Format(http.TimeFormat)), delivery.ReasonHTTP5xx, true, 90 * time.Second, false},
		{"503 past date", webhooktest.RetryAfter(503, now.Add(-time.Hour).Format(http.TimeFormat)), delivery.ReasonHTTP5xx, true, 0, false},
		{"503 huge", webhooktest.RetryAfter(503, "99999999999"), delivery.ReasonHTTP5xx, true, webhook.MaxRetryAfter, false},
		{"503 junk", webhooktest.RetryAfter(503, "soon"), delivery.ReasonHTTP5xx, true, 0, false},
		{"500", webhooktest.Status(500), delivery.ReasonHTTP5xx, true, 0, false},
		{"502", webhooktest.Status(502), delivery.ReasonHTTP5xx, true, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc.Script(tt.step)
			err := n.Notify(context.Background(), job, sub)
			if tt.reason == "" {
				require.NoError(t, err)
				return
			}
			f := failure(t, err, tt.reason, tt.temporary)
			require.Equal(t, tt.retryAfter, f.RetryAfter)
			require.Equal(t, tt.gone, f.Gone)
			require.NotContains(t, err.Error(), "\x00")
		})
	}
}

func TestTimeouts(t *testing.T) {
	rc := webhooktest.New(t)
	n, sub, job := loopbackJob(t, rc, webhook.Config{Timeout: 300 * time.Millisecond}, "a-timeout")

	t.Run("hang before headers", func(t *testing.T) {
		rc.Script(webhooktest.Hang())
		failure(t, n.Notify(context.Background(), job, sub), delivery.ReasonTimeout, true)
	})
	t.Run("slow-drip body after 200", func(t *testing.T) {
		// The status is what counts: the body is drained only until the
		// attempt's deadline, then the connection is dropped.
		rc.Script(webhooktest.SlowDrip(20 * time.Millisecond))
		require.NoError(t, n.Notify(context.Background(), job, sub))
	})
	t.Run("caller cancels", func(t *testing.T) {
		rc.Script(webhooktest.Hang())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		before := rc.Count()
		go func() {
			for rc.Count() == before {
				time.Sleep(5 * time.Millisecond) // poll until the request is in
			}
			cancel()
		}()
		failure(t, n.Notify(ctx, job, sub), delivery.ReasonUnknown, true)
	})
}

func TestRedirectNotFollowed(t *testing.T) {
	inner := webhooktest.New(t) // a loopback service the redirect points at
	rc := webhooktest.New(t)
	rc.Script(webhooktest.Redirect(http.StatusTemporaryRedirect, inner.URL("/admin")))
	n, sub, job := loopbackJob(t, rc, webhook.Config{}, "a-redir")
	failure(t, n.Notify(context.Background(), job, sub), delivery.ReasonRedirect, false)
	require.Equal(t, 1, rc.Count())
	require.Zero(t, inner.Count(), "the redirect must not be followed")
}

func TestOversizedResponse(t *testing.T) {
	rc := webhooktest.New(t)
	rc.Script(webhooktest.Endless(http.StatusOK))
	n, sub, job := loopbackJob(t, rc, webhook.Config{MaxResponseBytes: 4 << 10}, "a-big")
	require.NoError(t, n.Notify(context.Background(), job, sub))
	// Herald stopped reading after the bound and dropped the connection
	// rather than draining an endless body.
	require.Eventually(t, func() bool { return rc.ActiveConns() == 0 }, 5*time.Second, 10*time.Millisecond)
}

func TestSSRFGuardAtDialTime(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.TLS(ca))
	names := map[string][]string{
		"loopback.partner.test":  {"127.0.0.1"},
		"metadata.partner.test":  {"169.254.169.254"},
		"mapped.partner.test":    {"::ffff:127.0.0.1"},
		"mapped-md.partner.test": {"::ffff:169.254.169.254"},
		"nat64.partner.test":     {"64:ff9b::7f00:1"},
		"6to4.partner.test":      {"2002:7f00:1::1"},
		"private.partner.test":   {"10.1.2.3", "192.168.1.1", "fd00::1"},
		"mixed.partner.test":     {"169.254.169.254", "127.0.0.1"},
	}
	tests := []struct {
		name    string
		host    string
		cfg     func(*webhook.Config)
		deliver bool
	}{
		{"loopback refused", "loopback.partner.test", nil, false},
		{"metadata refused", "metadata.partner.test", nil, false},
		{"metadata refused with insecure loopback on", "metadata.partner.test", func(c *webhook.Config) { c.AllowInsecureLoopback = true }, false},
		{"IPv4-mapped loopback refused", "mapped.partner.test", nil, false},
		{"IPv4-mapped metadata refused", "mapped-md.partner.test", nil, false},
		{"NAT64 loopback refused", "nat64.partner.test", nil, false},
		{"6to4 loopback refused", "6to4.partner.test", nil, false},
		{"private refused", "private.partner.test", nil, false},
		{"allow-list lets loopback through", "loopback.partner.test", func(c *webhook.Config) { c.AllowCIDRs = mustPrefixes("127.0.0.0/8") }, true},
		{"allow-list lets IPv4-mapped through", "mapped.partner.test", func(c *webhook.Config) { c.AllowCIDRs = mustPrefixes("127.0.0.1/32") }, true},
		{"allow-list of another range does not", "loopback.partner.test", func(c *webhook.Config) { c.AllowCIDRs = mustPrefixes("10.0.0.0/8") }, false},
		{"insecure loopback allows https to loopback", "loopback.partner.test", func(c *webhook.Config) { c.AllowInsecureLoopback = true }, true},
		{"forbidden addresses skipped, allowed one used", "mixed.partner.test", func(c *webhook.Config) { c.AllowCIDRs = mustPrefixes("127.0.0.0/8") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := webhook.Config{Timeout: 5 * time.Second, RootCAs: ca.Pool(), LookupIP: webhooktest.Resolver(names)}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			n := newNotifier(t, cfg, webhooktest.NewSigner(t))
			target := rc.URLFor(tt.host, "/h")
			sub := testSub(target)
			before, conns := rc.Count(), rc.Conns()
			err := n.Notify(context.Background(), testJob(testAlert("a-ssrf"), sub, target), sub)
			if tt.deliver {
				require.NoError(t, err)
				require.Equal(t, before+1, rc.Count())
				return
			}
			f := failure(t, err, delivery.ReasonRefused, false)
			var refused *webhook.RefusedError
			require.True(t, errors.As(f, &refused), "want a RefusedError in %v", err)
			require.Equal(t, before, rc.Count())
			require.Equal(t, conns, rc.Conns(), "no connection may reach the receiver")
		})
	}
}

func TestPlainHTTP(t *testing.T) {
	rc := webhooktest.New(t)
	names := webhooktest.Resolver(map[string][]string{
		"localhost":             {"127.0.0.1"},
		"dev.partner.test":      {"127.0.0.1"},
		"metadata.partner.test": {"169.254.169.254"},
	})
	// What a tampered resolver or hosts file could make of localhost.
	hijacked := webhooktest.Resolver(map[string][]string{"localhost": {"169.254.169.254"}})
	tests := []struct {
		name    string
		target  string
		cfg     webhook.Config
		deliver bool
	}{
		{"refused when not enabled", rc.URL("/h"), webhook.Config{AllowCIDRs: mustPrefixes("127.0.0.0/8")}, false},
		{"loopback literal when enabled", rc.URL("/h"), webhook.Config{AllowInsecureLoopback: true}, true},
		{"localhost when enabled", rc.URLFor("localhost", "/h"), webhook.Config{AllowInsecureLoopback: true}, true},
		// The webhook URL rule (subscribers.WebhookURL), as the policy
		// applies it: plain http goes to localhost or a loopback literal,
		// never to another name, whatever it resolves to.
		{"other name refused even if it resolves to loopback", rc.URLFor("dev.partner.test", "/h"), webhook.Config{AllowInsecureLoopback: true}, false},
		{"name resolving elsewhere refused even if allow-listed", rc.URLFor("metadata.partner.test", "/h"),
			webhook.Config{AllowInsecureLoopback: true, AllowCIDRs: mustPrefixes("169.254.0.0/16")}, false},
		{"localhost resolving elsewhere refused at connection time", rc.URLFor("localhost", "/h"),
			webhook.Config{AllowInsecureLoopback: true, AllowCIDRs: mustPrefixes("169.254.0.0/16"), LookupIP: hijacked}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cfg.LookupIP == nil {
				tt.cfg.LookupIP = names
			}
			tt.cfg.Timeout = 5 * time.Second
			n := newNotifier(t, tt.cfg, webhooktest.NewSigner(t))
			sub := testSub(tt.target)
			before := rc.Count()
			err := n.Notify(context.Background(), testJob(testAlert("a-plain"), sub, tt.target), sub)
			if tt.deliver {
				require.NoError(t, err)
				require.Equal(t, before+1, rc.Count())
				return
			}
			failure(t, err, delivery.ReasonRefused, false)
			require.Equal(t, before, rc.Count())
		})
	}
}

func TestCheckTarget(t *testing.T) {
	dev := webhook.Config{AllowInsecureLoopback: true}
	tests := []struct {
		url  string
		cfg  webhook.Config
		want string // substring of the error; "" for valid
	}{
		{"https://hooks.partner.example/herald", webhook.Config{}, ""},
		{"https://203.0.114.10/h", webhook.Config{}, ""},
		{"https://[2a00:1450::1]/h", webhook.Config{}, ""},
		{"http://hooks.partner.example/h", webhook.Config{}, "must use https"},
		{"ftp://hooks.partner.example/h", webhook.Config{}, "scheme must be https"},
		{"https://user:pw@hooks.partner.example/h", webhook.Config{}, "credentials"},
		{"https://hooks.partner.example/h#x", webhook.Config{}, "fragment"},
		{"https:///h", webhook.Config{}, "no host"},
		{"https://127.0.0.1/h", webhook.Config{}, "loopback"},
		{"https://127.0.0.1/h", dev, ""},
		{"https://10.0.0.1/h", webhook.Config{}, "private"},
		{"https://10.0.0.1/h", webhook.Config{AllowCIDRs: mustPrefixes("10.0.0.0/24")}, ""},
		{"https://169.254.169.254/latest/meta-data", dev, "link-local"},
		{"https://100.64.0.1/h", webhook.Config{}, "carrier-grade NAT"},
		{"https://0.0.0.0/h", webhook.Config{}, "this network"},
		{"https://224.0.0.1/h", webhook.Config{}, "multicast"},
		{"https://255.255.255.255/h", webhook.Config{}, "broadcast"},
		{"https://[::]/h", webhook.Config{}, "unspecified"},
		{"https://[::1]/h", webhook.Config{}, "loopback"},
		{"https://[fe80::1]/h", webhook.Config{}, "link-local"},
		{"https://[fc00::1]/h", webhook.Config{}, "unique local"},
		{"https://[ff02::1]/h", webhook.Config{}, "multicast"},
		{"https://[::ffff:127.0.0.1]/h", webhook.Config{}, "IPv4-mapped address (RFC 4291) of loopback (RFC 1122)"},
		{"https://[::ffff:169.254.169.254]/h", webhook.Config{}, "IPv4-mapped address (RFC 4291) of link-local (RFC 3927)"},
		{"https://[64:ff9b::a9fe:a9fe]/h", webhook.Config{}, "NAT64 well-known-prefix address (RFC 6052) of link-local (RFC 3927)"},
		{"https://[64:ff9b::808:808]/h", webhook.Config{}, ""},
		{"https://[2002:c0a8:101::1]/h", webhook.Config{}, "6to4 (RFC 3056)"},
		{"https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/h", webhook.Config{}, "Teredo (RFC 4380)"},
		{"http://127.0.0.1:8080/h", dev, ""},
		{"http://[::1]:8080/h", dev, ""},
		{"http://localhost:8080/h", dev, ""},
		{"http://198.51.100.7/h", dev, "only to loopback"},
		{"http://dev.partner.test/h", dev, "only to loopback"},
		{"http://localhost.evil.example/h", dev, "only to loopback"},
		{"https://%zz/h", webhook.Config{}, "not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := webhook.CheckTarget(tt.url, tt.cfg)
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestMutualTLS(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.RequireClientCert(ca))
	cert, key := ca.ClientCertFiles(t, "herald.agency.test")
	cfg := loopbackTLS(ca)
	cfg.ClientCertDir = filepath.Dir(cert)
	n := newNotifier(t, cfg, webhooktest.NewSigner(t))
	target := rc.URLFor("partner.test", "/mtls")
	a := testAlert("a-mtls")

	t.Run("with certificate", func(t *testing.T) {
		sub := testSub(target)
		sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = cert, key
		require.NoError(t, n.Notify(context.Background(), testJob(a, sub, target), sub))
		reqs := rc.Requests()
		require.Equal(t, "herald.agency.test", reqs[len(reqs)-1].ClientCN)
	})
	t.Run("with certificate named relative to client_cert_dir", func(t *testing.T) {
		sub := testSub(target)
		sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = filepath.Base(cert), filepath.Base(key)
		require.NoError(t, n.Notify(context.Background(), testJob(a, sub, target), sub))
	})
	t.Run("certificate outside client_cert_dir", func(t *testing.T) {
		// A valid certificate the CA issued, but in another directory:
		// never loaded, nothing sent.
		otherCert, otherKey := ca.ClientCertFiles(t, "elsewhere.agency.test")
		link := filepath.Join(cfg.ClientCertDir, "linked.crt")
		require.NoError(t, os.Symlink(otherCert, link))
		dotdot, err := filepath.Rel(cfg.ClientCertDir, otherCert) // ../../…/client.crt
		require.NoError(t, err)
		for name, files := range map[string][2]string{
			"absolute":     {otherCert, otherKey},
			"dot-dot":      {dotdot, key},
			"link out":     {link, key},
			"key only out": {cert, otherKey},
		} {
			t.Run(name, func(t *testing.T) {
				sub := testSub(target)
				sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = files[0], files[1]
				before := rc.Count()
				f := failure(t, n.Notify(context.Background(), testJob(a, sub, target), sub), delivery.ReasonConfig, false)
				require.ErrorContains(t, f, "must name a file in webhooks.client_cert_dir")
				require.Equal(t, before, rc.Count())
			})
		}
	})
	t.Run("no client_cert_dir", func(t *testing.T) {
		n := newNotifier(t, loopbackTLS(ca), webhooktest.NewSigner(t))
		sub := testSub(target)
		sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = cert, key
		f := failure(t, n.Notify(context.Background(), testJob(a, sub, target), sub), delivery.ReasonConfig, false)
		require.ErrorContains(t, f, "client certificates are refused")
	})
	t.Run("renewed certificate", func(t *testing.T) {
		renewedCert, renewedKey := ca.ClientCertFiles(t, "renewed.agency.test")
		for _, f := range [][2]string{{renewedCert, cert}, {renewedKey, key}} {
			data, err := os.ReadFile(f[0])
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(f[1], data, 0o600))
		}
		sub := testSub(target)
		sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = cert, key
		require.NoError(t, n.Notify(context.Background(), testJob(a, sub, target), sub))
		reqs := rc.Requests()
		require.Equal(t, "renewed.agency.test", reqs[len(reqs)-1].ClientCN, "a renewed certificate is loaded without a restart")
	})
	t.Run("without certificate", func(t *testing.T) {
		// In TLS 1.3 the server rejects a missing certificate after the
		// client has finished its handshake: the client sees either the
		// server's alert (tls) or the closed socket (connect). Both are
		// temporary, so the partner can fix its setup within the window.
		sub := testSub(target)
		before := rc.Count()
		err := n.Notify(context.Background(), testJob(a, sub, target), sub)
		var f *delivery.Failure
		require.ErrorAs(t, err, &f)
		require.True(t, f.Temporary, "error: %v", err)
		require.Contains(t, []string{delivery.ReasonTLS, delivery.ReasonConnect}, f.Reason, "error: %v", err)
		require.Equal(t, before, rc.Count())
	})
	t.Run("without certificate, TLS 1.2 server", func(t *testing.T) {
		rc12 := webhooktest.New(t, webhooktest.RequireClientCert(ca), webhooktest.MaxTLS12())
		target := rc12.URLFor("partner.test", "/mtls")
		sub := testSub(target)
		failure(t, n.Notify(context.Background(), testJob(a, sub, target), sub), delivery.ReasonTLS, true)
		require.Zero(t, rc12.Count())
	})
	t.Run("unreadable certificate", func(t *testing.T) {
		sub := testSub(target)
		sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = "/nonexistent/c.pem", "/nonexistent/k.pem"
		failure(t, n.Notify(context.Background(), testJob(a, sub, target), sub), delivery.ReasonConfig, false)
		// Missing inside the directory: perhaps mid-renewal, tried again.
		sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = "missing.crt", "missing.key"
		failure(t, n.Notify(context.Background(), testJob(a, sub, target), sub), delivery.ReasonConfig, true)
	})
}

// TestClientCertPath is the rule for client certificate files: inside
// webhooks.client_cert_dir, checked before the file system is touched, so
// that a name outside gets the same answer whether or not it exists.
func TestClientCertPath(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "certs")
	outside := filepath.Join(root, "outside")
	for _, d := range []string{filepath.Join(dir, "sub"), outside} {
		require.NoError(t, os.MkdirAll(d, 0o700))
	}
	for _, f := range []string{filepath.Join(dir, "a.crt"), filepath.Join(dir, "sub", "b.crt"), filepath.Join(outside, "secret.key")} {
		require.NoError(t, os.WriteFile(f, []byte("x"), 0o600))
	}
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.key"), filepath.Join(dir, "out.key")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "missing.key"), filepath.Join(dir, "dangling.key")))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "outdir")))
	require.NoError(t, os.Symlink("sub/b.crt", filepath.Join(dir, "in.crt")))
	// client_cert_dir itself reached through a link.
	require.NoError(t, os.Symlink(dir, filepath.Join(root, "certs-link")))

	const outsideErr = "must name a file in webhooks.client_cert_dir"
	tests := []struct {
		dir, name string
		want      string // the path returned, or the error
		err       bool
	}{
		{dir, "a.crt", filepath.Join(dir, "a.crt"), false},
		{dir, "sub/b.crt", filepath.Join(dir, "sub", "b.crt"), false},
		{dir, "./sub/../a.crt", filepath.Join(dir, "a.crt"), false},
		{dir, filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.crt"), false},
		{dir, "in.crt", filepath.Join(dir, "sub", "b.crt"), false},
		{dir, "not-yet.crt", filepath.Join(dir, "not-yet.crt"), false},
		{dir, "sub/new/not-yet.crt", filepath.Join(dir, "sub", "new", "not-yet.crt"), false},
		{filepath.Join(root, "certs-link"), "a.crt", filepath.Join(dir, "a.crt"), false},
		{dir + "/", "a.crt", filepath.Join(dir, "a.crt"), false},

		{dir, "../outside/secret.key", outsideErr, true},
		{dir, "../outside/missing.key", outsideErr, true},
		{dir, "sub/../../outside/secret.key", outsideErr, true},
		{dir, filepath.Join(outside, "secret.key"), outsideErr, true},
		{dir, filepath.Join(outside, "missing.key"), outsideErr, true},
		{dir, "/etc/passwd", outsideErr, true},
		{dir, "/nonexistent/c.pem", outsideErr, true},
		{dir, dir, outsideErr, true},
		{dir, ".", outsideErr, true},
		{dir, "out.key", outsideErr, true},
		{dir, "outdir/secret.key", outsideErr, true},
		{dir, "outdir/missing.key", outsideErr, true},
		{dir, "outdir/missing/deeper.key", outsideErr, true},
		{dir, "dangling.key", outsideErr, true},
		{dir, filepath.Join(root, "certs-link", "..", "outside", "secret.key"), outsideErr, true},
		{"", "a.crt", "client certificates are refused: webhooks.client_cert_dir is not set", true},
		{dir, "", "is empty", true},
	}
	for _, tt := range tests {
		t.Run(tt.dir+" "+tt.name, func(t *testing.T) {
			got, err := webhook.ClientCertPath(tt.dir, tt.name)
			if tt.err {
				require.EqualError(t, err, tt.want)
				return
			}
			require.NoError(t, err)
			want, err := filepath.EvalSymlinks(filepath.Dir(tt.want))
			if err == nil {
				want = filepath.Join(want, filepath.Base(tt.want))
			} else {
				want = tt.want
			}
			require.Equal(t, want, got)
		})
	}
}

func TestUntrustedServerCertificate(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.TLS(ca))
	cfg := loopbackTLS(webhooktest.NewCA(t)) // trusts another CA
	n := newNotifier(t, cfg, webhooktest.NewSigner(t))
	target := rc.URLFor("partner.test", "/h")
	sub := testSub(target)
	failure(t, n.Notify(context.Background(), testJob(testAlert("a-tls"), sub, target), sub), delivery.ReasonTLS, true)
	require.Zero(t, rc.Count())
}

// TestConnectionReuse: one kept-alive HTTP/1.1 connection carries every
// delivery to a host in turn (Herald's client speaks HTTP/1.1 only, even
// to a receiver that offers HTTP/2).
func TestConnectionReuse(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.TLS(ca))
	n := newNotifier(t, loopbackTLS(ca), webhooktest.NewSigner(t))
	a := testAlert("a-reuse")
	var urls []string
	for i := range 20 {
		urls = append(urls, rc.URLFor("partner.test", fmt.Sprintf("/p/%d", i)))
	}
	sub := testSub(urls...)
	for _, u := range urls {
		require.NoError(t, n.Notify(context.Background(), testJob(a, sub, u), sub))
	}
	reqs := rc.Requests()
	require.Len(t, reqs, 20)
	for _, r := range reqs {
		require.Equal(t, "HTTP/1.1", r.Proto)
	}
	require.EqualValues(t, 1, rc.Conns(), "one connection carries every delivery")
}

func TestSignsOncePerAlert(t *testing.T) {
	rc := webhooktest.New(t)
	signer := webhooktest.NewSigner(t)
	n := newNotifier(t, webhook.Config{AllowInsecureLoopback: true, Timeout: 10 * time.Second}, signer)
	a := testAlert("a-once")
	const endpoints = 200
	var urls []string
	for i := range endpoints {
		urls = append(urls, rc.URL(fmt.Sprintf("/e/%d", i)))
	}
	sub := testSub(urls...)
	var wg sync.WaitGroup
	errs := make(chan error, endpoints)
	for _, u := range urls {
		wg.Go(func() { errs <- n.Notify(context.Background(), testJob(a, sub, u), sub) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, signer.Count(), "one PGP signature per alert")
	reqs := rc.Requests()
	require.Len(t, reqs, endpoints)
	ids := map[string]bool{}
	for _, r := range reqs {
		require.Equal(t, reqs[0].Body, r.Body, "identical bytes for every recipient")
		require.Equal(t, reqs[0].Header.Get(whsig.HeaderPGPSignature), r.Header.Get(whsig.HeaderPGPSignature))
		ids[r.Header.Get(whsig.HeaderID)] = true
	}
	require.Len(t, ids, endpoints, "each delivery has its own id")
}

func TestCancelNotice(t *testing.T) {
	rc := webhooktest.New(t)
	signer := webhooktest.NewSigner(t)
	n := newNotifier(t, webhook.Config{AllowInsecureLoopback: true, Timeout: 5 * time.Second}, signer)
	up := testAlert("a-update")
	up.Type, up.References, up.TLP = alerts.TypeUpdate, []string{"a-orig"}, alerts.TLPRed // content never leaves
	target := rc.URL("/h")
	sub := testSub(target)
	job := testJob(up, sub, target)
	job.Mode = delivery.ModeCancelNotice
	require.NoError(t, n.Notify(context.Background(), job, sub))
	r := rc.Requests()[0]
	require.JSONEq(t, `{"type":"alert.cancelled","notice":"no-longer-eligible",
		"alert":{"id":"a-update","type":"cancel","status":"actual","references":["a-orig"]}}`, string(r.Body))
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get(whsig.HeaderPGPSignature))
	require.NoError(t, err)
	require.NoError(t, gpgVerify(t, signer.PublicArmored(t), r.Body, sig))
}

type failingSigner struct{}

func (failingSigner) SignDetached([]byte) ([]byte, error) { return nil, errors.New("key locked") }

func TestFailsClosed(t *testing.T) {
	rc := webhooktest.New(t)
	cfg := webhook.Config{AllowInsecureLoopback: true, Timeout: 5 * time.Second}
	target := rc.URL("/h")
	_, err := webhook.New(cfg, nil, nil)
	require.Error(t, err, "no signer, no notifier")

	t.Run("signing fails", func(t *testing.T) {
		n := newNotifier(t, cfg, failingSigner{})
		sub := testSub(target)
		failure(t, n.Notify(context.Background(), testJob(testAlert("a-fail"), sub, target), sub), delivery.ReasonSign, false)
	})
	n := newNotifier(t, cfg, webhooktest.NewSigner(t))
	t.Run("unknown endpoint", func(t *testing.T) {
		sub := testSub(rc.URL("/other"))
		failure(t, n.Notify(context.Background(), testJob(testAlert("a-x"), sub, target), sub), delivery.ReasonInvalid, false)
	})
	t.Run("TLP:RED content", func(t *testing.T) {
		a := testAlert("a-red")
		a.TLP = alerts.TLPRed
		sub := testSub(target)
		sub.Clearance, sub.Webhooks[0].MaxTLP = alerts.TLPRed, alerts.TLPRed
		failure(t, n.Notify(context.Background(), testJob(a, sub, target), sub), delivery.ReasonRefused, false)
	})
	t.Run("above max_tlp", func(t *testing.T) {
		a := testAlert("a-amber")
		a.TLP = alerts.TLPAmber
		sub := testSub(target)
		sub.Webhooks[0].MaxTLP = alerts.TLPGreen
		failure(t, n.Notify(context.Background(), testJob(a, sub, target), sub), delivery.ReasonRefused, false)
	})
	t.Run("email mode", func(t *testing.T) {
		sub := testSub(target)
		job := testJob(testAlert("a-mode"), sub, target)
		job.Mode = delivery.ModeKeyNotice
		failure(t, n.Notify(context.Background(), job, sub), delivery.ReasonInvalid, false)
	})
	t.Run("disabled endpoint", func(t *testing.T) {
		sub := testSub(target)
		sub.Webhooks[0].Disabled = true
		failure(t, n.Notify(context.Background(), testJob(testAlert("a-dis"), sub, target), sub), delivery.ReasonGone, false)
	})
	require.Zero(t, rc.Count(), "nothing was sent")
}

func TestConnectionRefused(t *testing.T) {
	rc := webhooktest.New(t)
	target := rc.URL("/h")
	rc.Close() // nothing listens there now
	n := newNotifier(t, webhook.Config{AllowInsecureLoopback: true, Timeout: 5 * time.Second}, webhooktest.NewSigner(t))
	sub := testSub(target)
	f := failure(t, n.Notify(context.Background(), testJob(testAlert("a-conn"), sub, target), sub), delivery.ReasonConnect, true)
	require.NotContains(t, f.Error(), "?", "no query string in errors")
}

// TestRouteSharedByConcurrentDeliveries: deliveries to one endpoint share
// its prepared route (parsed URL, client, request template); each request
// still carries its own id, body and signatures.
func TestRouteSharedByConcurrentDeliveries(t *testing.T) {
	rc := webhooktest.New(t)
	n := newNotifier(t, webhook.Config{AllowInsecureLoopback: true, Timeout: 10 * time.Second}, webhooktest.NewSigner(t))
	target := rc.URL("/shared?token=t")
	sub := testSub(target)
	const deliveries = 40
	var wg sync.WaitGroup
	errs := make(chan error, deliveries)
	for i := range deliveries {
		wg.Go(func() {
			errs <- n.Notify(context.Background(), testJob(testAlert(fmt.Sprintf("a-shared-%d", i)), sub, target), sub)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	ids := map[string]bool{}
	for _, r := range rc.Requests() {
		require.Equal(t, "/shared?token=t", r.Path)
		require.Len(t, r.Header.Values(whsig.HeaderID), 1)
		require.Len(t, r.Header.Values(whsig.HeaderSignature), 1)
		require.NoError(t, whsig.Verify(r.Header, r.Body, []string{fixedSecret}, time.Now(), 0))
		var env struct {
			Alert struct{ ID string } `json:"alert"`
		}
		require.NoError(t, json.Unmarshal(r.Body, &env))
		require.Equal(t, delivery.ID(env.Alert.ID, sub.ID, target), r.Header.Get(whsig.HeaderID), "the id belongs with the body")
		ids[r.Header.Get(whsig.HeaderID)] = true
	}
	require.Len(t, ids, deliveries)
}

// TestPlainHTTPEndpointIgnoresItsClientCertificate: a plain-http loopback
// endpoint (development only) has no TLS to present a client certificate
// in, so files it names are never read: missing ones do not hold its
// deliveries back as a temporary configuration failure, retried for a day.
func TestPlainHTTPEndpointIgnoresItsClientCertificate(t *testing.T) {
	rc := webhooktest.New(t)
	n, sub, job := loopbackJob(t, rc, webhook.Config{ClientCertDir: t.TempDir()}, "a-plain-cert")
	sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = "missing.crt", "missing.key"
	require.NoError(t, n.Notify(context.Background(), job, sub))
	require.Len(t, rc.Requests(), 1)
}
