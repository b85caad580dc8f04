package email

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/muesli/reflow/wordwrap"
	"github.com/muesli/reflow/wrap"
)

// width is the column at which notice texts are wrapped.
const width = 72

// content is what a job's message says, the same for every recipient of
// the same content (see contentKey), rendered once: the subjects and the
// text, as quoted-printable pieces around the place where a delivery's
// own acknowledgement paragraph goes.
type content struct {
	// subject is the real Subject, carried inside the signed part
	// (RFC 9788 header protection); outer is the Subject on the outside,
	// which for an alert that must be encrypted carries only the label,
	// the marking and the id.
	subject, outer string
	// legacy reports that the text begins with a Legacy Display Element
	// (the real subject, for mail clients that decrypt but do not read
	// protected headers).
	legacy bool
	// ack reports whether the message may carry an acknowledgement link:
	// content messages and notices about alerts the target holds.
	ack bool
	// head and tail are the quoted-printable text before and after the
	// acknowledgement paragraph; each ends with a line break.
	head, tail []byte
}

// oneLine replaces control characters, CR and LF included, by spaces:
// header text can never break out of its header.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// typeWord names an update or cancel in the subject, unless the title
// already starts by saying so ("Update: …", "Cancellation of …"): one
// "Update:" is a label, two are noise.
func typeWord(a *alerts.Alert) string {
	var word, stem string
	switch a.Type {
	case alerts.TypeUpdate:
		word, stem = "Update: ", "update"
	case alerts.TypeCancel:
		word, stem = "Cancelled: ", "cancel"
	default:
		return ""
	}
	if t := strings.TrimSpace(a.Title); len(t) >= len(stem) && strings.EqualFold(t[:len(stem)], stem) {
		return ""
	}
	return word
}

// statusWord marks exercise and test alerts.
func statusWord(a *alerts.Alert) string {
	if a.Status.IsTest() {
		return strings.ToUpper(string(a.Status)) + " "
	}
	return ""
}

// realSubject is the Subject that names the alert: the TLP label, then the
// title. For an alert that must be encrypted it travels only inside the
// encrypted part.
func realSubject(a *alerts.Alert) string {
	return oneLine(fmt.Sprintf("[%s] %s%s%s", a.TLP.Label(), statusWord(a), typeWord(a), a.Title))
}

// subject returns the outer Subject of an alert message: the real subject,
// or for an alert that must be encrypted only the label, the marking and
// the id (PRODUCT.md §3 rule 4).
func subject(a *alerts.Alert) string {
	if a.MustEncrypt() {
		return oneLine(fmt.Sprintf("[%s] %s%s %s", a.TLP.Label(), statusWord(a), a.Marking, a.ID))
	}
	return realSubject(a)
}

// keyNoticeSubject is the Subject of a content-free key notice.
func keyNoticeSubject(a *alerts.Alert) string {
	return oneLine(fmt.Sprintf("[%s] Herald: action needed on your OpenPGP key", a.TLP.Label()))
}

// held returns the alerts a notice about an update or cancel names: the
// job's held list, or, for jobs without one, the alerts the update or
// cancel supersedes, by id only.
func held(job *delivery.Job) []delivery.Held {
	if len(job.Held) > 0 {
		return job.Held
	}
	if refs := job.Alert.References; len(refs) > 0 {
		hs := make([]delivery.Held, len(refs))
		for i, id := range refs {
			hs[i] = delivery.Held{ID: id}
		}
		return hs
	}
	return []delivery.Held{{ID: job.Alert.ID}}
}

// heldIDs lists the ids of hs for a subject: "op-7" or "op-7, op-8".
func heldIDs(hs []delivery.Held) string {
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.ID
	}
	return oneLine(strings.Join(ids, ", "))
}

