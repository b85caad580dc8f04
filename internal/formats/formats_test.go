package formats_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/formats"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// Names that must never reach a partner (PRODUCT.md §1: issued_by and
// approved_by are never shown).
const (
	analyst    = "analyst.jane.doe"
	supervisor = "supervisor.bob.roe"
)

func at(s string) *time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return &t
}

// renderCase is one alert and its context, rendered in every format.
type renderCase struct {
	name string
	a    *alerts.Alert
	ctx  formats.Context
}

const (
	agency = "National Crime Agency"
	sender = "alerts@nca.example"
)

// rootAlert carries every indicator type, handling code C, a grading and
// expires_at; values exercise pattern escaping and XML escaping.
func rootAlert() *alerts.Alert {
	return &alerts.Alert{
		ID:      "01jdx5v7k2m3n4p5q6r7s8t9va",
		Type:    alerts.TypeAlert,
		Status:  alerts.StatusActual,
		Title:   "Recruitment agency fronting labour exploitation in food processing",
		Summary: "A network advertises factory jobs and controls workers' wages through accounts it opens in their names.",
		Body: "Victims are recruited abroad with promises of well-paid work, then housed in overcrowded addresses.\n" +
			"Wages are paid into accounts the network controls; workers receive < 10% & must repay \"debts\".",
		Indicators: []alerts.Indicator{
			{Type: "phone", Value: "+44 7700 900123", Context: "Recruiter's WhatsApp number"},
			{Type: "email", Value: "o'neil.jobs@recruit.example", Context: "Sends job offers"},
			{Type: "url", Value: `https://jobs.example/apply?name=o'neil&id=a\b`, Context: "Application form"},
			{Type: "domain", Value: "recruit.example"},
			{Type: "iban", Value: "GB33BUKB20201555555555", Context: "Receives wages of several workers"},
			{Type: "account", Value: "55779911 sort code 20-00-00"},
			{Type: "vehicle", Value: "AB12 CDE", Context: "White minibus used for transport to sites"},
			{Type: "address", Value: "12 Example Street, Exampletown EX1 2MP", Context: "House of multiple occupation"},
			{Type: "name", Value: "Jordan Example", Context: "Presents as the agency's director"},
			{Type: "other", Value: "Facebook group \"UK Factory Jobs 2026\""},
			{Type: "email", Value: "o'neil.jobs@recruit.example", Context: "duplicate, dropped"},
		},
		Actions:   []string{"Screen customer records for the indicators", "Review payments into the IBAN since 2026-01-01"},
		Reporting: "Submit a SAR quoting reference MSHT-2026-114",
		Contact:   "msht-desk@nca.example",
		Severity:  alerts.SeveritySevere,
		Audience:  alerts.Audience{Sectors: []string{"banking"}},
		Marking:   alerts.MarkingOfficialSensitive,
		TLP:       alerts.TLPAmber,
		Handling:  alerts.Handling{Code: "C", Conditions: "Share only with your financial-crime team; do not contact the subjects."},
		Grading:   &alerts.Grading{Source: 2, Intelligence: "B"},
		ExpiresAt: at("2027-01-31T23:59:59Z"),
		IssuedBy:  analyst,
		IssuedAt:  at("2026-11-30T09:15:30.123456Z"),
	}
}

// updateAlert drops the phone number, adds a domain, and starts at not_before.
func updateAlert() *alerts.Alert {
	a := rootAlert()
	a.ID = "01jdz0aaaabbbbccccddddeeee"
	a.Type = alerts.TypeUpdate
	a.References = []string{rootAlert().ID}
	a.Title = "Update: recruitment agency fronting labour exploitation in food processing"
	a.Indicators = append(a.Indicators[1:10:10], alerts.Indicator{Type: "domain", Value: "factory-jobs.example", Context: "New site, same operators"})
	a.Severity = alerts.SeverityExtreme
	a.NotBefore = at("2026-12-01T10:00:00Z")
	a.IssuedAt = at("2026-12-01T10:00:00Z")
	a.ApprovedBy = supervisor
	a.ApprovedAt = at("2026-12-01T09:59:00Z")
	return a
}

