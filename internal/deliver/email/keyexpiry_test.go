package email_test

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
)

// TestKeyExpiryNotice: the notice to an address whose key expires soon is
// signed, names the address, the key's fingerprint and its expiry and how
// to replace the key, fits in 72 columns, never carries an acknowledgement
// link, and GnuPG verifies it. A job whose notice does not name its own
// target is refused and nothing is sent.
func TestKeyExpiryNotice(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	signer := pgptest.AgencySigner(t)
	n := newNotifier(t, sink, signer, func(c *email.Config) {
		c.AckURL = func(*delivery.Job) string { return "https://herald.example/ack/should-not-appear" }
	})
	const addr = "soc@acme.example"
	sub := partner(t, map[string]string{addr: pgptest.Alice})
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	k := delivery.KeyExpiry{Subscriber: sub.ID, Address: addr, Fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567",
		Expires: now.Add(10 * 24 * time.Hour), Threshold: 30 * 24 * time.Hour}

	require.NoError(t, notify(t, n, k.Job(now), sub))
	require.Equal(t, 1, sink.Count())
	m := sink.Messages()[0]
	require.Equal(t, []string{addr}, m.To)
	require.Equal(t, "[TLP:CLEAR] Herald: your OpenPGP key expires on 2026-11-30", decodeSubject(t, m.Data))
	v, err := verifySigned(t, m.Data, signer)
	require.NoError(t, err)
	require.False(t, v.Encrypted)
	require.True(t, strings.HasPrefix(v.Text, "TLP:CLEAR OFFICIAL\n"))
	text := flat(v.Text)
	for _, want := range []string{
		"The OpenPGP key Herald holds for soc@acme.example expires on 30 November 2026 at 10:00 UTC.",
		"Key fingerprint: 0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567",
		"PUT /v1/partner/email/{address}/key",
		"Nothing of any alert's content is in this message.",
	} {
		require.Contains(t, text, want)
	}
	require.NotContains(t, string(m.Data), "/ack/", "a notice about a key is not acknowledged")
	for i, line := range strings.Split(v.Text, "\n") {
		require.LessOrEqual(t, utf8.RuneCountInString(line), 72, "line %d: %q", i+1, line)
	}
	pub := string(signer.PublicKeyArmored())
	gpg := pgptest.GPG(t)
	gpg.Import(pub)
	p := extract(t, bodyOf(t, m.Data))
	require.NoError(t, gpg.VerifyDetached("", p.signed, p.signature))

	forged := k.Job(now)
	forged.Target = "mallory@acme.example"
	forged.ID = delivery.ID(forged.Alert.ID, sub.ID, forged.Target)
	f := delivery.Classify(notify(t, n, forged, sub))
	require.NotNil(t, f)
	require.False(t, f.Temporary)
	require.Equal(t, delivery.ReasonInvalid, f.Reason)
	require.Equal(t, 1, sink.Count(), "nothing more was sent")
}
