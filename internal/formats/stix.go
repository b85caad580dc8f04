package formats

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
)

// TLP 2.0 marking definitions: the OASIS TLP 2.0 extension
// (oasis-open/cti-stix-common-objects, extension-definition-specifications/
// tlp-2.0) fixes their ids and content; every producer publishes the
// same objects.
const (
	// TLP2Extension is the id of the OASIS TLP 2.0 extension definition
	// that every TLP 2.0 marking definition names in its extensions.
	TLP2Extension = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
	// tlp2Created is the created time of every TLP 2.0 marking definition.
	tlp2Created = "2022-10-01T00:00:00.000Z"
)

// TLPMarkingIDs maps each TLP label to the id of its standard STIX 2.1
// marking definition.
var TLPMarkingIDs = map[alerts.TLP]string{
	alerts.TLPClear:       "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
	alerts.TLPGreen:       "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
	alerts.TLPAmber:       "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
	alerts.TLPAmberStrict: "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
	alerts.TLPRed:         "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
}

// identityCreated is the created and modified time of the agency's
// identity object. The identity depends on nothing but the agency's name,
// so every bundle must carry it with the same times: a fixed instant that
// precedes every Herald alert.
var identityCreated = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// stixPatternTypes maps the indicator types STIX patterns can express to
// the property of a STIX Cyber-observable Object the pattern compares.
var stixPatternTypes = map[string]string{
	"email":  "email-addr:value",
	"url":    "url:value",
	"domain": "domain-name:value",
}

