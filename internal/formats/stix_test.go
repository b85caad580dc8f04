package formats_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/formats"
	"github.com/herald-alerts/herald/internal/formats/formatstest"
)

// stixSchemas returns the OASIS schemas' validator (formatstest, shared
// with the packages that serve STIX).
func stixSchemas(t testing.TB) *formatstest.STIXValidator { return formatstest.STIX(t) }

// TestSTIXSchemas validates every golden bundle (TestGolden holds them
// equal to what STIX renders), object by object.
func TestSTIXSchemas(t *testing.T) {
	v := stixSchemas(t)
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			b, err := os.ReadFile(goldenPath(c, rendererNamed("stix")))
			require.NoError(t, err)
			require.NoError(t, v.Validate(b))
		})
	}
	t.Run("every TLP", func(t *testing.T) {
		for _, tlp := range []alerts.TLP{alerts.TLPClear, alerts.TLPGreen, alerts.TLPAmber, alerts.TLPAmberStrict, alerts.TLPRed} {
			a := rootAlert()
			a.TLP = tlp
			b, err := formats.STIX(a, formats.Context{Agency: agency})
			require.NoError(t, err)
			require.NoError(t, v.Validate(b), tlp)
		}
	})
}

// TestBundleSchemaOmitsNote pins the defect validate works around: the
// vendored bundle schema refuses a bundle holding a valid note. When it
// fails, the schemas were updated and fixed: drop
// formatstest.BundleSchemaOmits.
func TestBundleSchemaOmitsNote(t *testing.T) {
	v := stixSchemas(t)
	objects := stixObjects(t, rootAlert(), formats.Context{Agency: agency})
	note := byType(objects, "note")[0]
	require.NoError(t, v.Object("note").Validate(roundTrip(t, note)), "the note is valid by the note schema")
	bundle := map[string]any{"type": "bundle", "id": "bundle--5a6a3aca-a526-59a2-a68b-7b4efc4b3816", "objects": []any{note}}
	require.Error(t, v.Bundle().Validate(roundTrip(t, bundle)), "bundle.json refuses it")
}

// roundTrip re-decodes v as the validator expects its instances.
func roundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	require.NoError(t, err)
	return inst
}

// TestSTIXSchemasReject shows the validation can fail: each broken bundle
// is refused.
func TestSTIXSchemasReject(t *testing.T) {
	v := stixSchemas(t)
	good, err := formats.STIX(rootAlert(), formats.Context{Agency: agency})
	require.NoError(t, err)
	require.NoError(t, v.Validate(good))
	tests := []struct {
		name   string
		mutate func(objects []map[string]any)
	}{
		{"report without published", func(o []map[string]any) { delete(byType(o, "report")[0], "published") }},
		{"report without object_refs", func(o []map[string]any) { byType(o, "report")[0]["object_refs"] = []any{} }},
		{"created without milliseconds", func(o []map[string]any) { byType(o, "indicator")[0]["created"] = "2026-11-30T09:15:30Z" }},
		{"id not a UUID", func(o []map[string]any) { byType(o, "identity")[0]["id"] = "identity--agency" }},
		{"indicator without pattern_type", func(o []map[string]any) { delete(byType(o, "indicator")[0], "pattern_type") }},
		{"note without content", func(o []map[string]any) { delete(byType(o, "note")[0], "content") }},
		{"statement marking without a statement", func(o []map[string]any) {
			for _, m := range byType(o, "marking-definition") {
				if m["definition_type"] == "statement" {
					m["definition"] = map[string]any{"text": "x"}
				}
			}
		}},
		{"TLP marking with the wrong name", func(o []map[string]any) { byType(o, "marking-definition")[1]["name"] = "TLP:WHITE" }},
		{"TLP marking with the wrong level", func(o []map[string]any) {
			ext := byType(o, "marking-definition")[1]["extensions"].(map[string]any)[formats.TLP2Extension].(map[string]any)
			ext["tlp_2_0"] = "white"
		}},
		{"custom property that is not lower case", func(o []map[string]any) { byType(o, "report")[0]["Severity"] = "severe" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bundle map[string]any
			require.NoError(t, json.Unmarshal(good, &bundle))
			var objects []map[string]any
			for _, o := range bundle["objects"].([]any) {
				objects = append(objects, o.(map[string]any))
			}
			tt.mutate(objects)
			broken, err := json.Marshal(bundle)
			require.NoError(t, err)
			require.Error(t, v.Validate(broken))
		})
	}
}

