package alerts_test

import (
	"errors"
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
