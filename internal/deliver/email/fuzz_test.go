package email_test

import (
	"testing"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
)

// FuzzVerify feeds Verify, which partners run on mail from outside,
// arbitrary messages: it must never panic, and must accept only messages
// whose signature is good.
func FuzzVerify(f *testing.F) {
	sink := smtptest.New(f, smtptest.Options{})
	signer := pgptest.AgencySigner(f)
	n := newNotifier(f, sink, signer, nil)
	sub := partner(f, map[string]string{"alice@acme.example": pgptest.Alice})
	for _, mode := range []string{delivery.ModeSigned, delivery.ModeEncrypted} {
		tlp := alerts.TLPGreen
		if mode == delivery.ModeEncrypted {
			tlp = alerts.TLPAmber
		}
		a := testAlert("F-"+string(tlp), tlp, alerts.MarkingOfficial)
		if err := notify(f, n, job(a, sub, "alice@acme.example", mode), sub); err != nil {
			f.Fatal(err)
		}
	}
	for _, m := range sink.Messages() {
		f.Add(m.Data)
	}
	f.Add([]byte("Content-Type: multipart/signed; boundary=x; protocol=\"application/pgp-signature\"\r\n\r\n--x\r\n\r\n--x--\r\n"))
	pub := signer.PublicKeyArmored()
	_, secret := pgptest.RecipientKey(f, pgptest.Alice)
	orig := sink.Messages()
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := email.Verify(raw, pub, []byte(secret), nil)
		if err != nil {
			return
		}
		if v.Signer != signer.Fingerprint() {
			t.Fatalf("accepted a signature by %s", v.Signer)
		}
		_ = orig
	})
}