func byType(objects []map[string]any, typ string) []map[string]any {
	var out []map[string]any
	for _, o := range objects {
		if o["type"] == typ {
			out = append(out, o)
		}
	}
	return out
}

// parsePattern parses the one pattern shape Herald writes, by the STIX 2.1
// patterning grammar (testdata/stix2-json-schemas/pattern_grammar):
// "[" objectType ":" property WS* "=" WS* StringLiteral "]", where
// StringLiteral is ' ( ~['\\] | \' | \\ )* '. It returns the object path
// and the unescaped value.
func parsePattern(p string) (path, value string, err error) {
	rest, ok := strings.CutPrefix(p, "[")
	if !ok {
		return "", "", errors.New("pattern does not open with [")
	}
	ident := func(hyphen bool) string {
		n := 0
		for n < len(rest) {
			c := rest[n]
			if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || n > 0 && (c >= '0' && c <= '9' || hyphen && c == '-') {
				n++
				continue
			}
			break
		}
		id := rest[:n]
		rest = rest[n:]
		return id
	}
	objectType := ident(true)
	if objectType == "" || !strings.HasPrefix(rest, ":") {
		return "", "", fmt.Errorf("no object type at %q", rest)
	}
	rest = rest[1:]
	prop := ident(false)
	if prop == "" {
		return "", "", fmt.Errorf("no property at %q", rest)
	}
	rest = strings.TrimLeft(rest, " \t\r\n")
	if rest, ok = strings.CutPrefix(rest, "="); !ok {
		return "", "", fmt.Errorf("no = at %q", rest)
	}
	rest = strings.TrimLeft(rest, " \t\r\n")
	if rest, ok = strings.CutPrefix(rest, "'"); !ok {
		return "", "", fmt.Errorf("no string literal at %q", rest)
	}
	var v strings.Builder
	for {
		if rest == "" {
			return "", "", errors.New("unterminated string literal")
		}
		c := rest[0]
		rest = rest[1:]
		if c == '\'' {
			break
		}
		if c == '\\' {
			if rest == "" || rest[0] != '\'' && rest[0] != '\\' {
				return "", "", fmt.Errorf("escape other than \\' or \\\\ before %q", rest)
			}
			c, rest = rest[0], rest[1:]
		}
		v.WriteByte(c)
	}
	if rest != "]" {
		return "", "", fmt.Errorf("pattern does not close with ] but %q", rest)
	}
	return objectType + ":" + prop, v.String(), nil
}

