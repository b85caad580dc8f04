package email_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/stretchr/testify/require"
)

// TestSignedOverStartTLSWithAuth sends a GREEN alert through STARTTLS and
// AUTH PLAIN and checks the bytes the sink received with Verify, GnuPG
// and Sequoia; a one-byte change must make all of them fail.
func TestSignedOverStartTLSWithAuth(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{StartTLS: true, Username: "herald", Password: "s3cret"})
	signer := pgptest.AgencySigner(t)
	n := newNotifier(t, sink, signer, func(c *email.Config) {
		c.TLS, c.Username, c.Password = email.TLSStartTLS, "herald", "s3cret"
	})
	a := testAlert("GREEN-1", alerts.TLPGreen, alerts.MarkingOfficial)
	sub := partner(t, map[string]string{"ops@acme.example": ""})
	j := job(a, sub, "ops@acme.example", delivery.ModeSigned)
	require.NoError(t, notify(t, n, j, sub))

	msgs := sink.Messages()
	require.Len(t, msgs, 1)
	m := msgs[0]
	require.True(t, m.TLS, "sent over TLS")
	require.Equal(t, "herald", m.Auth)
	require.Equal(t, []string{"ops@acme.example"}, m.To)
	require.Equal(t, "alerts@herald.example", m.From)
	require.Equal(t, "[TLP:GREEN] "+secretTitle, decodeSubject(t, m.Data))
	require.Contains(t, string(m.Data), "\r\nMessage-ID: <"+j.ID+"@herald.example>\r\n")

	v, err := email.Verify(m.Data, signer.PublicKeyArmored(), nil, nil)
	require.NoError(t, err)
	require.Equal(t, signer.Fingerprint(), v.Signer)
	require.False(t, v.Encrypted)
	require.Equal(t, "pgp-sha256", v.Micalg)
	require.True(t, strings.HasPrefix(v.Text, "TLP:GREEN OFFICIAL\n3x5x2 handling code C: Share only with your safeguarding lead\n"), v.Text)
	require.Contains(t, v.Text, secretTitle)
	require.Contains(t, v.Text, secretBody)
	require.Contains(t, v.Text, "\nFrom the street", "a line starting with From survives its escaping")

	p := extract(t, bodyOf(t, m.Data))
	pub := string(signer.PublicKeyArmored())
	gpg, sq := pgptest.GPG(t), pgptest.SQ(t)
	gpg.Import(pub)
	require.NoError(t, gpg.VerifyDetached("", p.signed, p.signature))
	require.NoError(t, sq.VerifyDetached(pub, p.signed, p.signature))

	// Tamper with one byte of the signed text.
	i := bytes.Index(m.Data, []byte("grey van"))
	require.Greater(t, i, 0)
	bad := bytes.Clone(m.Data)
	bad[i] = 'D'
	_, err = email.Verify(bad, signer.PublicKeyArmored(), nil, nil)
	require.Error(t, err)
	pb := extract(t, bodyOf(t, bad))
	require.Error(t, gpg.VerifyDetached("", pb.signed, pb.signature))
	require.Error(t, sq.VerifyDetached(pub, pb.signed, pb.signature))

	// Signed by another key: Verify names the mismatch.
	other := pgptest.Signer(t, pgptest.AgencyRSA)
	_, err = email.Verify(m.Data, other.PublicKeyArmored(), nil, nil)
	require.Error(t, err)
}

