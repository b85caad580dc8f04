package whsig_test

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-alerts/herald/crypto/whsig"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
)

func headers(id string, ts time.Time, sig string) http.Header {
	h := http.Header{}
	h.Set(whsig.HeaderID, id)
	h.Set(whsig.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(whsig.HeaderSignature, sig)
	return h
}

func TestNewSecret(t *testing.T) {
	a, err := whsig.NewSecret()
	require.NoError(t, err)
	b, err := whsig.NewSecret()
	require.NoError(t, err)
	require.NotEqual(t, a, b)
	require.True(t, strings.HasPrefix(a, "whsec_"))
	key, err := whsig.DecodeSecret(a)
	require.NoError(t, err)
	require.Len(t, key, 32)
}

// TestKnownVector checks Sign against the example of the Standard Webhooks
// specification's reference test suite.
func TestKnownVector(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	ts := time.Unix(1614265330, 0)
	sig, err := whsig.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", ts, []byte(`{"test": 2432232314}`), []string{secret})
	require.NoError(t, err)
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", sig)
}

func TestSignVerify(t *testing.T) {
	s1, _ := whsig.NewSecret()
	s2, _ := whsig.NewSecret()
	s3, _ := whsig.NewSecret()
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"type":"alert.published"}`)
	sig, err := whsig.Sign("msg_1", now, body, []string{s1, s2})
	require.NoError(t, err)
	require.Len(t, strings.Fields(sig), 2)

	tests := []struct {
		name    string
		h       http.Header
		body    []byte
		secrets []string
		now     time.Time
		want    error
	}{
		{"first secret", headers("msg_1", now, sig), body, []string{s1}, now, nil},
		{"second secret", headers("msg_1", now, sig), body, []string{s2}, now, nil},
		{"any of several", headers("msg_1", now, sig), body, []string{s3, s2}, now, nil},
		{"unprefixed secret", headers("msg_1", now, sig), body, []string{strings.TrimPrefix(s1, "whsec_")}, now, nil},
		{"wrong secret", headers("msg_1", now, sig), body, []string{s3}, now, whsig.ErrNoMatch},
		{"tampered body", headers("msg_1", now, sig), []byte(`{"type":"alert.cancelled"}`), []string{s1}, now, whsig.ErrNoMatch},
		{"other id", headers("msg_2", now, sig), body, []string{s1}, now, whsig.ErrNoMatch},
		{"other timestamp", headers("msg_1", now.Add(time.Second), sig), body, []string{s1}, now, whsig.ErrNoMatch},
		{"too old", headers("msg_1", now, sig), body, []string{s1}, now.Add(6 * time.Minute), whsig.ErrTooOld},
		{"too new", headers("msg_1", now, sig), body, []string{s1}, now.Add(-6 * time.Minute), whsig.ErrTooNew},
		{"within tolerance", headers("msg_1", now, sig), body, []string{s1}, now.Add(4 * time.Minute), nil},
		{"missing id", headers("", now, sig), body, []string{s1}, now, whsig.ErrMissingHeaders},
		{"missing signature", headers("msg_1", now, ""), body, []string{s1}, now, whsig.ErrMissingHeaders},
		{"bad timestamp", func() http.Header {
			h := headers("msg_1", now, sig)
			h.Set(whsig.HeaderTimestamp, "yesterday")
			return h
		}(), body, []string{s1}, now, whsig.ErrInvalidHeaders},
		{"only other versions", headers("msg_1", now, strings.ReplaceAll(sig, "v1,", "v2,")), body, []string{s1}, now, whsig.ErrInvalidHeaders},
		{"garbage entries then a good one", headers("msg_1", now, "v1,!!! v1a,xyz "+sig), body, []string{s2}, now, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := whsig.Verify(tt.h, tt.body, tt.secrets, tt.now, 5*time.Minute)
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestSignRejects(t *testing.T) {
	s, _ := whsig.NewSecret()
	now := time.Now()
	_, err := whsig.Sign("", now, nil, []string{s})
	require.Error(t, err)
	_, err = whsig.Sign("msg 1", now, nil, []string{s})
	require.Error(t, err)
	_, err = whsig.Sign("msg_1", now, nil, nil)
	require.Error(t, err)
	_, err = whsig.Sign("msg_1", now, nil, []string{"whsec_not base64"})
	require.Error(t, err)
	_, err = whsig.Sign("msg_1", now, nil, []string{"whsec_"})
	require.Error(t, err)
}

// TestReferenceLibrary checks interoperability both ways with the Standard
// Webhooks reference Go library, including rotation with two secrets.
func TestReferenceLibrary(t *testing.T) {
	s1, _ := whsig.NewSecret()
	s2, _ := whsig.NewSecret()
	now := time.Now()
	body := []byte(`{"type":"alert.published","alert":{"id":"a1"}}`)

	sig, err := whsig.Sign("msg_ref", now, body, []string{s1, s2})
	require.NoError(t, err)
	h := headers("msg_ref", now, sig)
	for _, s := range []string{s1, s2} {
		wh, err := standardwebhooks.NewWebhook(s)
		require.NoError(t, err)
		require.NoError(t, wh.Verify(body, h), "reference library rejects Herald's signature")
	}
	s3, _ := whsig.NewSecret()
	wh3, err := standardwebhooks.NewWebhook(s3)
	require.NoError(t, err)
	require.Error(t, wh3.Verify(body, h))

	// And the other way: Herald verifies what the reference library signs.
	wh1, err := standardwebhooks.NewWebhook(s1)
	require.NoError(t, err)
	refSig, err := wh1.Sign("msg_ref", now, body)
	require.NoError(t, err)
	require.NoError(t, whsig.Verify(headers("msg_ref", now, refSig), body, []string{s2, s1}, now, 0))
	require.Equal(t, strings.Fields(sig)[0], refSig)
}

func TestVerifyBoundsEntries(t *testing.T) {
	s, _ := whsig.NewSecret()
	now := time.Now()
	good, err := whsig.Sign("msg_1", now, nil, []string{s})
	require.NoError(t, err)
	junk := "v1," + base64.StdEncoding.EncodeToString(make([]byte, 32))
	many := strings.Repeat(junk+" ", 100) + good
	err = whsig.Verify(headers("msg_1", now, many), nil, []string{s}, now, 0)
	require.True(t, errors.Is(err, whsig.ErrNoMatch), "entries past the bound must be ignored, got %v", err)
}

// TestSignerMatchesSign: a Signer kept for many messages signs each as
// Sign does, with one entry per secret, and its signatures verify.
func TestSignerMatchesSign(t *testing.T) {
	secrets := []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + "c2Vjb25kIHNlY3JldCBmb3Igcm90YXRpb24="}
	s, err := whsig.NewSigner(secrets)
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Unix(1_700_000_000, 0)
	for i := range 3 {
		id := "msg_" + strconv.Itoa(i)
		body := []byte(`{"n":` + strconv.Itoa(i) + `}`)
		got, err := s.Sign(id, ts, body)
		if err != nil {
			t.Fatal(err)
		}
		want, err := whsig.Sign(id, ts, body, secrets)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("message %d: Signer gave %q, Sign %q", i, got, want)
		}
		h := http.Header{}
		h.Set(whsig.HeaderID, id)
		h.Set(whsig.HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		h.Set(whsig.HeaderSignature, got)
		for _, sec := range secrets {
			if err := whsig.Verify(h, body, []string{sec}, ts, 0); err != nil {
				t.Fatalf("message %d: does not verify with one of the secrets: %v", i, err)
			}
		}
	}
	if _, err := s.Sign("bad id", ts, nil); err == nil {
		t.Fatal("Signer signed a message id with a space")
	}
	if _, err := whsig.NewSigner(nil); err == nil {
		t.Fatal("NewSigner accepted no secret")
	}
	if _, err := whsig.NewSigner([]string{"whsec_!!!"}); err == nil {
		t.Fatal("NewSigner accepted a secret that is not base64")
	}
}
