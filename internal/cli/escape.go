package cli

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/herald-alerts/herald/alerts"
)

// Text that reaches the terminal from data (alert and subscriber records,
// receipts, dead letters, webhook error responses, captured requests) may
// hold characters that act on the terminal or hide what the text says:
// ANSI escape sequences, carriage returns, bidirectional overrides,
// zero-width characters. Validation refuses them in new records, but old
// records and anything written to Kafka directly never went through it.
// Every place the CLI prints such text as text passes it through printable
// (one line: table cells, lines, validation messages) or printableLines
// (several lines: other error messages, a verified email's text). JSON
// output goes through jsonSafe.

// printable renders s for one line of a terminal. Every rune that may not
// appear in one line of text (alerts.LineRune: control characters, tab, CR
// and LF among them; Unicode format characters such as U+202E and U+200B;
// U+2028 and U+2029) is written as a Go escape: \t, \n, \r, \x1b, \x7f,
// \u009b, \u202e, \U000e0041. A byte that is not UTF-8 is written \xff
// (always 0x80 or above, so never confused with an escaped rune). A
// backslash is left as it is: the output shows what the text holds, it is
// not meant to be parsed back.
func printable(s string) string { return escape(s, false) }

// printableLines is printable for text of several lines: LF and tab are
// kept, and CRLF is shown as a line break; everything else printable
// escapes is escaped, CR alone included.
func printableLines(s string) string { return escape(s, true) }

func escape(s string, lines bool) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case alerts.LineRune(r), lines && (r == '\n' || r == '\t'):
			b.WriteString(s[i : i+size])
		case lines && r == '\r' && strings.HasPrefix(s[i+1:], "\n"):
			// CRLF: the LF that follows is the line break.
		default:
			b.WriteString(escapeRune(r))
		}
		i += size
	}
	return b.String()
}

// escapeRune returns r as a Go escape.
func escapeRune(r rune) string {
	switch r {
	case '\a':
		return `\a`
	case '\b':
		return `\b`
	case '\f':
		return `\f`
	case '\n':
		return `\n`
	case '\r':
		return `\r`
	case '\t':
		return `\t`
	case '\v':
		return `\v`
	}
	switch {
	case r < 0x80:
		return fmt.Sprintf(`\x%02x`, r)
	case r <= 0xffff:
		return fmt.Sprintf(`\u%04x`, r)
	default:
		return fmt.Sprintf(`\U%08x`, r)
	}
}

// jsonSafe rewrites encoded JSON so that it holds no rune printable would
// escape: encoding/json already writes control characters below U+0020,
// U+2028 and U+2029 as \u escapes, but writes DEL, the C1 controls
// (U+0080–U+009F, which some terminals obey) and the format characters
// (U+202E and the other bidirectional controls, zero-width characters) as
// they are. Outside strings JSON holds only ASCII punctuation and white
// space, so such a rune can only be inside a string, where its \u escape
// (a surrogate pair above U+FFFF) decodes to the same value. encoding/json
// never writes invalid UTF-8 (it writes U+FFFD instead).
func jsonSafe(enc []byte) []byte {
	clean := true
	for _, r := range string(enc) {
		if r >= 0x7f && !alerts.LineRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return enc
	}
	var b bytes.Buffer
	b.Grow(len(enc) + 32)
	for _, r := range string(enc) {
		switch {
		case r < 0x7f || alerts.LineRune(r):
			b.WriteRune(r)
		case r > 0xffff:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, hi, lo)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
	}
	return b.Bytes()
}