// TestEncryptedInterop sends an AMBER alert to a Curve25519 and an RSA
// recipient; each message decrypts with GnuPG, Sequoia and Verify, and
// the decrypted signed entity verifies with both tools.
func TestEncryptedInterop(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{ImplicitTLS: true})
	signer := pgptest.AgencySigner(t)
	n := newNotifier(t, sink, signer, func(c *email.Config) { c.TLS = email.TLSImplicit })
	a := testAlert("AMBER-1", alerts.TLPAmber, alerts.MarkingOfficialSensitive)
	sub := partner(t, map[string]string{"alice@acme.example": pgptest.Alice, "bob@acme.example": pgptest.Bob})
	pub := string(signer.PublicKeyArmored())
	gpg, sq := pgptest.GPG(t), pgptest.SQ(t)
	gpg.Import(pub)

	for addr, key := range map[string]string{"alice@acme.example": pgptest.Alice, "bob@acme.example": pgptest.Bob} {
		t.Run(key, func(t *testing.T) {
			require.NoError(t, notify(t, n, job(a, sub, addr, delivery.ModeEncrypted), sub))
			var raw []byte
			for _, m := range sink.Messages() {
				if m.To[0] == addr {
					raw = m.Data
				}
			}
			require.NotNil(t, raw)
			require.Equal(t, "[TLP:AMBER] OFFICIAL-SENSITIVE AMBER-1", decodeSubject(t, raw))
			_, secret := pgptest.RecipientKey(t, key)

			v, err := email.Verify(raw, signer.PublicKeyArmored(), []byte(secret), nil)
			require.NoError(t, err)
			require.True(t, v.Encrypted)
			require.Equal(t, signer.Fingerprint(), v.Signer)
			require.Contains(t, v.Text, secretTitle)
			require.Equal(t, "cipher", v.HP)
			require.Equal(t, "[TLP:AMBER] "+secretTitle, v.ProtectedSubject, "the real subject, inside")
			require.Equal(t, "<"+addr+">", v.Protected.Get("To"), "each message is signed for its own recipient")
			_, err = email.Verify(raw, signer.PublicKeyArmored(), nil, nil)
			require.ErrorContains(t, err, "encrypted")

			enc := extract(t, bodyOf(t, raw)).encrypted
			gpg.Import(secret)
			var inners [][]byte
			for _, tool := range []*pgptest.Tool{gpg, sq} {
				inner, err := tool.Decrypt(secret, enc)
				require.NoError(t, err)
				p := extract(t, inner)
				require.NoError(t, tool.VerifyDetached(pub, p.signed, p.signature))
				badSigned := bytes.Replace(p.signed, []byte("debt"), []byte("Debt"), 1)
				require.Error(t, tool.VerifyDetached(pub, badSigned, p.signature))
				// The protected headers are signed too.
				badHeader := bytes.Replace(p.signed, []byte("To: <"+addr), []byte("To: <x"+addr[1:]), 1)
				require.NotEqual(t, p.signed, badHeader)
				require.Error(t, tool.VerifyDetached(pub, badHeader, p.signature))
				inners = append(inners, inner)
			}
			require.Equal(t, inners[0], inners[1], "gpg and sq decrypt the same entity")
			// Tampering with the ciphertext breaks decryption.
			bad := bytes.Clone(enc)
			k := bytes.Index(bad, []byte("\r\n\r\n")) + 40
			bad[k] ^= 0x01
			if bad[k] == '\r' || bad[k] == '\n' || bad[k] == '=' {
				bad[k] = 'A'
			}
			_, err = gpg.Decrypt(secret, bad)
			require.Error(t, err)
			_, err = sq.Decrypt(secret, bad)
			require.Error(t, err)
		})
	}
	require.Equal(t, uint64(2), signer.Ops(), "one signature per message")
	require.Equal(t, uint64(1), email.Renders(n), "one rendering for the alert")
}

