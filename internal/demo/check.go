package demo

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/sink"
)

// checker compares what happened with the expected outcome table and
// verifies everything the partners received.
type checker struct {
	res       *Result
	alerts    []*alerts.Alert
	partners  []*partner
	agencyPub []byte
	agencyFP  string
	ledger    map[string]*ledger.Alert
	mails     []sink.Message
	hooks     []sink.Request
	now       time.Time

	files map[string][]byte // output folder contents, by relative path
	// sandbox says that the output folder will also receive, in sandbox/,
	// what arrives while `herald demo --serve` runs.
	sandbox bool
}

// received is one email or webhook request with the delivery id it
// carries.
type received struct {
	id    string
	mail  *sink.Message
	hook  *sink.Request
	taken bool
}

func (c *checker) partner(id string) *partner {
	for _, p := range c.partners {
		if p.sub.ID == id {
			return p
		}
	}
	return nil
}

// target returns the address or URL of a partner's first target on
// channel.
func target(p *partner, channel string) string {
	if channel == delivery.ChannelEmail && len(p.sub.Email) > 0 {
		return p.sub.Email[0].Address
	}
	if channel == delivery.ChannelWebhook && len(p.sub.Webhooks) > 0 {
		return p.sub.Webhooks[0].URL
	}
	if channel == delivery.ChannelPull && p.sub.Pull != nil {
		return delivery.TargetPull
	}
	return ""
}

// mailID returns the delivery id in a message's Message-ID.
func mailID(raw []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return ""
	}
	id, _, _ := strings.Cut(strings.Trim(m.Header.Get("Message-ID"), "<> "), "@")
	return id
}

func (c *checker) check() {
	c.files = map[string][]byte{}
	var got []*received
	for i := range c.mails {
		got = append(got, &received{id: mailID(c.mails[i].Data), mail: &c.mails[i]})
	}
	for i := range c.hooks {
		got = append(got, &received{id: c.hooks[i].Header.Get(whsig.HeaderID), hook: &c.hooks[i]})
	}

	seen := map[string]bool{} // alert id + subscriber + target of expected entries
	for _, e := range expectations() {
		a, p := c.alerts[e.alert], c.partner(e.partner)
		tgt := target(p, e.channel)
		seen[a.ID+"\x00"+p.sub.ID+"\x00"+tgt] = true
		row := Row{Alert: c.label(a.ID), Partner: p.sub.ID, Channel: e.channel, Target: tgt, How: "-", Verified: "-"}
		what := fmt.Sprintf("alert %s to %s %s", row.Alert, p.sub.ID, tgt)
		if ent := c.entry(a.ID, p.sub.ID, tgt); ent == nil {
			row.Decision, row.State = "?", "none"
			c.res.failf("%s: no decision recorded (want %s by %s)", what, e.decision, e.rule)
		} else {
			row.Decision, row.State, row.Rule = ent.Decision, ent.State, ent.Rule
			if ent.Mode != "" {
				row.How = ent.Mode
			}
			if ent.Decision != e.decision || ent.Mode != e.mode || ent.Rule != e.rule {
				c.res.failf("%s: decided %s/%s by %s, want %s/%s by %s", what, ent.Decision, dash(ent.Mode), ent.Rule,
					e.decision, dash(e.mode), e.rule)
			}
			if ent.State != e.state() {
				msg := fmt.Sprintf("%s: state %s, want %s", what, ent.State, e.state())
				if ent.LastError != "" {
					msg += " (last error: " + ent.LastError + ")"
				}
				c.res.failf("%s", msg)
			}
		}

		did := delivery.ID(a.ID, p.sub.ID, tgt)
		var mine []*received
		for _, r := range got {
			if r.id == did {
				r.taken = true
				mine = append(mine, r)
			}
		}
		switch {
		case e.decision == delivery.Withhold && len(mine) > 0:
			row.Verified = "no"
			c.res.failf("%s: withheld, yet %d message(s) arrived", what, len(mine))
		case e.channel == delivery.ChannelPull && e.decision != delivery.Withhold && len(mine) > 0:
			row.Verified = "no"
			c.res.failf("%s: the pull channel sends nothing, yet %d message(s) arrived", what, len(mine))
		case e.channel == delivery.ChannelPull && e.decision != delivery.Withhold:
			// Nothing is sent: the alert waits in the partner's
			// collection, which the checks do not read (a read would
			// record a pull). What is verified is the ledger's state.
			row.Verified = "no"
			if row.State == e.state() {
				row.Verified = "ledger"
			}
		case e.decision != delivery.Withhold && len(mine) == 0:
			row.Verified = "no"
			c.res.failf("%s: nothing arrived", what)
		case e.decision != delivery.Withhold:
			row.Verified = "yes"
			for n, r := range mine {
				var err error
				var name string
				if r.mail != nil {
					name, err = c.checkMail(r.mail, e, a, p, tgt, n)
				} else {
					name, err = c.checkHook(r.hook, e, a, p, n)
				}
				row.Files = append(row.Files, name)
				if err != nil {
					row.Verified = "no"
					c.res.failf("%s: %s: %s", what, name, strings.ReplaceAll(err.Error(), "\n", "; "))
				}
			}
		}
		c.res.Rows = append(c.res.Rows, row)
	}

	for _, a := range c.alerts {
		la := c.ledger[a.ID]
		if la == nil {
			continue
		}
		for _, ent := range la.Entries() {
			if !seen[a.ID+"\x00"+ent.Subscriber+"\x00"+ent.Target] {
				c.res.failf("alert %s: unexpected decision for %s %s: %s by %s", c.label(a.ID), ent.Subscriber, dash(ent.Target), ent.Decision, ent.Rule)
			}
		}
	}
	for _, r := range got {
		if r.taken {
			continue
		}
		if r.mail != nil {
			c.res.failf("unexpected email to %s (Message-ID %q)", strings.Join(r.mail.To, ", "), r.id)
		} else {
			c.res.failf("unexpected webhook request to %s (webhook-id %q)", r.hook.Path, r.id)
		}
	}
	c.checkSuspended()
	c.checkNoPlaintext()
}