// cancelAlert cancels the chain; it carries no indicators.
func cancelAlert() *alerts.Alert {
	return &alerts.Alert{
		ID:         "01je10zzzzyyyyxxxxwwwwvvvv",
		Type:       alerts.TypeCancel,
		References: []string{updateAlert().ID},
		Status:     alerts.StatusActual,
		Title:      "Cancelled: recruitment agency alert",
		Summary:    "The operation has concluded; the indicators are no longer of interest.",
		Severity:   alerts.SeverityMinor,
		Audience:   alerts.Audience{Sectors: []string{"banking"}},
		Marking:    alerts.MarkingOfficialSensitive,
		TLP:        alerts.TLPAmber,
		Handling:   alerts.Handling{Code: "C", Conditions: "Share only with your financial-crime team; do not contact the subjects."},
		IssuedBy:   analyst,
		IssuedAt:   at("2026-12-02T08:00:00Z"),
	}
}

// exerciseAlert is a plain GREEN OFFICIAL exercise with handling code P.
func exerciseAlert() *alerts.Alert {
	return &alerts.Alert{
		ID:         "ex-2026-07",
		Status:     alerts.StatusExercise,
		Type:       alerts.TypeAlert,
		Title:      "Exercise MERIDIAN: fictitious car-wash network",
		Summary:    "Fictitious scenario for the annual partner exercise.",
		Indicators: []alerts.Indicator{{Type: "domain", Value: "carwash.example"}, {Type: "phone", Value: "+44 7700 900999"}},
		Severity:   alerts.SeverityModerate,
		Audience:   alerts.Audience{Subscribers: []string{"bank-a"}},
		Marking:    alerts.MarkingOfficial,
		TLP:        alerts.TLPGreen,
		Handling:   alerts.Handling{Code: "P"},
		IssuedBy:   analyst,
		IssuedAt:   at("2026-11-15T12:00:00Z"),
	}
}

func cases() []renderCase {
	root, upd, cancel := rootAlert(), updateAlert(), cancelAlert()
	return []renderCase{
		{"alert", root, formats.Context{Agency: agency, Sender: sender}},
		{"update", upd, formats.Context{
			Agency: agency, Sender: sender,
			Root: root.ID, RootIssuedAt: *root.IssuedAt,
			References: []formats.Ref{{ID: root.ID, IssuedAt: *root.IssuedAt}},
			Earlier:    root.Indicators,
		}},
		{"cancel", cancel, formats.Context{
			Agency: agency, Sender: sender,
			Root: root.ID, RootIssuedAt: *root.IssuedAt,
			References: []formats.Ref{{ID: upd.ID, IssuedAt: *upd.IssuedAt}},
			Earlier:    append(append([]alerts.Indicator{}, root.Indicators...), upd.Indicators...),
		}},
		{"exercise", exerciseAlert(), formats.Context{Agency: agency, Sender: sender}},
	}
}

// renderer is one format under test.
type renderer struct {
	name, ext string
	render    func(*alerts.Alert, formats.Context) ([]byte, error)
}

var renderers = []renderer{
	{"stix", "json", formats.STIX},
	{"misp", "json", formats.MISP},
	{"cap", "xml", formats.CAP},
}

func goldenPath(c renderCase, r renderer) string {
	return filepath.Join("testdata", "golden", c.name+"."+r.name+"."+r.ext)
}

// rendererNamed returns the renderer of one format.
func rendererNamed(name string) renderer {
	for _, r := range renderers {
		if r.name == name {
			return r
		}
	}
	panic("no renderer " + name)
}

