package formats

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/herald-alerts/herald/alerts"
)

// Format names a webhook payload format (PRODUCT.md §2 webhooks[].format).
type Format string

// The payload formats a webhook may choose.
const (
	// FormatHerald is the default: Herald's own JSON envelope, rendered by
	// internal/deliver/webhook.
	FormatHerald Format = "herald"
	// FormatSTIX is a STIX 2.1 bundle, rendered by STIX.
	FormatSTIX Format = "stix"
	// FormatMISP is a MISP event, rendered by MISP.
	FormatMISP Format = "misp"
	// FormatCAP is an OASIS CAP 1.2 alert message, rendered by CAP.
	FormatCAP Format = "cap"
)

// Content types of the formats, for the Content-Type header of a webhook
// and the media type of a pulled object.
const (
	// ContentTypeHerald is the media type of the Herald envelope.
	ContentTypeHerald = "application/json"
	// ContentTypeSTIX is the STIX 2.1 media type.
	ContentTypeSTIX = "application/stix+json;version=2.1"
	// ContentTypeMISP is the media type of a MISP event: MISP's REST API
	// and feeds serve and take plain JSON.
	ContentTypeMISP = "application/json"
	// ContentTypeCAP is the media type of a CAP 1.2 message; a receiver
	// that only knows XML reads it as XML (the +xml suffix).
	ContentTypeCAP = "application/cap+xml"
)

// Formats lists every format, the default first.
var Formats = []Format{FormatHerald, FormatSTIX, FormatMISP, FormatCAP}

// Valid reports whether f is one of Formats.
func (f Format) Valid() bool { return f.ContentType() != "" }

// ContentType returns the media type of f, or "" for an unknown format.
func (f Format) ContentType() string {
	switch f {
	case FormatHerald:
		return ContentTypeHerald
	case FormatSTIX:
		return ContentTypeSTIX
	case FormatMISP:
		return ContentTypeMISP
	case FormatCAP:
		return ContentTypeCAP
	}
	return ""
}

// Context is what a renderer needs besides the alert itself: who issued it
// and where it sits in its chain of updates and cancels. The caller fills
// it from configuration and from the ledger of earlier alerts.
type Context struct {
	// Agency is the issuing agency's name as partners know it (the
	// email.issuer_name setting, never an analyst): the STIX identity,
	// the MISP Orgc and the CAP senderName. It scopes every derived id.
	// Required.
	Agency string
	// Sender is the CAP sender: the identifier of the agency's alerting
	// service, such as its alerts email address ("alerts@agency.example").
	// CAP forbids spaces, commas, '<' and '&' in it. Required by CAP and
	// used in CAP references; STIX and MISP ignore it.
	Sender string
	// Root is the id of the first alert of the chain this alert belongs
	// to: for an update or cancel, the alert its chain of references leads
	// back to; for a plain alert, its own id. Empty means the alert's own
	// id, which is allowed only for an alert of type alert.
	Root string
	// RootIssuedAt is the issued_at of the root alert: the STIX created
	// time of every object of the chain and the MISP event date. Zero means
	// the alert's own issued_at, which is allowed only when the alert is
	// its own root.
	RootIssuedAt time.Time
	// References gives, for every id in the alert's references, the
	// issued_at of that alert: CAP references name each superseded message
	// by sender, identifier and sent time. Every referenced id must be
	// listed; order does not matter (the alert's order is kept). Only CAP
	// reads it.
	References []Ref
	// Earlier lists the indicators the earlier alerts of the chain carried
	// that the recipient received (duplicates allowed): never an alert the
	// recipient was not sent, whose values the withdrawal would disclose. Those this alert no longer carries are
	// withdrawn: STIX renders them revoked, MISP renders them deleted, so a
	// partner's platform drops them; a cancel withdraws every indicator.
	// CAP, whose Update and Cancel replace the earlier message whole,
	// ignores it. Nil means nothing is withdrawn.
	Earlier []alerts.Indicator
}

// Ref names one alert an update or cancel supersedes.
type Ref struct {
	// ID is the referenced alert's id.
	ID string
	// IssuedAt is the referenced alert's issued_at (its CAP sent time).
	IssuedAt time.Time
}

// Namespace is the UUID namespace of every name-based (version 5) UUID
// Herald derives (see the package documentation for the names). It is fixed
// forever: changing it would give every object a new id.
var Namespace = uuid.MustParse("862861c8-84ec-41c1-832a-ac1409fe35fe")

// nameUUID returns the version 5 UUID of the NUL-joined parts in Namespace.
func nameUUID(parts ...string) string {
	return uuid.NewSHA1(Namespace, []byte(strings.Join(parts, "\x00"))).String()
}

// chain is an alert checked for rendering, with its chain resolved.
type chain struct {
	a            *alerts.Alert
	agency       string
	root         string
	issuedAt     time.Time // this alert's issued_at
	rootIssuedAt time.Time
	// current are the alert's own indicators, first of each type and value;
	// withdrawn are the earlier ones it no longer carries. A cancel carries
	// nothing: every indicator is withdrawn.
	current, withdrawn []alerts.Indicator
}

