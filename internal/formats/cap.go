package formats

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
)

// CAPNamespace is the XML namespace of OASIS CAP 1.2.
const CAPNamespace = "urn:oasis:names:tc:emergency:cap:1.2"

// CAPEvent is the CAP event of every Herald alert: the kind of subject
// event the agency alerts partners to.
const CAPEvent = "Modern slavery and human trafficking"

// capSeverities maps severity to CAP severity, one to one.
var capSeverities = map[alerts.Severity]string{
	alerts.SeverityExtreme:  "Extreme",
	alerts.SeveritySevere:   "Severe",
	alerts.SeverityModerate: "Moderate",
	alerts.SeverityMinor:    "Minor",
}

// capUrgencies maps severity to CAP urgency. Herald alerts carry no timing
// of their own, so urgency follows severity: an extreme alert asks
// partners to act now, a severe or moderate one soon, a minor one when
// they next review.
var capUrgencies = map[alerts.Severity]string{
	alerts.SeverityExtreme:  "Immediate",
	alerts.SeveritySevere:   "Expected",
	alerts.SeverityModerate: "Expected",
	alerts.SeverityMinor:    "Future",
}

// capCertainties maps the 3x5x2 intelligence grading to CAP certainty:
// A (known directly to the source) Observed, B (known indirectly,
// corroborated) Likely, C (known indirectly) Possible, D (not known)
// Unknown, E (suspected to be false) Unlikely. An ungraded alert is
// Likely: the agency issued it as its assessment.
var capCertainties = map[string]string{
	"A": "Observed",
	"B": "Likely",
	"C": "Possible",
	"D": "Unknown",
	"E": "Unlikely",
}

// capStatuses maps alert status to CAP status.
var capStatuses = map[alerts.Status]string{
	alerts.StatusActual:   "Actual",
	alerts.StatusExercise: "Exercise",
	alerts.StatusTest:     "Test",
}

// capMsgTypes maps alert type to CAP msgType.
var capMsgTypes = map[alerts.Type]string{
	alerts.TypeAlert:  "Alert",
	alerts.TypeUpdate: "Update",
	alerts.TypeCancel: "Cancel",
}