// heldNoun names the alerts of a notice subject: "alert op-7" or
// "alerts op-7, op-8".
func heldNoun(hs []delivery.Held) string {
	if len(hs) == 1 {
		return "alert " + heldIDs(hs)
	}
	return "alerts " + heldIDs(hs)
}

// heldPhrase names the alerts a target holds in a sentence, each with its
// title when the target received one in the clear: `Alert op-7 ("Title")`,
// `Alerts op-7 ("Title") and op-8`. It also returns the verb "has" or
// "have" and the pronoun "it" or "them" that agree with it.
func heldPhrase(hs []delivery.Held) (phrase, has, it string) {
	names := make([]string, len(hs))
	for i, h := range hs {
		names[i] = oneLine(h.ID)
		if t := strings.TrimSpace(oneLine(h.Title)); t != "" {
			names[i] += ` ("` + t + `")`
		}
	}
	if len(names) == 1 {
		return "Alert " + names[0], "has", "it"
	}
	return "Alerts " + strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1], "have", "them"
}

// cancelNoticeSubject is the Subject of a content-free cancel notice.
func cancelNoticeSubject(job *delivery.Job) string {
	return oneLine(fmt.Sprintf("[%s] Herald: %s withdrawn", job.Alert.TLP.Label(), heldNoun(held(job))))
}

// followUpKeyNoticeSubject is the Subject of a follow-up key notice.
func followUpKeyNoticeSubject(job *delivery.Job) string {
	what := "updated"
	if job.Alert.Type == alerts.TypeCancel {
		what = "withdrawn"
	}
	return oneLine(fmt.Sprintf("[%s] Herald: %s %s — your OpenPGP key needs attention", job.Alert.TLP.Label(), heldNoun(held(job)), what))
}

// banner is the first line of every text: TLP label and marking.
func banner(a *alerts.Alert) string { return a.TLP.Label() + " " + string(a.Marking) }

// groupFingerprint writes a fingerprint in groups of four.
func groupFingerprint(fp string) string {
	var b strings.Builder
	for i := 0; i < len(fp); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(fp[i:min(i+4, len(fp))])
	}
	return b.String()
}

// textWriter builds a plain text body with LF line endings.
type textWriter struct{ strings.Builder }

func (w *textWriter) line(format string, args ...any) {
	fmt.Fprintf(w, format, args...)
	w.WriteByte('\n')
}

func (w *textWriter) section(title, text string) {
	text = strings.TrimSpace(normalizeNewlines(text))
	if text == "" {
		return
	}
	w.line("")
	w.line("%s", title)
	w.line("%s", strings.Repeat("-", len(title)))
	w.line("%s", text)
}

// paragraphs writes each paragraph, wrapped at 72 columns, after a blank
// line. Words longer than a line are broken; lines break only at spaces,
// never inside an alert id.
func (w *textWriter) paragraphs(ps ...string) {
	for _, p := range ps {
		w.line("")
		w.line("%s", wrapText(p))
	}
}

// wrapText wraps one paragraph at 72 columns (display width): at spaces,
// and inside a word only when the word alone is wider than a line.
func wrapText(p string) string {
	ww := wordwrap.NewWriter(width)
	ww.Breakpoints = nil // never break at a hyphen: ids such as op-7 stay whole
	ww.Write([]byte(p))
	ww.Close()
	return wrap.String(ww.String(), width)
}

