package email_test

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	dateHeader = regexp.MustCompile(`(?m)^((?:HP-Outer: )?)Date: .*\r$`)
	messageID  = regexp.MustCompile(`(?m)^((?:HP-Outer: )?)Message-ID: <[^>]*>\r$`)
	boundary   = regexp.MustCompile(`=_herald_[0-9a-f]{24}`)
	sigBlock   = regexp.MustCompile(`(?s)-----BEGIN PGP SIGNATURE-----.*?-----END PGP SIGNATURE-----`)
)

// normalize replaces what changes from run to run: the date (outside, in
// the protected headers and in HP-Outer), the Message-ID, the random
// boundaries and the signature (which carries a time and a salt).
func normalize(raw []byte) []byte {
	raw = dateHeader.ReplaceAll(raw, []byte("${1}Date: DATE\r"))
	raw = messageID.ReplaceAll(raw, []byte("${1}Message-ID: <MESSAGE-ID>\r"))
	raw = boundary.ReplaceAll(raw, []byte("=_herald_BOUNDARY"))
	return sigBlock.ReplaceAll(raw, []byte("-----BEGIN PGP SIGNATURE-----\r\nSIGNATURE\r\n-----END PGP SIGNATURE-----"))
}

// golden compares got with testdata/file, or rewrites the file with
// -update.
func golden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	require.Equal(t, string(want), string(got))
}

// TestGolden compares whole messages, as the relay received them, with
// golden files; run with -update to rewrite them after a deliberate
// change.
func TestGolden(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	n := newNotifier(t, sink, pgptest.AgencySigner(t), nil)
	// The address's key expired: the key notices say so, and name it.
	sub := partner(t, map[string]string{"ops@acme.example": pgptest.Expired})
	green := testAlert("GREEN-G", alerts.TLPGreen, alerts.MarkingOfficial)
	amber := testAlert("AMBER-G", alerts.TLPAmber, alerts.MarkingOfficialSensitive)
	cancel := testAlert("AMBER-G2", alerts.TLPAmber, alerts.MarkingOfficialSensitive)
	cancel.Type, cancel.References = alerts.TypeCancel, []string{"AMBER-G"}
	followUp := job(cancel, sub, "ops@acme.example", delivery.ModeFollowUpKeyNotice)
	followUp.Held = []delivery.Held{{ID: "GREEN-G", Title: "Car wash in Hull recruits through a fake employment agency in the name of a local charity"}}
	for _, c := range []struct {
		file string
		job  *delivery.Job
	}{
		{"green-signed.eml", job(green, sub, "ops@acme.example", delivery.ModeSigned)},
		{"amber-key-notice.eml", job(amber, sub, "ops@acme.example", delivery.ModeKeyNotice)},
		{"amber-cancel-notice.eml", job(cancel, sub, "ops@acme.example", delivery.ModeCancelNotice)},
		{"amber-followup-key-notice.eml", followUp},
	} {
		t.Run(c.file, func(t *testing.T) {
			before := sink.Count()
			require.NoError(t, notify(t, n, c.job, sub))
			golden(t, c.file, normalize(sink.Messages()[before].Data))
		})
	}
}

// TestGoldenProtectedHeaders compares the decrypted entity of an encrypted
// message with a golden file: its signed part carries the real subject
// and the other header fields (RFC 9788 hp="cipher", and
// protected-headers="v1"), the HP-Outer record of what is shown outside,
// and a Legacy Display Element; outside, the subject is only the label,
// the marking and the id. GnuPG and Sequoia decrypt it to the same bytes
// and verify it.
func TestGoldenProtectedHeaders(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	signer := pgptest.AgencySigner(t)
	n := newNotifier(t, sink, signer, nil)
	sub := partner(t, map[string]string{"alice@acme.example": pgptest.Alice})
	amber := testAlert("AMBER-G", alerts.TLPAmber, alerts.MarkingOfficialSensitive)
	update := testAlert("AMBER-G3", alerts.TLPAmber, alerts.MarkingOfficialSensitive)
	update.Type, update.References = alerts.TypeUpdate, []string{"AMBER-G"}
	_, secret := pgptest.RecipientKey(t, pgptest.Alice)
	pub := string(signer.PublicKeyArmored())
	gpg, sq := pgptest.GPG(t), pgptest.SQ(t)
	gpg.Import(pub)
	gpg.Import(secret)
	for _, c := range []struct {
		file string
		a    *alerts.Alert
	}{
		{"amber-encrypted-inner.eml", amber},
		{"amber-update-encrypted-inner.eml", update},
	} {
		t.Run(c.file, func(t *testing.T) {
			before := sink.Count()
			require.NoError(t, notify(t, n, job(c.a, sub, "alice@acme.example", delivery.ModeEncrypted), sub))
			raw := sink.Messages()[before].Data
			require.Equal(t, "[TLP:AMBER] OFFICIAL-SENSITIVE "+c.a.ID, decodeSubject(t, raw))
			enc := extract(t, bodyOf(t, raw)).encrypted
			inner, err := gpg.Decrypt(secret, enc)
			require.NoError(t, err)
			fromSQ, err := sq.Decrypt(secret, enc)
			require.NoError(t, err)
			require.Equal(t, inner, fromSQ)
			p := extract(t, inner)
			require.NoError(t, gpg.VerifyDetached("", p.signed, p.signature))
			require.NoError(t, sq.VerifyDetached(pub, p.signed, p.signature))
			require.Contains(t, string(p.signed), "\r\nSubject: "+realSubjectOf(c.a)+"\r\n")
			golden(t, c.file, normalize(inner))
		})
	}
}

// realSubjectOf is the subject a partner's mail client shows after
// decryption.
func realSubjectOf(a *alerts.Alert) string {
	word := map[alerts.Type]string{alerts.TypeUpdate: "Update: ", alerts.TypeCancel: "Cancelled: "}[a.Type]
	return "[" + a.TLP.Label() + "] " + word + a.Title
}
