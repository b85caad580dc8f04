package alerts

import "strings"

// TLP is a Traffic Light Protocol 2.0 label, stored bare ("AMBER+STRICT").
type TLP string

// TLP labels, in increasing order of restriction.
const (
	TLPClear       TLP = "CLEAR"
	TLPGreen       TLP = "GREEN"
	TLPAmber       TLP = "AMBER"
	TLPAmberStrict TLP = "AMBER+STRICT"
	TLPRed         TLP = "RED"
)

var tlpRank = map[TLP]int{TLPClear: 1, TLPGreen: 2, TLPAmber: 3, TLPAmberStrict: 4, TLPRed: 5}

// NormalizeTLP upper-cases s and strips a "TLP:" prefix. The result may
// still be invalid; check it with Valid.
func NormalizeTLP(s string) TLP {
	u := strings.ToUpper(strings.TrimSpace(s))
	return TLP(strings.TrimPrefix(u, "TLP:"))
}

// Valid reports whether t is one of the five labels.
func (t TLP) Valid() bool { _, ok := tlpRank[t]; return ok }

// Rank orders labels from CLEAR (1) to RED (5); an invalid label is 0.
func (t TLP) Rank() int { return tlpRank[t] }

// Exceeds reports whether t is more restricted than limit.
func (t TLP) Exceeds(limit TLP) bool { return t.Rank() > limit.Rank() }

// Label returns the label as written on documents, such as "TLP:AMBER".
func (t TLP) Label() string { return "TLP:" + string(t) }

// Severity is an OASIS CAP 1.2 severity.
type Severity string

// Severities, in increasing order.
const (
	SeverityMinor    Severity = "minor"
	SeverityModerate Severity = "moderate"
	SeveritySevere   Severity = "severe"
	SeverityExtreme  Severity = "extreme"
)

var severityRank = map[Severity]int{SeverityMinor: 1, SeverityModerate: 2, SeveritySevere: 3, SeverityExtreme: 4}

// Valid reports whether s is one of the four severities.
func (s Severity) Valid() bool { _, ok := severityRank[s]; return ok }

// Rank orders severities from minor (1) to extreme (4); invalid is 0.
func (s Severity) Rank() int { return severityRank[s] }

// Marking is a protective marking under the UK Government Security
// Classifications. Herald carries only OFFICIAL and OFFICIAL-SENSITIVE.
type Marking string

// Markings Herald accepts.
const (
	MarkingOfficial          Marking = "OFFICIAL"
	MarkingOfficialSensitive Marking = "OFFICIAL-SENSITIVE"
)

// Valid reports whether m may be carried by Herald.
func (m Marking) Valid() bool { return m.Rank() > 0 }

// Sensitive reports whether m is OFFICIAL-SENSITIVE.
func (m Marking) Sensitive() bool { return m == MarkingOfficialSensitive }

// Rank orders markings: OFFICIAL 1, OFFICIAL-SENSITIVE 2, anything else 0.
func (m Marking) Rank() int {
	switch m {
	case MarkingOfficial:
		return 1
	case MarkingOfficialSensitive:
		return 2
	}
	return 0
}

// Type is the CAP msgType of an alert.
type Type string

// Alert types.
const (
	TypeAlert  Type = "alert"
	TypeUpdate Type = "update"
	TypeCancel Type = "cancel"
)

// Event returns the webhook event type for an alert of this type
// (PRODUCT.md §5): alert.published, alert.updated or alert.cancelled.
func (t Type) Event() string {
	switch t {
	case TypeUpdate:
		return "alert.updated"
	case TypeCancel:
		return "alert.cancelled"
	}
	return "alert.published"
}

// Status is the CAP status of an alert.
type Status string

// Alert statuses.
const (
	StatusActual   Status = "actual"
	StatusExercise Status = "exercise"
	StatusTest     Status = "test"
)

// IsTest reports whether only partners accepting tests may receive it.
func (s Status) IsTest() bool { return s == StatusExercise || s == StatusTest }

// IndicatorTypes lists the accepted indicator types.
var IndicatorTypes = []string{"phone", "email", "url", "domain", "iban", "account", "vehicle", "address", "name", "other"}
