package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/ack"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/record"
)

// ackReceipts counts the acknowledgement receipts on the receipts topic.
func (e *env) ackReceipts() []delivery.Receipt {
	e.t.Helper()
	var out []delivery.Receipt
	require.NoError(e.t, e.bus.ReadAll(context.Background(), bus.TopicReceipts, func(m kafka.Message) error {
		rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
		require.NoError(e.t, err)
		for _, r := range rs {
			if r.Kind == delivery.KindAck {
				require.NoError(e.t, e.bus.Authenticate(m))
				out = append(out, r)
			}
		}
		return nil
	}))
	return out
}

// link returns the path of the acknowledgement link the email notifier
// would put in job's message, made as the deliver role makes it.
func (e *env) link(job *delivery.Job) string {
	e.t.Helper()
	links, err := app.AckLinks(e.bus)
	require.NoError(e.t, err)
	cfg := config.Default()
	cfg.API.PublicURL = "https://herald.agency.example/"
	url := app.AckURL(&cfg, links, func() time.Time { return testNow })(job)
	path, ok := strings.CutPrefix(url, "https://herald.agency.example/ack/")
	require.True(e.t, ok, url)
	return "/ack/" + path
}

// TestAckLink: the link in an email opens a page with one button; the page
// itself (a GET, as a mail scanner makes) records nothing; the button (a
// POST) records the acknowledgement once, as "email link", for the
// delivery's subscriber; a second press says it was done. Links that are
// forged, altered or expired, or name a delivery the ledger does not hold,
// are 404 pages. The pages run no script and load nothing.
func TestAckLink(t *testing.T) {
	e := newEnv(t, withPartners)
	e.scenario()
	expires := testNow.Add(7 * 24 * time.Hour)
	alert := func(id string) *delivery.Job {
		j := &delivery.Job{Subscriber: "acme", Target: acmeMail, Channel: delivery.ChannelEmail, Mode: delivery.ModeEncrypted}
		j.Alert = testAlertWith(id, &expires)
		return j
	}
	page := e.link(alert("op-1"))

	for range 3 {
		resp, body := e.do(request{method: "GET", path: page})
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		assert.Contains(t, string(body), "op-1")
		assert.Contains(t, string(body), `<form method="post"><button type="submit">Confirm receipt</button></form>`)
		csp := resp.Header.Get("Content-Security-Policy")
		assert.Contains(t, csp, "default-src 'none'")
		assert.Contains(t, csp, "form-action 'self'")
		assert.NotContains(t, csp, "script-src")
		assert.NotContains(t, string(body), "<script")
		// The one style the policy allows is the page's, by its hash.
		_, style, _ := strings.Cut(string(body), "<style>")
		style, _, _ = strings.Cut(style, "</style>")
		sum := sha256.Sum256([]byte(style))
		assert.Contains(t, csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
		assert.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"), "the link never leaks through a Referer")
	}
	resp, _ := e.do(request{method: "HEAD", path: page})
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, e.ackReceipts(), "a GET records nothing")
	e.synced()
	st := status(t, e, "op-1")
	assert.Empty(t, st.Acks)

	resp, body := e.do(request{method: "POST", path: page, contentType: "application/x-www-form-urlencoded"})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), "Receipt confirmed")
	rs := e.ackReceipts()
	require.Len(t, rs, 1)
	assert.Equal(t, delivery.Receipt{Kind: delivery.KindAck, AlertID: "op-1", Subscriber: "acme", Incarnation: e.reg.Get("acme").Incarnation,
		Channel: delivery.ChannelEmail, Target: acmeMail, DeliveryID: delivery.ID("op-1", "acme", acmeMail), By: "email link", At: testNow}, rs[0])
	st = status(t, e, "op-1")
	require.Len(t, st.Acks, 1)
	assert.Equal(t, "email link", st.Acks[0].By)

	resp, body = e.do(request{method: "POST", path: page})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), "already acknowledged")
	resp, body = e.do(request{method: "GET", path: page})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), "Already acknowledged")
	assert.NotContains(t, string(body), "<form", "no button once done")
	assert.Len(t, e.ackReceipts(), 1, "once")

	// The partner API answers the first acknowledgement too.
	resp, body = e.do(request{method: "POST", path: "/v1/partner/alerts/op-1/ack", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), `"by": "email link"`)

	raw := strings.TrimPrefix(page, "/ack/")
	expired := &delivery.Job{Subscriber: "acme", Target: acmeMail, Mode: delivery.ModeSigned, Alert: testAlertWith("op-1", ptr(testNow.Add(-time.Minute)))}
	other, err := ack.New(make([]byte, ack.KeySize))
	require.NoError(t, err)
	forged, err := other.Seal(ack.Claim{Alert: "op-1", Subscriber: "acme", Target: acmeMail, Expires: expires})
	require.NoError(t, err)
	// opens: a link Herald made, not expired, opens its page; the
	// ledger decides only when the button is pressed.
	for name, c := range map[string]struct {
		path  string
		opens bool
	}{
		"altered":            {path: "/ack/" + raw[:10] + flip(raw[10]) + raw[11:]},
		"another key":        {path: "/ack/" + forged},
		"expired":            {path: e.link(expired)},
		"garbage":            {path: "/ack/hello"},
		"withheld from acme": {path: e.link(alert("op-2")), opens: true},
		"a notice, no alert": {path: e.link(&delivery.Job{Subscriber: "acme", Target: "alerts@acme.example", Mode: delivery.ModeSigned,
			Alert: testAlertWith("op-3", &expires)}), opens: true},
		"another's delivery": {path: e.link(&delivery.Job{Subscriber: "acme", Target: globexMail, Mode: delivery.ModeSigned,
			Alert: testAlertWith("op-2", &expires)}), opens: true},
		"unknown alert": {path: e.link(alert("op-404")), opens: true},
		"another address": {path: e.link(&delivery.Job{Subscriber: "acme", Target: "nobody@acme.example", Mode: delivery.ModeSigned,
			Alert: testAlertWith("op-1", &expires)}), opens: true},
	} {
		resp, body := e.do(request{method: "GET", path: c.path})
		if c.opens {
			assert.Equal(t, http.StatusOK, resp.StatusCode, "GET %s", name)
		} else {
			assert.Equal(t, http.StatusNotFound, resp.StatusCode, "GET %s: %s", name, body)
			assert.Contains(t, string(body), "cannot be used", name)
		}
		resp, body = e.do(request{method: "POST", path: c.path})
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "POST %s: %s", name, body)
		assert.Contains(t, string(body), "cannot be used", name)
	}
	assert.Len(t, e.ackReceipts(), 1, "no link that is not valid records anything")

	var audited []string
	for _, a := range e.audited() {
		if a.Action == record.ActionPartnerAck {
			audited = append(audited, a.Actor+" "+a.Object)
		}
	}
	assert.ElementsMatch(t, []string{"email-link:acme alert:op-1", "email-link:acme alert:op-1", "partner:acme-soc alert:op-1"}, audited)
}

