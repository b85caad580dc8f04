package alerts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// This file is the one home of the screen every JSON or YAML input a
// person writes passes before it is decoded (an analyst's alert, a
// partner record, the body of a request): what encoding/json and YAML
// would let through silently, or refuse without naming the field, is
// refused naming it in a *ValidationError.

// ErrNotObject is matched (errors.Is) by the error for an input that is
// JSON but not the object it must be (an array, a string, a number).
var ErrNotObject = errors.New("not a JSON object")

// notObject says what must be a JSON object and what was given.
type notObject struct{ what, kind string }

func (e *notObject) Error() string {
	return fmt.Sprintf("the %s must be a JSON object, not %s", e.what, e.kind)
}

func (e *notObject) Is(target error) bool { return target == ErrNotObject }

// ScreenJSON refuses in data, a JSON object a person wrote (what names
// it: "subscriber", "request"), what encoding/json would let through
// silently: a key given twice, also in another case (encoding/json
// matches keys to fields ignoring case and keeps the last, so a second
// "clearance" or "sectors" would change who gets alerts unseen), and
// bytes that are not UTF-8 (they would become U+FFFD). It returns a
// *ValidationError naming each field by its path (email[1].address), an
// error matching ErrNotObject if data is JSON but not an object, or nil;
// data that is not JSON at all is left to the decoder, which says why.
func ScreenJSON(data []byte, what string) error {
	return screenJSON(data, what, nil)
}

// DecodeInput reads an alert a person wrote in JSON (API, console, CLI)
// as Decode does, after ScreenJSON and naming a time that is not RFC
// 3339 (CheckTime). It does not validate: call Normalize and Validate.
func DecodeInput(data []byte) (*Alert, error) {
	if err := screenJSON(data, "alert", CheckTime); err != nil {
		return nil, err
	}
	return Decode(data)
}

// timeFields are the alert's fields that hold RFC 3339 times.
var timeFields = map[string]bool{"not_before": true, "expires_at": true, "issued_at": true, "approved_at": true}

// CheckTime names field in v if it is one of the alert's times
// (not_before, expires_at, issued_at, approved_at) and s is not an RFC
// 3339 time: the one rule for an alert's times as a person writes them,
// in JSON or YAML.
func CheckTime(v *ValidationError, field, s string) {
	if !timeFields[field] {
		return
	}
	if _, err := time.Parse(time.RFC3339, s); err != nil {
		v.Add(field, "must be an RFC 3339 time such as 2026-12-01T09:00:00Z, not %q", Clip(s, 40, "…"))
	}
}

// FieldErrors returns err, an error of decoding what from JSON, as the
// fields it names: a *ValidationError as it is, a value of the wrong type
// or an unknown field as a *ValidationError naming it; nil for any other
// error.
func FieldErrors(err error, what string) *ValidationError {
	var v *ValidationError
	if errors.As(err, &v) {
		return v
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return &ValidationError{What: "invalid " + what, Fields: []FieldError{{
			Field:   typeErr.Field,
			Message: fmt.Sprintf("must be a JSON %s, not %s", jsonKind(typeErr.Type.Kind().String()), typeErr.Value),
		}}}
	}
	// encoding/json reports an unknown field as `json: unknown field "x"`.
	if _, rest, ok := strings.Cut(err.Error(), `unknown field "`); ok {
		field, _, _ := strings.Cut(rest, `"`)
		return &ValidationError{What: "invalid " + what, Fields: []FieldError{{
			Field: Clip(field, 64, "…"), Message: "is not a field of " + what + " (unknown fields are rejected)",
		}}}
	}
	return nil
}

// jsonKind names a Go kind as a JSON type.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "struct", "map", "ptr":
		return "object"
	}
	return "number"
}

