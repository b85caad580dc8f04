package webhook_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/formats"
	"github.com/herald-alerts/herald/internal/formats/formatstest"
	"github.com/herald-alerts/herald/internal/testkit/webhooktest"
	"github.com/herald-alerts/herald/subscribers"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const (
	agency = "National Crime Agency"
	sender = "alerts@nca.example"
)

func at(s string) *time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &t
}

// chain is an alert, its update and its cancel, as published.
func chain() (root, upd, cancel *alerts.Alert) {
	root = &alerts.Alert{
		ID: "op-ember-1", Type: alerts.TypeAlert, Status: alerts.StatusActual,
		Title:   "Car wash network moving workers between sites",
		Summary: "Workers are housed above the premises and moved weekly.",
		Body:    "Wages are paid in cash, if at all; rent goes to one account.",
		Indicators: []alerts.Indicator{
			{Type: "email", Value: "jobs@carwash.example", Context: "recruitment"},
			{Type: "domain", Value: "carwash.example"},
			{Type: "phone", Value: "+44 7700 900123", Context: "controller"},
		},
		Actions:   []string{"Check right-to-work records"},
		Reporting: "Submit a SAR quoting the alert id.",
		Severity:  alerts.SeveritySevere,
		Audience:  alerts.Audience{Sectors: []string{"car-washes"}, Subscribers: []string{"acme-bank"}},
		Marking:   alerts.MarkingOfficial, TLP: alerts.TLPGreen, Handling: alerts.Handling{Code: "P"},
		IssuedBy: "api:analyst.jane", IssuedAt: at("2026-11-30T09:00:00Z"),
	}
	upd = &alerts.Alert{
		ID: "op-ember-2", Type: alerts.TypeUpdate, References: []string{root.ID}, Status: alerts.StatusActual,
		Title: root.Title + " (updated)", Summary: "The domain is no longer in use; a new IBAN is known.",
		Indicators: []alerts.Indicator{
			{Type: "email", Value: "jobs@carwash.example", Context: "recruitment"},
			{Type: "iban", Value: "GB33BUKB20201555555555", Context: "rent"},
		},
		Severity: alerts.SeveritySevere, Audience: root.Audience,
		Marking: alerts.MarkingOfficial, TLP: alerts.TLPAmber, Handling: alerts.Handling{Code: "C", Conditions: "Financial-crime team only."},
		IssuedBy: "api:analyst.jane", IssuedAt: at("2026-12-01T10:30:00Z"),
		ApprovedBy: "api:supervisor.bob", ApprovedAt: at("2026-12-01T10:29:00Z"),
	}
	cancel = &alerts.Alert{
		ID: "op-ember-3", Type: alerts.TypeCancel, References: []string{upd.ID}, Status: alerts.StatusActual,
		Title: "Cancelled: car wash network", Summary: "The operation has concluded.",
		Severity: alerts.SeverityMinor, Audience: root.Audience,
		Marking: alerts.MarkingOfficial, TLP: alerts.TLPAmber, Handling: alerts.Handling{Code: "P"},
		IssuedBy: "api:analyst.jane", IssuedAt: at("2026-12-02T08:00:00Z"),
		ApprovedBy: "api:supervisor.bob", ApprovedAt: at("2026-12-02T07:59:00Z"),
	}
	return root, upd, cancel
}

// lineageOf traces a's lineage over the chain, as the fan-out does, for a
// partner that received every earlier alert of it.
func lineageOf(t testing.TB, a *alerts.Alert, published ...*alerts.Alert) *delivery.Lineage {
	t.Helper()
	l, err := delivery.TraceLineage(a, func(id string) (*alerts.Alert, error) {
		for _, p := range published {
			if p.ID == id {
				return p, nil
			}
		}
		return nil, fmt.Errorf("alert %s is not published", id)
	})
	require.NoError(t, err)
	return l.For(func(string) bool { return true })
}

// formatCase is one job's alert and lineage.
type formatCase struct {
	name    string
	a       *alerts.Alert
	lineage *delivery.Lineage
	mode    string
}

func formatCases(t testing.TB) []formatCase {
	root, upd, cancel := chain()
	return []formatCase{
		{"alert", root, nil, delivery.ModeSigned},
		{"update", upd, lineageOf(t, upd, root), delivery.ModeSigned},
		{"cancel", cancel, lineageOf(t, cancel, root, upd), delivery.ModeSigned},
		// The update to a partner that had the alert and may not have the
		// update: the content-free notice.
		{"notice", upd, lineageOf(t, upd, root), delivery.ModeCancelNotice},
	}
}