func normalizeNewlines(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

func handling(a *alerts.Alert) string {
	if a.Handling.Code == "C" {
		return "3x5x2 handling code C: " + oneLine(a.Handling.Conditions)
	}
	return "3x5x2 handling code P: may be shared within your organisation as TLP allows"
}

// footer names the agency key and repeats the label.
func footer(a *alerts.Alert, fingerprint string) string {
	var w textWriter
	w.line("")
	w.line("-- ")
	w.line("Sent by Herald. This message is signed (OpenPGP/MIME) by the agency key")
	w.line("%s", groupFingerprint(fingerprint))
	w.line("Do not act on a copy whose signature does not verify.")
	w.line("%s", banner(a))
	return w.String()
}

// ackParagraph is the text of a delivery's acknowledgement link, or ""
// without one. The link stands on a line of its own and is never broken,
// so that mail clients keep it clickable.
func ackParagraph(url string) string {
	url = strings.TrimSpace(oneLine(url))
	if url == "" {
		return ""
	}
	return "\nConfirm that your organisation received this alert:\n" + url +
		"\n(opens a page with a button; nothing is recorded until you press it)\n"
}

// keyExpirySubject is the Subject of a key-expiry notice.
func keyExpirySubject(a *alerts.Alert, k delivery.KeyExpiry) string {
	return oneLine(fmt.Sprintf("[%s] Herald: your OpenPGP key expires on %s", a.TLP.Label(), k.Expires.UTC().Format(time.DateOnly)))
}

// renderKeyExpiryNotice is the content-free notice sent to an address
// whose key expires within one of the warning thresholds: it names the
// address, the key and its expiry, and how to replace the key.
func renderKeyExpiryNotice(a *alerts.Alert, k delivery.KeyExpiry) string {
	var w textWriter
	w.line("%s", banner(a))
	w.paragraphs(
		fmt.Sprintf("The OpenPGP key Herald holds for %s expires on %s.", oneLine(k.Address), k.Expires.UTC().Format("2 January 2006 at 15:04 UTC")),
		"Key fingerprint: "+groupFingerprint(oneLine(k.Fingerprint)),
		"After that, alerts that may only be sent encrypted cannot be sent to this address: it would receive only "+
			"notices that an alert is waiting. Please replace the key before then with a current OpenPGP public key "+
			"(version 4, Curve25519 or RSA, with an encryption subkey): upload it through Herald's partner API "+
			"(PUT /v1/partner/email/{address}/key), or send it to your agency contact.",
		"Nothing of any alert's content is in this message.",
	)
	return w.String()
}

// renderText renders the alert as the plain text every recipient gets:
// TLP label and marking first, then handling conditions, then the alert.
// It names the agency (issuer), never the analyst who issued or approved
// the alert.
func renderText(a *alerts.Alert, issuer string) string {
	var w textWriter
	w.line("%s", banner(a))
	w.line("%s", handling(a))
	if a.Status.IsTest() {
		w.line("%s: this is not a real alert.", strings.ToUpper(string(a.Status)))
	}
	switch a.Type {
	case alerts.TypeUpdate:
		w.line("This alert updates %s.", strings.Join(a.References, ", "))
	case alerts.TypeCancel:
		w.line("This alert cancels %s: stop acting on it.", strings.Join(a.References, ", "))
	}
	w.line("")
	w.line("%s", oneLine(a.Title))
	w.line("Alert %s, severity %s", a.ID, a.Severity)
	if a.IssuedAt != nil {
		w.line("Issued %s by %s", a.IssuedAt.UTC().Format(time.RFC3339), issuer)
	} else {
		w.line("Issued by %s", issuer)
	}
	if a.ExpiresAt != nil {
		w.line("Expires %s", a.ExpiresAt.UTC().Format(time.RFC3339))
	}
	w.section("Summary", a.Summary)
	w.section("Details", a.Body)
	if len(a.Indicators) > 0 {
		var b strings.Builder
		for _, ind := range a.Indicators {
			fmt.Fprintf(&b, "- %s: %s", ind.Type, oneLine(ind.Value))
			if ind.Context != "" {
				fmt.Fprintf(&b, " (%s)", oneLine(ind.Context))
			}
			b.WriteByte('\n')
		}
		w.section("Indicators", b.String())
	}
	if len(a.Actions) > 0 {
		var b strings.Builder
		for _, act := range a.Actions {
			fmt.Fprintf(&b, "- %s\n", oneLine(act))
		}
		w.section("Recommended actions", b.String())
	}
	w.section("Reporting", a.Reporting)
	w.section("Contact", a.Contact)
	if a.Grading != nil {
		w.section("Grading", "3x5x2 "+a.Grading.Label())
	}
	return w.String()
}

// keyAdvice tells a partner how to mend its key.
const keyAdvice = "Please send a current OpenPGP public key for this address (version 4, " +
	"Curve25519 or RSA, with an encryption subkey) to your agency contact. " +
	"Alerts sent after the key is updated will reach you encrypted."

// usableAdvice tells a partner whose key was replaced by a usable one
// after the alert was sent what follows.
const usableAdvice = "The key we hold now can be used: alerts sent from now on will reach you " +
	"encrypted. Ask your agency contact for anything you missed."

// noKey says why an address cannot read an encrypted message, when Herald
// cannot say more (keyState.noKey).
const noKey = "it may only be sent encrypted, and the OpenPGP key we hold for this " +
	"address is missing, expired, revoked or cannot be used for encryption."

// keyState is what a key notice says of the key Herald holds for its
// address, judged when the notice is sent (Notifier.keyState). It is of
// the partner's record, never of the alert.
type keyState struct {
	// fingerprint is the key's, when the record holds one that parses.
	fingerprint string
	// why says, as a clause, why the key cannot be encrypted to: "we
	// hold no OpenPGP key for this address", "the OpenPGP key we hold
	// for this address expired on 2020-01-02". Empty when not known, or
	// when the key is usable.
	why string
}

// usable reports that the key can be encrypted to now (one parses and
// nothing is wrong with it): it was replaced after the alert was sent.
func (ks keyState) usable() bool { return ks.fingerprint != "" && ks.why == "" }

// noKey says why an address cannot read an encrypted message, starting
// "it may only be sent encrypted": as specifically as ks knows.
func (ks keyState) noKey() string {
	switch {
	case ks.why != "":
		return "it may only be sent encrypted, and " + ks.why + "."
	case ks.usable():
		return "it may only be sent encrypted, and the OpenPGP key we held for this address " +
			"could not be used for encryption when it was sent."
	}
	return noKey
}

// advice tells the partner what to do about its key.
func (ks keyState) advice() string {
	if ks.usable() {
		return usableAdvice
	}
	return keyAdvice
}

// keyParagraphs are the paragraphs of a key notice that name the key
// Herald holds, when it holds one that parses.
func (ks keyState) keyParagraphs() []string {
	if ks.fingerprint == "" {
		return nil
	}
	return []string{"Key fingerprint: " + groupFingerprint(ks.fingerprint)}
}

// renderKeyNotice is the content-free notice sent to an address without a
// usable key for a new alert: it names the alert's id and label only, and
// what is wrong with the key (ks).
func renderKeyNotice(a *alerts.Alert, ks keyState) string {
	var w textWriter
	w.line("%s", banner(a))
	ps := []string{fmt.Sprintf("Herald has an alert (%s) for your organisation at this address, but %s", oneLine(a.ID), ks.noKey())}
	ps = append(ps, ks.keyParagraphs()...)
	w.paragraphs(append(ps, "Nothing of the alert's content is in this message. "+ks.advice())...)
	return w.String()
}

// whose names, for the last line of a notice, the follow-up whose content
// the notice leaves out.
func whose(a *alerts.Alert) string {
	if a.Type == alerts.TypeCancel {
		return "Nothing of the cancellation's content is in this message."
	}
	return "Nothing of the update's content is in this message."
}

// renderCancelNotice is the content-free notice sent to a partner that
// received an alert and is no longer eligible for its update or cancel: it
// names the alerts the partner holds (with the titles it received in the
// clear) and says they were withdrawn.
func renderCancelNotice(job *delivery.Job) string {
	a := job.Alert
	phrase, has, it := heldPhrase(held(job))
	withdrawn := "withdrawn"
	if a.Type != alerts.TypeCancel {
		withdrawn = "withdrawn for your organisation"
	}
	var w textWriter
	w.line("%s", banner(a))
	w.paragraphs(
		fmt.Sprintf("%s, which your organisation received from Herald, %s been %s. Stop acting on %s, do not share %s further, and delete %s in line with your handling procedures.",
			phrase, has, withdrawn, it, it, it),
		whose(a),
	)
	return w.String()
}

// renderFollowUpKeyNotice is the content-free notice sent to a partner
// that received an alert and cannot read its encrypted update or cancel:
// it names the alerts the partner holds, says they were updated or
// withdrawn, and why the follow-up did not come, with the key advice
// (PRODUCT.md §3 rule 7: never only a key notice).
func renderFollowUpKeyNotice(job *delivery.Job, ks keyState) string {
	a := job.Alert
	phrase, has, it := heldPhrase(held(job))
	var ps []string
	if a.Type == alerts.TypeCancel {
		ps = []string{
			fmt.Sprintf("%s, which your organisation received from Herald, %s been withdrawn; stop acting on %s, do not share %s further, and delete %s in line with your handling procedures.",
				phrase, has, it, it, it),
			"The withdrawal itself could not be sent to this address: " + ks.noKey(),
		}
	} else {
		ps = []string{
			fmt.Sprintf("%s, which your organisation received from Herald, %s been updated. The update could not be sent to this address: %s",
				phrase, has, ks.noKey()),
			fmt.Sprintf("Ask your agency contact for the update before you act further on %s.", it),
		}
	}
	ps = append(ps, ks.keyParagraphs()...)
	ps = append(ps, ks.advice(), whose(a))
	var w textWriter
	w.line("%s", banner(a))
	w.paragraphs(ps...)
	return w.String()
}

// render renders what job's message says. It depends only on what
// contentKey digests: the alert, the mode, the held alerts, the issuer and
// what a key notice says of the target's key (ks) (and the notifier's own
// signing key, whose fingerprint the footer shows).
func render(job *delivery.Job, issuer, fingerprint string, ks keyState) (*content, error) {
	a := job.Alert
	c := &content{}
	var text string
	switch job.Mode {
	case delivery.ModeSigned, delivery.ModeEncrypted:
		c.subject, c.outer, c.ack = realSubject(a), subject(a), true
		text = renderText(a, issuer)
		if job.Mode == delivery.ModeEncrypted && c.outer != c.subject {
			// RFC 9788 §4.1: the subject is obscured outside, so the text
			// starts with a Legacy Display Element showing it.
			c.legacy = true
			text = "Subject: " + c.subject + "\n\n" + text
		}
	case delivery.ModeKeyNotice:
		c.subject = keyNoticeSubject(a)
		text = renderKeyNotice(a, ks)
	case delivery.ModeCancelNotice:
		c.subject, c.ack = cancelNoticeSubject(job), true
		text = renderCancelNotice(job)
	case delivery.ModeKeyExpiryNotice:
		k, err := delivery.KeyExpiryOf(job)
		if err != nil {
			return nil, err
		}
		c.subject = keyExpirySubject(a, k)
		text = renderKeyExpiryNotice(a, k)
	case delivery.ModeFollowUpKeyNotice:
		if a.Type != alerts.TypeUpdate && a.Type != alerts.TypeCancel {
			return nil, fmt.Errorf("a %s is for an update or cancel, not a %s", job.Mode, a.Type)
		}
		c.subject, c.ack = followUpKeyNoticeSubject(job), true
		text = renderFollowUpKeyNotice(job, ks)
	default:
		return nil, fmt.Errorf("unknown mode %q", job.Mode)
	}
	if c.outer == "" {
		c.outer = c.subject
	}
	c.head = quotedPrintable(text)
	c.tail = quotedPrintable(footer(a, fingerprint))
	return c, nil
}
