package email_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/stretchr/testify/require"
)

// readable returns all a recipient can read of a message: the raw bytes
// as received, the decrypted entity if it is encrypted (with alice's
// key), and the decoded text, which Verify has checked.
func readable(t testing.TB, raw []byte, signer *pgp.Signer) (string, *email.Verification) {
	t.Helper()
	return readableAs(t, raw, signer, pgptest.Alice)
}

// readableAs is readable for the recipient with the named fixture key.
func readableAs(t testing.TB, raw []byte, signer *pgp.Signer, key string) (string, *email.Verification) {
	t.Helper()
	_, secret := pgptest.RecipientKey(t, key)
	v, err := email.Verify(raw, signer.PublicKeyArmored(), []byte(secret), nil)
	require.NoError(t, err)
	all := string(raw) + "\n" + v.Text
	if v.Encrypted {
		inner, err := pgp.Decrypt([]byte(secret), nil, extract(t, bodyOf(t, raw)).encrypted)
		require.NoError(t, err)
		all += "\n" + string(inner)
	}
	return all, v
}

// TestPartnersSeeTheAgencyNeverTheAnalyst renders every mode for an alert
// that names the analysts who issued and approved it, and checks that
// neither name appears anywhere in what the recipient can read, decrypted
// included, and that content messages name the agency: the configured
// issuer name, or the name in the signing key's user id.
func TestPartnersSeeTheAgencyNeverTheAnalyst(t *testing.T) {
	const issuedBy, approvedBy = "Jane Analyst-Q7", "Bob Approver-Z9"
	approved := time.Date(2026, 11, 24, 9, 45, 0, 0, time.UTC)
	named := func(a *alerts.Alert) *alerts.Alert {
		a.IssuedBy, a.ApprovedBy, a.ApprovedAt = issuedBy, approvedBy, &approved
		return a
	}
	for _, c := range []struct{ config, shown string }{
		{"", "National Crime Agency Herald"},
		{"National Crime Agency", "National Crime Agency"},
	} {
		t.Run("issuer="+c.shown, func(t *testing.T) {
			sink := smtptest.New(t, smtptest.Options{})
			signer := pgptest.AgencySigner(t)
			n := newNotifier(t, sink, signer, func(cfg *email.Config) { cfg.IssuerName = c.config })
			sub := partner(t, map[string]string{"alice@acme.example": pgptest.Alice, "nokey@acme.example": ""})
			green := named(testAlert("G-1", alerts.TLPGreen, alerts.MarkingOfficial))
			amber := named(testAlert("A-1", alerts.TLPAmber, alerts.MarkingOfficialSensitive))
			update := named(followUp("A-2", alerts.TypeUpdate, "G-1"))
			cancel := named(followUp("A-3", alerts.TypeCancel, "G-1"))
			held := []delivery.Held{{ID: "G-1", Title: green.Title}}
			withHeld := func(j *delivery.Job) *delivery.Job { j.Held = held; return j }
			for _, c2 := range []struct {
				name    string
				job     *delivery.Job
				content bool
			}{
				{"signed", job(green, sub, "nokey@acme.example", delivery.ModeSigned), true},
				{"encrypted", job(amber, sub, "alice@acme.example", delivery.ModeEncrypted), true},
				{"encrypted update", job(update, sub, "alice@acme.example", delivery.ModeEncrypted), true},
				{"key notice", job(amber, sub, "nokey@acme.example", delivery.ModeKeyNotice), false},
				{"cancel notice for a cancel", withHeld(job(cancel, sub, "nokey@acme.example", delivery.ModeCancelNotice)), false},
				{"cancel notice for an update", withHeld(job(update, sub, "nokey@acme.example", delivery.ModeCancelNotice)), false},
				{"follow-up key notice for an update", withHeld(job(update, sub, "nokey@acme.example", delivery.ModeFollowUpKeyNotice)), false},
				{"follow-up key notice for a cancel", withHeld(job(cancel, sub, "nokey@acme.example", delivery.ModeFollowUpKeyNotice)), false},
			} {
				t.Run(c2.name, func(t *testing.T) {
					before := sink.Count()
					require.NoError(t, notify(t, n, c2.job, sub))
					all, v := readable(t, sink.Messages()[before].Data, signer)
					for _, name := range []string{issuedBy, approvedBy, "Analyst-Q7", "Approver-Z9"} {
						require.NotContains(t, all, name)
					}
					if c2.content {
						require.Contains(t, v.Text, "\nIssued 2026-11-24T09:30:00Z by "+c.shown+"\n")
					}
				})
			}
		})
	}

	t.Run("no issuer name anywhere", func(t *testing.T) {
		priv, _, err := pgp.GenerateKey("", "agency@herald.example", "", time.Now())
		require.NoError(t, err)
		nameless, err := pgp.LoadSigner(priv, nil, time.Now())
		require.NoError(t, err)
		_, err = email.New(email.Config{Host: "h", From: "a@herald.example"}, nameless, nil)
		require.ErrorContains(t, err, "email.issuer_name")
		_, err = email.New(email.Config{Host: "h", From: "a@herald.example", IssuerName: "Agency"}, nameless, nil)
		require.NoError(t, err)
	})
}

