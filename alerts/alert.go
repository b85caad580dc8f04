package alerts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits of PRODUCT.md §1.
const (
	MaxTitle   = 200
	MaxSummary = 1000
	MaxBody    = 64 << 10
)

// ReservedIDPrefix starts the ids of the notices Herald sends on its own
// (key-expiry warnings): an analyst's alert may not use it, so that no
// alert and no notice ever share an id.
const ReservedIDPrefix = "key-expiry-"

// idPattern is the rule for an analyst-supplied alert id.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidID reports whether id is acceptable as an alert id.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// Alert is one intelligence alert (PRODUCT.md §1).
type Alert struct {
	ID         string      `json:"id,omitempty" yaml:"id,omitempty"`
	Type       Type        `json:"type,omitempty" yaml:"type,omitempty"`
	References []string    `json:"references,omitempty" yaml:"references,omitempty"`
	Status     Status      `json:"status,omitempty" yaml:"status,omitempty"`
	Title      string      `json:"title" yaml:"title"`
	Summary    string      `json:"summary,omitempty" yaml:"summary,omitempty"`
	Body       string      `json:"body,omitempty" yaml:"body,omitempty"`
	Indicators []Indicator `json:"indicators,omitempty" yaml:"indicators,omitempty"`
	Actions    []string    `json:"actions,omitempty" yaml:"actions,omitempty"`
	Reporting  string      `json:"reporting,omitempty" yaml:"reporting,omitempty"`
	Contact    string      `json:"contact,omitempty" yaml:"contact,omitempty"`
	Severity   Severity    `json:"severity" yaml:"severity"`
	Audience   Audience    `json:"audience" yaml:"audience"`
	Marking    Marking     `json:"marking" yaml:"marking"`
	TLP        TLP         `json:"tlp" yaml:"tlp"`
	Handling   Handling    `json:"handling" yaml:"handling"`
	Grading    *Grading    `json:"grading,omitempty" yaml:"grading,omitempty"`
	NotBefore  *time.Time  `json:"not_before,omitempty" yaml:"not_before,omitempty"`
	ExpiresAt  *time.Time  `json:"expires_at,omitempty" yaml:"expires_at,omitempty"`
	IssuedBy   string      `json:"issued_by,omitempty" yaml:"issued_by,omitempty"`
	IssuedAt   *time.Time  `json:"issued_at,omitempty" yaml:"issued_at,omitempty"`
	// ApprovedBy and ApprovedAt are set by Herald when a second analyst
	// releases an alert that needed one (PRODUCT.md §10); like IssuedBy
	// they are never shown to partners.
	ApprovedBy string     `json:"approved_by,omitempty" yaml:"approved_by,omitempty"`
	ApprovedAt *time.Time `json:"approved_at,omitempty" yaml:"approved_at,omitempty"`
}

// Indicator is one observable a partner can look for.
type Indicator struct {
	Type    string `json:"type" yaml:"type"`
	Value   string `json:"value" yaml:"value"`
	Context string `json:"context,omitempty" yaml:"context,omitempty"`
}

// Audience says who an alert is for.
type Audience struct {
	Sectors     []string `json:"sectors,omitempty" yaml:"sectors,omitempty"`
	Regions     []string `json:"regions,omitempty" yaml:"regions,omitempty"`
	Subscribers []string `json:"subscribers,omitempty" yaml:"subscribers,omitempty"`
}

// Handling is the 3x5x2 handling code: P (permits dissemination) or C
// (dissemination with conditions, which must be given).
type Handling struct {
	Code       string `json:"code" yaml:"code"`
	Conditions string `json:"conditions,omitempty" yaml:"conditions,omitempty"`
}

// Grading is the optional 3x5x2 source (1-3) and intelligence (A-E) grading.
type Grading struct {
	Source       int    `json:"source" yaml:"source"`
	Intelligence string `json:"intelligence" yaml:"intelligence"`
}

// Label renders the grading as "1/A".
func (g Grading) Label() string { return strconv.Itoa(g.Source) + "/" + g.Intelligence }

// Named reports whether the alert names subscriber id explicitly.
func (a *Alert) Named(id string) bool { return slices.Contains(a.Audience.Subscribers, id) }

// MustEncrypt is the encryption rule of PRODUCT.md §3 rule 4, in its one
// home: the alert's content may travel by email only encrypted, and its
// subject may carry only the label, marking and id, unless it is TLP:CLEAR
// or TLP:GREEN and OFFICIAL. An unknown label fails closed (encrypt).
func (a *Alert) MustEncrypt() bool {
	return (a.TLP != TLPClear && a.TLP != TLPGreen) || a.Marking != MarkingOfficial
}

