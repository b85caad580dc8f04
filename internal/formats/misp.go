package formats

import (
	"strconv"

	"github.com/herald-alerts/herald/alerts"
)

// MISPTLPTags maps each TLP label to its tag in MISP's "tlp" taxonomy
// (MISP/misp-taxonomies tlp/machinetag.json, version 10 and later), with
// the taxonomy's colour.
var MISPTLPTags = map[alerts.TLP]MISPTag{
	alerts.TLPClear:       {Name: "tlp:clear", Colour: "#ffffff"},
	alerts.TLPGreen:       {Name: "tlp:green", Colour: "#33FF00"},
	alerts.TLPAmber:       {Name: "tlp:amber", Colour: "#FFC000"},
	alerts.TLPAmberStrict: {Name: "tlp:amber+strict", Colour: "#FFC000"},
	alerts.TLPRed:         {Name: "tlp:red", Colour: "#FF2B2B"},
}

// mispHeraldColour is the colour of Herald's own tags (namespace herald).
const mispHeraldColour = "#0b3d91"

// mispThreatLevels maps severity to MISP threat_level_id (1 High, 2 Medium,
// 3 Low, 4 Undefined). MISP has three levels for CAP's four severities:
// extreme and severe are both High.
var mispThreatLevels = map[alerts.Severity]string{
	alerts.SeverityExtreme:  "1",
	alerts.SeveritySevere:   "1",
	alerts.SeverityModerate: "2",
	alerts.SeverityMinor:    "3",
}

// mispAttributeType is how one Herald indicator type is written in MISP:
// the attribute type, its category (one MISP allows for that type; the
// type's default where it fits) and whether it is an IDS signature by
// default (MISP's sane default for the type).
type mispAttributeType struct {
	typ, category string
	toIDS         bool
}

// mispTypes maps Herald indicator types to MISP attribute types.
var mispTypes = map[string]mispAttributeType{
	"email":   {"email", "Social network", true},
	"url":     {"url", "Network activity", true},
	"domain":  {"domain", "Network activity", true},
	"phone":   {"phone-number", "Person", false},
	"iban":    {"iban", "Financial fraud", true},
	"account": {"bank-account-nr", "Financial fraud", true},
	"vehicle": {"text", "Other", false},
	"address": {"text", "Person", false},
	"name":    {"text", "Person", false},
	"other":   {"text", "Other", false},
}

// MISP renders the alert as a MISP event: {"Event": {…}} as MISP's REST
// API (POST /events/add, /events/edit) and MISP feeds take it (media type
// ContentTypeMISP). Integers are strings and flags booleans, as MISP
// writes them.
//
// Event: uuid derived from the root id (stable across updates); info =
// title; date = the root's issued_at (UTC day); timestamp and
// publish_timestamp = this alert's issued_at (Unix seconds; MISP takes a
// newer timestamp as a new version of the event); published true;
// threat_level_id from severity (extreme and severe 1 High, moderate 2
// Medium, minor 3 Low); analysis 2 (completed); distribution 0 (your
// organisation only); Orgc = the agency; one EventReport carrying the
// alert's prose (status notice, summary, body, actions, reporting,
// contact) and its handling statement.
//
// Event tags: tlp:<label> from MISP's tlp taxonomy (tlp:clear, tlp:green,
// tlp:amber, tlp:amber+strict, tlp:red), and Herald's own machine tags,
// since MISP has no taxonomy for UK markings or the 3x5x2 model:
// herald:marking="OFFICIAL|OFFICIAL-SENSITIVE", herald:handling="P|C",
// herald:severity="<severity>", herald:grading="<source>/<intelligence>"
// when graded, herald:status="exercise|test" when not actual, and
// herald:cancelled on a cancel.
//
// Attributes, one per indicator (the first of each type and value):
//
//	Herald type  MISP type        category          to_ids
//	email        email            Social network    true
//	url          url              Network activity  true
//	domain       domain           Network activity  true
//	phone        phone-number     Person            false
//	iban         iban             Financial fraud   true
//	account      bank-account-nr  Financial fraud   true
//	vehicle      text             Other             false
//	address      text             Person            false
//	name         text             Person            false
//	other        text             Other             false
//
// The comment is the indicator's context, prefixed "<Type label>: " for
// the text types so a reader sees what the text is; every attribute is
// tagged herald:indicator="<type>". to_ids is false on exercise and test
// alerts, so they never become detection rules. The uuid is derived from
// the root id, type and value, so updates keep it; distribution 5 (inherit
// the event's); timestamp = this alert's issued_at.
//
// Withdrawn indicators (Context.Earlier no longer carried by an update)
// are rendered with deleted true and to_ids false: MISP soft-deletes an
// attribute it holds when an edit or feed pull brings it deleted. A cancel
// is the same event, tagged herald:cancelled, with every attribute deleted:
// MISP keeps the event and its history, and nothing of it stays a live
// indicator.
func MISP(a *alerts.Alert, ctx Context) ([]byte, error) {
	c, err := resolve(a, ctx)
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(c.issuedAt.Unix(), 10)
	herald := func(predicate, value string) MISPTag {
		name := "herald:" + predicate
		if value != "" {
			name += `="` + value + `"`
		}
		return MISPTag{Name: name, Colour: mispHeraldColour}
	}
	tags := []MISPTag{
		MISPTLPTags[a.TLP],
		herald("marking", string(a.Marking)),
		herald("handling", a.Handling.Code),
		herald("severity", string(a.Severity)),
	}
	if a.Grading != nil {
		tags = append(tags, herald("grading", a.Grading.Label()))
	}
	if a.Status.IsTest() {
		tags = append(tags, herald("status", string(a.Status)))
	}
	if a.Type == alerts.TypeCancel {
		tags = append(tags, herald("cancelled", ""))
	}

	attribute := func(ind alerts.Indicator, deleted bool) mispAttribute {
		m := mispTypes[ind.Type]
		comment := ind.Context
		if m.typ == "text" {
			comment = indicatorLabels[ind.Type]
			if ind.Context != "" {
				comment += ": " + ind.Context
			}
		}
		return mispAttribute{
			UUID:               nameUUID("misp-attribute", c.agency, c.root, ind.Type, ind.Value),
			Type:               m.typ,
			Category:           m.category,
			Value:              ind.Value,
			Comment:            comment,
			ToIDS:              m.toIDS && !deleted && !a.Status.IsTest(),
			DisableCorrelation: false,
			Deleted:            deleted,
			Distribution:       "5",
			Timestamp:          ts,
			Tag:                []MISPTag{herald("indicator", ind.Type)},
		}
	}
	attrs := []mispAttribute{}
	for _, ind := range c.current {
		attrs = append(attrs, attribute(ind, false))
	}
	for _, ind := range c.withdrawn {
		attrs = append(attrs, attribute(ind, true))
	}

	report := narrative(a, true)
	if report != "" {
		report += "\n\n"
	}
	report += handlingStatement(a.Handling)

	return encodeJSON(mispDocument{Event: mispEvent{
		UUID:             nameUUID("misp-event", c.agency, c.root),
		Info:             a.Title,
		Date:             c.rootIssuedAt.UTC().Format("2006-01-02"),
		Timestamp:        ts,
		PublishTimestamp: ts,
		Published:        true,
		ThreatLevelID:    mispThreatLevels[a.Severity],
		Analysis:         "2",
		Distribution:     "0",
		ExtendsUUID:      "",
		Protected:        false,
		Orgc: mispOrg{
			Name: c.agency,
			UUID: nameUUID("organisation", c.agency),
		},
		Tag:       tags,
		Attribute: attrs,
		EventReport: []mispEventReport{{
			UUID:         nameUUID("misp-event-report", c.agency, c.root),
			Name:         a.Title,
			Content:      report,
			Distribution: "5",
			Timestamp:    ts,
			Deleted:      false,
		}},
	}})
}