// TestAckLinkOnlyForContent: the deliver role's links go in content
// messages only, and without a publishing key there are none.
func TestAckLinkOnlyForContent(t *testing.T) {
	e := newEnv(t)
	links, err := app.AckLinks(e.bus)
	require.NoError(t, err)
	f := app.AckURL(ptr(config.Default()), links, func() time.Time { return testNow })
	for mode, want := range map[string]bool{delivery.ModeSigned: true, delivery.ModeEncrypted: true, delivery.ModeKeyNotice: false,
		delivery.ModeCancelNotice: false, delivery.ModeFollowUpKeyNotice: false, delivery.ModeKeyExpiryNotice: false} {
		url := f(&delivery.Job{Subscriber: "acme", Target: acmeMail, Mode: mode, Alert: testAlertWith("op-1", nil)})
		if want {
			assert.True(t, strings.HasPrefix(url, "http://127.0.0.1:8080/ack/"), "%s: %s", mode, url)
		} else {
			assert.Empty(t, url, mode)
		}
	}
	assert.Nil(t, app.AckURL(ptr(config.Default()), nil, time.Now))
}

func status(t *testing.T, e *env, id string) api.AlertStatus {
	t.Helper()
	resp, body := e.do(request{method: "GET", path: "/v1/alerts/" + id, token: analystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var st api.AlertStatus
	require.NoError(t, json.Unmarshal(body, &st))
	return st
}

func testAlertWith(id string, expires *time.Time) *alerts.Alert {
	issued := testNow.Add(-time.Hour)
	return &alerts.Alert{ID: id, Type: alerts.TypeAlert, Title: "t", Severity: alerts.SeveritySevere, TLP: alerts.TLPAmber,
		Marking: alerts.MarkingOfficial, Handling: alerts.Handling{Code: "P"}, IssuedAt: &issued, ExpiresAt: expires}
}

func ptr[T any](v T) *T { return &v }

// flip returns another base64url character than c.
func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