// Digest identifies the alert's content: "sha256:" and the hex SHA-256 of
// its JSON encoding with the fields Herald stamps (issued_by, issued_at,
// approved_by, approved_at) cleared. Call it on a normalised alert. An id
// names one alert forever: two alerts under one id are the same alert
// exactly when their digests are equal.
func (a *Alert) Digest() string {
	c := *a
	c.IssuedBy, c.IssuedAt, c.ApprovedBy, c.ApprovedAt = "", nil, "", nil
	b, err := json.Marshal(&c)
	if err != nil {
		// An Alert holds only strings, numbers, slices and times; times
		// outside year 0-9999 are the one thing that fails to encode.
		b = []byte(fmt.Sprintf("unencodable alert %q: %v", a.ID, err))
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Event returns the webhook event type of the alert.
func (a *Alert) Event() string { return a.Type.Event() }

// FieldError is one problem with one field, named by its JSON path.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Message }

// ValidationError lists every problem found, not just the first.
type ValidationError struct {
	What   string       `json:"-"`
	Fields []FieldError `json:"errors"`
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Error()
	}
	what := e.What
	if what == "" {
		what = "invalid input"
	}
	return what + ": " + strings.Join(parts, "; ")
}

// Add records a problem with field.
func (e *ValidationError) Add(field, format string, args ...any) {
	e.Fields = append(e.Fields, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns e if it holds any problem, or nil.
func (e *ValidationError) Err() error {
	if len(e.Fields) == 0 {
		return nil
	}
	return e
}

// Taxonomy is what validation checks audience slugs and codes against.
type Taxonomy interface {
	HasSector(slug string) bool
	HasRegion(code string) bool
}

// Decode reads one alert from JSON, rejecting unknown fields and trailing
// data. It does not validate: call Normalize and Validate.
func Decode(data []byte) (*Alert, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var a Alert
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("decode alert: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode alert: trailing data after the alert object")
	}
	return &a, nil
}

// DecodeYAML reads one alert a person wrote in YAML (or JSON, which is
// YAML), rejecting unknown fields, after ScreenYAML and naming a time
// that is not RFC 3339 (CheckTime).
func DecodeYAML(data []byte) (*Alert, error) {
	if err := screenYAML(data, "alert", CheckTime); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var a Alert
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("decode alert: %w", err)
	}
	return &a, nil
}

// Normalize fills defaults (type alert, status actual), canonicalises the
// TLP label, and trims list entries. It never widens the audience.
func (a *Alert) Normalize() {
	if a.Type == "" {
		a.Type = TypeAlert
	}
	if a.Status == "" {
		a.Status = StatusActual
	}
	if a.TLP != "" {
		a.TLP = NormalizeTLP(string(a.TLP))
	}
	a.Severity = Severity(strings.ToLower(strings.TrimSpace(string(a.Severity))))
	a.Handling.Code = strings.ToUpper(strings.TrimSpace(a.Handling.Code))
	if a.Grading != nil {
		a.Grading.Intelligence = strings.ToUpper(strings.TrimSpace(a.Grading.Intelligence))
	}
}

// Validate checks every rule of PRODUCT.md §1 against a normalised alert
// and returns a *ValidationError naming every bad field. now is the time
// expires_at must lie after; tax may be nil to skip taxonomy checks.
func (a *Alert) Validate(now time.Time, tax Taxonomy) error {
	v := &ValidationError{What: "invalid alert"}
	switch {
	case a.ID != "" && !ValidID(a.ID):
		v.Add("id", "must match %s", idPattern)
	case strings.HasPrefix(a.ID, ReservedIDPrefix):
		v.Add("id", "the prefix %s is reserved for Herald's own notices", ReservedIDPrefix)
	}
	switch a.Type {
	case TypeAlert:
		if len(a.References) > 0 {
			v.Add("references", "only updates and cancels reference other alerts")
		}
	case TypeUpdate, TypeCancel:
		if len(a.References) == 0 {
			v.Add("references", "required for %s: the ids of the alerts it supersedes", a.Type)
		}
	default:
		v.Add("type", "must be alert, update or cancel, not %q", a.Type)
	}
	for i, r := range a.References {
		if !ValidID(r) {
			v.Add(fmt.Sprintf("references[%d]", i), "%q is not a valid alert id", r)
		} else if r == a.ID {
			v.Add(fmt.Sprintf("references[%d]", i), "an alert cannot reference itself")
		}
	}
	switch a.Status {
	case StatusActual, StatusExercise, StatusTest:
	default:
		v.Add("status", "must be actual, exercise or test, not %q", a.Status)
	}
	CheckLine(v, "title", a.Title, 1, MaxTitle)
	if n := utf8.RuneCountInString(a.Summary); n > MaxSummary {
		v.Add("summary", "is %d characters; the limit is %d", n, MaxSummary)
	}
	CheckText(v, "summary", a.Summary)
	if len(a.Body) > MaxBody {
		v.Add("body", "is %d bytes; the limit is %d (64 KiB)", len(a.Body), MaxBody)
	}
	CheckText(v, "body", a.Body)
	for i, ind := range a.Indicators {
		f := fmt.Sprintf("indicators[%d]", i)
		if !slices.Contains(IndicatorTypes, ind.Type) {
			v.Add(f+".type", "must be one of %s, not %q", strings.Join(IndicatorTypes, ", "), ind.Type)
		}
		CheckLine(v, f+".value", ind.Value, 1, 1000)
		CheckText(v, f+".context", ind.Context)
	}
	for i, act := range a.Actions {
		CheckLine(v, fmt.Sprintf("actions[%d]", i), act, 1, 1000)
	}
	CheckText(v, "reporting", a.Reporting)
	CheckText(v, "contact", a.Contact)
	if !a.Severity.Valid() {
		if a.Severity == "" {
			v.Add("severity", "is required: minor, moderate, severe or extreme")
		} else {
			v.Add("severity", "must be minor, moderate, severe or extreme, not %q", a.Severity)
		}
	}
	if len(a.Audience.Sectors) == 0 && len(a.Audience.Subscribers) == 0 {
		v.Add("audience", "needs at least one sector or one named subscriber")
	}
	for i, s := range a.Audience.Sectors {
		if tax != nil && !tax.HasSector(s) {
			v.Add(fmt.Sprintf("audience.sectors[%d]", i), "unknown sector %q", s)
		}
	}
	for i, r := range a.Audience.Regions {
		if tax != nil && !tax.HasRegion(r) {
			v.Add(fmt.Sprintf("audience.regions[%d]", i), "unknown region %q", r)
		}
	}
	for i, s := range a.Audience.Subscribers {
		if !ValidID(s) {
			v.Add(fmt.Sprintf("audience.subscribers[%d]", i), "%q is not a valid subscriber id", s)
		}
	}
	switch {
	case a.Marking == "":
		v.Add("marking", "is required: OFFICIAL or OFFICIAL-SENSITIVE")
	case !a.Marking.Valid():
		v.Add("marking", "%q is not carried by Herald: only OFFICIAL or OFFICIAL-SENSITIVE", a.Marking)
	}
	switch {
	case a.TLP == "":
		v.Add("tlp", "is required (no default): CLEAR, GREEN, AMBER, AMBER+STRICT or RED")
	case !a.TLP.Valid():
		v.Add("tlp", "must be CLEAR, GREEN, AMBER, AMBER+STRICT or RED, not %q", a.TLP)
	}
	switch a.Handling.Code {
	case "P":
		if a.Handling.Conditions != "" {
			v.Add("handling.conditions", "only handling code C carries conditions")
		}
	case "C":
		if strings.TrimSpace(a.Handling.Conditions) == "" {
			v.Add("handling.conditions", "required with handling code C")
		}
		CheckText(v, "handling.conditions", a.Handling.Conditions)
	case "":
		v.Add("handling.code", "is required: P or C")
	default:
		v.Add("handling.code", "must be P or C, not %q", a.Handling.Code)
	}
	if g := a.Grading; g != nil {
		if g.Source < 1 || g.Source > 3 {
			v.Add("grading.source", "must be 1, 2 or 3, not %d", g.Source)
		}
		if len(g.Intelligence) != 1 || g.Intelligence[0] < 'A' || g.Intelligence[0] > 'E' {
			v.Add("grading.intelligence", "must be A to E, not %q", g.Intelligence)
		}
	}
	if a.ExpiresAt != nil && !a.ExpiresAt.After(now) {
		v.Add("expires_at", "must be in the future")
	}
	if a.NotBefore != nil && a.ExpiresAt != nil && !a.ExpiresAt.After(*a.NotBefore) {
		v.Add("expires_at", "must be after not_before")
	}
	return v.Err()
}

// MayFollow checks rule 7 of PRODUCT.md §3: an update or cancel may not
// lower the marking or TLP of the alert it supersedes.
func (a *Alert) MayFollow(orig *Alert) error {
	v := &ValidationError{What: "invalid " + string(a.Type)}
	if a.Marking.Rank() < orig.Marking.Rank() {
		v.Add("marking", "%s is lower than %s on %s", a.Marking, orig.Marking, orig.ID)
	}
	if a.TLP.Rank() < orig.TLP.Rank() {
		v.Add("tlp", "%s is lower than %s on %s", a.TLP, orig.TLP, orig.ID)
	}
	return v.Err()
}

// Parse decodes, normalises and validates one JSON alert.
func Parse(data []byte, now time.Time, tax Taxonomy) (*Alert, error) {
	a, err := Decode(data)
	if err != nil {
		return nil, err
	}
	a.Normalize()
	if err := a.Validate(now, tax); err != nil {
		return a, err
	}
	return a, nil
}