// TestNoContentOutsideEncryption checks that for every restricted alert
// the title, summary and body appear nowhere in the raw bytes of the
// encrypted message or of either notice, and that a signed-only job for
// it is refused.
func TestNoContentOutsideEncryption(t *testing.T) {
	cases := []struct {
		tlp     alerts.TLP
		marking alerts.Marking
	}{
		{alerts.TLPAmber, alerts.MarkingOfficial},
		{alerts.TLPAmberStrict, alerts.MarkingOfficial},
		{alerts.TLPRed, alerts.MarkingOfficialSensitive},
		{alerts.TLPGreen, alerts.MarkingOfficialSensitive},
		{alerts.TLPClear, alerts.MarkingOfficialSensitive},
	}
	sink := smtptest.New(t, smtptest.Options{})
	signer := pgptest.AgencySigner(t)
	n := newNotifier(t, sink, signer, nil)
	sub := partner(t, map[string]string{"alice@acme.example": pgptest.Alice, "nokey@acme.example": ""})
	for i, c := range cases {
		t.Run(string(c.tlp)+"/"+string(c.marking), func(t *testing.T) {
			a := testAlert(fmt.Sprintf("R-%d", i), c.tlp, c.marking)
			before := sink.Count()
			err := notify(t, n, job(a, sub, "alice@acme.example", delivery.ModeSigned), sub)
			f := delivery.Classify(err)
			require.NotNil(t, f)
			require.False(t, f.Temporary)
			require.Equal(t, delivery.ReasonEncrypt, f.Reason)
			require.Equal(t, before, sink.Count(), "nothing sent")

			require.NoError(t, notify(t, n, job(a, sub, "alice@acme.example", delivery.ModeEncrypted), sub))
			require.NoError(t, notify(t, n, job(a, sub, "nokey@acme.example", delivery.ModeKeyNotice), sub))
			cancel := testAlert(fmt.Sprintf("R-%d-c", i), c.tlp, c.marking)
			cancel.Type, cancel.References = alerts.TypeCancel, []string{a.ID}
			require.NoError(t, notify(t, n, job(cancel, sub, "nokey@acme.example", delivery.ModeCancelNotice), sub))

			msgs := sink.Messages()[before:]
			require.Len(t, msgs, 3)
			for _, m := range msgs {
				raw := string(m.Data)
				for _, secret := range []string{secretTitle, secretSummary, secretBody, "debt bondage", "Leeds", "+44 7700"} {
					require.NotContains(t, raw, secret)
				}
				require.Contains(t, decodeSubject(t, m.Data), "[TLP:"+string(c.tlp)+"]")
			}
			require.Equal(t, fmt.Sprintf("[TLP:%s] %s %s", c.tlp, c.marking, a.ID), decodeSubject(t, msgs[0].Data))
			require.Equal(t, fmt.Sprintf("[TLP:%s] Herald: action needed on your OpenPGP key", c.tlp), decodeSubject(t, msgs[1].Data))
			require.Equal(t, fmt.Sprintf("[TLP:%s] Herald: alert %s withdrawn", c.tlp, a.ID), decodeSubject(t, msgs[2].Data))

			// The notices are signed and say what they are.
			for _, m := range msgs[1:] {
				v, err := email.Verify(m.Data, signer.PublicKeyArmored(), nil, nil)
				require.NoError(t, err)
				require.True(t, strings.HasPrefix(v.Text, "TLP:"+string(c.tlp)+" "+string(c.marking)+"\n"))
				require.Regexp(t, `Nothing of the (alert|cancellation)'s content is in this message\.`, flat(v.Text))
				for _, secret := range []string{secretTitle, secretSummary, secretBody, "Leeds", "+44 7700"} {
					require.NotContains(t, v.Text, secret)
				}
			}
		})
	}
}

func TestUnusableKeyFailsClosed(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	n := newNotifier(t, sink, pgptest.AgencySigner(t), nil)
	a := testAlert("AMBER-2", alerts.TLPAmber, alerts.MarkingOfficial)
	for _, key := range []string{pgptest.Expired, pgptest.Revoked, pgptest.SignOnly, pgptest.V6, ""} {
		t.Run("key="+key, func(t *testing.T) {
			sub := partner(t, map[string]string{"x@acme.example": key})
			f := delivery.Classify(notify(t, n, job(a, sub, "x@acme.example", delivery.ModeEncrypted), sub))
			require.NotNil(t, f)
			require.False(t, f.Temporary)
			require.Equal(t, delivery.ReasonEncrypt, f.Reason)
		})
	}
	t.Run("address not on record", func(t *testing.T) {
		sub := partner(t, map[string]string{"x@acme.example": pgptest.Alice})
		f := delivery.Classify(notify(t, n, job(a, sub, "y@acme.example", delivery.ModeEncrypted), sub))
		require.Equal(t, delivery.ReasonEncrypt, f.Reason)
	})
	require.Zero(t, sink.Count())
}

