package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
)

func TestPrintable(t *testing.T) {
	tests := []struct {
		name, in, line, lines string
	}{
		{"plain", "Acme Builders Ltd", "Acme Builders Ltd", "Acme Builders Ltd"},
		{"other scripts, emoji, backslash", `شركة Ελλάδα ⚠️ C:\dir`, `شركة Ελλάδα ⚠️ C:\dir`, `شركة Ελλάδα ⚠️ C:\dir`},
		{"U+FFFD is a character", "a\ufffdb", "a\ufffdb", "a\ufffdb"},
		{"ANSI colour", "\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`, `\x1b[31mred\x1b[0m`},
		{"NUL BEL BS", "\x00\a\b", `\x00\a\b`, `\x00\a\b`},
		{"DEL", "a\x7fb", `a\x7fb`, `a\x7fb`},
		{"C1 CSI", "a\u009b31m", `a\u009b31m`, `a\u009b31m`},
		{"NEL", "a\u0085b", `a\u0085b`, `a\u0085b`},
		{"LF", "a\nb", `a\nb`, "a\nb"},
		{"tab", "a\tb", `a\tb`, "a\tb"},
		{"CR alone", "ok\rFAIL", `ok\rFAIL`, `ok\rFAIL`},
		{"CRLF", "a\r\nb", `a\r\nb`, "a\nb"},
		{"LRE", "a\u202ab", `a\u202ab`, `a\u202ab`},
		{"RLE", "a\u202bb", `a\u202bb`, `a\u202bb`},
		{"PDF", "a\u202cb", `a\u202cb`, `a\u202cb`},
		{"LRO", "a\u202db", `a\u202db`, `a\u202db`},
		{"RLO", "a\u202eb", `a\u202eb`, `a\u202eb`},
		{"LRI", "a\u2066b", `a\u2066b`, `a\u2066b`},
		{"RLI", "a\u2067b", `a\u2067b`, `a\u2067b`},
		{"FSI", "a\u2068b", `a\u2068b`, `a\u2068b`},
		{"PDI", "a\u2069b", `a\u2069b`, `a\u2069b`},
		{"ZWSP", "a\u200bb", `a\u200bb`, `a\u200bb`},
		{"ZWJ", "a\u200db", `a\u200db`, `a\u200db`},
		{"BOM", "\ufeffa", `\ufeffa`, `\ufeffa`},
		{"soft hyphen", "a\u00adb", `a\u00adb`, `a\u00adb`},
		{"line separator", "a\u2028b", `a\u2028b`, `a\u2028b`},
		{"paragraph separator", "a\u2029b", `a\u2029b`, `a\u2029b`},
		{"tag character", "a\U000e0041", `a\U000e0041`, `a\U000e0041`},
		{"invalid UTF-8", "a\xffb\xc3", `a\xffb\xc3`, `a\xffb\xc3`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.line, printable(tc.in))
			assert.Equal(t, tc.lines, printableLines(tc.in))
			for _, r := range printable(tc.in) {
				assert.True(t, alerts.LineRune(r), "%U left in a line", r)
			}
		})
	}
}

func TestJSONSafe(t *testing.T) {
	in := map[string]string{"name": "a\x1b[31m\x7f\u0085\u009b\u202e\u2066\u200b\u200d\ufeff\u00ad\u2028\u2029\U000e0041 ok é ⚠️ <b>"}
	enc, err := json.Marshal(in)
	require.NoError(t, err)
	safe := jsonSafe(enc)
	assert.Equal(t, `{"name":"a\u001b[31m\u007f\u0085\u009b\u202e\u2066\u200b\u200d\ufeff\u00ad\u2028\u2029\udb40\udc41 ok é ⚠️ \u003cb\u003e"}`, string(safe))
	var out map[string]string
	require.NoError(t, json.Unmarshal(safe, &out))
	assert.Equal(t, in, out, "the escapes decode to the same value")

	plain := []byte(`{"name": "Acme Ltd — ⚠️"}` + "\n")
	assert.Equal(t, plain, jsonSafe(plain))
}

// TestExecuteEscapesErrors checks that Execute prints a validation error's
// fields and messages, and any other error, with data escaped; the lines
// of a multi-line error stay lines.
func TestExecuteEscapesErrors(t *testing.T) {
	saved := extraCommands
	t.Cleanup(func() { extraCommands = saved })
	var fail error
	extraCommands = append(slices.Clone(saved), func(*env) *cobra.Command {
		return &cobra.Command{Use: "fail", RunE: func(*cobra.Command, []string) error { return fail }}
	})
	execute := func() (int, string) {
		var out, errb bytes.Buffer
		code := Execute(context.Background(), []string{"fail"}, strings.NewReader(""), &out, &errb)
		return code, errb.String()
	}

	fail = &alerts.ValidationError{What: "invalid subscriber", Fields: []alerts.FieldError{
		{Field: "webhooks[0].url\x1b[2J", Message: "https://x.example/\u202e is refused\r\nherald: all good"},
	}}
	code, errOut := execute()
	assert.Equal(t, ExitInvalid, code)
	assert.Equal(t, "herald: invalid subscriber:\n  webhooks[0].url\\x1b[2J: https://x.example/\\u202e is refused\\r\\nherald: all good\n", errOut)

	fail = errors.Join(errors.New("deliver webhook: HTTP 500: \x1b]0;pwned\a\u2067body"), errors.New("second error"))
	code, errOut = execute()
	assert.Equal(t, ExitFailure, code)
	assert.Equal(t, "herald: deliver webhook: HTTP 500: \\x1b]0;pwned\\a\\u2067body\nsecond error\n", errOut)
}