// STIX renders the alert as a STIX 2.1 bundle (media type ContentTypeSTIX).
//
// The bundle holds, in this order:
//   - the standard TLP 2.0 marking definitions, as OASIS publishes them:
//     TLP:CLEAR's (it marks the agency's identity) and the alert's TLP's;
//   - two statement marking definitions: the UK protective marking
//     ("UK Government Security Classifications: OFFICIAL-SENSITIVE") and
//     the 3x5x2 handling code with any conditions ("3x5x2 handling code C:
//     lawful sharing permitted with conditions: …");
//   - an identity for the agency (organization; TLP:CLEAR);
//   - a report: name = title; description = status notice, summary, body,
//     recommended actions, reporting and contact; report_types
//     ["threat-report"]; published = issued_at; labels "severity:<severity>",
//     "grading:<source>/<intelligence>" when graded, and "status:exercise"
//     or "status:test"; external_references names the Herald alert id
//     (source_name "herald"); object_refs = the identity and every
//     indicator and note of the alert (of a cancel: every one the chain
//     carried);
//   - one object per indicator (the first of each type and value), mapped as
//     below, carrying the status label as well.
//
// Every object but the standard TLP markings carries object_marking_refs:
// the TLP marking and both statements (the identity: TLP:CLEAR only), and
// created_by_ref the identity.
//
// Indicator mapping (STIX 2.1 has no cyber-observable for a phone number,
// bank account, vehicle, postal address or person's name, so those become
// notes on the report rather than custom objects a partner's platform would
// not understand):
//
//	Herald type  STIX object  content
//	email        indicator    pattern [email-addr:value = '<value>']
//	url          indicator    pattern [url:value = '<value>']
//	domain       indicator    pattern [domain-name:value = '<value>']
//	phone        note         abstract <value>, label indicator:phone
//	iban         note         abstract <value>, label indicator:iban
//	account      note         abstract <value>, label indicator:account
//	vehicle      note         abstract <value>, label indicator:vehicle
//	address      note         abstract <value>, label indicator:address
//	name         note         abstract <value>, label indicator:name
//	other        note         abstract <value>, label indicator:other
//
// An indicator has name "<Type label>: <value>", description = the
// indicator's context, indicator_types ["malicious-activity"],
// pattern_type "stix", pattern_version "2.1", valid_from = not_before or
// else the root's issued_at, valid_until = expires_at. A note's content is
// "<Type label>: <value>" and, after a blank line, the context; its
// object_refs name the report. Pattern strings escape \ as \\ and ' as \'
// (STIX 2.1 Patterning, StringLiteral).
//
// Versions: ids are derived from the agency and the root id (see the
// package documentation), created = the root's issued_at and modified =
// this alert's issued_at, so an update renders new versions of the same
// report and indicators. Indicators the chain carried earlier and the update
// drops (Context.Earlier) are rendered revoked, outside object_refs. A cancel
// renders the report and every indicator and note revoked.
func STIX(a *alerts.Alert, ctx Context) ([]byte, error) {
	c, err := resolve(a, ctx)
	if err != nil {
		return nil, err
	}
	created, modified := stixTime(c.rootIssuedAt), stixTime(c.issuedAt)
	cancelled := a.Type == alerts.TypeCancel
	identity := "identity--" + nameUUID("identity", c.agency)
	reportID := "report--" + nameUUID("report", c.agency, c.root)

	tlpRef := TLPMarkingIDs[a.TLP]
	markingStmt := stixStatement(c, markingStatement(a.Marking), "Protective marking "+string(a.Marking), identity, tlpRef)
	handlingStmt := stixStatement(c, handlingStatement(a.Handling), "3x5x2 handling code "+a.Handling.Code, identity, tlpRef)
	markings := []string{tlpRef, markingStmt.ID, handlingStmt.ID}

	var objects []stixObject
	if a.TLP != alerts.TLPClear {
		objects = append(objects, tlpMarking(alerts.TLPClear))
	}
	objects = append(objects, tlpMarking(a.TLP), markingStmt, handlingStmt, stixObject{
		Type:              "identity",
		SpecVersion:       "2.1",
		ID:                identity,
		Created:           stixTime(identityCreated),
		Modified:          stixTime(identityCreated),
		Name:              c.agency,
		IdentityClass:     "organization",
		ObjectMarkingRefs: []string{TLPMarkingIDs[alerts.TLPClear]},
	})

	var status []string
	if a.Status.IsTest() {
		status = []string{"status:" + string(a.Status)}
	}
	labels := append([]string{"severity:" + string(a.Severity)}, status...)
	if a.Grading != nil {
		labels = append(labels, "grading:"+a.Grading.Label())
	}
	report := stixObject{
		Type:               "report",
		SpecVersion:        "2.1",
		ID:                 reportID,
		CreatedByRef:       identity,
		Created:            created,
		Modified:           modified,
		Name:               a.Title,
		Description:        narrative(a, true),
		ReportTypes:        []string{"threat-report"},
		Published:          modified,
		ObjectRefs:         []string{identity},
		Labels:             labels,
		Revoked:            cancelled,
		ExternalReferences: []stixExternalRef{{SourceName: "herald", ExternalID: a.ID}},
		ObjectMarkingRefs:  markings,
	}
	validFrom := c.rootIssuedAt
	if a.NotBefore != nil {
		validFrom = *a.NotBefore
	}
	var validUntil string
	if a.ExpiresAt != nil && a.ExpiresAt.After(validFrom) {
		validUntil = stixTime(*a.ExpiresAt)
	}
	render := func(ind alerts.Indicator, revoked bool) stixObject {
		label := indicatorLabels[ind.Type]
		o := stixObject{
			SpecVersion:       "2.1",
			CreatedByRef:      identity,
			Created:           created,
			Modified:          modified,
			Labels:            status,
			Revoked:           revoked,
			ObjectMarkingRefs: markings,
		}
		if path, ok := stixPatternTypes[ind.Type]; ok {
			o.Type = "indicator"
			o.ID = "indicator--" + nameUUID("indicator", c.agency, c.root, ind.Type, ind.Value)
			o.Name = label + ": " + ind.Value
			o.Description = ind.Context
			o.IndicatorTypes = []string{"malicious-activity"}
			o.Pattern = "[" + path + " = '" + EscapeSTIXString(ind.Value) + "']"
			o.PatternType = "stix"
			o.PatternVersion = "2.1"
			o.ValidFrom = stixTime(validFrom)
			o.ValidUntil = validUntil
			return o
		}
		o.Type = "note"
		o.ID = "note--" + nameUUID("note", c.agency, c.root, ind.Type, ind.Value)
		o.Abstract = ind.Value
		o.Content = label + ": " + ind.Value
		if ind.Context != "" {
			o.Content += "\n\n" + ind.Context
		}
		o.ObjectRefs = []string{reportID}
		o.Labels = append([]string{"indicator:" + ind.Type}, status...)
		return o
	}
	var parts []stixObject
	for _, ind := range c.current {
		o := render(ind, false)
		report.ObjectRefs = append(report.ObjectRefs, o.ID)
		parts = append(parts, o)
	}
	for _, ind := range c.withdrawn {
		o := render(ind, true)
		if cancelled {
			report.ObjectRefs = append(report.ObjectRefs, o.ID)
		}
		parts = append(parts, o)
	}
	objects = append(objects, report)
	objects = append(objects, parts...)

	return encodeJSON(stixBundle{
		Type:    "bundle",
		ID:      "bundle--" + nameUUID("bundle", c.agency, a.ID),
		Objects: objects,
	})
}