// TestSMTPReplies checks the classification of relay replies and that a
// rejected recipient leaves the pooled connection usable.
func TestSMTPReplies(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{Rcpt: func(to string) *smtp.SMTPError {
		switch {
		case strings.HasPrefix(to, "full@"):
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "Mailbox full"}
		case strings.HasPrefix(to, "gone@"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
		}
		return nil
	}})
	n := newNotifier(t, sink, pgptest.AgencySigner(t), func(c *email.Config) { c.Pool = 1 })
	a := testAlert("GREEN-2", alerts.TLPGreen, alerts.MarkingOfficial)
	sub := partner(t, map[string]string{"full@acme.example": "", "gone@acme.example": "", "ok@acme.example": ""})

	f := delivery.Classify(notify(t, n, job(a, sub, "full@acme.example", delivery.ModeSigned), sub))
	require.True(t, f.Temporary)
	require.Equal(t, delivery.ReasonSMTP4xx, f.Reason)
	var se *smtp.SMTPError
	require.True(t, errors.As(f, &se))
	require.Equal(t, 452, se.Code)

	f = delivery.Classify(notify(t, n, job(a, sub, "gone@acme.example", delivery.ModeSigned), sub))
	require.False(t, f.Temporary)
	require.Equal(t, delivery.ReasonSMTP5xx, f.Reason)

	require.NoError(t, notify(t, n, job(a, sub, "ok@acme.example", delivery.ModeSigned), sub))
	require.Equal(t, 1, sink.Count())
	require.Equal(t, 1, sink.Connections(), "the connection is reset and reused after rejections")
}

func TestConnectionFailures(t *testing.T) {
	signer := pgptest.AgencySigner(t)
	a := testAlert("GREEN-3", alerts.TLPGreen, alerts.MarkingOfficial)
	sub := partner(t, map[string]string{"ok@acme.example": ""})
	j := job(a, sub, "ok@acme.example", delivery.ModeSigned)

	t.Run("refused", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		n, err := email.New(email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, From: "alerts@herald.example"}, signer, nil)
		require.NoError(t, err)
		f := delivery.Classify(n.Notify(context.Background(), j, sub))
		require.True(t, f.Temporary)
		require.Equal(t, delivery.ReasonConnect, f.Reason)
	})
	t.Run("wrong password", func(t *testing.T) {
		sink := smtptest.New(t, smtptest.Options{StartTLS: true, Username: "herald", Password: "right"})
		n := newNotifier(t, sink, signer, func(c *email.Config) { c.TLS, c.Username, c.Password = email.TLSStartTLS, "herald", "wrong" })
		f := delivery.Classify(notify(t, n, j, sub))
		require.True(t, f.Temporary)
		require.Equal(t, delivery.ReasonConfig, f.Reason)
		require.NotContains(t, f.Error(), "wrong", "the password is never in an error")
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		sink := smtptest.New(t, smtptest.Options{StartTLS: true})
		n := newNotifier(t, sink, signer, func(c *email.Config) { c.TLS, c.RootCAs = email.TLSStartTLS, nil })
		f := delivery.Classify(notify(t, n, j, sub))
		require.True(t, f.Temporary)
		require.Equal(t, delivery.ReasonTLS, f.Reason)
		require.Zero(t, sink.Count())
	})
	t.Run("no starttls offered", func(t *testing.T) {
		sink := smtptest.New(t, smtptest.Options{})
		n := newNotifier(t, sink, signer, func(c *email.Config) { c.TLS = email.TLSStartTLS })
		f := delivery.Classify(notify(t, n, j, sub))
		require.True(t, f.Temporary)
		require.Equal(t, delivery.ReasonTLS, f.Reason)
		require.Zero(t, sink.Count(), "never falls back to plain text")
	})
	t.Run("slow relay hits the deadline", func(t *testing.T) {
		release := make(chan struct{})
		sink := smtptest.New(t, smtptest.Options{Data: func([]string, []byte) *smtp.SMTPError { <-release; return nil }})
		t.Cleanup(func() { close(release) })
		n := newNotifier(t, sink, signer, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		f := delivery.Classify(n.Notify(ctx, j, sub))
		require.True(t, f.Temporary)
		require.Equal(t, delivery.ReasonTimeout, f.Reason)
	})
}

