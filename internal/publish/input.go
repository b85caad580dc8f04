package publish

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/herald-alerts/herald/alerts"
)

// DecodeAlert reads an analyst's alert from JSON (API, console, CLI) as
// alerts.Decode does, after refusing what encoding/json would otherwise
// let through silently, each naming its field in a *alerts.ValidationError:
// a key given twice (only the last would count, so a second "tlp" or
// "audience" would change who gets the alert unseen), bytes that are not
// UTF-8 (they would be replaced by U+FFFD in what partners receive), and a
// time that is not RFC 3339. It does not validate: call Prepare.
func DecodeAlert(data []byte) (*alerts.Alert, error) {
	if err := screen(data); err != nil {
		return nil, err
	}
	return alerts.Decode(data)
}

// timeFields are the alert's fields that hold RFC 3339 times.
var timeFields = map[string]bool{"not_before": true, "expires_at": true, "issued_at": true, "approved_at": true}

// screen walks data's JSON tokens with their paths. A body that is not
// JSON at all is left to alerts.Decode, which says why.
func screen(data []byte) error {
	w := &walker{dec: json.NewDecoder(bytes.NewReader(data)), bad: -1,
		v: &alerts.ValidationError{What: "invalid alert"}}
	if !utf8.Valid(data) {
		for i := 0; i < len(data); {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n == 1 {
				w.bad, w.badByte = i, data[i]
				break
			}
			i += n
		}
	}
	w.dec.UseNumber()
	if err := w.value(""); err != nil {
		return nil
	}
	return w.v.Err()
}

// walker reads one JSON value after another, recording the problems of
// screen in v.
type walker struct {
	dec *json.Decoder
	v   *alerts.ValidationError
	// bad is the offset of the first byte that is not UTF-8 (-1: none),
	// badByte that byte; named says the field holding it has been named.
	bad     int
	badByte byte
	named   bool
}

// token reads the next token, naming path if it holds the first byte that
// is not UTF-8.
func (w *walker) token(path string) (json.Token, error) {
	tok, err := w.dec.Token()
	if err != nil {
		return nil, err
	}
	if w.bad >= 0 && !w.named && w.dec.InputOffset() > int64(w.bad) {
		w.named = true
		if path == "" {
			path = "alert"
		}
		w.v.Add(path, "is not UTF-8 text (byte 0x%02x at offset %d): save or send the alert as UTF-8", w.badByte, w.bad)
	}
	return tok, nil
}

// value reads the value at path, and everything inside it.
func (w *walker) value(path string) error {
	tok, err := w.token(path)
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var seen []string
			for w.dec.More() {
				kt, err := w.token(path)
				if err != nil {
					return err
				}
				key, _ := kt.(string)
				field := key
				if path != "" {
					field = path + "." + key
				}
				// encoding/json matches a key to a field ignoring case
				// (bytes.EqualFold), so "TLP" after "tlp" is the same
				// field given twice.
				if slices.ContainsFunc(seen, func(k string) bool { return strings.EqualFold(k, key) }) {
					w.v.Add(field, "is given more than once: give each field once (only the last would count)")
				}
				seen = append(seen, key)
				if err := w.value(field); err != nil {
					return err
				}
			}
		case '[':
			for i := 0; w.dec.More(); i++ {
				if err := w.value(fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
		if _, err := w.token(path); err != nil { // the closing delimiter
			return err
		}
	case string:
		if timeFields[path] {
			if _, err := time.Parse(time.RFC3339, t); err != nil {
				w.v.Add(path, "must be an RFC 3339 time such as 2026-12-01T09:00:00Z, not %q", clip(t, 40))
			}
		}
	}
	return nil
}

// clip shortens s to at most n bytes for an error message, on a rune
// boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