// badUTF8 finds the first byte of data that is not UTF-8: its offset, or
// -1 if data is UTF-8.
func badUTF8(data []byte) int {
	if utf8.Valid(data) {
		return -1
	}
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// addNotUTF8 names field as holding the byte of data at offset bad.
func addNotUTF8(v *ValidationError, field, what string, data []byte, bad int) {
	v.Add(field, "is not UTF-8 text (byte 0x%02x at offset %d): save or send the %s as UTF-8", data[bad], bad, what)
}

// addTwice names field as given twice.
func addTwice(v *ValidationError, field string) {
	v.Add(field, "is given more than once: give each field once (only the last would count)")
}

// see adds key to seen and reports whether it was not there yet:
// encoding/json matches a key to a field ignoring case (bytes.EqualFold),
// so "TLP" after "tlp" is the same field given twice. seen holds folded
// keys (foldName), so that a set of keys is a map, not a list searched
// for every key.
func see(seen map[string]bool, key string) bool {
	f := foldName(key)
	if seen[f] {
		return false
	}
	seen[f] = true
	return true
}

// foldName returns key such that foldName(x) == foldName(y) exactly when
// strings.EqualFold(x, y): each rune replaced by the smallest of its case
// folding orbit (unicode.SimpleFold).
func foldName(key string) string {
	var b strings.Builder
	b.Grow(len(key))
	for _, r := range key {
		for {
			f := unicode.SimpleFold(r)
			if f <= r {
				r = f
				break
			}
			r = f
		}
		b.WriteRune(r)
	}
	return b.String()
}

// join makes the path of key inside path; an empty key is shown as "".
func join(path, key string) string {
	if key == "" {
		key = `""`
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// screenJSON is ScreenJSON, calling leaf (if not nil) for every string
// value with its path.
func screenJSON(data []byte, what string, leaf func(v *ValidationError, path, s string)) error {
	w := &walker{dec: json.NewDecoder(bytes.NewReader(data)), what: what, data: data, bad: badUTF8(data),
		leaf: leaf, v: &ValidationError{What: "invalid " + what}}
	w.dec.UseNumber()
	tok, err := w.token("")
	if err != nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		kind := "an array"
		switch tok.(type) {
		case string:
			kind = "a string"
		case json.Number:
			kind = "a number"
		case bool:
			kind = "a boolean"
		case nil:
			kind = "null"
		}
		if err := w.v.Err(); err != nil {
			return err
		}
		return &notObject{what: what, kind: kind}
	}
	if err := w.inside(tok.(json.Delim), "", 0); err != nil && !errors.Is(err, errTooDeep) {
		return nil
	}
	return w.v.Err()
}

// maxDepth is how deep the screens follow objects and arrays (mappings and
// sequences): what people write nests a few levels; deeper is refused
// there, so that the work and memory of naming each level's path stay
// bounded by the input's size (a path per level made them quadratic in
// the depth: gigabytes for an API body of 128 KiB).
const maxDepth = 32

// errTooDeep stops a screen at a value nested deeper than maxDepth.
var errTooDeep = errors.New("nested too deep")

// addTooDeep names path as nested deeper than maxDepth.
func addTooDeep(v *ValidationError, path, what string) {
	v.Add(path, "is nested deeper than %d levels: no field of a %s is", maxDepth, what)
}

// walker reads one JSON value after another, recording the problems of
// screenJSON in v.
type walker struct {
	dec  *json.Decoder
	v    *ValidationError
	what string
	data []byte
	leaf func(v *ValidationError, path, s string)
	// bad is the offset of the first byte that is not UTF-8 (-1: none);
	// named says the field holding it has been named.
	bad   int
	named bool
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
			path = w.what
		}
		addNotUTF8(w.v, path, w.what, w.data, w.bad)
	}
	return tok, nil
}

// value reads the value at path, depth levels inside the input, and
// everything inside it.
func (w *walker) value(path string, depth int) error {
	tok, err := w.token(path)
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		return w.inside(t, path, depth)
	case string:
		if w.leaf != nil {
			w.leaf(w.v, path, t)
		}
	}
	return nil
}