// TestOneIDTwoContents is the failure of issue 10: an AMBER alert and then
// a GREEN alert published under the same id, sent through one Notifier.
// Every GREEN recipient's message holds only the GREEN text and never the
// AMBER text, every AMBER recipient's only the AMBER text, whatever the
// order and however the sends interleave.
func TestOneIDTwoContents(t *testing.T) {
	const id = "op-reuse-7"
	amber := testAlert(id, alerts.TLPAmber, alerts.MarkingOfficial)
	amber.Title, amber.Body, amber.Summary = "AMBER-ONLY title: farm gangmaster", "AMBER-ONLY body", "AMBER-ONLY summary"
	green := testAlert(id, alerts.TLPGreen, alerts.MarkingOfficial)
	green.Title, green.Body, green.Summary = "GREEN-ONLY title: car wash", "GREEN-ONLY body", "GREEN-ONLY summary"

	check := func(t *testing.T, sink *smtptest.Server, signer *pgp.Signer) {
		t.Helper()
		for _, m := range sink.Messages() {
			all, v := readable(t, m.Data, signer)
			mine, other := "GREEN-ONLY", "AMBER-ONLY"
			if v.Encrypted {
				mine, other = other, mine
			}
			require.Contains(t, v.Text, mine+" title")
			require.Contains(t, v.Text, mine+" body")
			require.NotContains(t, all, other, "a %s recipient got %s text", mine, other)
		}
	}
	recipients := func(t *testing.T, count int) *subscribers.Subscriber {
		keys := map[string]string{}
		for i := range count {
			keys[fmt.Sprintf("p%d@acme.example", i)] = pgptest.Alice
		}
		return partner(t, keys)
	}
	for _, order := range [][]*alerts.Alert{{amber, green}, {green, amber}} {
		t.Run(string(order[0].TLP)+" first", func(t *testing.T) {
			sink := smtptest.New(t, smtptest.Options{})
			signer := pgptest.AgencySigner(t)
			n := newNotifier(t, sink, signer, nil)
			sub := recipients(t, 3)
			for _, a := range order {
				for _, e := range sub.Email {
					mode := delivery.ModeSigned
					if a.MustEncrypt() {
						mode = delivery.ModeEncrypted
					}
					require.NoError(t, notify(t, n, job(a, sub, e.Address, mode), sub))
				}
			}
			require.Equal(t, 6, sink.Count())
			require.Equal(t, uint64(2), email.Renders(n), "two contents, two renderings")
			check(t, sink, signer)
		})
	}
	t.Run("interleaved", func(t *testing.T) {
		sink := smtptest.New(t, smtptest.Options{})
		signer := pgptest.AgencySigner(t)
		n := newNotifier(t, sink, signer, nil)
		sub := recipients(t, 20)
		var wg sync.WaitGroup
		errs := make(chan error, 2*len(sub.Email))
		for _, e := range sub.Email {
			wg.Go(func() { errs <- notify(t, n, job(amber, sub, e.Address, delivery.ModeEncrypted), sub) })
			wg.Go(func() { errs <- notify(t, n, job(green, sub, e.Address, delivery.ModeSigned), sub) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, 40, sink.Count())
		check(t, sink, signer)
	})
}

// TestAcknowledgementLink checks the link of Config.AckURL: each content
// message and each notice about an alert the target holds carries its own
// delivery's link, on a line of its own, inside the signature (and the
// encryption); key notices never carry one; an empty URL leaves the
// paragraph out; one rendering serves all recipients whatever their links.
func TestAcknowledgementLink(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	signer := pgptest.AgencySigner(t)
	var mu sync.Mutex
	asked := map[string]int{}
	n := newNotifier(t, sink, signer, func(c *email.Config) {
		c.AckURL = func(j *delivery.Job) string {
			mu.Lock()
			asked[j.Mode]++
			mu.Unlock()
			if j.Target == "nolink@acme.example" {
				return ""
			}
			return "https://herald.example/ack/" + j.ID + "?t=" + strings.Repeat("c", 80)
		}
	})
	sub := partner(t, map[string]string{"alice@acme.example": pgptest.Alice, "bob@acme.example": pgptest.Bob,
		"nokey@acme.example": "", "nolink@acme.example": ""})
	green := testAlert("G-5", alerts.TLPGreen, alerts.MarkingOfficial)
	amber := testAlert("A-5", alerts.TLPAmber, alerts.MarkingOfficial)
	cancel := followUp("A-6", alerts.TypeCancel, "G-5")
	link := func(j *delivery.Job) string {
		return "\nConfirm that your organisation received this alert:\nhttps://herald.example/ack/" + j.ID + "?t=" + strings.Repeat("c", 80) +
			"\n(opens a page with a button; nothing is recorded until you press it)\n"
	}
	pub := string(signer.PublicKeyArmored())
	gpg := pgptest.GPG(t)
	gpg.Import(pub)
	for _, c := range []struct {
		name string
		job  *delivery.Job
		link bool
	}{
		{"signed", job(green, sub, "nokey@acme.example", delivery.ModeSigned), true},
		{"encrypted to alice", job(amber, sub, "alice@acme.example", delivery.ModeEncrypted), true},
		{"encrypted to bob", job(amber, sub, "bob@acme.example", delivery.ModeEncrypted), true},
		{"cancel notice", job(cancel, sub, "nokey@acme.example", delivery.ModeCancelNotice), true},
		{"follow-up key notice", job(cancel, sub, "nokey@acme.example", delivery.ModeFollowUpKeyNotice), true},
		{"key notice", job(amber, sub, "nokey@acme.example", delivery.ModeKeyNotice), false},
		{"empty link", job(green, sub, "nolink@acme.example", delivery.ModeSigned), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := sink.Count()
			require.NoError(t, notify(t, n, c.job, sub))
			raw := sink.Messages()[before].Data
			key := pgptest.Alice
			if strings.HasPrefix(c.job.Target, "bob") {
				key = pgptest.Bob
			}
			_, v := readableAs(t, raw, signer, key)
			if c.link {
				require.Contains(t, v.Text, link(c.job))
				require.True(t, strings.HasSuffix(strings.Split(v.Text, "\n-- \n")[0], link(c.job)), "the link comes last, before the footer")
			} else {
				require.NotContains(t, v.Text, "Confirm that your organisation")
			}
			if v.Encrypted {
				require.NotContains(t, string(raw), "/ack/", "the link travels inside the encryption")
			}
			if c.link && !v.Encrypted {
				p := extract(t, bodyOf(t, raw))
				require.NoError(t, gpg.VerifyDetached("", p.signed, p.signature))
				require.Error(t, gpg.VerifyDetached("", bytes.Replace(p.signed, []byte("/ack/"), []byte("/ACK/"), 1), p.signature),
					"the link is signed")
			}
		})
	}
	require.Zero(t, asked[delivery.ModeKeyNotice], "no link is made for a key notice")
	require.Equal(t, uint64(5), email.Renders(n), "alice and bob share one rendering")
}

// TestSignedOnlyProtectedHeaders checks that a signed-only message carries
// its header fields inside the signed part too (hp="clear"), without
// HP-Outer or a legacy display, and that an encrypted message whose
// subject is not obscured needs no legacy display either.
func TestSignedOnlyProtectedHeaders(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	signer := pgptest.AgencySigner(t)
	n := newNotifier(t, sink, signer, nil)
	sub := partner(t, map[string]string{"alice@acme.example": pgptest.Alice})
	green := testAlert("G-8", alerts.TLPGreen, alerts.MarkingOfficial)
	green.Type, green.References = alerts.TypeUpdate, []string{"G-7"}
	for _, mode := range []string{delivery.ModeSigned, delivery.ModeEncrypted} {
		t.Run(mode, func(t *testing.T) {
			before := sink.Count()
			require.NoError(t, notify(t, n, job(green, sub, "alice@acme.example", mode), sub))
			raw := sink.Messages()[before].Data
			all, v := readable(t, raw, signer)
			require.Equal(t, "[TLP:GREEN] Update: "+secretTitle, v.Subject)
			require.Equal(t, v.Subject, v.ProtectedSubject)
			require.Equal(t, "<alice@acme.example>", v.Protected.Get("To"))
			require.Equal(t, "<"+delivery.ID(green.ID, sub.ID, "alice@acme.example")+"@herald.example>", v.Protected.Get("Message-ID"))
			require.Equal(t, "<"+delivery.ID("G-7", sub.ID, "alice@acme.example")+"@herald.example>", v.Protected.Get("In-Reply-To"))
			require.NotEmpty(t, v.Protected.Get("Date"))
			require.NotContains(t, all, "hp-legacy-display")
			require.True(t, strings.HasPrefix(v.Text, "TLP:GREEN OFFICIAL\n"))
			if mode == delivery.ModeSigned {
				require.Equal(t, "clear", v.HP)
				require.NotContains(t, all, "HP-Outer")
			} else {
				require.Equal(t, "cipher", v.HP)
				require.Contains(t, all, "\r\nHP-Outer: Subject: [TLP:GREEN] Update: "+secretTitle+"\r\n")
				require.Empty(t, v.Protected["Hp-Outer"], "the record of the outside is not a protected field")
			}
		})
	}
	// An encrypted AMBER alert: Verify hides the legacy display that the
	// decrypted entity carries.
	amber := testAlert("A-8", alerts.TLPAmber, alerts.MarkingOfficial)
	before := sink.Count()
	require.NoError(t, notify(t, n, job(amber, sub, "alice@acme.example", delivery.ModeEncrypted), sub))
	all, v := readable(t, sink.Messages()[before].Data, signer)
	require.Contains(t, all, "hp-legacy-display=\"1\"")
	require.Contains(t, all, "\r\n\r\nSubject: [TLP:AMBER] "+secretTitle+"\r\n\r\nTLP:AMBER OFFICIAL\r\n")
	require.True(t, strings.HasPrefix(v.Text, "TLP:AMBER OFFICIAL\n"), "Verify hides the legacy display: %q", v.Text[:40])
	require.Equal(t, "[TLP:AMBER] OFFICIAL A-8", v.Subject)
	require.Equal(t, "[TLP:AMBER] "+secretTitle, v.ProtectedSubject)
}
