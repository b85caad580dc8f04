package formats_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/formats"
)

// mispEvent mirrors what a MISP feed event carries: the fields PyMISP's
// MISPEvent.to_feed requires (MISP/PyMISP pymisp/mispevent.py,
// _fields_for_feed, at commit 99a1c797dd898470575d37ebab1eace6f12aded8),
// with MISP's JSON types: integers as strings, flags as booleans. Decoding
// with unknown fields refused checks Herald writes nothing else but
// distribution and EventReport, which MISP's REST API and sync also take.
type mispEvent struct {
	Event struct {
		UUID             string `json:"uuid"`
		Info             string `json:"info"`
		Date             string `json:"date"`
		Timestamp        string `json:"timestamp"`
		PublishTimestamp string `json:"publish_timestamp"`
		Published        bool   `json:"published"`
		ThreatLevelID    string `json:"threat_level_id"`
		Analysis         string `json:"analysis"`
		Distribution     string `json:"distribution"`
		ExtendsUUID      string `json:"extends_uuid"`
		Protected        bool   `json:"protected"`
		Orgc             struct {
			Name string `json:"name"`
			UUID string `json:"uuid"`
		} `json:"Orgc"`
		Tag       []mispTag `json:"Tag"`
		Attribute []struct {
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
			Tag                []mispTag `json:"Tag"`
		} `json:"Attribute"`
		EventReport []struct {
			UUID         string `json:"uuid"`
			Name         string `json:"name"`
			Content      string `json:"content"`
			Distribution string `json:"distribution"`
			Timestamp    string `json:"timestamp"`
			Deleted      bool   `json:"deleted"`
		} `json:"EventReport"`
	} `json:"Event"`
}

type mispTag struct {
	Name             string `json:"name"`
	Colour           string `json:"colour"`
	Local            bool   `json:"local"`
	RelationshipType string `json:"relationship_type"`
}

// feedRequired are the keys PyMISP's to_feed refuses to write an event
// without (the same commit), per object.
var feedRequired = map[string][]string{
	"Event":     {"uuid", "info", "threat_level_id", "analysis", "timestamp", "publish_timestamp", "published", "date", "extends_uuid", "protected", "Orgc", "Tag"},
	"Orgc":      {"name", "uuid"},
	"Tag":       {"name", "colour", "relationship_type", "local"},
	"Attribute": {"uuid", "value", "category", "type", "comment", "timestamp", "to_ids", "disable_correlation"},
}

// mispCategories are the categories MISP allows for each attribute type
// Herald writes (category_type_mappings of describeTypes.json, MISP/PyMISP
// pymisp/data/describeTypes.json at the same commit).
var mispCategories = map[string][]string{
	"email":           {"Payload delivery", "Network activity", "Attribution", "Social network", "Person"},
	"url":             {"Payload delivery", "Network activity", "External analysis"},
	"domain":          {"Payload delivery", "Network activity", "External analysis"},
	"phone-number":    {"Financial fraud", "Person", "Other"},
	"iban":            {"Financial fraud"},
	"bank-account-nr": {"Financial fraud"},
	"text":            {"Internal reference", "Antivirus detection", "Payload delivery", "Artifacts dropped", "Payload installation", "Persistence mechanism", "Network activity", "Payload type", "Attribution", "External analysis", "Financial fraud", "Support Tool", "Social network", "Person", "Other"},
}

// tlpTaxonomy reads the vendored MISP tlp taxonomy: tag name → colour.
func tlpTaxonomy(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "misp", "tlp-machinetag.json"))
	require.NoError(t, err)
	var tax struct {
		Namespace  string `json:"namespace"`
		Predicates []struct {
			Value  string `json:"value"`
			Colour string `json:"colour"`
		} `json:"predicates"`
	}
	require.NoError(t, json.Unmarshal(b, &tax))
	tags := map[string]string{}
	for _, p := range tax.Predicates {
		tags[tax.Namespace+":"+p.Value] = p.Colour
	}
	return tags
}

func decodeMISP(t *testing.T, b []byte) mispEvent {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ev mispEvent
	require.NoError(t, dec.Decode(&ev))
	return ev
}

