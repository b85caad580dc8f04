package alerts_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/taxonomy"
)

// char is one character a text field may or may not hold, and what the
// error message says of it.
type char struct {
	name string
	r    rune
	says string // the part of the message that names the character
}

// bidiControls are the embedding, override and isolate controls that no
// text field may hold ("Trojan Source").
var bidiControls = []char{
	{"LRE", '\u202a', "U+202A (LEFT-TO-RIGHT EMBEDDING)"},
	{"RLE", '\u202b', "U+202B (RIGHT-TO-LEFT EMBEDDING)"},
	{"PDF", '\u202c', "U+202C (POP DIRECTIONAL FORMATTING)"},
	{"LRO", '\u202d', "U+202D (LEFT-TO-RIGHT OVERRIDE)"},
	{"RLO", '\u202e', "U+202E (RIGHT-TO-LEFT OVERRIDE)"},
	{"LRI", '\u2066', "U+2066 (LEFT-TO-RIGHT ISOLATE)"},
	{"RLI", '\u2067', "U+2067 (RIGHT-TO-LEFT ISOLATE)"},
	{"FSI", '\u2068', "U+2068 (FIRST STRONG ISOLATE)"},
	{"PDI", '\u2069', "U+2069 (POP DIRECTIONAL ISOLATE)"},
}

// otherFormat are format characters (Cf) that are not bidi controls:
// refused on one line, allowed in text.
var otherFormat = []char{
	{"ZWSP", '\u200b', "U+200B (ZERO WIDTH SPACE)"},
	{"ZWNJ", '\u200c', "U+200C (ZERO WIDTH NON-JOINER)"},
	{"ZWJ", '\u200d', "U+200D (ZERO WIDTH JOINER)"},
	{"LRM", '\u200e', "U+200E (LEFT-TO-RIGHT MARK)"},
	{"RLM", '\u200f', "U+200F (RIGHT-TO-LEFT MARK)"},
	{"ALM", '\u061c', "U+061C (ARABIC LETTER MARK)"},
	{"word joiner", '\u2060', "U+2060 (WORD JOINER)"},
	{"BOM", '\ufeff', "U+FEFF (ZERO WIDTH NO-BREAK SPACE)"},
	{"soft hyphen", '\u00ad', "U+00AD (SOFT HYPHEN)"},
	{"tag letter", '\U000e0041', "U+E0041 (TAG LATIN CAPITAL LETTER A)"},
}

// separators are U+2028 and U+2029: refused everywhere.
var separators = []char{
	{"line separator", '\u2028', "U+2028 (LINE SEPARATOR)"},
	{"paragraph separator", '\u2029', "U+2029 (PARAGRAPH SEPARATOR)"},
}

// controls are control characters (Cc) other than LF, CR and tab.
var controls = []char{
	{"NUL", 0, "U+0000"},
	{"BEL", '\a', "U+0007"},
	{"ESC", '\x1b', "U+001B"},
	{"DEL", '\x7f', "U+007F"},
	{"NEL", '\u0085', "U+0085"},
	{"CSI (C1)", '\u009b', "U+009B"},
}

// lineBreaks are the control characters a text field may hold.
var lineBreaks = []char{
	{"LF", '\n', "U+000A"},
	{"CR", '\r', "U+000D"},
	{"tab", '\t', "U+0009"},
}

func baseAlert() *alerts.Alert {
	a := &alerts.Alert{Title: "Workers housed at a car wash", Severity: alerts.SeverityMinor,
		Audience: alerts.Audience{Sectors: []string{"care"}}, Marking: alerts.MarkingOfficial,
		TLP: alerts.TLPClear, Handling: alerts.Handling{Code: "C", Conditions: "Share with the safeguarding lead only."},
		Indicators: []alerts.Indicator{{Type: "phone", Value: "+44 7700 900123", Context: "Advertised for jobs."}},
		Actions:    []string{"Check your rota for the number."}}
	a.Normalize()
	return a
}

