package api

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"html/template"
	"io"
	"net/http"
	"time"

	"github.com/herald-alerts/herald/internal/ack"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/record"
)

//go:embed web/ack.html
var ackHTML string

// ackTemplate is the acknowledgement page.
var ackTemplate = template.Must(template.New("ack").Parse(ackHTML))

// ackStyle is the page's only style; the Content-Security-Policy allows it
// by its hash, and nothing else: no script, no other origin.
const ackStyle = "body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f6f4}" +
	"main{max-width:36rem;margin:3rem auto;padding:1.5rem 2rem;background:#fff;border:1px solid #ddd;border-radius:6px}" +
	"h1{font-size:1.4rem;margin-top:0}button{font:inherit;padding:.6rem 1.2rem;border:0;border-radius:4px;" +
	"background:#1d5c2e;color:#fff;cursor:pointer}"

// ackPolicy is the Content-Security-Policy of the acknowledgement pages.
var ackPolicy = func() string {
	sum := sha256.Sum256([]byte(ackStyle))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
}()

// Byline of the acknowledgements recorded from email links
// (delivery.Receipt.By).
const ackByEmail = "email link"

// ackPageData fills the template.
type ackPageData struct {
	Title string
	// State is confirm (GET: the button), done (POST: recorded), already
	// or invalid.
	State string
	Alert string
	At    string
	Style template.CSS
}

// writeAckPage renders the page with status.
func (p *partnerAPI) writeAckPage(w http.ResponseWriter, status int, d ackPageData) {
	d.Style = template.CSS(ackStyle)
	var buf bytes.Buffer
	if err := ackTemplate.Execute(&buf, d); err != nil {
		p.log.Error("render the acknowledgement page", "error", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", ackPolicy)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Robots-Tag", "noindex, nofollow")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// invalidLink answers a link that does not open, or names a delivery the
// ledger does not hold: one page for every case, so that the answer tells
// nothing.
func (p *partnerAPI) invalidLink(w http.ResponseWriter) {
	p.writeAckPage(w, http.StatusNotFound, ackPageData{Title: "Link not valid", State: "invalid"})
}

// openLink returns the claim of the request's link, or answers 404 and
// returns false.
func (p *partnerAPI) openLink(w http.ResponseWriter, r *http.Request) (ack.Claim, bool) {
	if p.Partner.Links == nil {
		p.invalidLink(w)
		return ack.Claim{}, false
	}
	c, err := p.Partner.Links.Open(r.PathValue("token"), p.now())
	if err != nil {
		p.invalidLink(w)
		return ack.Claim{}, false
	}
	return c, true
}

// when formats an acknowledgement's time for the page.
func when(t time.Time) string { return t.UTC().Format("2 January 2006, 15:04 UTC") }

// ackPage handles GET /ack/{token}: the page with the button. It records
// nothing, so a mail scanner that fetches every link acknowledges nothing.
func (p *partnerAPI) ackPage(w http.ResponseWriter, r *http.Request) {
	c, ok := p.openLink(w, r)
	if !ok {
		return
	}
	if inc, ok := p.incarnation(c.Subscriber); ok && p.Ledger != nil {
		if known, err := p.Ledger.Lookup(r.Context(), []string{c.Alert}); err == nil && known[c.Alert] != nil {
			if k, done := known[c.Alert].Ack(c.Subscriber, inc); done {
				p.writeAckPage(w, http.StatusOK, ackPageData{Title: "Already acknowledged", State: "already", Alert: c.Alert, At: when(k.At)})
				return
			}
		}
	}
	p.writeAckPage(w, http.StatusOK, ackPageData{Title: "Confirm receipt", State: "confirm", Alert: c.Alert})
}

// ackConfirm handles POST /ack/{token}: it records the acknowledgement of
// the link's alert for its subscriber, once.
func (p *partnerAPI) ackConfirm(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 4<<10)) // the form has no fields
	c, ok := p.openLink(w, r)
	if !ok {
		return
	}
	a, inc, err := p.received(r.Context(), c.Alert, c.Subscriber)
	if err != nil {
		p.log.Error("look up alert", "alert", c.Alert, "error", err)
		http.Error(w, "Herald cannot read its delivery receipts now; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	if a == nil || !a.Received(c.Subscriber, inc, c.Target) {
		p.invalidLink(w)
		return
	}
	res, err := p.recordAck(r.Context(), a, delivery.Receipt{Subscriber: c.Subscriber, Incarnation: inc, Channel: delivery.ChannelEmail,
		Target: c.Target, DeliveryID: delivery.ID(c.Alert, c.Subscriber, c.Target), By: ackByEmail})
	if err != nil {
		p.log.Error("record an acknowledgement", "alert", c.Alert, "subscriber", c.Subscriber, "error", err)
		http.Error(w, "the acknowledgement could not be recorded; try again in a moment", http.StatusServiceUnavailable)
		return
	}
	p.audit(r, "email-link:"+c.Subscriber, record.Audit{Action: record.ActionPartnerAck, Object: "alert:" + c.Alert,
		Details: map[string]any{"subscriber": c.Subscriber, "channel": delivery.ChannelEmail, "already_acknowledged": res.Already}})
	if res.Already {
		p.writeAckPage(w, http.StatusOK, ackPageData{Title: "Already acknowledged", State: "already", Alert: c.Alert, At: when(res.AcknowledgedAt)})
		return
	}
	p.writeAckPage(w, http.StatusOK, ackPageData{Title: "Receipt confirmed", State: "done", Alert: c.Alert, At: when(res.AcknowledgedAt)})
}
