package alerts_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/taxonomy"
)

// now is the validation time for fixtures: their expires_at and not_before
// lie in 2030-2031, and "expired" is in 2020.
var now = time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)

// fields returns the field names of a *alerts.ValidationError.
func fields(t *testing.T, err error) []string {
	t.Helper()
	var v *alerts.ValidationError
	require.True(t, errors.As(err, &v), "want *alerts.ValidationError, got %T: %v", err, err)
	var out []string
	for _, f := range v.Fields {
		require.NotEmpty(t, f.Message, f.Field)
		out = append(out, f.Field)
	}
	return out
}

// TestInvalidFixtures checks that every fixture under testdata/invalid is
// rejected with exactly the named fields.
func TestInvalidFixtures(t *testing.T) {
	want := map[string][]string{
		"bad-id":                        {"id"},
		"id-too-long":                   {"id"},
		"bad-type":                      {"type"},
		"update-without-references":     {"references"},
		"cancel-without-references":     {"references"},
		"alert-with-references":         {"references"},
		"self-reference":                {"references[0]"},
		"bad-reference":                 {"references[0]"},
		"bad-status":                    {"status"},
		"missing-title":                 {"title"},
		"title-crlf":                    {"title"},
		"title-tab":                     {"title"},
		"title-too-long":                {"title"},
		"title-bidi-override":           {"title"},
		"invisible-characters":          {"indicators[0].value", "actions[0]"},
		"body-bidi-isolate":             {"body"},
		"summary-too-long":              {"summary"},
		"body-control":                  {"body"},
		"body-too-long":                 {"body"},
		"bad-indicator":                 {"indicators[1].type", "indicators[1].value"},
		"bad-action":                    {"actions[1]"},
		"missing-severity":              {"severity"},
		"bad-severity":                  {"severity"},
		"empty-audience":                {"audience"},
		"unknown-sector":                {"audience.sectors[1]"},
		"unknown-region":                {"audience.regions[0]"},
		"bad-named-subscriber":          {"audience.subscribers[1]"},
		"missing-marking":               {"marking"},
		"secret-marking":                {"marking"},
		"top-secret-marking":            {"marking"},
		"official-lower-case-unknown":   {"marking"},
		"missing-tlp":                   {"tlp"},
		"bad-tlp":                       {"tlp"},
		"missing-handling":              {"handling.code"},
		"bad-handling-code":             {"handling.code"},
		"handling-c-without-conditions": {"handling.conditions"},
		"handling-p-with-conditions":    {"handling.conditions"},
		"bad-grading":                   {"grading.source", "grading.intelligence"},
		"expired":                       {"expires_at"},
		"expires-before-not-before":     {"expires_at"},
		"every-field":                   {"id", "type", "status", "title", "severity", "audience", "marking", "tlp", "handling.code"},
	}
	files, err := filepath.Glob("testdata/invalid/*.json")
	require.NoError(t, err)
	require.Len(t, files, len(want), "every fixture needs its expected fields, and every entry a fixture")
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			exp, ok := want[name]
			require.True(t, ok, "no expected fields for %s", file)
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			a, err := alerts.Parse(data, now, taxonomy.Default())
			require.Error(t, err)
			require.NotNil(t, a, "Parse returns the decoded alert with its validation error")
			assert.ElementsMatch(t, exp, fields(t, err))
			assert.True(t, strings.HasPrefix(err.Error(), "invalid alert: "), err.Error())
		})
	}
}

func TestValidFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			a, err := alerts.Parse(data, now, taxonomy.Default())
			require.NoError(t, err)
			assert.True(t, a.TLP.Valid())
			assert.NotEmpty(t, a.Type)
			assert.NotEmpty(t, a.Status)
		})
	}
}

func TestNormalizeFull(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/full.json")
	require.NoError(t, err)
	a, err := alerts.Parse(data, now, taxonomy.Default())
	require.NoError(t, err)
	assert.Equal(t, alerts.TLPAmberStrict, a.TLP)
	assert.Equal(t, alerts.SeverityExtreme, a.Severity)
	assert.Equal(t, "C", a.Handling.Code)
	assert.Equal(t, "B", a.Grading.Intelligence)
	assert.Equal(t, "2/B", a.Grading.Label())
	assert.Equal(t, alerts.TypeUpdate, a.Type)
	assert.Equal(t, "alert.updated", a.Event())
	assert.True(t, a.Named("acme"))
	assert.False(t, a.Named("other"))
	assert.True(t, a.Status.IsTest())
}

func TestTLPPrefix(t *testing.T) {
	for _, in := range []string{"TLP:AMBER", "tlp:amber", " TLP:Amber ", "AMBER", "amber"} {
		t.Run(in, func(t *testing.T) {
			data, err := os.ReadFile("testdata/valid/minimal.json")
			require.NoError(t, err)
			var m map[string]any
			require.NoError(t, json.Unmarshal(data, &m))
			m["tlp"] = in
			data, err = json.Marshal(m)
			require.NoError(t, err)
			a, err := alerts.Parse(data, now, taxonomy.Default())
			require.NoError(t, err)
			assert.Equal(t, alerts.TLPAmber, a.TLP)
			assert.Equal(t, "TLP:AMBER", a.TLP.Label())
		})
	}
	assert.Equal(t, alerts.TLP("TLP:TLP:RED"[4:]), alerts.NormalizeTLP("TLP:TLP:RED"), "only one prefix is stripped")
	assert.False(t, alerts.NormalizeTLP("TLP:TLP:RED").Valid())
}