// TestRendersOncePerContent sends one alert to many addresses at once,
// signed and encrypted: each content is rendered once, and each message
// is signed (and encrypted) on its own, because its signed part carries
// its own header fields.
func TestRendersOncePerContent(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{Discard: true})
	signer := pgptest.AgencySigner(t)
	n := newNotifier(t, sink, signer, nil)
	green := testAlert("GREEN-4", alerts.TLPGreen, alerts.MarkingOfficial)
	amber := testAlert("AMBER-4", alerts.TLPAmber, alerts.MarkingOfficial)
	const count = 300
	keys := map[string]string{}
	for i := range count {
		keys[fmt.Sprintf("p%d@acme.example", i)] = pgptest.Alice
	}
	sub := partner(t, keys)
	var wg sync.WaitGroup
	errs := make(chan error, 2*count)
	for addr := range keys {
		wg.Go(func() { errs <- notify(t, n, job(green, sub, addr, delivery.ModeSigned), sub) })
		wg.Go(func() { errs <- notify(t, n, job(amber, sub, addr, delivery.ModeEncrypted), sub) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, 2*count, sink.Count())
	require.Equal(t, uint64(2), email.Renders(n), "one rendering per content")
	require.Equal(t, uint64(2*count), signer.Ops(), "one signature per message")
	require.LessOrEqual(t, sink.Connections(), 4, "connections are pooled")
}

func TestThreading(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	n := newNotifier(t, sink, pgptest.AgencySigner(t), nil)
	sub := partner(t, map[string]string{"ops@acme.example": ""})
	up := testAlert("GREEN-6", alerts.TLPGreen, alerts.MarkingOfficial)
	up.Type, up.References = alerts.TypeUpdate, []string{"GREEN-5", "GREEN-4"}
	j := job(up, sub, "ops@acme.example", delivery.ModeSigned)
	require.NoError(t, notify(t, n, j, sub))
	m, err := mail.ReadMessage(bytes.NewReader(sink.Messages()[0].Data))
	require.NoError(t, err)
	ref1 := "<" + delivery.ID("GREEN-5", "acme", "ops@acme.example") + "@herald.example>"
	ref2 := "<" + delivery.ID("GREEN-4", "acme", "ops@acme.example") + "@herald.example>"
	require.Equal(t, "<"+j.ID+"@herald.example>", m.Header.Get("Message-ID"))
	require.Equal(t, ref1, m.Header.Get("In-Reply-To"))
	require.Equal(t, ref1+" "+ref2, strings.Join(strings.Fields(m.Header.Get("References")), " "))
	require.Equal(t, "[TLP:GREEN] Update: "+secretTitle, decodeSubject(t, sink.Messages()[0].Data))
}

// TestSubjectTypeWordOnce: an analyst who starts a follow-up's title with
// "Update"/"Cancelled" gets one such word in the subject, not two.
func TestSubjectTypeWordOnce(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	n := newNotifier(t, sink, pgptest.AgencySigner(t), nil)
	sub := partner(t, map[string]string{"ops@acme.example": ""})
	for i, c := range []struct {
		typ         alerts.Type
		title, want string
	}{
		{alerts.TypeUpdate, "Update: agency also uses a web domain", "[TLP:GREEN] Update: agency also uses a web domain"},
		{alerts.TypeUpdate, "UPDATED - agency also uses a web domain", "[TLP:GREEN] UPDATED - agency also uses a web domain"},
		{alerts.TypeCancel, "Cancelled: agency warning", "[TLP:GREEN] Cancelled: agency warning"},
		{alerts.TypeCancel, "Cancellation of the agency warning", "[TLP:GREEN] Cancellation of the agency warning"},
		{alerts.TypeCancel, "Agency warning withdrawn", "[TLP:GREEN] Cancelled: Agency warning withdrawn"},
		{alerts.TypeUpdate, "Cancelled shifts at the agency", "[TLP:GREEN] Update: Cancelled shifts at the agency"},
	} {
		a := testAlert(fmt.Sprintf("GREEN-2%d", i), alerts.TLPGreen, alerts.MarkingOfficial)
		a.Type, a.References, a.Title = c.typ, []string{"GREEN-1"}, c.title
		require.NoError(t, notify(t, n, job(a, sub, "ops@acme.example", delivery.ModeSigned), sub))
		require.Equal(t, c.want, decodeSubject(t, sink.Messages()[i].Data), c.title)
	}
}

// TestThreadingChain: a cancel of an update threads under the chain's
// first alert as well as under the update it names (RFC 5322 §3.6.4: the
// parent's References, then the parent), so a partner's mail client shows
// the cancel with the alert it first received, and the partner can tell
// which alert the chain withdraws.
func TestThreadingChain(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	signer := pgptest.AgencySigner(t)
	n := newNotifier(t, sink, signer, nil)
	sub := partner(t, map[string]string{"ops@acme.example": ""})
	cancel := testAlert("GREEN-12", alerts.TLPGreen, alerts.MarkingOfficial)
	cancel.Type, cancel.References = alerts.TypeCancel, []string{"GREEN-11"}
	j := job(cancel, sub, "ops@acme.example", delivery.ModeSigned)
	j.Lineage = &delivery.Lineage{Root: "GREEN-10", RootIssuedAt: *cancel.IssuedAt,
		References: []delivery.Ref{{ID: "GREEN-11", IssuedAt: *cancel.IssuedAt}}}
	require.NoError(t, notify(t, n, j, sub))
	m, err := mail.ReadMessage(bytes.NewReader(sink.Messages()[0].Data))
	require.NoError(t, err)
	root := "<" + delivery.ID("GREEN-10", "acme", "ops@acme.example") + "@herald.example>"
	parent := "<" + delivery.ID("GREEN-11", "acme", "ops@acme.example") + "@herald.example>"
	require.Equal(t, parent, m.Header.Get("In-Reply-To"))
	require.Equal(t, root+" "+parent, strings.Join(strings.Fields(m.Header.Get("References")), " "))
	v, err := email.Verify(sink.Messages()[0].Data, signer.PublicKeyArmored(), nil, nil)
	require.NoError(t, err)
	require.Equal(t, root+" "+parent, strings.Join(strings.Fields(v.Protected.Get("References")), " "), "the signed part carries the same thread")
}

// TestHeaderInjection feeds a title the validator would reject: the
// subject stays one header and non-ASCII text is encoded.
func TestHeaderInjection(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	n := newNotifier(t, sink, pgptest.AgencySigner(t), nil)
	sub := partner(t, map[string]string{"ops@acme.example": ""})
	a := testAlert("GREEN-7", alerts.TLPGreen, alerts.MarkingOfficial)
	a.Title = "Zürich café\r\nBcc: victim@example.org\r\n\r\nInjected body"
	require.NoError(t, notify(t, n, job(a, sub, "ops@acme.example", delivery.ModeSigned), sub))
	raw := sink.Messages()[0].Data
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	require.Empty(t, m.Header.Get("Bcc"))
	require.NotContains(t, string(raw[:bytes.Index(raw, []byte("\r\n\r\n"))]), "Zürich", "non-ASCII is encoded")
	require.Equal(t, "[TLP:GREEN] Zürich café  Bcc: victim@example.org    Injected body", decodeSubject(t, raw))

	bad := job(a, sub, "ops@acme.example\r\nRCPT TO:<x@evil.example>", delivery.ModeSigned)
	f := delivery.Classify(notify(t, n, bad, sub))
	require.Equal(t, delivery.ReasonInvalid, f.Reason)
	require.False(t, f.Temporary)
}

func TestNewRejectsBadConfig(t *testing.T) {
	signer := pgptest.AgencySigner(t)
	for _, c := range []struct {
		cfg  email.Config
		want string
	}{
		{email.Config{From: "a@b.example"}, "smtp.host"},
		{email.Config{Host: "h", From: "a@b.example", TLS: "ssl"}, "smtp.tls"},
		{email.Config{Host: "h", From: "not an address"}, "smtp.from"},
		{email.Config{Host: "h", From: "a@b.example", Port: 70000}, "smtp.port"},
		{email.Config{Host: "h", From: "a@b.example", IssuerName: "Agency\r\nBcc: x@evil.example"}, "email.issuer_name"},
	} {
		_, err := email.New(c.cfg, signer, nil)
		require.ErrorContains(t, err, c.want)
	}
	_, err := email.New(email.Config{Host: "h", From: "a@b.example"}, nil, nil)
	require.ErrorContains(t, err, "signing key")
}
