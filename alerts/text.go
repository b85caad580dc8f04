package alerts

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/runenames"
)

// This file is the one home of Herald's character rules for text a person
// writes and another reads (PRODUCT.md §1 title, §2 name). Two rules:
//
//   - One line (CheckLine: title, indicators[i].value, actions[i], a
//     subscriber's name): no control character (category Cc, which includes
//     CR, LF, tab and NEL), no Unicode format character (category Cf: the
//     bidirectional controls, zero-width space and joiners, U+FEFF, the soft
//     hyphen, tag characters, …) and no line or paragraph separator
//     (U+2028, U+2029). What is left is text a reader sees as written.
//
//   - Text (CheckText: summary, body, indicators[i].context, reporting,
//     contact, handling.conditions): lines end with LF or CRLF and tabs are
//     allowed; other control characters, U+2028 and U+2029 (a line break in
//     some readers and not in others) and the bidirectional embedding,
//     override and isolate controls (U+202A–U+202E, U+2066–U+2069, the
//     "Trojan Source" characters, which can make text read differently from
//     what it says) are refused. Other format characters are allowed:
//     zero-width joiners and non-joiners shape emoji and many scripts, and
//     the bidirectional marks U+200E, U+200F and U+061C are how right-to-left
//     text is written correctly.

// Clip returns s as valid UTF-8 (each invalid byte sequence replaced by
// U+FFFD) of at most n bytes, cut on a character boundary, followed by
// mark when it had to be cut: the one rule for shortening text from
// outside (a Kafka key, a header, a field) for a log line, an error or a
// stored message, which must never end in half a character.
func Clip(s string, n int, mark string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	i := max(n, 0)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}

// LineRune reports whether r may appear in one line of text: it is not a
// control character (Cc), not a Unicode format character (Cf) and not
// U+2028 LINE SEPARATOR or U+2029 PARAGRAPH SEPARATOR. Anything that
// prints text from outside on one line (a table cell, a log line) should
// make the other runes visible.
func LineRune(r rune) bool {
	return !unicode.IsControl(r) && !unicode.Is(unicode.Cf, r) && r != '\u2028' && r != '\u2029'
}

// bidiControl reports whether r is one of the bidirectional embedding,
// override or isolate controls (U+202A–U+202E, U+2066–U+2069), which no
// text field may hold.
func bidiControl(r rune) bool {
	return (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

// CheckLine records in v a problem with field unless s is one line of
// minLen to maxLen characters of which every rune is a LineRune. A blank s
// (empty or only white space) is "required" when minLen > 0. The message
// names the first refused character, e.g. "contains the Unicode format
// character U+202E (RIGHT-TO-LEFT OVERRIDE) at character 7".
func CheckLine(v *ValidationError, field, s string, minLen, maxLen int) {
	if msg := lineProblem(s, minLen, maxLen); msg != "" {
		v.Add(field, "%s", msg)
	}
}

// lineProblem returns what CheckLine would report for s, or "" if s is
// acceptable.
func lineProblem(s string, minLen, maxLen int) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	n := utf8.RuneCountInString(s)
	switch {
	case minLen > 0 && strings.TrimSpace(s) == "":
		return "is required"
	case n < minLen:
		return fmt.Sprintf("is %d characters; at least %d are needed", n, minLen)
	case n > maxLen:
		return fmt.Sprintf("is %d characters; the limit is %d", n, maxLen)
	}
	i := 0
	for _, r := range s {
		i++
		switch {
		case LineRune(r):
		case r == '\n' || r == '\r' || r == '\u0085' || r == '\u2028' || r == '\u2029':
			return fmt.Sprintf("must be one line: contains the line break %s at character %d", describe(r), i)
		case unicode.IsControl(r):
			return fmt.Sprintf("contains the control character %s at character %d", describe(r), i)
		default:
			return fmt.Sprintf("contains the Unicode format character %s at character %d", describe(r), i)
		}
	}
	return ""
}

// CheckText records in v a problem with field unless s is valid UTF-8
// text without control characters other than LF, CR and tab, without
// U+2028 and U+2029, and without bidirectional embedding, override or
// isolate controls (U+202A–U+202E, U+2066–U+2069). Its length is for the caller to check.
func CheckText(v *ValidationError, field, s string) {
	if msg := textProblem(s); msg != "" {
		v.Add(field, "%s", msg)
	}
}

// textProblem returns what CheckText would report for s, or "" if s is
// acceptable.
func textProblem(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	i := 0
	for _, r := range s {
		i++
		switch {
		case r == '\n' || r == '\r' || r == '\t':
		case r == '\u2028' || r == '\u2029':
			return fmt.Sprintf("contains %s at character %d; end lines with a newline", describe(r), i)
		case unicode.IsControl(r):
			return fmt.Sprintf("contains the control character %s at character %d", describe(r), i)
		case bidiControl(r):
			return fmt.Sprintf("contains the Unicode format character %s at character %d; bidirectional controls can make text read differently from what it says", describe(r), i)
		}
	}
	return ""
}

// Describe names a rune for an error message: "U+202E (RIGHT-TO-LEFT
// OVERRIDE)", or just "U+001B" for a rune the Unicode Character Database
// gives no name (control characters among them).
func describe(r rune) string {
	name := runenames.Name(r)
	if name == "" || strings.HasPrefix(name, "<") {
		return fmt.Sprintf("U+%04X", r)
	}
	return fmt.Sprintf("U+%04X (%s)", r, name)
}
