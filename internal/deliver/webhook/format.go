package webhook

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/formats"
)

// Kinds of body.
const (
	kindAlert  = "alert"  // the alert's content
	kindNotice = "notice" // the content-free cancel notice
)

// rendering names what a body is: its kind and the format rendering it.
type rendering struct {
	kind   string
	format formats.Format
}

// usesLineage reports whether the rendering reads the alert's lineage:
// every format but Herald's envelope.
func (r rendering) usesLineage() bool { return r.format != formats.FormatHerald }

// noticeRendering returns how the cancel notice is rendered for an
// endpoint in format f. A notice must say nothing of the alert but its id,
// its status and the ids it supersedes:
//
//   - cap: a CAP Cancel of the superseded messages with no info block
//     (capNotice), which a CAP consumer applies as it applies any Cancel;
//   - herald, stix and misp: Herald's JSON notice envelope, the same bytes
//     (signed once) for all three. A STIX revocation must repeat the
//     revoked objects' required content (a report's name, an indicator's
//     pattern) and a MISP edit the event's info and attributes, so neither
//     format can withdraw an alert without carrying what the partner may
//     no longer have; a receiver in those formats tells the notice by its
//     Content-Type, application/json.
func noticeRendering(f formats.Format) rendering {
	if f == formats.FormatCAP {
		return rendering{kindNotice, formats.FormatCAP}
	}
	return rendering{kindNotice, formats.FormatHerald}
}

// render renders the body of r for a with lineage, and its media type:
// the format's (formats.Format.ContentType), which for CAP is
// application/cap+xml (an XML reader takes it by its +xml suffix).
func (n *Notifier) render(r rendering, a *alerts.Alert, lineage *delivery.Lineage) ([]byte, string, error) {
	var body []byte
	var err error
	switch {
	case r.kind == kindAlert && r.format == formats.FormatHerald:
		body, err = json.Marshal(contentEnvelope(a))
	case r.kind == kindNotice && r.format == formats.FormatHerald:
		body, err = json.Marshal(noticeEnvelope(a))
	case r.kind == kindNotice && r.format == formats.FormatCAP:
		body, err = capNotice(a, lineage, n.cfg.Sender)
	case r.kind == kindAlert:
		render := map[formats.Format]func(*alerts.Alert, formats.Context) ([]byte, error){
			formats.FormatSTIX: formats.STIX, formats.FormatMISP: formats.MISP, formats.FormatCAP: formats.CAP,
		}[r.format]
		if render == nil {
			return nil, "", fmt.Errorf("build webhook body for %s: unknown format %q", a.ID, r.format)
		}
		body, err = render(a, lineage.Context(n.cfg.Agency, n.cfg.Sender))
	default:
		return nil, "", fmt.Errorf("build webhook body for %s: unknown kind %q", a.ID, r.kind)
	}
	if err != nil {
		return nil, "", fmt.Errorf("build %s webhook body for %s: %w", r.format, a.ID, err)
	}
	return body, r.format.ContentType(), nil
}

// NoticeRestriction is the CAP restriction of a content-free cancel
// notice.
const NoticeRestriction = "Content-free notice: the messages referenced are withdrawn for this recipient, " +
	"which is no longer eligible to receive them or what supersedes them. Delete or disregard them."

// capNoticeSuffix ends the identifier of a CAP cancel notice, which is a
// message of its own: the alert's identifier names the update or cancel
// its eligible recipients receive.
const capNoticeSuffix = ".withdrawn"

// capNotice renders the content-free cancel notice of an update or cancel
// as a CAP 1.2 Cancel: identifier = the follow-up's id + ".withdrawn",
// sender, sent = the follow-up's issued_at, its status, msgType Cancel,
// scope Restricted with NoticeRestriction, and references naming every
// alert the follow-up supersedes (sender,identifier,sent); no info block,
// so no title, text, indicators, TLP or marking.
func capNotice(a *alerts.Alert, lineage *delivery.Lineage, sender string) ([]byte, error) {
	switch {
	case sender == "" || strings.ContainsAny(sender, " ,<&\t\r\n"):
		return nil, fmt.Errorf("sender: %q is empty or holds a space, comma, '<' or '&', which CAP forbids", sender)
	case a.IssuedAt == nil:
		return nil, errors.New("issued_at: required (set by Herald before delivery)")
	case lineage == nil || len(lineage.References) == 0:
		return nil, errors.New("lineage: the notice names the alerts it withdraws, and the job has no lineage")
	}
	status := map[alerts.Status]string{alerts.StatusActual: "Actual", alerts.StatusExercise: "Exercise", alerts.StatusTest: "Test", "": "Actual"}[a.Status]
	if status == "" {
		return nil, fmt.Errorf("status: %q has no CAP status", a.Status)
	}
	refs := make([]string, 0, len(lineage.References))
	for _, r := range lineage.References {
		refs = append(refs, sender+","+r.ID+","+capTime(r.IssuedAt))
	}
	msg := capCancel{
		Identifier:  a.ID + capNoticeSuffix,
		Sender:      sender,
		Sent:        capTime(*a.IssuedAt),
		Status:      status,
		MsgType:     "Cancel",
		Scope:       "Restricted",
		Restriction: NoticeRestriction,
		References:  strings.Join(refs, " "),
	}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(msg); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// capTime formats t as CAP requires: whole seconds, UTC as +00:00.
func capTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05-07:00") }

// capCancel is a CAP 1.2 alert message without info; field order is the
// schema's.
type capCancel struct {
	XMLName     xml.Name `xml:"urn:oasis:names:tc:emergency:cap:1.2 alert"`
	Identifier  string   `xml:"identifier"`
	Sender      string   `xml:"sender"`
	Sent        string   `xml:"sent"`
	Status      string   `xml:"status"`
	MsgType     string   `xml:"msgType"`
	Scope       string   `xml:"scope"`
	Restriction string   `xml:"restriction"`
	References  string   `xml:"references"`
}
