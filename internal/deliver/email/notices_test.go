package email_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/stretchr/testify/require"
)

// longID is a valid alert id of the greatest length (64 characters).
var longID = "op-" + strings.Repeat("7", 40) + ".reuse_" + strings.Repeat("x", 14)

// longTitle is a title of 200 characters: words, a word longer than a
// line, non-ASCII letters, and a line break that the title rules forbid
// but a notice must survive.
var longTitle = func() string {
	t := "Café chain in Zürich\r\nBcc: victim@example.org recruits through " + strings.Repeat("agency-", 12) + "x " +
		strings.Repeat("workers held in debt bondage ", 3)
	for utf8.RuneCountInString(t) < 200 {
		t += "z"
	}
	return string([]rune(t)[:200])
}()

// followUp returns an update or cancel at AMBER that supersedes refs.
func followUp(id string, typ alerts.Type, refs ...string) *alerts.Alert {
	a := testAlert(id, alerts.TLPAmber, alerts.MarkingOfficial)
	a.Type, a.References = typ, refs
	return a
}

// TestNoticeTexts renders every content-free notice, for updates and
// cancels, with the longest ids and titles, and checks what each says:
// it names the alert the partner holds (with the title it received in
// the clear), says it was withdrawn or updated, gives the key advice where
// the key is the reason (here, the address has none), carries nothing of
// the follow-up's content, and every line fits in 72 columns.
func TestNoticeTexts(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	signer := pgptest.AgencySigner(t)
	n := newNotifier(t, sink, signer, nil)
	sub := partner(t, map[string]string{"ops@acme.example": ""})
	const addr = "ops@acme.example"
	title := strings.TrimSpace(strings.NewReplacer("\r", " ", "\n", " ").Replace(longTitle))
	keyNeeded := "it may only be sent encrypted, and we hold no OpenPGP key for this address."
	keyAdvice := "Please send a current OpenPGP public key for this address"
	withJob := func(a *alerts.Alert, mode string, held ...delivery.Held) *delivery.Job {
		j := job(a, sub, addr, mode)
		j.Held = held
		return j
	}
	cases := []struct {
		name    string
		job     *delivery.Job
		subject string
		want    []string // phrases, whitespace flattened
		not     []string
	}{{
		name:    "cancel to a partner no longer eligible",
		job:     withJob(followUp("c-1", alerts.TypeCancel, longID), delivery.ModeCancelNotice, delivery.Held{ID: longID, Title: longTitle}),
		subject: "[TLP:AMBER] Herald: alert " + longID + " withdrawn",
		want: []string{
			fmt.Sprintf(`Alert %s ("%s"), which your organisation received from Herald, has been withdrawn. Stop acting on it, do not share it further`, longID, flat(title)),
			"Nothing of the cancellation's content is in this message.",
		},
		not: []string{"OpenPGP key", "for your organisation."},
	}, {
		name:    "update to a partner no longer eligible",
		job:     withJob(followUp("u-1", alerts.TypeUpdate, longID), delivery.ModeCancelNotice, delivery.Held{ID: longID, Title: longTitle}),
		subject: "[TLP:AMBER] Herald: alert " + longID + " withdrawn",
		want: []string{
			fmt.Sprintf(`Alert %s ("%s"), which your organisation received from Herald, has been withdrawn for your organisation. Stop acting on it`, longID, flat(title)),
			"Nothing of the update's content is in this message.",
		},
		not: []string{"OpenPGP key"},
	}, {
		name:    "encrypted update to a prior recipient without a key",
		job:     withJob(followUp("u-2", alerts.TypeUpdate, longID), delivery.ModeFollowUpKeyNotice, delivery.Held{ID: longID, Title: longTitle}),
		subject: "[TLP:AMBER] Herald: alert " + longID + " updated — your OpenPGP key needs attention",
		want: []string{
			fmt.Sprintf(`Alert %s ("%s"), which your organisation received from Herald, has been updated. The update could not be sent to this address: %s`, longID, flat(title), keyNeeded),
			keyAdvice,
			"Nothing of the update's content is in this message.",
		},
		not: []string{"withdrawn"},
	}, {
		name:    "encrypted cancel to a prior recipient without a key",
		job:     withJob(followUp("c-2", alerts.TypeCancel, longID), delivery.ModeFollowUpKeyNotice, delivery.Held{ID: longID, Title: longTitle}),
		subject: "[TLP:AMBER] Herald: alert " + longID + " withdrawn — your OpenPGP key needs attention",
		want: []string{
			fmt.Sprintf(`Alert %s ("%s"), which your organisation received from Herald, has been withdrawn; stop acting on it`, longID, flat(title)),
			"The withdrawal itself could not be sent to this address: " + keyNeeded,
			keyAdvice,
			"Nothing of the cancellation's content is in this message.",
		},
		not: []string{"has been updated"},
	}, {
		name: "two held alerts, one received encrypted (no title)",
		job: withJob(followUp("c-3", alerts.TypeCancel, "g-1", longID), delivery.ModeFollowUpKeyNotice,
			delivery.Held{ID: "g-1", Title: "Car wash in Hull"}, delivery.Held{ID: longID}),
		subject: "[TLP:AMBER] Herald: alerts g-1, " + longID + " withdrawn — your OpenPGP key needs attention",
		want: []string{
			fmt.Sprintf(`Alerts g-1 ("Car wash in Hull") and %s, which your organisation received from Herald, have been withdrawn; stop acting on them`, longID),
			keyAdvice,
		},
	}, {
		name:    "a job without a held list names the references, without titles",
		job:     withJob(followUp("u-3", alerts.TypeUpdate, longID), delivery.ModeFollowUpKeyNotice),
		subject: "[TLP:AMBER] Herald: alert " + longID + " updated — your OpenPGP key needs attention",
		want:    []string{fmt.Sprintf(`Alert %s, which your organisation received from Herald, has been updated.`, longID), keyAdvice},
		not:     []string{"(\""},
	}, {
		name:    "key notice for a new alert",
		job:     withJob(testAlert(longID, alerts.TLPAmber, alerts.MarkingOfficial), delivery.ModeKeyNotice),
		subject: "[TLP:AMBER] Herald: action needed on your OpenPGP key",
		want: []string{
			fmt.Sprintf("Herald has an alert (%s) for your organisation at this address, but %s", longID, keyNeeded),
			"Nothing of the alert's content is in this message. " + keyAdvice,
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := sink.Count()
			require.NoError(t, notify(t, n, c.job, sub))
			raw := sink.Messages()[before].Data
			require.Equal(t, c.subject, decodeSubject(t, raw))
			v, err := verifySigned(t, raw, signer)
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(v.Text, "TLP:AMBER OFFICIAL\n"), "the text starts with the label and marking")
			require.Equal(t, c.subject, v.ProtectedSubject)
			// A word longer than a line is broken, so compare without
			// white space.
			text := nospace(v.Text)
			for _, w := range c.want {
				require.Contains(t, text, nospace(w))
			}
			for _, w := range c.not {
				require.NotContains(t, flat(v.Text), w)
			}
			for _, secret := range []string{secretTitle, secretSummary, secretBody, "Leeds", "+44 7700"} {
				require.NotContains(t, v.Text, secret, "nothing of the follow-up's content")
				require.NotContains(t, string(raw), secret)
			}
			for i, line := range strings.Split(v.Text, "\n") {
				require.LessOrEqual(t, utf8.RuneCountInString(line), 72, "line %d is longer than 72 columns: %q", i+1, line)
			}
			require.NotContains(t, v.Text, "\nBcc:", "a line break in a title cannot start a line of its own")
		})
	}
}