// resolve checks what every renderer relies on and resolves the chain.
// Renderers take alerts that passed alerts.Validate; these checks name
// the field when a caller forgot a Herald-set field or the context.
func resolve(a *alerts.Alert, ctx Context) (*chain, error) {
	if a == nil {
		return nil, errors.New("render alert: no alert")
	}
	c := &chain{a: a, agency: ctx.Agency, root: ctx.Root, rootIssuedAt: ctx.RootIssuedAt}
	switch {
	case a.ID == "":
		return nil, errors.New("render alert: id: required (assigned by Herald before rendering)")
	case a.IssuedAt == nil || a.IssuedAt.IsZero():
		return nil, fmt.Errorf("render alert %s: issued_at: required (set by Herald before rendering)", a.ID)
	case strings.TrimSpace(ctx.Agency) == "":
		return nil, fmt.Errorf("render alert %s: context.agency: required (the agency's name)", a.ID)
	}
	c.issuedAt = *a.IssuedAt
	if c.root == "" {
		if a.Type != alerts.TypeAlert {
			return nil, fmt.Errorf("render alert %s: context.root: required for an %s (the id of the first alert of its chain)", a.ID, a.Type)
		}
		c.root = a.ID
	}
	if c.rootIssuedAt.IsZero() {
		if c.root != a.ID {
			return nil, fmt.Errorf("render alert %s: context.root_issued_at: required when the root %s is another alert", a.ID, c.root)
		}
		c.rootIssuedAt = c.issuedAt
	}
	if c.rootIssuedAt.After(c.issuedAt) {
		return nil, fmt.Errorf("render alert %s: context.root_issued_at: %s is after the alert's issued_at %s",
			a.ID, c.rootIssuedAt.UTC().Format(time.RFC3339Nano), c.issuedAt.UTC().Format(time.RFC3339Nano))
	}
	if !a.TLP.Valid() {
		return nil, fmt.Errorf("render alert %s: tlp: %q is not a TLP 2.0 label", a.ID, a.TLP)
	}
	if !a.Marking.Valid() {
		return nil, fmt.Errorf("render alert %s: marking: %q is not carried by Herald", a.ID, a.Marking)
	}
	if !a.Severity.Valid() {
		return nil, fmt.Errorf("render alert %s: severity: %q is not a CAP severity", a.ID, a.Severity)
	}
	if a.Handling.Code != "P" && a.Handling.Code != "C" {
		return nil, fmt.Errorf("render alert %s: handling.code: %q is not a 3x5x2 handling code (P or C)", a.ID, a.Handling.Code)
	}
	seen := map[indicatorKey]bool{}
	for i, ind := range a.Indicators {
		if _, ok := indicatorLabels[ind.Type]; !ok {
			return nil, fmt.Errorf("render alert %s: indicators[%d].type: unknown type %q", a.ID, i, ind.Type)
		}
		if k := keyOf(ind); !seen[k] {
			seen[k] = true
			c.current = append(c.current, ind)
		}
	}
	for i, ind := range ctx.Earlier {
		if _, ok := indicatorLabels[ind.Type]; !ok {
			return nil, fmt.Errorf("render alert %s: context.earlier[%d].type: unknown type %q", a.ID, i, ind.Type)
		}
		if k := keyOf(ind); !seen[k] {
			seen[k] = true
			c.withdrawn = append(c.withdrawn, ind)
		}
	}
	if a.Type == alerts.TypeCancel {
		c.withdrawn = append(c.current, c.withdrawn...)
		c.current = nil
	}
	return c, nil
}

// indicatorKey identifies an indicator within a chain.
type indicatorKey struct{ typ, value string }

func keyOf(ind alerts.Indicator) indicatorKey { return indicatorKey{ind.Type, ind.Value} }

// indicatorLabels are the human names of the indicator types, used where a
// format has no type of its own for one.
var indicatorLabels = map[string]string{
	"phone":   "Phone number",
	"email":   "Email address",
	"url":     "URL",
	"domain":  "Domain",
	"iban":    "IBAN",
	"account": "Bank account",
	"vehicle": "Vehicle",
	"address": "Address",
	"name":    "Name",
	"other":   "Other",
}

// statusNotice is the first line of an exercise or test alert's text, so no
// reader mistakes it for a real one; "" for an actual alert.
func statusNotice(s alerts.Status) string {
	switch s {
	case alerts.StatusExercise:
		return "EXERCISE: this alert is part of an exercise. Do not act on it as real intelligence."
	case alerts.StatusTest:
		return "TEST: this alert is a test message. Do not act on it."
	}
	return ""
}

// narrative joins the alert's prose for formats with one free-text field:
// the status notice, summary, body, recommended actions, how to report a
// match and the contact, in that order, separated by blank lines; empty
// parts are left out.
func narrative(a *alerts.Alert, withActions bool) string {
	var parts []string
	add := func(s string) {
		if s = strings.TrimSpace(s); s != "" {
			parts = append(parts, s)
		}
	}
	add(statusNotice(a.Status))
	add(a.Summary)
	add(a.Body)
	if withActions {
		add(actionList(a.Actions))
		if a.Reporting != "" {
			add("Reporting: " + a.Reporting)
		}
		if a.Contact != "" {
			add("Contact: " + a.Contact)
		}
	}
	return strings.Join(parts, "\n\n")
}

// actionList renders recommended actions as a titled list, or "".
func actionList(actions []string) string {
	if len(actions) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("Recommended actions:")
	for _, act := range actions {
		b.WriteString("\n- ")
		b.WriteString(act)
	}
	return b.String()
}

// handlingStatement states the 3x5x2 handling code in words.
func handlingStatement(h alerts.Handling) string {
	if h.Code == "C" {
		return "3x5x2 handling code C: lawful sharing permitted with conditions: " + strings.TrimSpace(h.Conditions)
	}
	return "3x5x2 handling code " + h.Code + ": lawful sharing permitted"
}

// markingStatement states the UK protective marking in words.
func markingStatement(m alerts.Marking) string {
	return "UK Government Security Classifications: " + string(m)
}
