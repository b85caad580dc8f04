package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/sink"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/stretchr/testify/require"
)

// testLog sends Herald's logs to the test log until the test ends.
func testLog(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.t = nil; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	mu sync.Mutex
	t  *testing.T
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t != nil {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func run(t *testing.T, opt Options) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	if opt.OutDir == "" {
		opt.OutDir = filepath.Join(t.TempDir(), "out")
	}
	opt.Log = testLog(t)
	res, err := Run(ctx, opt)
	require.NoError(t, err)
	var table bytes.Buffer
	res.Print(&table)
	t.Log("\n" + table.String())
	return res
}

func TestDemoEndToEnd(t *testing.T) {
	res := run(t, Options{})
	require.True(t, res.OK(), "failures: %s", strings.Join(res.Failures, "\n"))
	require.Len(t, res.Rows, len(expectations()))
	require.Len(t, res.Alerts, 3)

	var mails, hooks, pulls int
	for _, r := range res.Rows {
		if r.Decision == delivery.Withhold {
			require.Equal(t, "-", r.Verified, "%+v", r)
			require.Empty(t, r.Files, "%+v", r)
			continue
		}
		if r.Channel == delivery.ChannelPull {
			// Nothing is sent: the ledger shows the alert available.
			require.Equal(t, "ledger", r.Verified, "%+v", r)
			require.Equal(t, delivery.StateAvailable, r.State, "%+v", r)
			require.Empty(t, r.Files, "%+v", r)
			pulls++
			continue
		}
		require.Equal(t, "yes", r.Verified, "%+v", r)
		require.Equal(t, delivery.StateDelivered, r.State, "%+v", r)
		require.NotEmpty(t, r.Files, "%+v", r)
		if r.Channel == delivery.ChannelEmail {
			mails++
		} else {
			hooks++
		}
	}

	require.Equal(t, 3, pulls, "every alert is in the bank's pull collection")
	var table bytes.Buffer
	res.Print(&table)
	require.Contains(t, table.String(), "33 targets: 13 delivered with content, 3 available to pull, 5 content-free notices, 12 withheld")

	dir := res.OutDir
	for _, f := range []string{marker, "README.txt", "outcomes.txt", "agency.asc", "partners.json",
		"keys/northbank.asc", "keys/northbank.secret.asc", "keys/freedom-trust.secret.asc"} {
		require.FileExists(t, filepath.Join(dir, f))
	}
	for _, a := range res.Alerts {
		require.FileExists(t, filepath.Join(dir, "alerts", a.Label+"-"+a.ID+".json"))
	}
	emls, err := filepath.Glob(filepath.Join(dir, "email", "*.eml"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(emls), mails)
	https, err := filepath.Glob(filepath.Join(dir, "webhook", "*.http"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(https), hooks)
	out, err := os.ReadFile(filepath.Join(dir, "outcomes.txt"))
	require.NoError(t, err)
	require.Contains(t, string(out), "ALERT  PARTNER")
	require.Contains(t, string(out), "update.no-longer-eligible")

	// The files are what the partners got: they verify from disk, and a
	// tampered copy does not.
	agencyPub, err := os.ReadFile(filepath.Join(dir, "agency.asc"))
	require.NoError(t, err)
	var partners []subscribers.Subscriber
	raw, err := os.ReadFile(filepath.Join(dir, "partners.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &partners))
	require.Len(t, partners, 6)

	signed, err := os.ReadFile(filepath.Join(dir, "email", "1-grandstay-signed.eml"))
	require.NoError(t, err)
	v, err := email.Verify(signed, agencyPub, nil, nil)
	require.NoError(t, err)
	require.False(t, v.Encrypted)
	require.Contains(t, v.Text, "14 Example Road, Luton")
	tampered := bytes.Replace(signed, []byte("14 Example Road, Luton"), []byte("41 Example Road, Luton"), 1)
	require.NotEqual(t, signed, tampered)
	_, err = email.Verify(tampered, agencyPub, nil, nil)
	require.Error(t, err, "a tampered email must not verify")

	secret, err := os.ReadFile(filepath.Join(dir, "keys", "northbank.secret.asc"))
	require.NoError(t, err)
	enc, err := os.ReadFile(filepath.Join(dir, "email", "2-northbank-encrypted.eml"))
	require.NoError(t, err)
	v, err = email.Verify(enc, agencyPub, secret, nil)
	require.NoError(t, err)
	require.True(t, v.Encrypted)
	require.Contains(t, v.Text, res.Alerts[1].Title)
	require.NotContains(t, string(enc), res.Alerts[1].Title)

	capture, err := os.ReadFile(filepath.Join(dir, "webhook", "1-northbank-signed.http"))
	require.NoError(t, err)
	var secrets []string
	for _, p := range partners {
		if p.ID == bank {
			secrets = p.Webhooks[0].Secrets
		}
	}
	require.Len(t, secrets, 2)
	rep, err := webhook.VerifyRequest(bytes.NewReader(capture), secrets[1:], agencyPub, time.Now(), 0)
	require.NoError(t, err)
	require.True(t, rep.OK() && rep.PGPChecked, rep.String())
	forged := bytes.Replace(capture, []byte(`"severity":"severe"`), []byte(`"severity":"SEVERE"`), 1)
	require.NotEqual(t, capture, forged)
	rep, err = webhook.VerifyRequest(bytes.NewReader(forged), secrets, agencyPub, time.Now(), 0)
	require.NoError(t, err)
	require.False(t, rep.OK(), "a tampered webhook must not verify")
	require.Error(t, rep.SignatureErr)
	require.Error(t, rep.PGPErr)
}

// TestDemoChecksCatch runs the demo and damages what arrived before the
// checks run: each kind of damage must be reported.
func TestDemoChecksCatch(t *testing.T) {
	amberTitle := ""
	res := run(t, Options{tamper: func(c *checker) {
		amberTitle = c.alerts[1].Title
		for i, m := range c.mails {
			// A signed email altered on the way.
			if strings.Contains(strings.Join(m.To, ""), "grandstay") && bytes.Contains(m.Data, []byte("14 Example Road")) {
				c.mails[i].Data = bytes.Replace(m.Data, []byte("14 Example Road"), []byte("41 Example Road"), 1)
			}
		}
		// An email that came without TLS.
		for i, m := range c.mails {
			if strings.Contains(strings.Join(m.To, ""), "northbank") && bytes.Contains(m.Data, []byte("multipart/encrypted")) {
				c.mails[i].TLS = false
				break
			}
		}
		// AMBER content in clear, to a partner that should get nothing.
		c.mails = append(c.mails, sink.Message{From: agencyEmail, To: []string{"office@harvestfarms.example"},
			Data: []byte("Subject: " + amberTitle + "\r\n\r\n" + amberTitle + "\r\n")})
		// A webhook that never arrived.
		for i, h := range c.hooks {
			if h.Path == "/hooks/"+agency {
				c.hooks = append(c.hooks[:i:i], c.hooks[i+1:]...)
				break
			}
		}
		// A webhook whose signature header was stripped.
		for i, h := range c.hooks {
			if h.Path == "/hooks/"+ngo {
				c.hooks[i].Header = h.Header.Clone()
				c.hooks[i].Header.Del(whsig.HeaderSignature)
				break
			}
		}
		// No receipts for the cancel.
		delete(c.ledger, c.alerts[2].ID)
	}})
	require.False(t, res.OK())
	all := strings.Join(res.Failures, "\n")
	for _, want := range []string{
		"alert 1 to grandstay security@grandstay.example: email/1-grandstay-signed.eml:",
		"alert 1 to staffright " + res.Webhooks + "/hooks/staffright: nothing arrived",
		"alert 1 to freedom-trust " + res.Webhooks + "/hooks/freedom-trust: webhook/1-freedom-trust-signed.http:",
		"alert 3 to northbank fincrime@northbank.example: no decision recorded",
		"sent without TLS",
		"suspended partner harvest-farms received an email",
		"unexpected email to office@harvestfarms.example",
		"alert 2 (TLP:AMBER OFFICIAL-SENSITIVE): \"" + amberTitle + "\" appears in clear",
	} {
		require.Contains(t, all, want)
	}
	verified := map[string]string{}
	for _, r := range res.Rows {
		verified[r.Alert+" "+r.Partner+" "+r.Channel] = r.Verified
	}
	require.Equal(t, "no", verified["1 grandstay email"])
	require.Equal(t, "no", verified["1 staffright webhook"])
	require.Equal(t, "no", verified["1 freedom-trust webhook"])
	require.Equal(t, "yes", verified["1 northbank email"])
}

func TestPrepareOutDir(t *testing.T) {
	base := t.TempDir()

	fresh := filepath.Join(base, "new", "out")
	got, err := prepareOutDir(fresh)
	require.NoError(t, err)
	require.Equal(t, fresh, got)
	require.FileExists(t, filepath.Join(fresh, marker))

	// A folder an earlier demo made is replaced.
	require.NoError(t, os.WriteFile(filepath.Join(fresh, "old.eml"), []byte("x"), 0o644))
	_, err = prepareOutDir(fresh)
	require.NoError(t, err)
	require.NoFileExists(t, filepath.Join(fresh, "old.eml"))

	// An empty folder is used.
	empty := filepath.Join(base, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))
	_, err = prepareOutDir(empty)
	require.NoError(t, err)

	// Anything else is refused and left alone.
	other := filepath.Join(base, "mine")
	require.NoError(t, os.Mkdir(other, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(other, "thesis.tex"), []byte("x"), 0o644))
	_, err = prepareOutDir(other)
	require.ErrorContains(t, err, "refusing to overwrite")
	require.ErrorIs(t, err, ErrOutDir)
	require.FileExists(t, filepath.Join(other, "thesis.tex"))

	// A file where the folder should be is refused.
	file := filepath.Join(base, "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	_, err = prepareOutDir(file)
	require.ErrorIs(t, err, ErrOutDir)
}