// CAP renders the alert as an OASIS CAP 1.2 alert message (media type
// ContentTypeCAP).
//
// alert: identifier = alert id; sender = Context.Sender; sent = issued_at
// in CAP's form (UTC as -00:00, whole seconds); status Actual, Exercise or
// Test; msgType Alert, Update or Cancel; scope Restricted with restriction
// "TLP:<label>; <marking>; <3x5x2 handling statement>"; note, on an
// exercise or test, says so; references lists "sender,identifier,sent"
// for every referenced alert (Context.References), space-separated;
// incidents = the root id, grouping the chain.
//
// info (also on a cancel, to carry its reason): language en-GB; category
// Security; event CAPEvent; urgency from severity (extreme Immediate,
// severe and moderate Expected, minor Future; a cancel Past); severity
// one to one (Extreme, Severe, Moderate, Minor); certainty from the 3x5x2
// intelligence grade (A Observed, B Likely, C Possible, D Unknown, E
// Unlikely; ungraded Likely); effective = not_before; expires =
// expires_at; senderName = the agency; headline = title; description =
// status notice, summary, body and the indicators with their context;
// instruction = recommended actions and how to report a match; contact.
//
// Parameters: TLP ("TLP:AMBER"), marking, handlingCode, handlingConditions
// (code C), grading ("1/A") when graded, and one "indicator:<type>" per
// indicator (the first of each type and value) whose value is the
// indicator's value.
func CAP(a *alerts.Alert, ctx Context) ([]byte, error) {
	c, err := resolve(a, ctx)
	if err != nil {
		return nil, err
	}
	if err := checkCAPToken("context.sender", ctx.Sender); err != nil {
		return nil, fmt.Errorf("render alert %s as CAP: %w", a.ID, err)
	}
	if err := checkCAPToken("id", a.ID); err != nil {
		return nil, fmt.Errorf("render alert %s as CAP: %w", a.ID, err)
	}
	refs, err := capReferences(a, ctx)
	if err != nil {
		return nil, fmt.Errorf("render alert %s as CAP: %w", a.ID, err)
	}
	status, ok := capStatuses[a.Status]
	if !ok {
		return nil, fmt.Errorf("render alert %s as CAP: status: %q has no CAP status", a.ID, a.Status)
	}
	msgType, ok := capMsgTypes[a.Type]
	if !ok {
		return nil, fmt.Errorf("render alert %s as CAP: type: %q has no CAP msgType", a.ID, a.Type)
	}

	urgency := capUrgencies[a.Severity]
	if a.Type == alerts.TypeCancel {
		urgency = "Past"
	}
	certainty := "Likely"
	if a.Grading != nil {
		if certainty, ok = capCertainties[a.Grading.Intelligence]; !ok {
			return nil, fmt.Errorf("render alert %s as CAP: grading.intelligence: %q is not A to E", a.ID, a.Grading.Intelligence)
		}
	}

	params := []capParameter{
		{"TLP", capText(a.TLP.Label())},
		{"marking", capText(a.Marking)},
		{"handlingCode", capText(a.Handling.Code)},
	}
	if a.Handling.Code == "C" {
		params = append(params, capParameter{"handlingConditions", capText(a.Handling.Conditions)})
	}
	if a.Grading != nil {
		params = append(params, capParameter{"grading", capText(a.Grading.Label())})
	}
	inds := c.current
	if a.Type == alerts.TypeCancel {
		inds = nil
		for _, ind := range a.Indicators {
			inds = appendNew(inds, ind)
		}
	}
	var listed []string
	for _, ind := range inds {
		params = append(params, capParameter{"indicator:" + ind.Type, capText(ind.Value)})
		line := "- " + indicatorLabels[ind.Type] + ": " + ind.Value
		if ind.Context != "" {
			line += " (" + oneLine(ind.Context) + ")"
		}
		listed = append(listed, line)
	}
	description := narrative(a, false)
	if len(listed) > 0 {
		if description != "" {
			description += "\n\n"
		}
		description += "Indicators:\n" + strings.Join(listed, "\n")
	}
	instruction := actionList(a.Actions)
	if a.Reporting != "" {
		if instruction != "" {
			instruction += "\n\n"
		}
		instruction += "Reporting: " + a.Reporting
	}

	msg := capAlert{
		Identifier:  a.ID,
		Sender:      ctx.Sender,
		Sent:        capTime(c.issuedAt),
		Status:      status,
		MsgType:     msgType,
		Scope:       "Restricted",
		Restriction: capText(a.TLP.Label() + "; " + string(a.Marking) + "; " + handlingStatement(a.Handling)),
		Note:        capText(statusNotice(a.Status)),
		References:  refs,
		Incidents:   c.root,
		Info: &capInfo{
			Language:    "en-GB",
			Category:    "Security",
			Event:       CAPEvent,
			Urgency:     urgency,
			Severity:    capSeverities[a.Severity],
			Certainty:   certainty,
			SenderName:  c.agency,
			Headline:    capText(a.Title),
			Description: capText(description),
			Instruction: capText(instruction),
			Contact:     capText(a.Contact),
			Parameters:  params,
		},
	}
	if a.NotBefore != nil {
		msg.Info.Effective = capTime(*a.NotBefore)
	}
	if a.ExpiresAt != nil {
		msg.Info.Expires = capTime(*a.ExpiresAt)
	}

	return encodeCAP(a.ID, msg)
}

// CAPNoticeRestriction is the CAP restriction of a content-free cancel
// notice.
const CAPNoticeRestriction = "Content-free notice: the messages referenced are withdrawn for this recipient, " +
	"which is no longer eligible to receive them or what supersedes them. Delete or disregard them."

// CAPNoticeSuffix ends the identifier of a CAP cancel notice, which is a
// message of its own: the alert's identifier names the update or cancel
// its eligible recipients receive.
const CAPNoticeSuffix = ".withdrawn"

// CAPNotice renders the content-free cancel notice of an update or cancel
// as a CAP 1.2 Cancel: identifier = the follow-up's id + CAPNoticeSuffix,
// sender, sent = the follow-up's issued_at, its status, msgType Cancel,
// scope Restricted with CAPNoticeRestriction, and references naming every
// alert the follow-up supersedes (sender,identifier,sent, from
// Context.References); no info block, so no title, text, indicators, TLP
// or marking.
func CAPNotice(a *alerts.Alert, ctx Context) ([]byte, error) {
	if err := checkCAPToken("context.sender", ctx.Sender); err != nil {
		return nil, fmt.Errorf("render the CAP notice of %s: %w", a.ID, err)
	}
	if a.IssuedAt == nil {
		return nil, fmt.Errorf("render the CAP notice of %s: issued_at: required (set by Herald before delivery)", a.ID)
	}
	if len(a.References) == 0 {
		return nil, fmt.Errorf("render the CAP notice of %s: references: the notice names the alerts it withdraws, and there are none", a.ID)
	}
	refs, err := capReferences(a, ctx)
	if err != nil {
		return nil, fmt.Errorf("render the CAP notice of %s: %w", a.ID, err)
	}
	status, ok := capStatuses[a.Status]
	if a.Status == "" {
		status, ok = capStatuses[alerts.StatusActual], true
	}
	if !ok {
		return nil, fmt.Errorf("render the CAP notice of %s: status: %q has no CAP status", a.ID, a.Status)
	}
	return encodeCAP(a.ID, capAlert{
		Identifier:  a.ID + CAPNoticeSuffix,
		Sender:      ctx.Sender,
		Sent:        capTime(*a.IssuedAt),
		Status:      status,
		MsgType:     "Cancel",
		Scope:       "Restricted",
		Restriction: CAPNoticeRestriction,
		References:  refs,
	}) // no Info: the notice carries nothing of the alert
}