// requireKeys checks every key of feedRequired is present, recursively.
func requireKeys(t *testing.T, b []byte) {
	t.Helper()
	var doc map[string]map[string]any
	require.NoError(t, json.Unmarshal(b, &doc))
	ev := doc["Event"]
	has := func(obj map[string]any, kind string) {
		for _, k := range feedRequired[kind] {
			require.Contains(t, obj, k, "%s.%s", kind, k)
		}
	}
	has(ev, "Event")
	has(ev["Orgc"].(map[string]any), "Orgc")
	for _, tag := range ev["Tag"].([]any) {
		has(tag.(map[string]any), "Tag")
	}
	for _, a := range ev["Attribute"].([]any) {
		has(a.(map[string]any), "Attribute")
		for _, tag := range a.(map[string]any)["Tag"].([]any) {
			has(tag.(map[string]any), "Tag")
		}
	}
}

var (
	digits  = regexp.MustCompile(`^[0-9]+$`)
	isoDate = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	colour  = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
)

// TestMISPStructure checks every case against what MISP's feed and REST
// import take: fields, JSON types, enumerations, uuids, type/category
// pairs and tag names from MISP's taxonomy.
func TestMISPStructure(t *testing.T) {
	tlpTags := tlpTaxonomy(t)
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			b, err := formats.MISP(c.a, c.ctx)
			require.NoError(t, err)
			requireKeys(t, b)
			ev := decodeMISP(t, b).Event
			require.Equal(t, c.a.Title, ev.Info)
			requireUUID(t, ev.UUID)
			requireUUID(t, ev.Orgc.UUID)
			require.Equal(t, agency, ev.Orgc.Name)
			require.Regexp(t, isoDate, ev.Date)
			require.Regexp(t, digits, ev.Timestamp)
			require.Equal(t, strconv.FormatInt(c.a.IssuedAt.Unix(), 10), ev.Timestamp)
			require.Equal(t, ev.Timestamp, ev.PublishTimestamp)
			require.True(t, ev.Published)
			require.Contains(t, []string{"1", "2", "3", "4"}, ev.ThreatLevelID)
			require.Equal(t, "2", ev.Analysis)
			require.Equal(t, "0", ev.Distribution)

			var tlp []string
			for _, tag := range ev.Tag {
				require.Regexp(t, colour, tag.Colour)
				require.False(t, tag.Local)
				if strings.HasPrefix(tag.Name, "tlp:") {
					want, ok := tlpTags[tag.Name]
					require.True(t, ok, "%s is in MISP's tlp taxonomy", tag.Name)
					require.Equal(t, want, tag.Colour, "%s has the taxonomy's colour", tag.Name)
					tlp = append(tlp, tag.Name)
					continue
				}
				require.True(t, strings.HasPrefix(tag.Name, "herald:"), tag.Name)
			}
			require.Equal(t, []string{"tlp:" + strings.ToLower(string(c.a.TLP))}, tlp)
			require.Contains(t, tagNames(ev.Tag), `herald:marking="`+string(c.a.Marking)+`"`)
			require.Contains(t, tagNames(ev.Tag), `herald:handling="`+c.a.Handling.Code+`"`)

			for _, attr := range ev.Attribute {
				requireUUID(t, attr.UUID)
				require.Contains(t, mispCategories[attr.Type], attr.Category, "%s may have category %s", attr.Type, attr.Category)
				require.NotEmpty(t, attr.Value)
				require.Equal(t, "5", attr.Distribution)
				require.Equal(t, ev.Timestamp, attr.Timestamp)
				require.Len(t, attr.Tag, 1)
				require.True(t, strings.HasPrefix(attr.Tag[0].Name, `herald:indicator="`))
			}
			require.Len(t, ev.EventReport, 1)
			requireUUID(t, ev.EventReport[0].UUID)
			require.Contains(t, ev.EventReport[0].Content, "3x5x2 handling code "+c.a.Handling.Code)
		})
	}
}

// TestMISPEveryTLP: each TLP label becomes its tag in MISP's taxonomy.
func TestMISPEveryTLP(t *testing.T) {
	tlpTags := tlpTaxonomy(t)
	for tlp, tag := range formats.MISPTLPTags {
		require.Contains(t, tlpTags, tag.Name, tlp)
		require.Equal(t, tlpTags[tag.Name], tag.Colour, tlp)
		a := rootAlert()
		a.TLP = tlp
		b, err := formats.MISP(a, formats.Context{Agency: agency})
		require.NoError(t, err)
		require.Contains(t, tagNames(decodeMISP(t, b).Event.Tag), "tlp:"+strings.ToLower(string(tlp)))
	}
	require.Len(t, formats.MISPTLPTags, 5)
}

