package alerts_test

import (
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
)

// fieldsOf returns the fields err names, failing unless it is a
// *alerts.ValidationError.
func fieldsOf(t *testing.T, err error) map[string]string {
	t.Helper()
	var v *alerts.ValidationError
	require.ErrorAs(t, err, &v)
	out := map[string]string{}
	for _, f := range v.Fields {
		out[f.Field] = f.Message
	}
	return out
}

// TestScreenJSON: a key given twice (also in another case, as
// encoding/json matches keys to fields ignoring case) and bytes that are
// not UTF-8 are refused naming the field by its path; JSON that is not an
// object is refused without Go's type names; what is fine passes.
func TestScreenJSON(t *testing.T) {
	tests := []struct {
		name, in, field, message string
	}{
		{"a key twice", `{"clearance":"GREEN","name":"x","clearance":"RED"}`, "clearance", "is given more than once"},
		{"in another case", `{"clearance":"GREEN","Clearance":"RED"}`, "Clearance", "is given more than once"},
		{"nested in a list", `{"email":[{"address":"a@b.example"},{"address":"c@d.example","ADDRESS":"e@f.example"}]}`, "email[1].ADDRESS", "is given more than once"},
		{"not UTF-8", "{\"email\":[{\"address\":\"a@b.example\"},{\"address\":\"c\xff@d.example\"}]}", "email[1].address", "is not UTF-8 text (byte 0xff at offset 49)"},
		{"not UTF-8 in a key", "{\"na\xffme\":\"x\"}", "subscriber", "is not UTF-8 text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := alerts.ScreenJSON([]byte(tt.in), "subscriber")
			assert.ErrorContains(t, err, "invalid subscriber")
			assert.Contains(t, fieldsOf(t, err)[tt.field], tt.message, "%v", err)
		})
	}
	for in, kind := range map[string]string{`[{"id":"a"}]`: "an array", `"a"`: "a string", `42`: "a number", `null`: "null"} {
		err := alerts.ScreenJSON([]byte(in), "request")
		assert.True(t, errors.Is(err, alerts.ErrNotObject), "%s: %v", in, err)
		assert.EqualError(t, err, "the request must be a JSON object, not "+kind)
	}
	// Not JSON at all is the decoder's to explain.
	assert.NoError(t, alerts.ScreenJSON([]byte(`{"id": `), "request"))
	assert.NoError(t, alerts.ScreenJSON([]byte(`{"id":"a","email":[{"address":"a"},{"address":"b"}],"name":"Ünïcode"}`), "request"))
}

// TestDecodeInputRefusesAnArray: an alert that is JSON but not an object
// says so without Go's type names.
func TestDecodeInputRefusesAnArray(t *testing.T) {
	_, err := alerts.DecodeInput([]byte(`[{"title":"x"}]`))
	require.ErrorIs(t, err, alerts.ErrNotObject)
	assert.EqualError(t, err, "the alert must be a JSON object, not an array")
	assert.NotContains(t, err.Error(), "alerts.Alert")
}

// TestScreenYAML: the same refusals in YAML, each naming its field by its
// path, where the YAML decoder refused a key twice naming a line, and
// bytes not UTF-8 naming nothing.
func TestScreenYAML(t *testing.T) {
	tests := []struct {
		name, in, field, message string
	}{
		{"a key twice", "id: acme\nclearance: GREEN\nclearance: RED\n", "clearance", "is given more than once"},
		{"in another case", "id: acme\nclearance: GREEN\nClearance: RED\n", "Clearance", "is given more than once"},
		{"in a list", "- id: acme\n  email:\n  - address: a@b.example\n  - address: c@d.example\n    address: e@f.example\n", "[0].email[1].address", "is given more than once"},
		{"JSON in a list", `[{"id":"acme","sectors":["care"],"sectors":["retail"]}]`, "[0].sectors", "is given more than once"},
		{"not UTF-8", "id: acme\nemail:\n- address: a@b.example\n- address: c\xff@d.example\n", "email[1].address", "is not UTF-8 text (byte 0xff at offset 51)"},
		{"not UTF-8 in a block", "id: acme\nname: |\n  Acme\n  Ltd \xff\nclearance: RED\n", "name", "is not UTF-8 text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := alerts.ScreenYAML([]byte(tt.in), "subscriber")
			assert.Contains(t, fieldsOf(t, err)[tt.field], tt.message, "%v", err)
		})
	}
	assert.NoError(t, alerts.ScreenYAML([]byte("- id: a\n  name: Ünïcode\n- id: b\n"), "subscriber"))
}