// label returns an alert's number in the table.
func (c *checker) label(id string) string {
	for i, a := range c.alerts {
		if a.ID == id {
			return fmt.Sprint(i + 1)
		}
	}
	return id
}

func (c *checker) entry(alertID, sub, tgt string) *ledger.Entry {
	la := c.ledger[alertID]
	if la == nil {
		return nil
	}
	for _, e := range la.Entries() {
		if e.Subscriber == sub && e.Target == tgt {
			return &e
		}
	}
	return nil
}

// file records data under a unique name in dir and returns the name.
func (c *checker) file(dir, base, ext string, data []byte) string {
	name := dir + "/" + base + ext
	for n := 2; c.files[name] != nil; n++ {
		name = fmt.Sprintf("%s/%s-%d%s", dir, base, n, ext)
	}
	c.files[name] = data
	return name
}

// checkMail verifies one received email as the partner would, and checks
// that it is what the policy decided.
func (c *checker) checkMail(m *sink.Message, e expected, a *alerts.Alert, p *partner, tgt string, _ int) (string, error) {
	name := c.file("email", fmt.Sprintf("%s-%s-%s", c.label(a.ID), p.sub.ID, e.mode), ".eml", m.Data)
	var errs []error
	if !m.TLS {
		errs = append(errs, errors.New("sent without TLS"))
	}
	if !slices.Contains(m.To, tgt) {
		errs = append(errs, fmt.Errorf("sent to %v, not %s", m.To, tgt))
	}
	v, err := email.Verify(m.Data, c.agencyPub, p.secretKey, nil)
	if err != nil {
		return name, err
	}
	if v.Signer != c.agencyFP {
		errs = append(errs, fmt.Errorf("signed by %s, not the agency key %s", v.Signer, c.agencyFP))
	}
	if want := e.mode == delivery.ModeEncrypted; v.Encrypted != want {
		errs = append(errs, fmt.Errorf("encrypted %t, want %t", v.Encrypted, want))
	}
	if !strings.HasPrefix(v.Subject, "["+a.TLP.Label()+"]") {
		errs = append(errs, fmt.Errorf("subject %q does not start with [%s]", v.Subject, a.TLP.Label()))
	}
	if banner := a.TLP.Label() + " " + string(a.Marking); !strings.HasPrefix(strings.TrimLeft(v.Text, "\r\n"), banner) {
		errs = append(errs, fmt.Errorf("text does not start with %q", banner))
	}
	content := e.mode == delivery.ModeSigned || e.mode == delivery.ModeEncrypted
	if has := strings.Contains(v.Text, a.Title); has != content {
		if content {
			errs = append(errs, errors.New("the signed text lacks the alert's title"))
		} else {
			errs = append(errs, errors.New("a content-free notice carries the alert's title"))
		}
	}
	return name, errors.Join(errs...)
}