func tagNames(tags []mispTag) []string {
	var names []string
	for _, tag := range tags {
		names = append(names, tag.Name)
	}
	return names
}

func requireUUID(t *testing.T, s string) {
	t.Helper()
	u, err := uuid.Parse(s)
	require.NoError(t, err, s)
	require.Equal(t, s, u.String(), "canonical lower-case form")
}

// TestMISPVersions: the event and its attributes keep their uuids across
// an update; what an update drops is deleted; a cancel deletes all and
// is tagged herald:cancelled; exercises never set to_ids.
func TestMISPVersions(t *testing.T) {
	cs := cases()
	events := make([]mispEvent, len(cs))
	for i, c := range cs {
		b, err := formats.MISP(c.a, c.ctx)
		require.NoError(t, err)
		events[i] = decodeMISP(t, b)
	}
	first, upd, cancel := events[0].Event, events[1].Event, events[2].Event
	require.Equal(t, first.UUID, upd.UUID)
	require.Equal(t, first.UUID, cancel.UUID)
	require.Equal(t, first.Date, upd.Date, "the event date is the root's")
	require.Less(t, first.Timestamp, upd.Timestamp)
	require.Less(t, upd.Timestamp, cancel.Timestamp)
	require.Equal(t, "1", upd.ThreatLevelID, "extreme is High")
	require.Equal(t, "1", first.ThreatLevelID, "severe is High")
	require.Equal(t, "3", cancel.ThreatLevelID, "minor is Low")

	uuids := map[string]string{} // value → uuid in the first event
	for _, a := range first.Attribute {
		uuids[a.Value] = a.UUID
		require.False(t, a.Deleted)
	}
	var deleted []string
	for _, a := range upd.Attribute {
		if u, ok := uuids[a.Value]; ok {
			require.Equal(t, u, a.UUID, "update keeps the uuid of %s", a.Value)
		}
		if a.Deleted {
			deleted = append(deleted, a.Value)
			require.False(t, a.ToIDS)
		}
	}
	require.Equal(t, []string{"+44 7700 900123"}, deleted)
	require.NotContains(t, tagNames(upd.Tag), "herald:cancelled")

	require.Contains(t, tagNames(cancel.Tag), "herald:cancelled")
	require.Len(t, cancel.Attribute, len(first.Attribute)+1, "every indicator the chain carried")
	for _, a := range cancel.Attribute {
		require.True(t, a.Deleted, a.Value)
		require.False(t, a.ToIDS, a.Value)
	}

	ex := events[3].Event
	require.Contains(t, tagNames(ex.Tag), `herald:status="exercise"`)
	for _, a := range ex.Attribute {
		require.False(t, a.ToIDS, "an exercise attribute is no detection rule: %s", a.Value)
	}
	require.True(t, strings.HasPrefix(ex.EventReport[0].Content, "EXERCISE:"))
}

// TestMISPTypes pins the indicator-type mapping and the comments of the
// text attributes.
func TestMISPTypes(t *testing.T) {
	b, err := formats.MISP(rootAlert(), formats.Context{Agency: agency})
	require.NoError(t, err)
	got := map[string]string{}
	comments := map[string]string{}
	for _, a := range decodeMISP(t, b).Event.Attribute {
		typ := strings.TrimSuffix(strings.TrimPrefix(a.Tag[0].Name, `herald:indicator="`), `"`)
		got[typ] = a.Type
		comments[typ] = a.Comment
	}
	require.Equal(t, map[string]string{
		"phone": "phone-number", "email": "email", "url": "url", "domain": "domain", "iban": "iban",
		"account": "bank-account-nr", "vehicle": "text", "address": "text", "name": "text", "other": "text",
	}, got)
	require.Equal(t, "Vehicle: White minibus used for transport to sites", comments["vehicle"])
	require.Equal(t, "Other", comments["other"], "a text attribute without context still says what it is")
	require.Equal(t, "Sends job offers", comments["email"])
	for _, typ := range alerts.IndicatorTypes {
		require.Contains(t, got, typ, "every indicator type is mapped")
	}
}
