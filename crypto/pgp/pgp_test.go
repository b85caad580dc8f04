package pgp_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/stretchr/testify/require"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func TestLoadSignerErrors(t *testing.T) {
	agencyPub, agencyPriv := pgptest.Key(t, pgptest.Agency)
	_, protected := pgptest.Key(t, pgptest.AgencyProtected)
	_, expired := pgptest.Key(t, pgptest.Expired)
	_, revoked := pgptest.Key(t, pgptest.Revoked)
	_, nosign := pgptest.Key(t, pgptest.NoSign)
	tests := []struct {
		name    string
		key     string
		pass    string
		wantErr error
		wantMsg string
	}{
		{name: "ed25519", key: agencyPriv},
		{name: "protected with passphrase", key: protected, pass: pgptest.Passphrase},
		{name: "protected without passphrase", key: protected, wantErr: pgp.ErrPassphraseRequired},
		{name: "wrong passphrase", key: protected, pass: "tr0ub4dor", wantErr: pgp.ErrWrongPassphrase},
		{name: "expired", key: expired, wantErr: pgp.ErrKeyExpired, wantMsg: "2020-01-02"},
		{name: "revoked", key: revoked, wantErr: pgp.ErrKeyRevoked},
		{name: "cannot sign", key: nosign, wantErr: pgp.ErrCannotSign},
		{name: "public key", key: agencyPub, wantErr: pgp.ErrNotPrivateKey},
		{name: "garbage", key: "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnonsense\n-----END PGP PRIVATE KEY BLOCK-----\n", wantMsg: "not an ASCII-armoured OpenPGP key"},
		{name: "empty", key: "", wantMsg: "empty"},
		{name: "two keys", key: agencyPriv + protected, wantMsg: "2 armoured blocks found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := pgp.LoadSigner([]byte(tt.key), []byte(tt.pass), now)
			if tt.wantErr == nil && tt.wantMsg == "" {
				require.NoError(t, err)
				require.Len(t, s.Fingerprint(), 40)
				require.Equal(t, strings.ToUpper(s.Fingerprint()), s.Fingerprint())
				return
			}
			require.Error(t, err)
			require.Nil(t, s)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
			require.Contains(t, err.Error(), tt.wantMsg)
		})
	}
}

