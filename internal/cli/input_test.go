package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/record"
)

// TestValidateYAMLNamesABadTime: a time in a YAML alert that is not RFC
// 3339 names its field as in JSON, where it printed only the parser's
// complaint (`decode alert: parsing time "tomorrow"…`).
func TestValidateYAMLNamesABadTime(t *testing.T) {
	alert := "title: Car wash\nseverity: severe\naudience:\n  sectors: [care]\nmarking: OFFICIAL\ntlp: GREEN\n" +
		"handling:\n  code: P\nexpires_at: tomorrow\n"
	code, out, errOut := run(t, alert, "validate", "-")
	require.Equal(t, 2, code, out)
	assert.Contains(t, errOut, `  expires_at: must be an RFC 3339 time such as 2026-12-01T09:00:00Z, not "tomorrow"`)
	assert.NotContains(t, errOut, "parsing time")
}

// TestValidateRefusesAnArray: an alert that is a JSON array says the
// alert must be an object, without Go's type names.
func TestValidateRefusesAnArray(t *testing.T) {
	code, out, errOut := run(t, `[{"title":"Car wash"}]`, "validate", "-")
	require.Equal(t, 2, code, out)
	assert.Equal(t, "herald: the alert must be a JSON object, not an array\n", errOut)
}

// TestSubscribersPutRefusesAKeyTwiceAndBytesNotUTF8: herald subscribers
// put and import name the field of a key given twice (also in another
// case) or of bytes that are not UTF-8, in JSON and YAML, where YAML named
// a line and JSON nothing.
func TestSubscribersPutRefusesAKeyTwiceAndBytesNotUTF8(t *testing.T) {
	for name, c := range map[string]struct{ cmd, in, want string }{
		"JSON key twice":       {"put", `{"id":"acme","name":"Acme","kind":"business","clearance":"GREEN","clearance":"RED"}`, "  clearance: is given more than once"},
		"JSON in another case": {"put", `{"id":"acme","name":"Acme","kind":"business","sectors":["care"],"Sectors":["retail"]}`, "  Sectors: is given more than once"},
		"YAML key twice":       {"import", "- id: acme\n  email:\n  - address: soc@acme.example\n    address: x@evil.example\n", "  [0].email[0].address: is given more than once"},
		"YAML not UTF-8":       {"put", "id: acme\nname: Acme \xffLtd\nkind: business\n", "  name: is not UTF-8 text (byte 0xff at offset 20)"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := run(t, c.in, "subscribers", c.cmd, "-")
			require.Equal(t, 2, code, out)
			assert.Contains(t, errOut, "herald: invalid subscriber:\n")
			assert.Contains(t, errOut, c.want)
		})
	}
}

// TestPublishRecordsAnAlertRefusedBeforeItIsRead: herald publish of a
// file that is not an alert (a key twice, bytes not UTF-8, not JSON or
// YAML, an array) records the refusal in the audit trail, naming the
// fields and never their values, as it records an invalid alert.
func TestPublishRecordsAnAlertRefusedBeforeItIsRead(t *testing.T) {
	onBroker(t)
	alert := `{"title":"Car wash","severity":"severe","audience":{"sectors":["care"]},` +
		`"marking":"OFFICIAL","tlp":"GREEN","handling":{"code":"P"}}`
	for _, in := range []string{
		strings.Replace(alert, `"tlp":"GREEN"`, `"tlp":"RED","tlp":"GREEN"`, 1),
		strings.Replace(alert, "Car wash", "Car \xffwash", 1),
		"title: [unclosed\n",
		"[" + alert + "]",
	} {
		code, out, errOut := run(t, in, "publish", "-")
		require.Equal(t, 2, code, "%s%s", out, errOut)
	}
	code, out, errOut := run(t, "", "audit", "list", "--action", record.ActionPublish, "--output", "json")
	require.Equal(t, 0, code, errOut)
	var l struct {
		Entries []record.Audit `json:"entries"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &l), out)
	var reasons []string
	for _, au := range l.Entries {
		assert.Equal(t, record.OutcomeRefused, au.Outcome)
		assert.True(t, strings.HasPrefix(au.Actor, "cli:"), au.Actor)
		reasons = append(reasons, au.Reason)
	}
	assert.ElementsMatch(t, []string{"invalid alert: tlp", "invalid alert: title", "the alert could not be read as JSON or YAML",
		"the alert must be a JSON object, not an array"}, reasons)
}