// TestFollowUpKeyNoticeEndToEnd is the case of issue 10 item 7: a partner
// received GREEN alert g-7 at an address without a key; the AMBER cancel
// (and, separately, an AMBER update) of g-7 reaches that address, over
// STARTTLS, as a notice naming g-7 and its title, saying it was withdrawn
// (updated), with the key advice, threaded under g-7, and GnuPG and
// Sequoia verify it.
func TestFollowUpKeyNoticeEndToEnd(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{StartTLS: true})
	signer := pgptest.AgencySigner(t)
	n := newNotifier(t, sink, signer, func(c *email.Config) { c.TLS = email.TLSStartTLS })
	const addr = "nokey@acme.example"
	sub := partner(t, map[string]string{addr: ""})
	green := testAlert("g-7", alerts.TLPGreen, alerts.MarkingOfficial)
	green.Title = "Car wash in Hull recruits through a fake agency"
	pub := string(signer.PublicKeyArmored())
	gpg, sq := pgptest.GPG(t), pgptest.SQ(t)
	gpg.Import(pub)

	require.NoError(t, notify(t, n, job(green, sub, addr, delivery.ModeSigned), sub))
	for _, c := range []struct {
		typ  alerts.Type
		says string
	}{
		{alerts.TypeCancel, "Alert g-7 (\"Car wash in Hull recruits through a fake agency\"), which your organisation received from Herald, has been withdrawn; stop acting on it"},
		{alerts.TypeUpdate, "Alert g-7 (\"Car wash in Hull recruits through a fake agency\"), which your organisation received from Herald, has been updated. The update could not be sent to this address"},
	} {
		t.Run(string(c.typ), func(t *testing.T) {
			follow := followUp("a-8-"+string(c.typ), c.typ, "g-7")
			j := job(follow, sub, addr, delivery.ModeFollowUpKeyNotice)
			j.Held = []delivery.Held{{ID: "g-7", Title: green.Title}}
			before := sink.Count()
			require.NoError(t, notify(t, n, j, sub))
			m := sink.Messages()[before]
			require.True(t, m.TLS)
			require.Equal(t, []string{addr}, m.To)

			p := extract(t, bodyOf(t, m.Data))
			require.NoError(t, gpg.VerifyDetached("", p.signed, p.signature))
			require.NoError(t, sq.VerifyDetached(pub, p.signed, p.signature))
			v, err := verifySigned(t, m.Data, signer)
			require.NoError(t, err)
			require.Contains(t, flat(v.Text), c.says)
			require.Contains(t, flat(v.Text), "Please send a current OpenPGP public key for this address")
			for _, secret := range []string{secretTitle, secretSummary, secretBody} {
				require.NotContains(t, string(m.Data), secret)
			}
			original := "<" + delivery.ID("g-7", sub.ID, addr) + "@herald.example>"
			require.Equal(t, original, v.Protected.Get("In-Reply-To"), "threaded under the alert the partner holds")
			require.Contains(t, string(m.Data), "\r\nIn-Reply-To: "+original+"\r\n")
		})
	}
}