func TestLoadSignerFile(t *testing.T) {
	_, protected := pgptest.Key(t, pgptest.AgencyProtected)
	dir := t.TempDir()
	key := filepath.Join(dir, "key.asc")
	pass := filepath.Join(dir, "pass")
	require.NoError(t, os.WriteFile(key, []byte(protected), 0o600))
	require.NoError(t, os.WriteFile(pass, []byte(pgptest.Passphrase+"\n"), 0o600))
	s, err := pgp.LoadSignerFile(key, pass, now)
	require.NoError(t, err)
	_, err = s.SignDetached([]byte("x"))
	require.NoError(t, err)

	_, err = pgp.LoadSignerFile(key, "", now)
	require.ErrorIs(t, err, pgp.ErrPassphraseRequired)
	_, err = pgp.LoadSignerFile(filepath.Join(dir, "missing.asc"), "", now)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestCheckRecipientKey(t *testing.T) {
	key := func(name string) string { pub, _ := pgptest.RecipientKey(t, name); return pub }
	alice, bob := key(pgptest.Alice), key(pgptest.Bob)
	_, alicePriv := pgptest.Key(t, pgptest.Alice)
	tests := []struct {
		name    string
		key     string
		wantMsg string // empty: usable
	}{
		{"curve25519", alice, ""},
		{"rsa3072", bob, ""},
		{"expired", key(pgptest.Expired), "expired on 2020-01-02"},
		{"revoked", key(pgptest.Revoked), "revoked"},
		{"sign only", key(pgptest.SignOnly), "no valid encryption subkey"},
		{"v6 x25519", key(pgptest.V6), "not supported by GnuPG 2.2"},
		{"unparsable", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n", "not an ASCII-armoured OpenPGP key"},
		{"not armoured", "ssh-ed25519 AAAAC3Nza", "not an ASCII-armoured OpenPGP key"},
		{"empty", "", "empty"},
		{"two keys", alice + bob, "2 armoured blocks found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := pgp.CheckRecipientKey(tt.key, now)
			if tt.wantMsg == "" {
				require.NoError(t, err)
				r, err := pgp.ParseRecipient(tt.key, now)
				require.NoError(t, err)
				require.Len(t, r.Fingerprint(), 40)
				return
			}
			require.ErrorContains(t, err, tt.wantMsg)
		})
	}
	t.Run("expiry is judged at now", func(t *testing.T) {
		require.NoError(t, pgp.CheckRecipientKey(key(pgptest.Expired), time.Date(2020, 1, 1, 12, 0, 0, 0, time.UTC)))
	})
	// A key's problem is typed, for a notice that tells the partner what
	// to fix without taking the error's text apart.
	t.Run("a key's problem is a KeyError", func(t *testing.T) {
		for name, want := range map[string]pgp.KeyError{
			pgptest.Expired:  {Problem: "expired on 2020-01-02", Predicate: true},
			pgptest.Revoked:  {Problem: "is revoked", Predicate: true},
			pgptest.SignOnly: {Problem: "has no valid encryption subkey", Predicate: true},
		} {
			var ke *pgp.KeyError
			require.ErrorAs(t, pgp.CheckRecipientKey(key(name), now), &ke, name)
			require.Len(t, ke.Fingerprint, 40, name)
			require.True(t, strings.HasPrefix(ke.Problem, want.Problem), "%s: %q", name, ke.Problem)
			require.Equal(t, want.Predicate, ke.Predicate, name)
		}
	})
	t.Run("parses is structural only", func(t *testing.T) {
		require.NoError(t, pgp.CheckKeyParses(key(pgptest.Expired)))
		require.NoError(t, pgp.CheckKeyParses(key(pgptest.V6)))
		require.ErrorContains(t, pgp.CheckKeyParses(alicePriv), "private key")
		require.ErrorContains(t, pgp.CheckKeyParses("hello"), "not an ASCII-armoured OpenPGP key")
	})
}

func TestSignAndVerify(t *testing.T) {
	for _, name := range []string{pgptest.Agency, pgptest.AgencyRSA, pgptest.AgencyProtected} {
		t.Run(name, func(t *testing.T) {
			s := pgptest.Signer(t, name)
			data := []byte("line one\r\nline two\r\n")

			bin, err := s.SignDetached(data)
			require.NoError(t, err)
			require.NotEqual(t, byte('-'), bin[0], "binary signature expected")
			fp, err := pgp.VerifyDetached(s.PublicKeyArmored(), data, bin)
			require.NoError(t, err)
			require.Equal(t, s.Fingerprint(), fp)

			txt, micalg, err := s.SignDetachedText(data)
			require.NoError(t, err)
			require.Equal(t, "pgp-sha256", micalg)
			require.True(t, bytes.HasPrefix(txt, []byte("-----BEGIN PGP SIGNATURE-----")))
			fp, err = pgp.VerifyDetached(s.PublicKeyArmored(), data, txt)
			require.NoError(t, err)
			require.Equal(t, s.Fingerprint(), fp)
			// A text-mode signature survives a mail store turning CRLF into LF.
			_, err = pgp.VerifyDetached(s.PublicKeyArmored(), bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n")), txt)
			require.NoError(t, err)

			require.Equal(t, uint64(2), s.Ops())

			tampered := bytes.Clone(data)
			tampered[3] ^= 1
			_, err = pgp.VerifyDetached(s.PublicKeyArmored(), tampered, bin)
			require.Error(t, err)
			_, err = pgp.VerifyDetached(s.PublicKeyArmored(), tampered, txt)
			require.Error(t, err)

			other := pgptest.AgencySigner(t)
			if other.Fingerprint() != s.Fingerprint() {
				_, err = pgp.VerifyDetached(other.PublicKeyArmored(), data, bin)
				require.Error(t, err, "a signature by another key must not verify")
			}
		})
	}
}

// TestPublicKeys checks the parsed form VerifyDetached uses: read once,
// checked many times, and its errors.
func TestPublicKeys(t *testing.T) {
	s := pgptest.AgencySigner(t)
	keys, err := pgp.ReadPublicKeys(s.PublicKeyArmored())
	require.NoError(t, err)
	for _, body := range []string{`{"n":1}`, `{"n":2}`} {
		sig, err := s.SignDetached([]byte(body))
		require.NoError(t, err)
		fp, err := keys.VerifyDetached([]byte(body), sig)
		require.NoError(t, err)
		require.Equal(t, s.Fingerprint(), fp)
		_, err = keys.VerifyDetached([]byte(body+" "), sig)
		require.ErrorContains(t, err, "bad signature")
	}
	_, err = pgp.ReadPublicKeys([]byte("not a key"))
	require.Error(t, err)
	_, err = pgp.VerifyDetached([]byte("not a key"), []byte("x"), []byte("y"))
	require.ErrorContains(t, err, "verify: read public key")
	_, err = keys.VerifyDetached([]byte("x"), []byte("-----BEGIN PGP MESSAGE-----\n\n-----END PGP MESSAGE-----\n"))
	require.Error(t, err)
}

// TestDetachedSignatureInterop checks the binary signature sent in the
// webhook herald-pgp-signature header with GnuPG and Sequoia.
func TestDetachedSignatureInterop(t *testing.T) {
	s := pgptest.AgencySigner(t)
	data := []byte(`{"type":"alert.published","alert":{"id":"A-1"}}`)
	sig, err := s.SignDetached(data)
	require.NoError(t, err)
	gpg, sq := pgptest.GPG(t), pgptest.SQ(t)
	gpg.Import(string(s.PublicKeyArmored()))
	require.NoError(t, gpg.VerifyDetached("", data, sig))
	require.NoError(t, sq.VerifyDetached(string(s.PublicKeyArmored()), data, sig))
	bad := append(bytes.Clone(data), ' ')
	require.Error(t, gpg.VerifyDetached("", bad, sig))
	require.Error(t, sq.VerifyDetached(string(s.PublicKeyArmored()), bad, sig))
}

func TestGenerateKey(t *testing.T) {
	priv, pub, err := pgp.GenerateKey("Test Agency", "test@herald.example", "", now)
	require.NoError(t, err)
	require.NoError(t, pgp.CheckRecipientKey(string(pub), now))
	s, err := pgp.LoadSigner(priv, nil, now)
	require.NoError(t, err)
	require.Contains(t, string(pub), "BEGIN PGP PUBLIC KEY BLOCK")
	require.Contains(t, string(priv), "BEGIN PGP PRIVATE KEY BLOCK")
	sig, err := s.SignDetached([]byte("x"))
	require.NoError(t, err)
	fp, err := pgp.VerifyDetached(pub, []byte("x"), sig)
	require.NoError(t, err)
	require.Equal(t, s.Fingerprint(), fp)

	priv, _, err = pgp.GenerateKeyWithPassphrase("Test", "t@herald.example", pgp.AlgoEd25519, now, []byte("pw"))
	require.NoError(t, err)
	_, err = pgp.LoadSigner(priv, nil, now)
	require.ErrorIs(t, err, pgp.ErrPassphraseRequired)
	_, err = pgp.LoadSigner(priv, []byte("pw"), now)
	require.NoError(t, err)

	_, _, err = pgp.GenerateKey("T", "t@herald.example", "dsa1024", now)
	require.ErrorContains(t, err, "unknown key algorithm")
}

func TestSignerName(t *testing.T) {
	require.Equal(t, "National Crime Agency Herald", pgptest.AgencySigner(t).Name())
	require.Equal(t, "Herald RSA signing key", pgptest.Signer(t, pgptest.AgencyRSA).Name())
	priv, _, err := pgp.GenerateKey("", "only-an-address@herald.example", "", now)
	require.NoError(t, err)
	s, err := pgp.LoadSigner(priv, nil, now)
	require.NoError(t, err)
	require.Empty(t, s.Name(), "a user id without a name gives no name")
}

// TestEncryptTo checks that each message made by EncryptTo has its own
// session key and decrypts with GnuPG and Sequoia.
func TestEncryptTo(t *testing.T) {
	plain := []byte("Content-Type: text/plain\r\n\r\nfor one reader\r\n")
	pub, priv := pgptest.RecipientKey(t, pgptest.Alice)
	r, err := pgp.ParseRecipient(pub, now)
	require.NoError(t, err)
	m1, err := pgp.EncryptTo(r, plain)
	require.NoError(t, err)
	m2, err := pgp.EncryptTo(r, plain)
	require.NoError(t, err)
	require.NotEqual(t, m1, m2, "a fresh session key for every message")
	gpg, sq := pgptest.GPG(t), pgptest.SQ(t)
	gpg.Import(priv)
	for _, m := range [][]byte{m1, m2} {
		got, err := gpg.Decrypt(priv, m)
		require.NoError(t, err)
		require.Equal(t, plain, got)
		got, err = sq.Decrypt(priv, m)
		require.NoError(t, err)
		require.Equal(t, plain, got)
	}
}

func TestSealForEachRecipient(t *testing.T) {
	plain := []byte("Content-Type: text/plain\r\n\r\nthe secret\r\n")
	sealed, err := pgp.Seal(plain)
	require.NoError(t, err)
	gpg, sq := pgptest.GPG(t), pgptest.SQ(t)
	for _, name := range []string{pgptest.Alice, pgptest.Bob} {
		t.Run(name, func(t *testing.T) {
			pub, priv := pgptest.RecipientKey(t, name)
			r, err := pgp.ParseRecipient(pub, now)
			require.NoError(t, err)
			msg, err := sealed.For(r)
			require.NoError(t, err)

			got, err := pgp.Decrypt([]byte(priv), nil, msg)
			require.NoError(t, err)
			require.Equal(t, plain, got)

			gpg.Import(priv)
			got, err = gpg.Decrypt(priv, msg)
			require.NoError(t, err)
			require.Equal(t, plain, got)
			got, err = sq.Decrypt(priv, msg)
			require.NoError(t, err)
			require.Equal(t, plain, got)
		})
	}
	t.Run("wrong key", func(t *testing.T) {
		alicePub, _ := pgptest.RecipientKey(t, pgptest.Alice)
		_, bobPriv := pgptest.RecipientKey(t, pgptest.Bob)
		r, err := pgp.ParseRecipient(alicePub, now)
		require.NoError(t, err)
		msg, err := sealed.For(r)
		require.NoError(t, err)
		_, err = pgp.Decrypt([]byte(bobPriv), nil, msg)
		require.Error(t, err)
	})
}

func FuzzParseRecipient(f *testing.F) {
	for _, name := range []string{pgptest.Alice, pgptest.Expired, pgptest.V6} {
		pub, _ := pgptest.RecipientKey(f, name)
		f.Add(pub)
	}
	f.Add("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n=AAAA\n-----END PGP PUBLIC KEY BLOCK-----\n")
	f.Fuzz(func(t *testing.T, armored string) {
		r, err := pgp.ParseRecipient(armored, now)
		if err == nil && r.Fingerprint() == "" {
			t.Fatal("usable recipient without fingerprint")
		}
		if (err == nil) != (pgp.CheckRecipientKey(armored, now) == nil) {
			t.Fatal("ParseRecipient and CheckRecipientKey disagree")
		}
		_ = pgp.CheckKeyParses(armored)
	})
}

func TestRecipientAt(t *testing.T) {
	pub, _ := pgptest.RecipientKey(t, pgptest.Expired)
	early := time.Date(2020, 1, 1, 12, 0, 0, 0, time.UTC)
	r, err := pgp.ParseRecipient(pub, early)
	require.NoError(t, err)
	_, err = r.At(early)
	require.NoError(t, err)
	_, err = r.At(now)
	require.ErrorContains(t, err, "expired on 2020-01-02")
}

// TestToolGeneratedKeys follows docs/partner-email.md: keys that partners
// make with the documented gpg and sq commands are usable recipients, and
// what Herald encrypts to them the same tool decrypts.
func TestToolGeneratedKeys(t *testing.T) {
	plain := []byte("Content-Type: text/plain\r\n\r\nhello partner\r\n")
	sealed, err := pgp.Seal(plain)
	require.NoError(t, err)

	t.Run("gpg", func(t *testing.T) {
		gpg := pgptest.GPG(t)
		gpg.MustRun("--passphrase", "", "--quick-gen-key", "Acme Safeguarding <alerts@acme.example>", "future-default", "default", "2y")
		pub := gpg.MustRun("--armor", "--export", "alerts@acme.example")
		r, err := pgp.ParseRecipient(string(pub), time.Now())
		require.NoError(t, err)
		msg, err := sealed.For(r)
		require.NoError(t, err)
		got, err := gpg.Decrypt("", msg)
		require.NoError(t, err)
		require.Equal(t, plain, got)
	})
	t.Run("sq", func(t *testing.T) {
		sq := pgptest.SQ(t)
		key := sq.File("me.asc", nil)
		sq.MustRun("key", "generate", "--userid", "<alerts@acme.example>", "--export", key+".new")
		secret, err := os.ReadFile(key + ".new")
		require.NoError(t, err)
		pub := sq.MustRun("key", "extract-cert", key+".new")
		r, err := pgp.ParseRecipient(string(pub), time.Now())
		require.NoError(t, err)
		msg, err := sealed.For(r)
		require.NoError(t, err)
		got, err := sq.Decrypt(string(secret), msg)
		require.NoError(t, err)
		require.Equal(t, plain, got)
	})
}

// BenchmarkPerMessage measures what each email now costs in OpenPGP work:
// a text-mode signature by the Ed25519 agency key over a 4 KiB part, and
// the encryption of the signed entity to one Curve25519 recipient.
//
//	go test -run '^$' -bench PerMessage ./crypto/pgp/
func BenchmarkPerMessage(b *testing.B) {
	part := bytes.Repeat([]byte("Content of an alert, quoted-printable, 72 columns or so wide..........\r\n"), 56)
	s := pgptest.AgencySigner(b)
	pub, _ := pgptest.RecipientKey(b, pgptest.Alice)
	r, err := pgp.ParseRecipient(pub, now)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := s.SignDetachedText(part); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encrypt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pgp.EncryptTo(r, part); err != nil {
				b.Fatal(err)
			}
		}
	})
}