// EscapeSTIXString escapes s for a STIX pattern string literal: a backslash
// becomes \\ and a single quote \' (STIX 2.1 Patterning, StringLiteral).
func EscapeSTIXString(s string) string {
	return stixEscaper.Replace(s)
}

var stixEscaper = strings.NewReplacer(`\`, `\\`, `'`, `\'`)

// stixTime formats t as a STIX timestamp: UTC, millisecond precision.
func stixTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// tlpMarking returns the standard TLP 2.0 marking definition of t.
func tlpMarking(t alerts.TLP) stixObject {
	return stixObject{
		Type:        "marking-definition",
		SpecVersion: "2.1",
		ID:          TLPMarkingIDs[t],
		Created:     tlp2Created,
		Name:        t.Label(),
		Extensions: map[string]stixTLPExtension{
			TLP2Extension: {ExtensionType: "property-extension", TLP: strings.ToLower(string(t))},
		},
	}
}

// stixStatement returns a statement marking definition of the chain. Marking
// definitions are immutable, so the id covers everything the object says:
// the chain, the statement and the TLP that marks it.
func stixStatement(c *chain, statement, name, identity, tlpRef string) stixObject {
	return stixObject{
		Type:              "marking-definition",
		SpecVersion:       "2.1",
		ID:                "marking-definition--" + nameUUID("marking-definition", c.agency, c.root, tlpRef, statement),
		CreatedByRef:      identity,
		Created:           stixTime(c.rootIssuedAt),
		Name:              name,
		DefinitionType:    "statement",
		Definition:        &stixStatementDef{Statement: statement},
		ObjectMarkingRefs: []string{tlpRef},
	}
}

// stixBundle is a STIX 2.1 bundle.
type stixBundle struct {
	Type    string       `json:"type"`
	ID      string       `json:"id"`
	Objects []stixObject `json:"objects"`
}

// stixObject holds the properties of every object Herald renders; each
// type sets its own and leaves the others empty. Field order is output
// order.
type stixObject struct {
	Type               string                      `json:"type"`
	SpecVersion        string                      `json:"spec_version"`
	ID                 string                      `json:"id"`
	CreatedByRef       string                      `json:"created_by_ref,omitempty"`
	Created            string                      `json:"created"`
	Modified           string                      `json:"modified,omitempty"`
	Name               string                      `json:"name,omitempty"`
	Description        string                      `json:"description,omitempty"`
	IdentityClass      string                      `json:"identity_class,omitempty"`
	ReportTypes        []string                    `json:"report_types,omitempty"`
	Published          string                      `json:"published,omitempty"`
	IndicatorTypes     []string                    `json:"indicator_types,omitempty"`
	Pattern            string                      `json:"pattern,omitempty"`
	PatternType        string                      `json:"pattern_type,omitempty"`
	PatternVersion     string                      `json:"pattern_version,omitempty"`
	ValidFrom          string                      `json:"valid_from,omitempty"`
	ValidUntil         string                      `json:"valid_until,omitempty"`
	Abstract           string                      `json:"abstract,omitempty"`
	Content            string                      `json:"content,omitempty"`
	ObjectRefs         []string                    `json:"object_refs,omitempty"`
	DefinitionType     string                      `json:"definition_type,omitempty"`
	Definition         *stixStatementDef           `json:"definition,omitempty"`
	Labels             []string                    `json:"labels,omitempty"`
	Revoked            bool                        `json:"revoked,omitempty"`
	ExternalReferences []stixExternalRef           `json:"external_references,omitempty"`
	ObjectMarkingRefs  []string                    `json:"object_marking_refs,omitempty"`
	Extensions         map[string]stixTLPExtension `json:"extensions,omitempty"`
}

// stixStatementDef is the definition of a statement marking.
type stixStatementDef struct {
	Statement string `json:"statement"`
}

// stixTLPExtension is the TLP 2.0 property extension of a marking definition.
type stixTLPExtension struct {
	ExtensionType string `json:"extension_type"`
	TLP           string `json:"tlp_2_0"`
}

// stixExternalRef is a STIX external reference.
type stixExternalRef struct {
	SourceName string `json:"source_name"`
	ExternalID string `json:"external_id"`
}

// encodeJSON encodes v indented by two spaces, without escaping <, > and &
// (the payloads are not embedded in HTML), ending in a newline.
func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return b.Bytes(), nil
}
