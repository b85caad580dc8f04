package formats_test

import (
	"encoding/xml"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/formats"
	"github.com/herald-alerts/herald/internal/formats/formatstest"
)

// xmllint validates a CAP document against the CAP 1.2 XSD
// (formatstest.Xmllint, shared with the packages that serve CAP).
func xmllint(t *testing.T, doc []byte) (string, error) { return formatstest.Xmllint(t, doc) }

// TestCAPSchema validates every golden message (TestGolden holds them
// equal to what CAP renders) against the CAP 1.2 XSD.
func TestCAPSchema(t *testing.T) {
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			b, err := os.ReadFile(goldenPath(c, rendererNamed("cap")))
			require.NoError(t, err)
			out, err := xmllint(t, b)
			require.NoError(t, err, out)
			require.Contains(t, out, "validates")
		})
	}
}

// TestCAPSchemaRejects shows the validation can fail.
func TestCAPSchemaRejects(t *testing.T) {
	good, err := formats.CAP(rootAlert(), formats.Context{Agency: agency, Sender: sender})
	require.NoError(t, err)
	for name, edit := range map[string][2]string{
		"sent in UTC with Z":    {"<sent>2026-11-30T09:15:30-00:00</sent>", "<sent>2026-11-30T09:15:30Z</sent>"},
		"unknown status":        {"<status>Actual</status>", "<status>Real</status>"},
		"elements out of order": {"<msgType>Alert</msgType>\n  <scope>Restricted</scope>", "<scope>Restricted</scope>\n  <msgType>Alert</msgType>"},
		"unknown severity":      {"<severity>Severe</severity>", "<severity>High</severity>"},
	} {
		t.Run(name, func(t *testing.T) {
			broken := strings.Replace(string(good), edit[0], edit[1], 1)
			require.NotEqual(t, string(good), broken)
			out, err := xmllint(t, []byte(broken))
			require.Error(t, err, out)
		})
	}
}

// capMessage reads back the parts of a CAP message the tests check.
type capMessage struct {
	XMLName     xml.Name `xml:"urn:oasis:names:tc:emergency:cap:1.2 alert"`
	Identifier  string   `xml:"identifier"`
	Sender      string   `xml:"sender"`
	Sent        string   `xml:"sent"`
	Status      string   `xml:"status"`
	MsgType     string   `xml:"msgType"`
	Scope       string   `xml:"scope"`
	Restriction string   `xml:"restriction"`
	Note        string   `xml:"note"`
	References  string   `xml:"references"`
	Incidents   string   `xml:"incidents"`
	Info        struct {
		Urgency     string `xml:"urgency"`
		Severity    string `xml:"severity"`
		Certainty   string `xml:"certainty"`
		Effective   string `xml:"effective"`
		Expires     string `xml:"expires"`
		SenderName  string `xml:"senderName"`
		Headline    string `xml:"headline"`
		Description string `xml:"description"`
		Instruction string `xml:"instruction"`
		Parameters  []struct {
			Name  string `xml:"valueName"`
			Value string `xml:"value"`
		} `xml:"parameter"`
	} `xml:"info"`
}

var capDateTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d$`)

// TestCAPContent checks the mapping of each case.
func TestCAPContent(t *testing.T) {
	want := map[string]struct{ msgType, status, urgency, severity, certainty, references string }{
		"alert":    {"Alert", "Actual", "Expected", "Severe", "Likely", ""},
		"update":   {"Update", "Actual", "Immediate", "Extreme", "Likely", sender + ",01jdx5v7k2m3n4p5q6r7s8t9va,2026-11-30T09:15:30-00:00"},
		"cancel":   {"Cancel", "Actual", "Past", "Minor", "Likely", sender + ",01jdz0aaaabbbbccccddddeeee,2026-12-01T10:00:00-00:00"},
		"exercise": {"Alert", "Exercise", "Expected", "Moderate", "Likely", ""},
	}
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			b, err := formats.CAP(c.a, c.ctx)
			require.NoError(t, err)
			var m capMessage
			require.NoError(t, xml.Unmarshal(b, &m))
			w := want[c.name]
			require.Equal(t, c.a.ID, m.Identifier)
			require.Equal(t, sender, m.Sender)
			require.Regexp(t, capDateTime, m.Sent)
			require.Equal(t, w.msgType, m.MsgType)
			require.Equal(t, w.status, m.Status)
			require.Equal(t, "Restricted", m.Scope)
			require.True(t, strings.HasPrefix(m.Restriction, c.a.TLP.Label()+"; "+string(c.a.Marking)+"; 3x5x2 handling code "+c.a.Handling.Code))
			require.Equal(t, w.references, m.References)
			require.Equal(t, w.urgency, m.Info.Urgency)
			require.Equal(t, w.severity, m.Info.Severity)
			require.Equal(t, w.certainty, m.Info.Certainty)
			require.Equal(t, agency, m.Info.SenderName)
			require.Equal(t, c.a.Title, m.Info.Headline)
			if c.a.Status.IsTest() {
				require.True(t, strings.HasPrefix(m.Note, "EXERCISE:"))
			} else {
				require.Empty(t, m.Note)
			}
			if c.a.ExpiresAt != nil {
				require.Regexp(t, capDateTime, m.Info.Expires)
			}
			for _, act := range c.a.Actions {
				require.Contains(t, m.Info.Instruction, act)
			}
			require.Contains(t, m.Info.Description, c.a.Summary, "text survives XML escaping")
			require.Contains(t, m.Info.Description, c.a.Body)
			var inds []string
			for _, p := range m.Info.Parameters {
				if typ, ok := strings.CutPrefix(p.Name, "indicator:"); ok {
					inds = append(inds, typ+"="+p.Value)
				}
			}
			var wantInds []string
			seen := map[string]bool{}
			for _, ind := range c.a.Indicators {
				if k := ind.Type + "=" + ind.Value; !seen[k] {
					seen[k] = true
					wantInds = append(wantInds, k)
				}
			}
			require.Equal(t, wantInds, inds)
		})
	}
	t.Run("grading informs certainty", func(t *testing.T) {
		for grade, certainty := range map[string]string{"A": "Observed", "B": "Likely", "C": "Possible", "D": "Unknown", "E": "Unlikely"} {
			a := rootAlert()
			a.Grading.Intelligence = grade
			b, err := formats.CAP(a, formats.Context{Agency: agency, Sender: sender})
			require.NoError(t, err)
			var m capMessage
			require.NoError(t, xml.Unmarshal(b, &m))
			require.Equal(t, certainty, m.Info.Certainty, grade)
		}
	})
}

// TestCAPNotice: the content-free notice of a cancel is a valid CAP 1.2
// Cancel naming only the withdrawn messages, with nothing of the alert's
// content; without references or a sender it is refused.
func TestCAPNotice(t *testing.T) {
	root, cancel := rootAlert(), cancelAlert()
	ctx := formats.Context{Agency: agency, Sender: sender, References: []formats.Ref{{ID: cancel.References[0], IssuedAt: *root.IssuedAt}}}
	b, err := formats.CAPNotice(cancel, ctx)
	require.NoError(t, err)
	out, err := xmllint(t, b)
	require.NoError(t, err, out)

	var m capMessage
	require.NoError(t, xml.Unmarshal(b, &m))
	require.Equal(t, cancel.ID+formats.CAPNoticeSuffix, m.Identifier)
	require.Equal(t, "Cancel", m.MsgType)
	require.Equal(t, formats.CAPNoticeRestriction, m.Restriction)
	require.Equal(t, sender+","+cancel.References[0]+","+root.IssuedAt.UTC().Format("2006-01-02T15:04:05")+"-00:00", m.References)
	require.Empty(t, m.Info.Headline)
	for _, leak := range []string{cancel.Title, root.Title, string(cancel.TLP.Label()), string(cancel.Marking)} {
		require.NotContains(t, string(b), leak)
	}

	noRefs := *cancel
	noRefs.References = nil
	_, err = formats.CAPNotice(&noRefs, ctx)
	require.ErrorContains(t, err, "references")
	_, err = formats.CAPNotice(cancel, formats.Context{Agency: agency, References: ctx.References})
	require.ErrorContains(t, err, "context.sender")
}

// TestCAPIgnoresEarlier: a CAP message (alert or notice) never reads
// Context.Earlier, what the recipient received of the earlier alerts: a
// CAP Update or Cancel replaces the earlier message whole. The webhook
// notifier relies on it to render and sign one CAP body for every
// recipient of an alert (webhook.rendering.lineage leaves Earlier out of
// the cache key); were CAP to read it, recipients would be sent bodies made
// for others.
func TestCAPIgnoresEarlier(t *testing.T) {
	for _, c := range cases() {
		if len(c.ctx.References) == 0 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			none := c.ctx
			none.Earlier = nil
			for name, render := range map[string]func(*alerts.Alert, formats.Context) ([]byte, error){
				"alert": formats.CAP, "notice": formats.CAPNotice,
			} {
				with, err := render(c.a, c.ctx)
				require.NoError(t, err, name)
				without, err := render(c.a, none)
				require.NoError(t, err, name)
				require.Equal(t, string(without), string(with), "%s: the CAP %s depends on Context.Earlier", c.name, name)
			}
		})
	}
}