func TestSTIXPatternEscaping(t *testing.T) {
	for _, value := range []string{
		"plain@example.org", "o'neil@example.org", `back\slash`, `\'`, `''`, `\\`, `ends with \`, "ünïcödé.example", "]'[ ] = '",
	} {
		pattern := "[url:value = '" + formats.EscapeSTIXString(value) + "']"
		path, got, err := parsePattern(pattern)
		require.NoError(t, err, pattern)
		require.Equal(t, "url:value", path)
		require.Equal(t, value, got, pattern)
	}
	for _, bad := range []string{"[url:value = 'a'b']", `[url:value = 'a\b']`, "[url:value = 'a'", "url:value = 'a'", "[url: = 'a']"} {
		_, _, err := parsePattern(bad)
		require.Error(t, err, bad)
	}
}

// TestSTIXPatterns: every indicator of every golden bundle has a pattern of
// the expected shape whose value is the alert's indicator value.
func TestSTIXPatterns(t *testing.T) {
	paths := map[string]string{"Email address": "email-addr:value", "URL": "url:value", "Domain": "domain-name:value"}
	n := 0
	for _, c := range cases() {
		for _, o := range stixObjects(t, c.a, c.ctx) {
			if o["type"] != "indicator" {
				continue
			}
			n++
			path, value, err := parsePattern(o["pattern"].(string))
			require.NoError(t, err)
			label, want, _ := strings.Cut(o["name"].(string), ": ")
			require.Equal(t, paths[label], path)
			require.Equal(t, want, value)
			require.Equal(t, "stix", o["pattern_type"])
			require.Equal(t, "2.1", o["pattern_version"])
		}
	}
	require.Positive(t, n)
}

func stixObjects(t *testing.T, a *alerts.Alert, ctx formats.Context) []map[string]any {
	t.Helper()
	b, err := formats.STIX(a, ctx)
	require.NoError(t, err)
	var bundle struct {
		Objects []map[string]any `json:"objects"`
	}
	require.NoError(t, json.Unmarshal(b, &bundle))
	return bundle.Objects
}

func byID(objects []map[string]any) map[string]map[string]any {
	m := map[string]map[string]any{}
	for _, o := range objects {
		m[o["id"].(string)] = o
	}
	return m
}

// TestSTIXVersions: an update renders new versions of the same objects
// (same id and created, later modified) and revokes what it dropped; a
// cancel revokes everything.
func TestSTIXVersions(t *testing.T) {
	cs := cases()
	first, upd, cancel := byID(stixObjects(t, cs[0].a, cs[0].ctx)), byID(stixObjects(t, cs[1].a, cs[1].ctx)), byID(stixObjects(t, cs[2].a, cs[2].ctx))

	versioned := func(o map[string]any) bool { return o["type"] != "marking-definition" && o["type"] != "identity" }
	for id, o := range first {
		if !versioned(o) {
			continue
		}
		u, ok := upd[id]
		require.True(t, ok, "update keeps %s", id)
		require.Equal(t, o["created"], u["created"], id)
		require.Less(t, o["modified"].(string), u["modified"].(string), id)
		require.Equal(t, "2026-11-30T09:15:30.123Z", u["created"], id)
		require.Equal(t, "2026-12-01T10:00:00.000Z", u["modified"], id)
	}
	var report map[string]any
	for _, o := range upd {
		if o["type"] == "report" {
			report = o
		}
	}
	refs := report["object_refs"].([]any)
	var revoked []string
	for id, o := range upd {
		if !versioned(o) {
			continue
		}
		if o["revoked"] == true {
			revoked = append(revoked, o["abstract"].(string))
			require.NotContains(t, refs, id, "a revoked object is not part of the report")
		} else if o["type"] != "report" {
			require.Contains(t, refs, id)
		}
		require.Equal(t, "2026-11-30T09:15:30.123Z", o["created"], "created is the root's issued_at, also for new objects")
	}
	require.Equal(t, []string{"+44 7700 900123"}, revoked, "the update dropped the phone number")

	for id, o := range upd {
		if !versioned(o) {
			continue
		}
		c, ok := cancel[id]
		require.True(t, ok, "cancel carries %s", id)
		require.Equal(t, true, c["revoked"], id)
		require.Equal(t, o["created"], c["created"])
		require.Equal(t, "2026-12-02T08:00:00.000Z", c["modified"])
	}
	for id, o := range cancel {
		if versioned(o) {
			require.Equal(t, true, o["revoked"], id)
		}
	}
}

// TestSTIXMarkings: every object but the standard TLP markings carries
// the alert's markings (the identity TLP:CLEAR), and every referenced
// marking is in the bundle.
func TestSTIXMarkings(t *testing.T) {
	for _, c := range cases() {
		objects := stixObjects(t, c.a, c.ctx)
		ids := byID(objects)
		tlp := formats.TLPMarkingIDs[c.a.TLP]
		for _, o := range objects {
			id := o["id"].(string)
			if slices.Contains(mapsValues(formats.TLPMarkingIDs), id) {
				require.NotContains(t, o, "object_marking_refs", "standard objects are published unchanged")
				continue
			}
			refs, ok := o["object_marking_refs"].([]any)
			require.True(t, ok, "%s has object_marking_refs", id)
			for _, r := range refs {
				require.Contains(t, ids, r, "%s references a marking in the bundle", id)
			}
			switch o["type"] {
			case "identity":
				require.Equal(t, []any{formats.TLPMarkingIDs[alerts.TLPClear]}, refs)
			case "marking-definition":
				require.Equal(t, []any{tlp}, refs)
			default:
				require.Len(t, refs, 3, id)
				require.Equal(t, tlp, refs[0], id)
				var statements []string
				for _, r := range refs[1:] {
					statements = append(statements, ids[r.(string)]["definition"].(map[string]any)["statement"].(string))
				}
				require.Contains(t, statements[0], string(c.a.Marking))
				require.Contains(t, statements[1], "handling code "+c.a.Handling.Code)
			}
		}
	}
}

func mapsValues(m map[alerts.TLP]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestSTIXExercise: an exercise is visible on every object it concerns.
func TestSTIXExercise(t *testing.T) {
	c := cases()[3]
	for _, o := range stixObjects(t, c.a, c.ctx) {
		switch o["type"] {
		case "report", "indicator", "note":
			require.Contains(t, o["labels"], "status:exercise", o["id"])
		}
		if o["type"] == "report" {
			require.True(t, strings.HasPrefix(o["description"].(string), "EXERCISE:"))
		}
	}
}