func TestDecodeRejects(t *testing.T) {
	minimal, err := os.ReadFile("testdata/valid/minimal.json")
	require.NoError(t, err)
	tests := []struct {
		name, data, want string
	}{
		{"unknown field", `{"title":"t","priority":"high"}`, `unknown field "priority"`},
		{"unknown nested field", `{"title":"t","audience":{"sectors":["care"],"everyone":true}}`, `unknown field "everyone"`},
		{"unknown handling field", `{"handling":{"code":"P","caveat":"x"}}`, `unknown field "caveat"`},
		{"trailing data", string(minimal) + `{}`, "trailing data"},
		{"not an object", `["title"]`, "decode alert"},
		{"wrong type", `{"title":1}`, "decode alert"},
		{"bad time", `{"expires_at":"tomorrow"}`, "decode alert"},
		{"empty", ``, "decode alert"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := alerts.Decode([]byte(tc.data))
			require.Error(t, err)
			assert.Nil(t, a)
			assert.Contains(t, err.Error(), tc.want)
			_, err = alerts.Parse([]byte(tc.data), now, nil)
			require.Error(t, err)
		})
	}
}

func TestDecodeYAML(t *testing.T) {
	a, err := alerts.DecodeYAML([]byte(`
title: Workers housed at a car wash
severity: severe
audience: {sectors: [car-washes]}
marking: OFFICIAL
tlp: TLP:GREEN
handling: {code: P}
expires_at: 2030-01-01T00:00:00Z
`))
	require.NoError(t, err)
	a.Normalize()
	require.NoError(t, a.Validate(now, taxonomy.Default()))
	assert.Equal(t, alerts.TLPGreen, a.TLP)
	require.NotNil(t, a.ExpiresAt)
	assert.True(t, a.ExpiresAt.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)))

	_, err = alerts.DecodeYAML([]byte("title: t\nseverity: minor\nclassification: SECRET\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "classification")
}

func TestValidateRules(t *testing.T) {
	base := func() *alerts.Alert {
		a := &alerts.Alert{Title: "t", Severity: alerts.SeverityMinor, Audience: alerts.Audience{Sectors: []string{"care"}},
			Marking: alerts.MarkingOfficial, TLP: alerts.TLPClear, Handling: alerts.Handling{Code: "P"}}
		a.Normalize()
		return a
	}
	past, justNow, later := now.Add(-time.Minute), now, now.Add(time.Minute)
	tests := []struct {
		name   string
		mutate func(*alerts.Alert)
		want   []string
	}{
		{"valid", func(*alerts.Alert) {}, nil},
		{"expires_at in the past", func(a *alerts.Alert) { a.ExpiresAt = &past }, []string{"expires_at"}},
		{"expires_at now", func(a *alerts.Alert) { a.ExpiresAt = &justNow }, []string{"expires_at"}},
		{"expires_at later", func(a *alerts.Alert) { a.ExpiresAt = &later }, nil},
		{"not_before in the past is fine", func(a *alerts.Alert) { a.NotBefore = &past }, nil},
		{"CRLF in title", func(a *alerts.Alert) { a.Title = "a\r\nb" }, []string{"title"}},
		{"LF in title", func(a *alerts.Alert) { a.Title = "a\nb" }, []string{"title"}},
		{"DEL in title", func(a *alerts.Alert) { a.Title = "a\x7fb" }, []string{"title"}},
		{"invalid UTF-8 in title", func(a *alerts.Alert) { a.Title = "a\xffb" }, []string{"title"}},
		{"200 characters of title", func(a *alerts.Alert) { a.Title = strings.Repeat("é", 200) }, nil},
		{"201 characters of title", func(a *alerts.Alert) { a.Title = strings.Repeat("é", 201) }, []string{"title"}},
		{"1000 characters of summary", func(a *alerts.Alert) { a.Summary = strings.Repeat("é", 1000) }, nil},
		{"64 KiB of body", func(a *alerts.Alert) { a.Body = strings.Repeat("b", 64<<10) }, nil},
		{"SECRET", func(a *alerts.Alert) { a.Marking = "SECRET" }, []string{"marking"}},
		{"TOP SECRET", func(a *alerts.Alert) { a.Marking = "TOP SECRET" }, []string{"marking"}},
		{"lower-case official", func(a *alerts.Alert) { a.Marking = "official" }, []string{"marking"}},
		{"update without references", func(a *alerts.Alert) { a.Type = alerts.TypeUpdate }, []string{"references"}},
		{"update with references", func(a *alerts.Alert) { a.Type = alerts.TypeUpdate; a.References = []string{"a0"} }, nil},
		{"named only", func(a *alerts.Alert) { a.Audience = alerts.Audience{Subscribers: []string{"acme"}} }, nil},
		{"regions only", func(a *alerts.Alert) { a.Audience = alerts.Audience{Regions: []string{"UK"}} }, []string{"audience"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := base()
			tc.mutate(a)
			err := a.Validate(now, taxonomy.Default())
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, tc.want, fields(t, err))
		})
	}
}