// validationMessage validates a and returns the message for field, or ""
// if a is valid; it fails if another field is named.
func validationMessage(t *testing.T, a *alerts.Alert, field string) string {
	t.Helper()
	err := a.Validate(now, taxonomy.Default())
	if err == nil {
		return ""
	}
	var v *alerts.ValidationError
	require.True(t, errors.As(err, &v), "%T: %v", err, err)
	require.Len(t, v.Fields, 1, "%v", err)
	require.Equal(t, field, v.Fields[0].Field)
	return v.Fields[0].Message
}

// lineFields are the one-line fields of an alert and how to set them.
var lineFields = []struct {
	field string
	set   func(*alerts.Alert, string)
}{
	{"title", func(a *alerts.Alert, s string) { a.Title = s }},
	{"indicators[0].value", func(a *alerts.Alert, s string) { a.Indicators[0].Value = s }},
	{"actions[0]", func(a *alerts.Alert, s string) { a.Actions[0] = s }},
}

// textFields are the multi-line text fields of an alert.
var textFields = []struct {
	field string
	set   func(*alerts.Alert, string)
}{
	{"summary", func(a *alerts.Alert, s string) { a.Summary = s }},
	{"body", func(a *alerts.Alert, s string) { a.Body = s }},
	{"indicators[0].context", func(a *alerts.Alert, s string) { a.Indicators[0].Context = s }},
	{"reporting", func(a *alerts.Alert, s string) { a.Reporting = s }},
	{"contact", func(a *alerts.Alert, s string) { a.Contact = s }},
	{"handling.conditions", func(a *alerts.Alert, s string) { a.Handling.Conditions = s }},
}

func TestOneLineFieldsRefuseInvisibleCharacters(t *testing.T) {
	for _, lf := range lineFields {
		for _, c := range bidiControls {
			t.Run(lf.field+"/"+c.name, func(t *testing.T) {
				a := baseAlert()
				lf.set(a, "Car wash "+string(c.r)+"gpj.exe")
				assert.Equal(t, "contains the Unicode format character "+c.says+" at character 10", validationMessage(t, a, lf.field))
			})
		}
		for _, c := range otherFormat {
			t.Run(lf.field+"/"+c.name, func(t *testing.T) {
				a := baseAlert()
				lf.set(a, "ab"+string(c.r)+"c")
				assert.Equal(t, "contains the Unicode format character "+c.says+" at character 3", validationMessage(t, a, lf.field))
			})
		}
		for _, c := range separators {
			t.Run(lf.field+"/"+c.name, func(t *testing.T) {
				a := baseAlert()
				lf.set(a, "a"+string(c.r)+"b")
				assert.Equal(t, "must be one line: contains the line break "+c.says+" at character 2", validationMessage(t, a, lf.field))
			})
		}
		for _, c := range append(controls, lineBreaks...) {
			t.Run(lf.field+"/"+c.name, func(t *testing.T) {
				a := baseAlert()
				lf.set(a, "a"+string(c.r)+"b")
				msg := validationMessage(t, a, lf.field)
				assert.Contains(t, msg, " "+c.says+" at character 2")
				if c.r == '\n' || c.r == '\r' || c.r == '\u0085' {
					assert.Equal(t, "must be one line: contains the line break "+c.says+" at character 2", msg)
				} else {
					assert.Equal(t, "contains the control character "+c.says+" at character 2", msg)
				}
			})
		}
		t.Run(lf.field+"/blank", func(t *testing.T) {
			a := baseAlert()
			lf.set(a, " \u00a0 ")
			assert.Equal(t, "is required", validationMessage(t, a, lf.field))
		})
		t.Run(lf.field+"/visible text is fine", func(t *testing.T) {
			a := baseAlert()
			// Right-to-left script, combining marks, a variation selector
			// (U+FE0F, category Mn) and an emoji without a joiner.
			lf.set(a, "⚠️ عمال السيارات — Ελλάδα — café")
			assert.Empty(t, validationMessage(t, a, lf.field))
		})
	}
}