// TestFollowUpKeyNoticeNeedsAFollowUp refuses a follow-up key notice for
// a new alert: there is nothing it could say was updated or withdrawn.
func TestFollowUpKeyNoticeNeedsAFollowUp(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	n := newNotifier(t, sink, pgptest.AgencySigner(t), nil)
	sub := partner(t, map[string]string{"ops@acme.example": ""})
	a := testAlert("A-9", alerts.TLPAmber, alerts.MarkingOfficial)
	f := delivery.Classify(notify(t, n, job(a, sub, "ops@acme.example", delivery.ModeFollowUpKeyNotice), sub))
	require.NotNil(t, f)
	require.False(t, f.Temporary)
	require.Equal(t, delivery.ReasonInvalid, f.Reason)
	require.Zero(t, sink.Count())
}

// TestKeyNoticeSaysWhyAndWhichKey: a key notice says what is wrong with
// the key Herald holds for the address, as judged when it is sent, and
// names that key by its fingerprint, so that the partner knows what to
// fix; a key replaced by a usable one since is named too, and the notice
// says so rather than ask for another. Each address's notice of one alert
// is rendered for its own key, and none carries the alert's content.
func TestKeyNoticeSaysWhyAndWhichKey(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	signer := pgptest.AgencySigner(t)
	n := newNotifier(t, sink, signer, nil)
	names := map[string]string{"none@acme.example": "", "expired@acme.example": pgptest.Expired,
		"revoked@acme.example": pgptest.Revoked, "signonly@acme.example": pgptest.SignOnly,
		"v6@acme.example": pgptest.V6, "alice@acme.example": pgptest.Alice}
	sub := partner(t, names)
	fingerprint := func(name string) string {
		pub, _ := pgptest.RecipientKey(t, name)
		info, err := pgp.InspectKey(pub, time.Now())
		require.NoError(t, err)
		return info.Fingerprint
	}
	a := testAlert("AMBER-K", alerts.TLPAmber, alerts.MarkingOfficialSensitive)
	update := followUp("AMBER-K2", alerts.TypeUpdate, "AMBER-K")
	for _, c := range []struct {
		addr string
		why  string // the clause after "it may only be sent encrypted, and"
		not  []string
	}{
		{"none@acme.example", "we hold no OpenPGP key for this address.", []string{"Key fingerprint"}},
		{"expired@acme.example", "the OpenPGP key we hold for this address expired on 2020-01-02.", nil},
		{"revoked@acme.example", "the OpenPGP key we hold for this address is revoked.", nil},
		{"signonly@acme.example", "the OpenPGP key we hold for this address has no valid encryption subkey (it can only sign).", nil},
		{"v6@acme.example", "the OpenPGP key we hold for this address cannot be used for encryption: version 6 keys are not supported by GnuPG 2.2", nil},
		{"alice@acme.example", "the OpenPGP key we held for this address could not be used for encryption when it was sent.",
			[]string{"Please send a current OpenPGP public key"}},
	} {
		t.Run(c.addr, func(t *testing.T) {
			for _, j := range []*delivery.Job{job(a, sub, c.addr, delivery.ModeKeyNotice),
				job(update, sub, c.addr, delivery.ModeFollowUpKeyNotice)} {
				before := sink.Count()
				require.NoError(t, notify(t, n, j, sub))
				raw := sink.Messages()[before].Data
				v, err := verifySigned(t, raw, signer)
				require.NoError(t, err)
				text := nospace(v.Text)
				require.Contains(t, text, nospace("it may only be sent encrypted, and "+c.why), j.Mode)
				if name := names[c.addr]; name != "" {
					require.Contains(t, text, "Keyfingerprint:"+fingerprint(name), j.Mode)
				}
				if c.addr == "alice@acme.example" {
					require.Contains(t, text, nospace("The key we hold now can be used: alerts sent from now on will reach you encrypted."))
				}
				for _, w := range c.not {
					require.NotContains(t, flat(v.Text), w, j.Mode)
				}
				for _, secret := range []string{secretTitle, secretSummary, secretBody, "Leeds", "+44 7700"} {
					require.NotContains(t, string(raw), secret, "nothing of the alert's content")
				}
				for i, line := range strings.Split(v.Text, "\n") {
					require.LessOrEqual(t, utf8.RuneCountInString(line), 72, "line %d is longer than 72 columns: %q", i+1, line)
				}
			}
		})
	}
	require.Equal(t, uint64(2*len(names)), email.Renders(n), "each address's notices rendered for its own key")
}