func TestValidateWithoutTaxonomy(t *testing.T) {
	a := &alerts.Alert{Title: "t", Severity: alerts.SeverityMinor, Audience: alerts.Audience{Sectors: []string{"mining"}, Regions: []string{"XX"}},
		Marking: alerts.MarkingOfficial, TLP: alerts.TLPClear, Handling: alerts.Handling{Code: "P"}}
	a.Normalize()
	require.NoError(t, a.Validate(now, nil))
	require.Error(t, a.Validate(now, taxonomy.Default()))
}

func TestNormalizeDefaults(t *testing.T) {
	a := &alerts.Alert{TLP: "tlp:red", Severity: " Severe ", Handling: alerts.Handling{Code: " c "}}
	a.Normalize()
	assert.Equal(t, alerts.TypeAlert, a.Type)
	assert.Equal(t, alerts.StatusActual, a.Status)
	assert.Equal(t, alerts.TLPRed, a.TLP)
	assert.Equal(t, alerts.SeveritySevere, a.Severity)
	assert.Equal(t, "C", a.Handling.Code)
	b := &alerts.Alert{}
	b.Normalize()
	assert.Equal(t, alerts.TLP(""), b.TLP, "no default TLP")
	assert.Equal(t, alerts.Marking(""), b.Marking, "no default marking")
}

func TestMayFollow(t *testing.T) {
	orig := &alerts.Alert{ID: "a1", TLP: alerts.TLPAmber, Marking: alerts.MarkingOfficialSensitive}
	tests := []struct {
		tlp     alerts.TLP
		marking alerts.Marking
		want    []string
	}{
		{alerts.TLPAmber, alerts.MarkingOfficialSensitive, nil},
		{alerts.TLPRed, alerts.MarkingOfficialSensitive, nil},
		{alerts.TLPGreen, alerts.MarkingOfficialSensitive, []string{"tlp"}},
		{alerts.TLPAmber, alerts.MarkingOfficial, []string{"marking"}},
		{alerts.TLPClear, alerts.MarkingOfficial, []string{"marking", "tlp"}},
	}
	for _, tc := range tests {
		t.Run(string(tc.tlp)+" "+string(tc.marking), func(t *testing.T) {
			a := &alerts.Alert{ID: "a2", Type: alerts.TypeUpdate, TLP: tc.tlp, Marking: tc.marking}
			err := a.MayFollow(orig)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, tc.want, fields(t, err))
		})
	}
}

func TestOrderings(t *testing.T) {
	tlps := []alerts.TLP{alerts.TLPClear, alerts.TLPGreen, alerts.TLPAmber, alerts.TLPAmberStrict, alerts.TLPRed}
	for i := 1; i < len(tlps); i++ {
		assert.True(t, tlps[i].Exceeds(tlps[i-1]))
		assert.False(t, tlps[i-1].Exceeds(tlps[i]))
		assert.False(t, tlps[i].Exceeds(tlps[i]))
	}
	assert.True(t, alerts.TLPClear.Exceeds(""), "every label exceeds an invalid limit")
	sev := []alerts.Severity{alerts.SeverityMinor, alerts.SeverityModerate, alerts.SeveritySevere, alerts.SeverityExtreme}
	for i := 1; i < len(sev); i++ {
		assert.Greater(t, sev[i].Rank(), sev[i-1].Rank())
	}
	assert.Zero(t, alerts.Severity("critical").Rank())
	assert.Zero(t, alerts.Marking("SECRET").Rank())
	assert.Greater(t, alerts.MarkingOfficialSensitive.Rank(), alerts.MarkingOfficial.Rank())
}

func TestNewID(t *testing.T) {
	a, b := alerts.NewID(now), alerts.NewID(now.Add(time.Millisecond))
	assert.True(t, alerts.ValidID(a), a)
	assert.NotEqual(t, a, b)
	assert.Less(t, a, b, "ids sort by time")
	assert.Equal(t, strings.ToLower(a), a)
}

func TestReservedIDPrefix(t *testing.T) {
	a := &alerts.Alert{ID: alerts.ReservedIDPrefix + "abc", Title: "t", Severity: "minor", TLP: "GREEN", Marking: "OFFICIAL",
		Handling: alerts.Handling{Code: "P"}, Audience: alerts.Audience{Sectors: []string{"care"}}}
	a.Normalize()
	var v *alerts.ValidationError
	require.ErrorAs(t, a.Validate(time.Now(), nil), &v)
	require.Len(t, v.Fields, 1)
	require.Equal(t, "id", v.Fields[0].Field)
	require.Contains(t, v.Fields[0].Message, "reserved")
}
