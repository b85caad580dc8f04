package webhook

import (
	"encoding/json"
	"fmt"

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

// lineage returns the part of l that the rendering reads, which is what
// its cache key covers: nil for Herald's envelope; for CAP, l without
// Earlier, since a CAP Update or Cancel replaces the earlier message whole
// and never lists withdrawn indicators (formats.Context.Earlier), so one
// rendering and one signature serve every recipient whatever earlier
// alerts each received (PRODUCT.md §11).
func (r rendering) lineage(l *delivery.Lineage) *delivery.Lineage {
	switch {
	case !r.usesLineage():
		return nil
	case r.format == formats.FormatCAP && l != nil && l.Earlier != nil:
		c := *l
		c.Earlier = nil
		return &c
	}
	return l
}

// noticeRendering returns how the cancel notice is rendered for an
// endpoint in format f. A notice must say nothing of the alert but its id,
// its status and the ids it supersedes:
//
//   - cap: a CAP Cancel of the superseded messages with no info block
//     (formats.CAPNotice), which a CAP consumer applies as it applies any Cancel;
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

// renderers render an alert's content in the formats other than Herald's
// own envelope.
var renderers = map[formats.Format]func(*alerts.Alert, formats.Context) ([]byte, error){
	formats.FormatSTIX: formats.STIX, formats.FormatMISP: formats.MISP, formats.FormatCAP: formats.CAP,
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
		body, err = formats.CAPNotice(a, lineage.Context(n.cfg.Agency, n.cfg.Sender))
	case r.kind == kindAlert:
		render := renderers[r.format]
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