// inside reads what is inside the object or array at path, depth levels
// inside the input, that open began, and its closing delimiter.
func (w *walker) inside(open json.Delim, path string, depth int) error {
	if depth >= maxDepth {
		addTooDeep(w.v, path, w.what)
		return errTooDeep
	}
	switch open {
	case '{':
		seen := map[string]bool{}
		for w.dec.More() {
			kt, err := w.token(path)
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			field := join(path, key)
			if !see(seen, key) {
				addTwice(w.v, field)
			}
			if err := w.value(field, depth+1); err != nil {
				return err
			}
		}
	case '[':
		for i := 0; w.dec.More(); i++ {
			if err := w.value(fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	}
	_, err := w.token(path) // the closing delimiter
	return err
}

// ScreenYAML is ScreenJSON for a YAML document (or JSON, which is YAML)
// that a person wrote, of any shape: a key given twice (also in another
// case) and bytes that are not UTF-8, each named by its path
// (email[1].address, [0].clearance for a list). Data that is not YAML at
// all is left to the decoder (nil).
func ScreenYAML(data []byte, what string) error {
	return screenYAML(data, what, nil)
}

// screenYAML is ScreenYAML, calling leaf (if not nil) for every scalar
// with its path.
func screenYAML(data []byte, what string, leaf func(v *ValidationError, path, s string)) error {
	w := &yamlWalker{v: &ValidationError{What: "invalid " + what}, what: what, leaf: leaf}
	bad := badUTF8(data)
	text := data
	if bad >= 0 {
		// Each byte that is not UTF-8 becomes one U+FFFD, so that the
		// parser's lines and columns (in characters) still find it.
		var b bytes.Buffer
		for i := 0; i < len(data); {
			r, n := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && n == 1 {
				b.WriteRune(utf8.RuneError)
			} else {
				b.Write(data[i : i+n])
			}
			i += n
		}
		text = b.Bytes()
		start := bytes.LastIndexByte(data[:bad], '\n') + 1
		w.badLine = bytes.Count(data[:bad], []byte("\n")) + 1
		w.badCol = utf8.RuneCount(data[start:bad]) + 1
		w.badPath = what
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err == nil {
		_ = w.node(&doc, "", 0) // errTooDeep is recorded in w.v
	}
	if bad >= 0 {
		addNotUTF8(w.v, w.badPath, what, data, bad)
	}
	return w.v.Err()
}

// yamlWalker walks YAML nodes, recording the problems of screenYAML in v.
type yamlWalker struct {
	v    *ValidationError
	what string
	leaf func(v *ValidationError, path, s string)
	// badLine and badCol are where the first byte that is not UTF-8 is (0:
	// none), badPath the path of the last node that starts at or before it.
	badLine, badCol int
	badPath         string
}

// at notes that the node n at path starts at or before the byte that is
// not UTF-8.
func (w *yamlWalker) at(n *yaml.Node, path string) {
	if w.badLine > 0 && path != "" && (n.Line < w.badLine || n.Line == w.badLine && n.Column <= w.badCol) {
		w.badPath = path
	}
}

// node walks n at path, depth levels inside the document; it stops
// (errTooDeep) deeper than maxDepth.
func (w *yamlWalker) node(n *yaml.Node, path string, depth int) error {
	if (n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode) && depth >= maxDepth {
		addTooDeep(w.v, path, w.what)
		return errTooDeep
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := w.node(c, path, depth); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			name := k.Value
			if k.Kind != yaml.ScalarNode {
				// A mapping or a list as a key: no field has such a
				// name; name it by its place.
				name = fmt.Sprintf("(the key at line %d, column %d)", k.Line, k.Column)
			}
			field := join(path, name)
			w.at(k, field)
			if name != "<<" && !see(seen, name) {
				addTwice(w.v, field)
			}
			if err := w.node(val, field, depth+1); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := w.node(c, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		w.at(n, path)
		if w.leaf != nil && n.Tag != "!!null" {
			w.leaf(w.v, path, n.Value)
		}
	}
	return nil
}
