package email_test

import (
	"bytes"
	"context"
	"log/slog"
	"mime"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/stretchr/testify/require"
)

const (
	secretTitle   = "Nail bar in Leeds uses workers held in debt bondage"
	secretSummary = "Three premises share a controller who keeps workers' passports"
	secretBody    = "Workers are driven between premises at 07:00 in a grey van."
)

// testAlert returns a valid alert at tlp and marking.
func testAlert(id string, tlp alerts.TLP, marking alerts.Marking) *alerts.Alert {
	issued := time.Date(2026, 11, 24, 9, 30, 0, 0, time.UTC)
	a := &alerts.Alert{
		ID: id, Type: alerts.TypeAlert, Status: alerts.StatusActual,
		Title: secretTitle, Summary: secretSummary, Body: secretBody + "\nFrom the street the shop looks closed.\n",
		Indicators: []alerts.Indicator{{Type: "phone", Value: "+44 7700 900123", Context: "controller"}, {Type: "vehicle", Value: "YX19 ABC"}},
		Actions:    []string{"Check right-to-work documents", "Report matches"},
		Reporting:  "Submit a SAR quoting the alert id.",
		Contact:    "Herald duty desk, 0300 000 0000",
		Severity:   alerts.SeveritySevere,
		Audience:   alerts.Audience{Sectors: []string{"nail-bars"}},
		Marking:    marking, TLP: tlp,
		Handling: alerts.Handling{Code: "C", Conditions: "Share only with your safeguarding lead"},
		Grading:  &alerts.Grading{Source: 2, Intelligence: "B"},
		IssuedBy: "analyst-7", IssuedAt: &issued,
	}
	return a
}

// partner returns a subscriber whose addresses have the named fixture
// keys ("" for no key).
func partner(t testing.TB, keys map[string]string) *subscribers.Subscriber {
	s := &subscribers.Subscriber{ID: "acme", Name: "Acme", Kind: subscribers.KindBusiness, Clearance: alerts.TLPRed, Sensitive: true, Status: subscribers.StatusActive}
	for addr, name := range keys {
		e := subscribers.Email{Address: addr}
		if name != "" {
			e.PGPKey, _ = pgptest.RecipientKey(t, name)
		}
		s.Email = append(s.Email, e)
	}
	return s
}

func job(a *alerts.Alert, sub *subscribers.Subscriber, addr, mode string) *delivery.Job {
	return &delivery.Job{ID: delivery.ID(a.ID, sub.ID, addr), Alert: a, Subscriber: sub.ID, Channel: delivery.ChannelEmail, Target: addr, Mode: mode}
}

// newNotifier returns a notifier for sink, closed when the test ends.
func newNotifier(t testing.TB, sink *smtptest.Server, signer *pgp.Signer, mod func(*email.Config)) *email.Notifier {
	t.Helper()
	cfg := email.Config{Host: sink.Host, Port: sink.Port, TLS: email.TLSNone, From: "Herald <alerts@herald.example>",
		RootCAs: sink.RootCAs, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	n, err := email.New(cfg, signer, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(func() { n.Close() })
	return n
}

func notify(t testing.TB, n *email.Notifier, j *delivery.Job, sub *subscribers.Subscriber) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return n.Notify(ctx, j, sub)
}

var boundaryParam = regexp.MustCompile(`boundary="([^"]+)"`)

// pgpMIME extracts, with plain string operations independent of the code
// under test, the signed part and signature of a multipart/signed entity,
// or the armoured message of a multipart/encrypted one (RFC 3156).
type pgpMIME struct {
	signed, signature []byte // multipart/signed
	encrypted         []byte // multipart/encrypted
}

func extract(t testing.TB, entity []byte) pgpMIME {
	t.Helper()
	m := boundaryParam.FindSubmatch(entity)
	require.NotNil(t, m, "no boundary in %q", entity[:min(len(entity), 300)])
	delim := []byte("\r\n--" + string(m[1]))
	first := bytes.Index(entity, []byte("--"+string(m[1])+"\r\n"))
	require.GreaterOrEqual(t, first, 0)
	rest := entity[first+len(m[1])+4:]
	i := bytes.Index(rest, delim)
	require.GreaterOrEqual(t, i, 0)
	part1, rest := rest[:i], rest[i+len(delim)+2:]
	j := bytes.Index(rest, append(delim, '-', '-'))
	require.GreaterOrEqual(t, j, 0)
	part2 := rest[:j]
	body2 := part2[bytes.Index(part2, []byte("\r\n\r\n"))+4:]
	if bytes.Contains(entity[:first], []byte("multipart/encrypted")) {
		require.Contains(t, string(part1), "Version: 1")
		return pgpMIME{encrypted: body2}
	}
	require.Contains(t, string(entity[:first]), "multipart/signed")
	require.Contains(t, string(entity[:first]), `protocol="application/pgp-signature"`)
	return pgpMIME{signed: part1, signature: body2}
}

// bodyOf returns the message body after the header.
func bodyOf(t testing.TB, raw []byte) []byte {
	i := bytes.Index(raw, []byte("\r\n\r\n"))
	require.GreaterOrEqual(t, i, 0)
	// The entity's Content-Type header is the last header field.
	ct := bytes.LastIndex(raw[:i], []byte("\r\nContent-Type:"))
	require.GreaterOrEqual(t, ct, 0)
	return raw[ct+2:]
}

// flat joins the words of s with single spaces, so that phrases can be
// found across wrapped lines.
func flat(s string) string { return strings.Join(strings.Fields(s), " ") }

// nospace removes all white space from s.
func nospace(s string) string { return strings.Join(strings.Fields(s), "") }

func decodeSubject(t testing.TB, raw []byte) string {
	m := regexp.MustCompile(`(?m)^Subject: (.*(?:\r\n .*)*)\r\n`).FindSubmatch(raw)
	require.NotNil(t, m)
	s, err := new(mime.WordDecoder).DecodeHeader(string(bytes.ReplaceAll(m[1], []byte("\r\n "), []byte(" "))))
	require.NoError(t, err)
	return s
}

// verifySigned checks a signed-only message with Verify and the agency key
// of signer.
func verifySigned(t testing.TB, raw []byte, signer *pgp.Signer) (*email.Verification, error) {
	t.Helper()
	return email.Verify(raw, signer.PublicKeyArmored(), nil, nil)
}
