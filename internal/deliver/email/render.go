package email

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/herald-alerts/herald/alerts"
)

// restricted reports whether an alert's content may travel only
// encrypted, and its subject may carry only the label, marking and id
// (PRODUCT.md §3 rule 4): TLP:AMBER and above, and OFFICIAL-SENSITIVE.
func restricted(a *alerts.Alert) bool {
	return a.TLP.Rank() >= alerts.TLPAmber.Rank() || a.Marking.Sensitive()
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

// typeWord names an update or cancel in the subject.
func typeWord(a *alerts.Alert) string {
	switch a.Type {
	case alerts.TypeUpdate:
		return "Update: "
	case alerts.TypeCancel:
		return "Cancelled: "
	}
	return ""
}

// statusWord marks exercise and test alerts.
func statusWord(a *alerts.Alert) string {
	if a.Status.IsTest() {
		return strings.ToUpper(string(a.Status)) + " "
	}
	return ""
}

// subject returns the Subject of an alert message: the TLP label first;
// for restricted alerts only the label, the marking and the id.
func subject(a *alerts.Alert) string {
	if restricted(a) {
		return oneLine(fmt.Sprintf("[%s] %s%s %s", a.TLP.Label(), statusWord(a), a.Marking, a.ID))
	}
	return oneLine(fmt.Sprintf("[%s] %s%s%s", a.TLP.Label(), statusWord(a), typeWord(a), a.Title))
}

// keyNoticeSubject is the Subject of a content-free key notice.
func keyNoticeSubject(a *alerts.Alert) string {
	return oneLine(fmt.Sprintf("[%s] Herald: action needed on your OpenPGP key", a.TLP.Label()))
}

// cancelNoticeSubject is the Subject of a content-free cancel notice.
func cancelNoticeSubject(a *alerts.Alert) string {
	return oneLine(fmt.Sprintf("[%s] Herald: alert %s withdrawn", a.TLP.Label(), strings.Join(withdrawn(a), ", ")))
}

// withdrawn returns the ids a cancel notice withdraws: the alerts a
// cancel or update supersedes, or the alert itself.
func withdrawn(a *alerts.Alert) []string {
	if len(a.References) > 0 {
		return a.References
	}
	return []string{a.ID}
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
func footer(w *textWriter, a *alerts.Alert, fingerprint string) {
	w.line("")
	w.line("-- ")
	w.line("Sent by Herald. This message is signed (OpenPGP/MIME) by the agency key")
	w.line("%s", groupFingerprint(fingerprint))
	w.line("Do not act on a copy whose signature does not verify.")
	w.line("%s", banner(a))
}

// renderText renders the alert as the plain text every recipient gets:
// TLP label and marking first, then handling conditions, then the alert.
func renderText(a *alerts.Alert, fingerprint string) string {
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
		by := ""
		if a.IssuedBy != "" {
			by = " by " + oneLine(a.IssuedBy)
		}
		w.line("Issued %s%s", a.IssuedAt.UTC().Format(time.RFC3339), by)
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
	footer(&w, a, fingerprint)
	return w.String()
}

// renderKeyNotice is the content-free notice sent to an address without a
// usable key: it names the alert's id and label only.
func renderKeyNotice(a *alerts.Alert, fingerprint string) string {
	var w textWriter
	w.line("%s", banner(a))
	w.line("")
	w.line("Herald has an alert (%s) for your organisation at this address, but it", a.ID)
	w.line("may only be sent encrypted, and the OpenPGP key we hold for this address")
	w.line("is missing, expired, revoked or cannot be used for encryption.")
	w.line("")
	w.line("Nothing of the alert's content is in this message. Please send a current")
	w.line("OpenPGP public key for this address (version 4, Curve25519 or RSA, with an")
	w.line("encryption subkey) to your agency contact. Alerts sent after the key is")
	w.line("updated will reach you encrypted.")
	footer(&w, a, fingerprint)
	return w.String()
}

// renderCancelNotice is the content-free notice sent to a partner that
// received an alert and is no longer eligible for its update or cancel.
func renderCancelNotice(a *alerts.Alert, fingerprint string) string {
	var w textWriter
	w.line("%s", banner(a))
	w.line("")
	w.line("Alert %s, which your organisation received from Herald, has been", strings.Join(withdrawn(a), ", "))
	w.line("withdrawn for your organisation. Stop acting on it, do not share it")
	w.line("further, and delete it in line with your handling procedures.")
	w.line("")
	w.line("Nothing of the alert's content is in this message.")
	footer(&w, a, fingerprint)
	return w.String()
}