// encodeCAP writes a CAP message as XML: the declaration, the message
// indented, a final newline.
func encodeCAP(id string, msg any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(msg); err != nil {
		return nil, fmt.Errorf("render alert %s as CAP: %w", id, err)
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// appendNew appends ind unless list holds one of the same type and value.
func appendNew(list []alerts.Indicator, ind alerts.Indicator) []alerts.Indicator {
	for _, have := range list {
		if keyOf(have) == keyOf(ind) {
			return list
		}
	}
	return append(list, ind)
}

// oneLine folds line breaks and tabs into spaces.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// capTime formats t as CAP requires: whole seconds and an explicit offset,
// never "Z", and UTC as "-00:00" (CAP 1.2 §3.3.2: "The timezone for UTC
// MUST be represented as -00:00").
func capTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") + "-00:00" }

// checkCAPToken enforces CAP's rule for identifier and sender: no spaces,
// commas or restricted characters (< and &), and not empty.
func checkCAPToken(field, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s: required", field)
	case strings.ContainsAny(s, " ,<&\t\r\n"):
		return fmt.Errorf("%s: %q contains a space, comma, '<' or '&', which CAP forbids", field, s)
	}
	return nil
}

// capReferences renders the references of an update or cancel: each
// referenced alert as sender,identifier,sent, in the alert's order.
func capReferences(a *alerts.Alert, ctx Context) (string, error) {
	sent := make(map[string]time.Time, len(ctx.References))
	for _, r := range ctx.References {
		sent[r.ID] = r.IssuedAt
	}
	refs := make([]string, 0, len(a.References))
	for i, id := range a.References {
		t, ok := sent[id]
		if !ok || t.IsZero() {
			return "", fmt.Errorf("references[%d]: context.references gives no issued_at for %q", i, id)
		}
		if err := checkCAPToken(fmt.Sprintf("references[%d]", i), id); err != nil {
			return "", err
		}
		refs = append(refs, ctx.Sender+","+id+","+capTime(t))
	}
	return strings.Join(refs, " "), nil
}

// capAlert is a CAP 1.2 alert message; field order is the schema's. A
// content-free notice (CAPNotice) has no Info.
type capAlert struct {
	XMLName     xml.Name `xml:"urn:oasis:names:tc:emergency:cap:1.2 alert"`
	Identifier  string   `xml:"identifier"`
	Sender      string   `xml:"sender"`
	Sent        string   `xml:"sent"`
	Status      string   `xml:"status"`
	MsgType     string   `xml:"msgType"`
	Scope       string   `xml:"scope"`
	Restriction capText  `xml:"restriction"`
	Note        capText  `xml:"note,omitempty"`
	References  string   `xml:"references,omitempty"`
	Incidents   string   `xml:"incidents,omitempty"`
	Info        *capInfo `xml:"info,omitempty"`
}

// capInfo is the info block of a CAP alert; field order is the schema's.
type capInfo struct {
	Language    string         `xml:"language"`
	Category    string         `xml:"category"`
	Event       string         `xml:"event"`
	Urgency     string         `xml:"urgency"`
	Severity    string         `xml:"severity"`
	Certainty   string         `xml:"certainty"`
	Effective   string         `xml:"effective,omitempty"`
	Expires     string         `xml:"expires,omitempty"`
	SenderName  string         `xml:"senderName"`
	Headline    capText        `xml:"headline"`
	Description capText        `xml:"description,omitempty"`
	Instruction capText        `xml:"instruction,omitempty"`
	Contact     capText        `xml:"contact,omitempty"`
	Parameters  []capParameter `xml:"parameter"`
}

// capParameter is a CAP name/value pair.
type capParameter struct {
	ValueName string  `xml:"valueName"`
	Value     capText `xml:"value"`
}

// capText is element text that keeps its line breaks as they are rather
// than as character references (&#xA;), so a person reading the XML reads
// the text. Other escapes are encoding/xml's.
type capText string

// MarshalXML writes t as the character data of one element; empty text
// is left out, like omitempty.
func (t capText) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	if t == "" {
		return nil
	}
	if err := e.EncodeToken(start); err != nil {
		return err
	}
	if err := e.EncodeToken(xml.CharData(t)); err != nil {
		return err
	}
	return e.EncodeToken(start.End())
}