var extensions = map[formats.Format]string{
	formats.FormatHerald: "json", formats.FormatSTIX: "json", formats.FormatMISP: "json", formats.FormatCAP: "xml",
}

// formatSub is a partner with one endpoint per format at partner.test.
func formatSub(rc *webhooktest.Receiver) *subscribers.Subscriber {
	s := testSub()
	for _, f := range formats.Formats {
		s.Webhooks = append(s.Webhooks, subscribers.Webhook{URL: rc.URLFor("partner.test", "/hooks/"+string(f)),
			Secrets: []string{fixedSecret}, MaxTLP: alerts.TLPAmber, Format: string(f)})
	}
	return s
}

func formatNotifier(t testing.TB, cfg webhook.Config, signer webhook.Signer) *webhook.Notifier {
	cfg.Agency, cfg.Sender = agency, sender
	return newNotifier(t, cfg, signer)
}

// TestFormatsDelivered delivers an alert, its update, its cancel and the
// content-free notice to one HTTPS endpoint in each format, and checks
// what each receiver got: the Content-Type of its format, Standard
// Webhooks signatures that the reference library verifies, an OpenPGP
// signature of the body by the agency key, the body (golden files; go test
// -update rewrites them), STIX against the OASIS schemas and CAP against
// the CAP 1.2 XSD. Each rendering is signed once, however often it is
// delivered.
func TestFormatsDelivered(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.TLS(ca))
	signer := webhooktest.NewSigner(t)
	n := formatNotifier(t, loopbackTLS(ca), signer)
	sub := formatSub(rc)
	pub := signer.PublicArmored(t)
	stix := formatstest.STIX(t)
	gpgChecked := map[string]bool{}

	for _, c := range formatCases(t) {
		for _, ep := range sub.Webhooks {
			f := formats.Format(ep.Format)
			t.Run(c.name+"/"+ep.Format, func(t *testing.T) {
				job := testJob(c.a, sub, ep.URL)
				job.Mode, job.Lineage = c.mode, c.lineage
				before := len(rc.Requests())
				require.NoError(t, n.Notify(context.Background(), job, sub))
				reqs := rc.Requests()
				require.Len(t, reqs, before+1)
				r := reqs[before]

				wantType := f.ContentType()
				if c.mode == delivery.ModeCancelNotice && f != formats.FormatCAP {
					wantType = formats.ContentTypeHerald
				}
				require.Equal(t, wantType, r.Header.Get("Content-Type"))
				require.Equal(t, job.ID, r.Header.Get(whsig.HeaderID))
				wh, err := standardwebhooks.NewWebhook(fixedSecret)
				require.NoError(t, err)
				require.NoError(t, wh.Verify(r.Body, r.Header), "Standard Webhooks reference library")
				sig, err := base64.StdEncoding.DecodeString(r.Header.Get(whsig.HeaderPGPSignature))
				require.NoError(t, err)
				_, err = pgp.VerifyDetached(pub, r.Body, sig)
				require.NoError(t, err, "herald-pgp-signature covers the body")
				if ct := r.Header.Get("Content-Type"); !gpgChecked[ct] {
					gpgChecked[ct] = true
					require.NoError(t, gpgVerify(t, pub, r.Body, sig), "gpg verifies the %s body", ct)
				}
				for _, name := range []string{"analyst.jane", "supervisor.bob"} {
					require.NotContains(t, string(r.Body), name, "no analyst's name reaches a partner")
				}

				golden := c.name + "." + ep.Format + "." + extensions[f]
				if c.mode == delivery.ModeCancelNotice && f != formats.FormatCAP {
					golden = c.name + ".herald.json" // one notice for herald, stix and misp
				}
				path := filepath.Join("testdata", "golden", golden)
				if *update {
					require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
					require.NoError(t, os.WriteFile(path, r.Body, 0o644))
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err, "run go test -update to create the golden files")
				require.Equal(t, string(want), string(r.Body))

				switch {
				case wantType == formats.ContentTypeSTIX:
					require.NoError(t, stix.Validate(r.Body))
				case wantType == formats.ContentTypeCAP:
					out, err := formatstest.Xmllint(t, r.Body)
					require.NoError(t, err, out)
				}
			})
		}
	}
	// 3 alerts in 4 formats, and 2 notices (the herald notice for herald,
	// stix and misp; the CAP cancel).
	require.EqualValues(t, 3*4+2, signer.Count(), "one signature per alert and format")

	// Delivering everything again signs nothing more.
	for _, c := range formatCases(t) {
		for _, ep := range sub.Webhooks {
			job := testJob(c.a, sub, ep.URL)
			job.Mode, job.Lineage = c.mode, c.lineage
			require.NoError(t, n.Notify(context.Background(), job, sub))
		}
	}
	require.EqualValues(t, 3*4+2, signer.Count())
}