// MISPTag is a MISP tag as events carry it.
type MISPTag struct {
	// Name is the tag, a machine tag such as tlp:amber.
	Name string `json:"name"`
	// Colour is the tag's display colour, #rrggbb.
	Colour string `json:"colour"`
	// Local is false: the tag travels with the event.
	Local bool `json:"local"`
	// RelationshipType is empty: the tag applies to what carries it.
	RelationshipType string `json:"relationship_type"`
}

// mispDocument is the JSON document MISP's API and feeds exchange.
type mispDocument struct {
	Event mispEvent `json:"Event"`
}

// mispEvent holds the fields a MISP feed event carries (PyMISP's
// MISPEvent.to_feed) and the distribution.
type mispEvent struct {
	UUID             string            `json:"uuid"`
	Info             string            `json:"info"`
	Date             string            `json:"date"`
	Timestamp        string            `json:"timestamp"`
	PublishTimestamp string            `json:"publish_timestamp"`
	Published        bool              `json:"published"`
	ThreatLevelID    string            `json:"threat_level_id"`
	Analysis         string            `json:"analysis"`
	Distribution     string            `json:"distribution"`
	ExtendsUUID      string            `json:"extends_uuid"`
	Protected        bool              `json:"protected"`
	Orgc             mispOrg           `json:"Orgc"`
	Tag              []MISPTag         `json:"Tag"`
	Attribute        []mispAttribute   `json:"Attribute"`
	EventReport      []mispEventReport `json:"EventReport"`
}

// mispOrg is the organisation that created an event.
type mispOrg struct {
	Name string `json:"name"`
	UUID string `json:"uuid"`
}

// mispAttribute is one MISP attribute.
type mispAttribute struct {
	UUID               string    `json:"uuid"`
	Type               string    `json:"type"`
	Category           string    `json:"category"`
	Value              string    `json:"value"`
	Comment            string    `json:"comment"`
	ToIDS              bool      `json:"to_ids"`
	DisableCorrelation bool      `json:"disable_correlation"`
	Deleted            bool      `json:"deleted"`
	Distribution       string    `json:"distribution"`
	Timestamp          string    `json:"timestamp"`
	Tag                []MISPTag `json:"Tag"`
}

// mispEventReport is a MISP event report: Markdown shown with the event.
type mispEventReport struct {
	UUID         string `json:"uuid"`
	Name         string `json:"name"`
	Content      string `json:"content"`
	Distribution string `json:"distribution"`
	Timestamp    string `json:"timestamp"`
	Deleted      bool   `json:"deleted"`
}