// TestGolden renders every case in every format and compares the bytes
// with testdata/golden (go test -update rewrites them).
func TestGolden(t *testing.T) {
	for _, c := range cases() {
		for _, r := range renderers {
			t.Run(c.name+"/"+r.name, func(t *testing.T) {
				got, err := r.render(c.a, c.ctx)
				require.NoError(t, err)
				again, err := r.render(c.a, c.ctx)
				require.NoError(t, err)
				require.Equal(t, got, again, "rendering is deterministic")
				path := goldenPath(c, r)
				if *update {
					require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
					require.NoError(t, os.WriteFile(path, got, 0o644))
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err, "run go test -update to create the golden files")
				require.Equal(t, string(want), string(got))
			})
		}
	}
}

// TestNoAnalystNames: issued_by and approved_by never reach a partner.
func TestNoAnalystNames(t *testing.T) {
	for _, c := range cases() {
		c.a.IssuedBy, c.a.ApprovedBy = analyst, supervisor
		for _, r := range renderers {
			out, err := r.render(c.a, c.ctx)
			require.NoError(t, err)
			for _, name := range []string{analyst, supervisor, "issued_by", "approved_by", "approved_at"} {
				require.False(t, bytes.Contains(out, []byte(name)), "%s %s output contains %q", c.name, r.name, name)
			}
		}
	}
}

// TestContextErrors: a renderer refuses what it cannot render faithfully,
// naming the field.
func TestContextErrors(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(a *alerts.Alert, ctx *formats.Context)
		field string
	}{
		{"no agency", func(_ *alerts.Alert, ctx *formats.Context) { ctx.Agency = "" }, "context.agency"},
		{"no issued_at", func(a *alerts.Alert, _ *formats.Context) { a.IssuedAt = nil }, "issued_at"},
		{"no id", func(a *alerts.Alert, _ *formats.Context) { a.ID = "" }, "id"},
		{"update without root", func(a *alerts.Alert, ctx *formats.Context) {
			a.Type, a.References = alerts.TypeUpdate, []string{"x1"}
		}, "context.root"},
		{"root without its time", func(_ *alerts.Alert, ctx *formats.Context) { ctx.Root = "other" }, "context.root_issued_at"},
		{"root after the alert", func(a *alerts.Alert, ctx *formats.Context) {
			ctx.Root, ctx.RootIssuedAt = "other", a.IssuedAt.Add(time.Hour)
		}, "context.root_issued_at"},
		{"unknown indicator type", func(a *alerts.Alert, _ *formats.Context) {
			a.Indicators = append(a.Indicators, alerts.Indicator{Type: "bitcoin", Value: "x"})
		}, "indicators[11].type"},
		{"bad TLP", func(a *alerts.Alert, _ *formats.Context) { a.TLP = "WHITE" }, "tlp"},
	}
	for _, tt := range tests {
		for _, r := range renderers {
			t.Run(tt.name+"/"+r.name, func(t *testing.T) {
				a, ctx := rootAlert(), formats.Context{Agency: agency, Sender: sender}
				tt.edit(a, &ctx)
				_, err := r.render(a, ctx)
				require.ErrorContains(t, err, tt.field+":")
			})
		}
	}
	t.Run("cap sender", func(t *testing.T) {
		for _, s := range []string{"", "alerts desk@nca.example", "a,b", "a<b", "a&b"} {
			_, err := formats.CAP(rootAlert(), formats.Context{Agency: agency, Sender: s})
			require.ErrorContains(t, err, "context.sender:", "sender %q", s)
		}
	})
	t.Run("cap reference without its time", func(t *testing.T) {
		c := cases()[1]
		c.ctx.References = nil
		_, err := formats.CAP(c.a, c.ctx)
		require.ErrorContains(t, err, "references[0]:")
	})
}

func TestFormats(t *testing.T) {
	require.Equal(t, "application/stix+json;version=2.1", formats.FormatSTIX.ContentType())
	require.Equal(t, "application/json", formats.FormatMISP.ContentType())
	require.Equal(t, "application/cap+xml", formats.FormatCAP.ContentType())
	require.Equal(t, "application/json", formats.FormatHerald.ContentType())
	for _, f := range formats.Formats {
		require.True(t, f.Valid(), f)
	}
	require.False(t, formats.Format("xml").Valid())
}