// TestNoticeIsContentFree: the notice says nothing of the alert but its
// id, status and the ids it supersedes, in every format.
func TestNoticeIsContentFree(t *testing.T) {
	rc := webhooktest.New(t)
	n := formatNotifier(t, webhook.Config{AllowInsecureLoopback: true, Timeout: 5 * time.Second}, webhooktest.NewSigner(t))
	sub := testSub()
	for _, f := range formats.Formats {
		sub.Webhooks = append(sub.Webhooks, subscribers.Webhook{URL: rc.URL("/" + string(f)), Secrets: []string{fixedSecret},
			MaxTLP: alerts.TLPAmber, Format: string(f)})
	}
	c := formatCases(t)[3]
	for _, ep := range sub.Webhooks {
		job := testJob(c.a, sub, ep.URL)
		job.Mode, job.Lineage = c.mode, c.lineage
		require.NoError(t, n.Notify(context.Background(), job, sub))
	}
	for _, r := range rc.Requests() {
		body := string(r.Body)
		require.Contains(t, body, "op-ember-1", "names the alert it withdraws")
		for _, content := range []string{"Car wash", "carwash", "GB33", "AMBER", "OFFICIAL", "Financial-crime", "severe"} {
			require.NotContains(t, body, content)
		}
	}
	herald, _, err := n.NoticeBody(c.a)
	require.NoError(t, err)
	reqs := rc.Requests()
	require.Equal(t, herald, reqs[0].Body)
	require.Equal(t, herald, reqs[1].Body, "stix endpoints get the herald notice")
	require.Equal(t, herald, reqs[2].Body, "misp endpoints get the herald notice")
	require.Contains(t, string(reqs[3].Body), "<msgType>Cancel</msgType>")
	require.NotContains(t, string(reqs[3].Body), "<info>")
}

