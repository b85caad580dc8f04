package alerts_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/taxonomy"
)

// FuzzDecodeValidate checks that decoding, normalising and validating
// outside input never panics, and that an alert which passes validation
// survives a round trip through its JSON encoding unchanged: what the API
// accepted is what the fan-out and the partners read.
func FuzzDecodeValidate(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		require.NoError(f, err)
		for _, file := range files {
			data, err := os.ReadFile(file)
			require.NoError(f, err)
			f.Add(data)
		}
	}
	f.Add([]byte(`{"title":"t","severity":"minor","audience":{"subscribers":["a"]},"marking":"OFFICIAL","tlp":"TLP:clear","handling":{"code":"p"},"issued_by":"x"}`))
	// Characters of every class the text rules name, in one-line and
	// text fields: control, bidi controls, zero-width, BOM, separators,
	// soft hyphen, and the joiner of an emoji (allowed in text).
	for _, c := range []string{`\u001b[31m`, `\u0085`, `\u009b`, `\u007f`, `\u202a`, `\u202b`, `\u202c`, `\u202d`, `\u202e`,
		`\u2066`, `\u2067`, `\u2068`, `\u2069`, `\u200b`, `\u200d`, `\u200e`, `\ufeff`, `\u2028`, `\u2029`, `\u00ad`, `\udb40\udc41`} {
		f.Add([]byte(`{"title":"a` + c + `b","severity":"minor","audience":{"sectors":["care"]},"marking":"OFFICIAL","tlp":"CLEAR","handling":{"code":"P"}}`))
		f.Add([]byte(`{"title":"t","body":"x\n` + c + `y","summary":"` + c + `","indicators":[{"type":"url","value":"` + c + `","context":"` + c + `"}],` +
			`"actions":["` + c + `"],"reporting":"` + c + `","contact":"` + c + `","severity":"minor","audience":{"sectors":["care"]},"marking":"OFFICIAL","tlp":"CLEAR","handling":{"code":"C","conditions":"` + c + `"}}`))
	}
	f.Add([]byte(`{"title":"t","body":"\ud83d\udc69\u200d\ud83d\udc67\n\u200fshalom","severity":"minor","audience":{"sectors":["care"]},"marking":"OFFICIAL","tlp":"CLEAR","handling":{"code":"P"}}`))
	tax := taxonomy.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := alerts.Decode(data)
		if err != nil {
			return
		}
		a.Normalize()
		if err := a.Validate(now, tax); err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		requireVisible(t, a)
		enc, err := json.Marshal(a)
		require.NoError(t, err)
		b, err := alerts.Decode(enc)
		require.NoError(t, err, "%s", enc)
		b.Normalize()
		require.NoError(t, b.Validate(now, tax), "%s", enc)
		require.Equal(t, canon(a), canon(b), "%s", enc)
		again, err := json.Marshal(b)
		require.NoError(t, err)
		require.Equal(t, string(enc), string(again), "the encoding is a fixed point")
	})
}

// requireVisible checks the character rules on a valid alert: one-line
// fields hold only alerts.LineRune runes; text fields no bidirectional
// embedding, override or isolate control, no U+2028 or U+2029, and no
// control character but LF, CR and tab.
func requireVisible(t *testing.T, a *alerts.Alert) {
	t.Helper()
	line := []string{a.Title}
	text := []string{a.Summary, a.Body, a.Reporting, a.Contact, a.Handling.Conditions}
	for _, ind := range a.Indicators {
		line, text = append(line, ind.Value), append(text, ind.Context)
	}
	line = append(line, a.Actions...)
	for _, s := range line {
		for _, r := range s {
			require.True(t, alerts.LineRune(r), "one-line field %q holds %U", s, r)
		}
	}
	for _, s := range text {
		for _, r := range s {
			ok := r == '\n' || r == '\r' || r == '\t' ||
				!(unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069'))
			require.True(t, ok, "text field %q holds %U", s, r)
		}
	}
}

// canon clears empty lists, which the JSON encoding omits (an empty list
// and no list mean the same), and puts times in UTC, so that reflection
// compares instants rather than *time.Location values.
func canon(a *alerts.Alert) *alerts.Alert {
	c := *a
	if len(c.References) == 0 {
		c.References = nil
	}
	if len(c.Indicators) == 0 {
		c.Indicators = nil
	}
	if len(c.Actions) == 0 {
		c.Actions = nil
	}
	if len(c.Audience.Sectors) == 0 {
		c.Audience.Sectors = nil
	}
	if len(c.Audience.Regions) == 0 {
		c.Audience.Regions = nil
	}
	if len(c.Audience.Subscribers) == 0 {
		c.Audience.Subscribers = nil
	}
	for _, tp := range []**time.Time{&c.NotBefore, &c.ExpiresAt, &c.IssuedAt} {
		if *tp != nil {
			u := (*tp).UTC() // the same instant; the offset is checked by the encoding
			*tp = &u
		}
	}
	return &c
}