// checkHook verifies one received webhook request as the partner would:
// Standard Webhooks signature with the endpoint's secrets, the agency's
// detached OpenPGP signature, and the captured request through the same
// code `herald verify webhook` runs.
func (c *checker) checkHook(h *sink.Request, e expected, a *alerts.Alert, p *partner, _ int) (string, error) {
	name := c.file("webhook", fmt.Sprintf("%s-%s-%s", c.label(a.ID), p.sub.ID, e.mode), ".http", h.Raw)
	ep := p.sub.Webhooks[0]
	var errs []error
	if !h.TLS {
		errs = append(errs, errors.New("sent without TLS"))
	}
	if want := "/hooks/" + p.sub.ID; h.Path != want {
		errs = append(errs, fmt.Errorf("posted to %s, not %s", h.Path, want))
	}
	if err := whsig.Verify(h.Header, h.Body, ep.Secrets, c.now, 0); err != nil {
		errs = append(errs, err)
	} else {
		// Each active secret signs: a partner rotating secrets may hold
		// only one of them.
		for i, s := range ep.Secrets {
			if err := whsig.Verify(h.Header, h.Body, []string{s}, c.now, 0); err != nil {
				errs = append(errs, fmt.Errorf("secret %d of %d: %w", i+1, len(ep.Secrets), err))
			}
		}
	}
	if sig, err := base64.StdEncoding.DecodeString(h.Header.Get(whsig.HeaderPGPSignature)); err != nil || len(sig) == 0 {
		errs = append(errs, fmt.Errorf("%s missing or not base64", whsig.HeaderPGPSignature))
	} else if fp, err := pgp.VerifyDetached(c.agencyPub, h.Body, sig); err != nil {
		errs = append(errs, err)
	} else if fp != c.agencyFP {
		errs = append(errs, fmt.Errorf("signed by %s, not the agency key %s", fp, c.agencyFP))
	}
	rep, err := webhook.VerifyRequest(bytes.NewReader(h.Raw), ep.Secrets, c.agencyPub, c.now, 0)
	if err != nil {
		errs = append(errs, fmt.Errorf("saved request: %w", err))
	} else if !rep.OK() || !rep.PGPChecked {
		errs = append(errs, fmt.Errorf("saved request does not verify (signature: %s; timestamp: %s; pgp: %s)",
			verdict(rep.SignatureErr), verdict(rep.TimestampErr), verdict(rep.PGPErr)))
	}

	var body struct {
		Type   string          `json:"type"`
		Notice string          `json:"notice"`
		Alert  json.RawMessage `json:"alert"`
	}
	var alert struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal(h.Body, &body); err != nil || json.Unmarshal(body.Alert, &alert) != nil {
		return name, errors.Join(append(errs, errors.New("body is not Herald's webhook JSON"))...)
	}
	wantType, wantTitle := a.Event(), a.Title
	if e.mode == delivery.ModeCancelNotice {
		wantType, wantTitle = webhook.EventCancelled, ""
		if body.Notice == "" {
			errs = append(errs, errors.New("a cancel notice without its notice field"))
		}
	}
	if body.Type != wantType {
		errs = append(errs, fmt.Errorf("event %q, want %q", body.Type, wantType))
	}
	if alert.ID != a.ID {
		errs = append(errs, fmt.Errorf("alert id %q, want %q", alert.ID, a.ID))
	}
	if alert.Title != wantTitle || (wantTitle == "" && bytes.Contains(h.Body, []byte(a.Title))) {
		errs = append(errs, fmt.Errorf("title %q, want %q", alert.Title, wantTitle))
	}
	return name, errors.Join(errs...)
}

// checkSuspended checks that the suspended partner received nothing at
// all, whatever the delivery ids say.
func (c *checker) checkSuspended() {
	for _, p := range c.partners {
		if p.sub.Active() {
			continue
		}
		for _, m := range c.mails {
			for _, to := range m.To {
				if strings.EqualFold(to, target(p, delivery.ChannelEmail)) {
					c.res.failf("suspended partner %s received an email", p.sub.ID)
				}
			}
		}
		for _, h := range c.hooks {
			if h.Path == "/hooks/"+p.sub.ID {
				c.res.failf("suspended partner %s received a webhook", p.sub.ID)
			}
		}
	}
}

// checkNoPlaintext checks that no email carries the title or an
// indicator of a TLP:AMBER-and-above or OFFICIAL-SENSITIVE alert in clear:
// neither in its raw bytes nor, for a message that is not encrypted, in
// its decoded text (quoted-printable can split a line where a raw search
// would miss it).
func (c *checker) checkNoPlaintext() {
	for _, a := range c.alerts {
		if a.TLP.Rank() < alerts.TLPAmber.Rank() && !a.Marking.Sensitive() {
			continue
		}
		secrets := []string{a.Title}
		for _, ind := range a.Indicators {
			secrets = append(secrets, ind.Value)
		}
		for _, m := range c.mails {
			clear := string(m.Data)
			if v, err := email.Verify(m.Data, c.agencyPub, nil, nil); err == nil && !v.Encrypted {
				clear += "\n" + v.Subject + "\n" + v.Text
			}
			for _, s := range secrets {
				if strings.Contains(clear, s) {
					c.res.failf("alert %s (%s %s): %q appears in clear in an email to %s", c.label(a.ID), a.TLP.Label(), a.Marking,
						s, strings.Join(m.To, ", "))
				}
			}
		}
	}
}

func verdict(err error) string {
	if err == nil {
		return "valid"
	}
	return err.Error()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