// TestSignsOncePerAlertAndFormat: many endpoints of every format, at once:
// one signature per format, and every endpoint of a format gets the same
// bytes.
func TestSignsOncePerAlertAndFormat(t *testing.T) {
	rc := webhooktest.New(t)
	signer := webhooktest.NewSigner(t)
	n := formatNotifier(t, webhook.Config{AllowInsecureLoopback: true, Timeout: 10 * time.Second}, signer)
	c := formatCases(t)[1] // the update: every format reads its lineage
	sub := testSub()
	const each = 25
	for _, f := range formats.Formats {
		for i := range each {
			sub.Webhooks = append(sub.Webhooks, subscribers.Webhook{URL: rc.URL(fmt.Sprintf("/%s/%d", f, i)),
				Secrets: []string{fixedSecret}, MaxTLP: alerts.TLPAmber, Format: string(f)})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(sub.Webhooks))
	for _, ep := range sub.Webhooks {
		wg.Go(func() {
			job := testJob(c.a, sub, ep.URL)
			// Each job decodes its own copy of the lineage, as workers do.
			b, _ := json.Marshal(c.lineage)
			job.Lineage = &delivery.Lineage{}
			_ = json.Unmarshal(b, job.Lineage)
			errs <- n.Notify(context.Background(), job, sub)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, len(formats.Formats), signer.Count(), "one PGP signature per alert and format")
	bodies := map[string][]byte{}
	for _, r := range rc.Requests() {
		f := strings.Split(r.Path, "/")[1]
		if prev, ok := bodies[f]; ok {
			require.Equal(t, prev, r.Body, "identical bytes for every endpoint of %s", f)
		}
		bodies[f] = r.Body
	}
	require.Len(t, bodies, len(formats.Formats))

	// A partner that received none of the earlier alerts (no Earlier) is
	// another rendering for STIX and MISP, which withdraw what the partner
	// had; the herald envelope and CAP, which never list withdrawn
	// indicators, are the same bytes, signed once.
	other := *c.lineage
	other.Earlier = nil
	before := len(rc.Requests())
	for _, f := range formats.Formats {
		ep := sub.Webhooks[slices.IndexFunc(sub.Webhooks, func(w subscribers.Webhook) bool { return w.Format == string(f) })]
		job := testJob(c.a, sub, ep.URL)
		job.Lineage = &other
		require.NoError(t, n.Notify(context.Background(), job, sub))
	}
	require.EqualValues(t, 2*len(formats.Formats)-2, signer.Count(), "a new signature for stix and misp only")
	for _, r := range rc.Requests()[before:] {
		if f := strings.Split(r.Path, "/")[1]; f == string(formats.FormatCAP) || f == string(formats.FormatHerald) {
			require.Equal(t, bodies[f], r.Body, "%s does not read what the partner received earlier", f)
		}
	}
}

// TestFormatRefusals: an endpoint in an unknown format, or in a format
// that names the agency when its name is not configured, gets nothing.
func TestFormatRefusals(t *testing.T) {
	rc := webhooktest.New(t)
	cfg := webhook.Config{AllowInsecureLoopback: true, Timeout: 5 * time.Second}
	target := rc.URL("/h")
	a := formatCases(t)[0].a
	t.Run("unknown format", func(t *testing.T) {
		n := formatNotifier(t, cfg, webhooktest.NewSigner(t))
		sub := testSub(target)
		sub.Webhooks[0].Format = "openioc"
		failure(t, n.Notify(context.Background(), testJob(a, sub, target), sub), delivery.ReasonConfig, false)
	})
	t.Run("no agency name", func(t *testing.T) {
		n := newNotifier(t, cfg, webhooktest.NewSigner(t))
		sub := testSub(target)
		sub.Webhooks[0].Format = subscribers.FormatSTIX
		f := failure(t, n.Notify(context.Background(), testJob(a, sub, target), sub), delivery.ReasonConfig, false)
		require.Contains(t, f.Error(), "email.issuer_name")
	})
	t.Run("update without lineage", func(t *testing.T) {
		n := formatNotifier(t, cfg, webhooktest.NewSigner(t))
		sub := testSub(target)
		sub.Webhooks[0].Format = subscribers.FormatCAP
		failure(t, n.Notify(context.Background(), testJob(formatCases(t)[1].a, sub, target), sub), delivery.ReasonInvalid, false)
	})
	require.Zero(t, rc.Count(), "nothing was sent")
}

// TestFormatNamesAgree: the formats a subscriber record may name are the
// formats the notifier renders.
func TestFormatNamesAgree(t *testing.T) {
	var names []string
	for _, f := range formats.Formats {
		names = append(names, string(f))
	}
	require.Equal(t, subscribers.WebhookFormats, names)
}

// TestVerifyAnyFormat: herald verify webhook checks a delivery in any
// format; only Herald's envelope names an event.
func TestVerifyAnyFormat(t *testing.T) {
	rc := webhooktest.New(t)
	signer := webhooktest.NewSigner(t)
	n := formatNotifier(t, webhook.Config{AllowInsecureLoopback: true, Timeout: 5 * time.Second}, signer)
	sub := testSub()
	for _, f := range formats.Formats {
		sub.Webhooks = append(sub.Webhooks, subscribers.Webhook{URL: rc.URL("/" + string(f)), Secrets: []string{fixedSecret},
			MaxTLP: alerts.TLPAmber, Format: string(f)})
	}
	c := formatCases(t)[1]
	for _, ep := range sub.Webhooks {
		job := testJob(c.a, sub, ep.URL)
		job.Lineage = c.lineage
		require.NoError(t, n.Notify(context.Background(), job, sub))
	}
	for i, r := range rc.Requests() {
		headers := map[string]string{}
		for k := range r.Header {
			headers[k] = r.Header.Get(k)
		}
		capture, err := json.Marshal(map[string]any{"headers": headers, "body": string(r.Body)})
		require.NoError(t, err)
		rep, err := webhook.VerifyRequest(strings.NewReader(string(capture)), []string{fixedSecret}, signer.PublicArmored(t), time.Now(), 0)
		require.NoError(t, err)
		require.True(t, rep.OK(), "%s", rep)
		if sub.Webhooks[i].Format == subscribers.FormatHerald {
			require.Equal(t, webhook.EventUpdated, rep.Event)
		} else {
			require.Empty(t, rep.Event, sub.Webhooks[i].Format)
		}
	}
}