// TestDecodeYAMLNamesABadTime: a time in a YAML alert that is not RFC
// 3339 names its field as in JSON, where it printed only the parser's
// complaint.
func TestDecodeYAMLNamesABadTime(t *testing.T) {
	_, err := alerts.DecodeYAML([]byte("title: Car wash\nexpires_at: tomorrow\nnot_before: 2026-12-01T09:00:00Z\n"))
	fields := fieldsOf(t, err)
	assert.Equal(t, map[string]string{"expires_at": `must be an RFC 3339 time such as 2026-12-01T09:00:00Z, not "tomorrow"`}, fields)
	_, errJSON := alerts.DecodeInput([]byte(`{"title":"Car wash","expires_at":"tomorrow"}`))
	assert.Equal(t, fields, fieldsOf(t, errJSON), "the same rule in JSON")

	a, err := alerts.DecodeYAML([]byte("title: Car wash\nexpires_at: 2026-12-01T09:00:00Z\nnot_before:\n"))
	require.NoError(t, err)
	assert.Equal(t, 2026, a.ExpiresAt.Year())
}

// TestScreensBoundDeepNesting: input nested far deeper than any field
// of an alert or a partner record (an API body of 128 KiB holds 40,000
// levels) is refused naming the field it starts in, with memory bounded
// by the input: naming every level's path cost memory quadratic in the
// depth (1.3 GB for an 80 KiB body, enough to stop the API).
func TestScreensBoundDeepNesting(t *testing.T) {
	for name, tc := range map[string]struct {
		body   string
		screen func([]byte, string) error
	}{
		"json": {`{"title":"Car wash","audience":{"sectors":` + strings.Repeat("[0,", 20000) + `0` + strings.Repeat("]", 20000) + `}}`, alerts.ScreenJSON},
		// YAML's parser refuses 10,000 levels itself (the decoder then
		// says why); below that the screen stops at its own bound.
		"yaml": {"title: Car wash\naudience:\n  sectors: " + strings.Repeat("[0,", 5000) + `0` + strings.Repeat("]", 5000) + "\n", alerts.ScreenYAML},
	} {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := tc.screen([]byte(tc.body), "alert")
			runtime.ReadMemStats(&after)
			if name == "json" {
				assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "bytes allocated for a %d-byte body", len(tc.body))
			}
			var v *alerts.ValidationError
			require.True(t, errors.As(err, &v), "%v", err)
			require.Len(t, v.Fields, 1, "%v", err)
			assert.True(t, strings.HasPrefix(v.Fields[0].Field, "audience.sectors[1]"), v.Fields[0].Field)
			assert.Contains(t, v.Fields[0].Message, "nested deeper than")
		})
	}
}

// TestScreensFindAKeyTwiceAnyCaseAmongMany: a key given twice in any case
// that encoding/json matches to one field (ASCII case, or the Kelvin sign
// for "k") is refused, among many distinct keys.
func TestScreensFindAKeyTwiceAnyCaseAmongMany(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"title":"Car wash","tlp":"GREEN","links":{`)
	for i := range 1000 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + strconv.Itoa(i) + `":0`)
	}
	b.WriteString(`},"TLP":"RED","mar` + "\u212A" + `ing":"OFFICIAL","marking":"OFFICIAL"}`)
	for name, screen := range map[string]func([]byte, string) error{"json": alerts.ScreenJSON, "yaml": alerts.ScreenYAML} {
		err := screen([]byte(b.String()), "alert")
		var v *alerts.ValidationError
		require.True(t, errors.As(err, &v), "%s: %v", name, err)
		var fields []string
		for _, f := range v.Fields {
			fields = append(fields, f.Field)
		}
		assert.Equal(t, []string{"TLP", "marking"}, fields, name)
	}
}