func TestTextFieldsRefuseBidiControls(t *testing.T) {
	for _, tf := range textFields {
		for _, c := range bidiControls {
			t.Run(tf.field+"/"+c.name, func(t *testing.T) {
				a := baseAlert()
				tf.set(a, "line one\nline "+string(c.r)+"two")
				assert.Equal(t, "contains the Unicode format character "+c.says+" at character 15; bidirectional controls can make text read differently from what it says",
					validationMessage(t, a, tf.field))
			})
		}
		for _, c := range separators {
			t.Run(tf.field+"/"+c.name, func(t *testing.T) {
				a := baseAlert()
				tf.set(a, "a"+string(c.r)+"b")
				assert.Equal(t, "contains "+c.says+" at character 2; end lines with a newline", validationMessage(t, a, tf.field))
			})
		}
		for _, c := range controls {
			t.Run(tf.field+"/"+c.name, func(t *testing.T) {
				a := baseAlert()
				tf.set(a, "a\n"+string(c.r)+"b")
				assert.Equal(t, "contains the control character "+c.says+" at character 3", validationMessage(t, a, tf.field))
			})
		}
		for _, c := range append(otherFormat, lineBreaks...) {
			t.Run(tf.field+"/"+c.name+" is allowed", func(t *testing.T) {
				a := baseAlert()
				tf.set(a, "a"+string(c.r)+"b\r\nc")
				assert.Empty(t, validationMessage(t, a, tf.field))
			})
		}
		t.Run(tf.field+"/emoji with joiners and right-to-left text are allowed", func(t *testing.T) {
			a := baseAlert()
			tf.set(a, "Family: 👩\u200d👩\u200d👧\u200d👦\nFlag: 🏴\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f\n\u200fשלום\u200e (Hebrew)\n\tend")
			assert.Empty(t, validationMessage(t, a, tf.field))
		})
	}
}

func TestInvisibleCharacterMessageNamesFieldAndCharacter(t *testing.T) {
	a := baseAlert()
	a.Title = "Invoice\u202efdp.exe"
	err := a.Validate(now, taxonomy.Default())
	require.Error(t, err)
	assert.Equal(t, "invalid alert: title: contains the Unicode format character U+202E (RIGHT-TO-LEFT OVERRIDE) at character 8", err.Error())

	a = baseAlert()
	a.Actions = append(a.Actions, "ok", "call \x1b[31mnow")
	err = a.Validate(now, taxonomy.Default())
	require.Error(t, err)
	assert.Equal(t, "invalid alert: actions[2]: contains the control character U+001B at character 6", err.Error())
}

func TestLineRune(t *testing.T) {
	for _, set := range [][]char{bidiControls, otherFormat, separators, controls, lineBreaks} {
		for _, c := range set {
			assert.False(t, alerts.LineRune(c.r), c.name)
		}
	}
	for _, r := range "aZ09 é€ع—⚠\ufe0f\u00a0" {
		assert.True(t, alerts.LineRune(r), fmt.Sprintf("%U", r))
	}
}

// TestClip: text is cut on a character boundary, never inside one, to at
// most n bytes followed by the mark, and is valid UTF-8 whatever it held.
func TestClip(t *testing.T) {
	for _, tc := range []struct {
		name, s string
		n       int
		want    string
	}{
		{"short", "abc", 5, "abc"},
		{"exact", "abcde", 5, "abcde"},
		{"ascii", "abcdef", 5, "abcde…"},
		{"two-byte character across the boundary", "abcdé", 5, "abcd…"},
		{"three-byte character across the boundary", "ab€cd", 4, "ab…"},
		{"four-byte character across the boundary", "a😀b", 3, "a…"},
		{"character ends at the boundary", "ab€cd", 5, "ab€…"},
		{"invalid bytes replaced", "a\xffb", 8, "a\uFFFDb"},
		{"invalid byte at the boundary", "abcd\xff", 5, "abcd…"},
		{"nothing fits", "€", 2, "…"},
		{"zero", "abc", 0, "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := alerts.Clip(tc.s, tc.n, "…")
			assert.Equal(t, tc.want, got)
			assert.True(t, utf8.ValidString(got), "%q", got)
			assert.LessOrEqual(t, len(strings.TrimSuffix(got, "…")), tc.n)
		})
	}
	assert.Equal(t, "ab", alerts.Clip("ab€", 4, ""), "no mark: at most n bytes")
}
