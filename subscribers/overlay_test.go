package subscribers_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/subscribers"
)

const (
	mail1 = "soc@acme.example"
	mail2 = "alerts@acme.example"
	// Stand-ins for armoured keys: the registry does not parse them.
	keyOld = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nold\n-----END PGP PUBLIC KEY BLOCK-----\n"
	keyNew = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nnew\n-----END PGP PUBLIC KEY BLOCK-----\n"
)

var overlayAt = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// mailPartner is partner with two addresses, the first with keyOld.
func mailPartner(id string, urls ...string) *subscribers.Subscriber {
	s := partner(id, urls...)
	s.Email = []subscribers.Email{{Address: mail1, PGPKey: keyOld}, {Address: mail2}}
	return s
}

func keyOverlay(sub, addr, key string) subscribers.KeyOverlay {
	return subscribers.KeyOverlay{Subscriber: sub, Address: addr, PGPKey: key, By: "partner:acme-soc", At: overlayAt}
}

// secretsOverlay is the partner's own secrets for url, made over the
// secrets partner gives every webhook.
func secretsOverlay(sub, url string, secrets ...string) subscribers.SecretsOverlay {
	return subscribers.SecretsOverlay{Subscriber: sub, URL: url, Secrets: secrets, By: "partner:acme-soc", At: overlayAt,
		Over: subscribers.SecretsDigest([]string{secret1})}
}

// applyOverlay applies o to r as the registry follower does: under its own
// key.
func applyOverlay(t *testing.T, r *subscribers.Registry, o any) {
	t.Helper()
	var key string
	switch o := o.(type) {
	case subscribers.KeyOverlay:
		key = subscribers.KeyOverlayKey(o.Subscriber, o.Address)
	case subscribers.SecretsOverlay:
		key = subscribers.SecretsOverlayKey(o.Subscriber, o.URL)
	default:
		t.Fatalf("applyOverlay: %T", o)
	}
	require.NoError(t, r.Apply([]byte(key), encode(t, o)))
}

func pgpKeys(s *subscribers.Subscriber) []string {
	out := []string{}
	for _, e := range s.Email {
		out = append(out, e.PGPKey)
	}
	return out
}

// TestRegistryOverlays: a partner's own key and secrets apply on top of
// its record as written, never into it, and every reader of effective
// records sees them.
func TestRegistryOverlays(t *testing.T) {
	r := subscribers.NewRegistry()
	orig := mailPartner("acme", hook1, hook2)
	require.NoError(t, r.Apply([]byte("acme"), encode(t, orig)))
	before := r.Get("acme")
	rev := r.Revision()

	// The address in another case names the same address.
	applyOverlay(t, r, keyOverlay("acme", "SOC@Acme.Example", keyNew))
	applyOverlay(t, r, secretsOverlay("acme", hook2, secret1, secret2))
	assert.NotEqual(t, rev, r.Revision(), "an overlay is a change")
	got := r.Get("acme")
	assert.Equal(t, []string{keyNew, ""}, pgpKeys(got), "the partner's key replaces its address's key only")
	assert.Equal(t, mail1, got.Email[0].Address, "the record's spelling of the address stays")
	assert.Equal(t, []string{secret1}, got.Webhooks[0].Secrets)
	assert.Equal(t, []string{secret1, secret2}, got.Webhooks[1].Secrets, "the partner's secrets replace its webhook's secrets only")
	assert.Equal(t, orig.Clearance, got.Clearance)
	assert.Equal(t, []string{keyOld, ""}, pgpKeys(before), "what Get returned before is not mutated")
	assert.Equal(t, []string{keyOld, ""}, pgpKeys(r.Record("acme")), "the record as written is not rewritten")
	assert.Equal(t, []string{secret1}, r.Record("acme").Webhooks[1].Secrets)
	assert.Equal(t, got, r.List()[0], "List returns the effective record")
	subs, _ := r.Candidates(alertFor([]string{"care"}))
	require.Len(t, subs, 1)
	assert.Equal(t, got, subs[0], "Candidates returns the effective record")
	r.Each(func(s *subscribers.Subscriber) { assert.Equal(t, got, s, "Each returns the effective record") })
	assert.Equal(t, []subscribers.KeyOverlay{keyOverlay("acme", "SOC@Acme.Example", keyNew)}, r.KeyOverlays("acme"))
	assert.Equal(t, []subscribers.SecretsOverlay{secretsOverlay("acme", hook2, secret1, secret2)}, r.SecretsOverlays("acme"))
	assert.ElementsMatch(t, []string{subscribers.KeyOverlayKey("acme", mail1), subscribers.SecretsOverlayKey("acme", hook2)},
		r.OverlayKeys("acme"))

	t.Run("with an endpoint state on the same webhook", func(t *testing.T) {
		applyState(t, r, state("acme", hook2, true))
		got := r.Get("acme")
		assert.Equal(t, []bool{false, true}, disabled(got))
		assert.Equal(t, []string{secret1, secret2}, got.Webhooks[1].Secrets)
		applyState(t, r, state("acme", hook2, false))
	})

	t.Run("an administrator's record stands beside the overlays, whatever the order", func(t *testing.T) {
		suspended := mailPartner("acme", hook1, hook2)
		suspended.Status = subscribers.StatusSuspended
		suspend := func(r *subscribers.Registry) { require.NoError(t, r.Apply([]byte("acme"), encode(t, suspended))) }
		upload := func(r *subscribers.Registry) {
			applyOverlay(t, r, keyOverlay("acme", mail1, keyNew))
			applyOverlay(t, r, secretsOverlay("acme", hook1, secret2))
		}
		for name, steps := range map[string][]func(*subscribers.Registry){
			"overlays then suspension": {upload, suspend},
			"suspension then overlays": {suspend, upload},
		} {
			t.Run(name, func(t *testing.T) {
				r := subscribers.NewRegistry()
				require.NoError(t, r.Apply([]byte("acme"), encode(t, mailPartner("acme", hook1, hook2))))
				for _, step := range steps {
					step(r)
				}
				s := r.Get("acme")
				assert.Equal(t, subscribers.StatusSuspended, s.Status)
				assert.Equal(t, []string{keyNew, ""}, pgpKeys(s))
				assert.Equal(t, []string{secret2}, s.Webhooks[0].Secrets)
				assert.Equal(t, subscribers.StatusSuspended, r.Record("acme").Status)
				assert.Equal(t, []string{keyOld, ""}, pgpKeys(r.Record("acme")))
			})
		}
	})

	t.Run("a tombstone of the overlay's key clears it", func(t *testing.T) {
		require.NoError(t, r.Apply([]byte(subscribers.KeyOverlayKey("acme", mail1)), nil))
		got := r.Get("acme")
		assert.Equal(t, []string{keyOld, ""}, pgpKeys(got))
		assert.Equal(t, []string{secret1, secret2}, got.Webhooks[1].Secrets, "the other overlay stays")
		require.NoError(t, r.Apply([]byte(subscribers.SecretsOverlayKey("acme", hook2)), nil))
		assert.Equal(t, r.Record("acme"), r.Get("acme"))
		assert.Empty(t, r.KeyOverlays("acme"))
		assert.Empty(t, r.SecretsOverlays("acme"))
		assert.Empty(t, r.OverlayKeys("acme"))
		// A tombstone of a key never seen changes nothing.
		require.NoError(t, r.Apply([]byte(subscribers.KeyOverlayKey("acme", "never@acme.example")), nil))
		require.NoError(t, r.Apply([]byte(subscribers.SecretsOverlayKey("nobody", hook1)), nil))
		assert.Equal(t, r.Record("acme"), r.Get("acme"))
	})

	t.Run("an overlay of an address or webhook the record does not list changes nothing", func(t *testing.T) {
		applyOverlay(t, r, keyOverlay("acme", "old@acme.example", keyNew))
		applyOverlay(t, r, secretsOverlay("acme", "https://old.acme.example/hook", secret2))
		assert.Equal(t, r.Record("acme"), r.Get("acme"))
		assert.Len(t, r.OverlayKeys("acme"), 2, "kept, as the topic keeps them")
		// The record lists the address again: the partner's key is in
		// force again, as for a process reading the topic from the start.
		again := mailPartner("acme", hook1, hook2)
		again.Email = append(again.Email, subscribers.Email{Address: "old@acme.example"})
		r.Put(again)
		assert.Equal(t, []string{keyOld, "", keyNew}, pgpKeys(r.Get("acme")))
		r.Put(mailPartner("acme", hook1, hook2))
	})

	t.Run("deleting a subscriber leaves its overlays harmless", func(t *testing.T) {
		applyOverlay(t, r, keyOverlay("acme", mail2, keyNew))
		require.NoError(t, r.Apply([]byte("acme"), nil))
		assert.Nil(t, r.Get("acme"))
		assert.Zero(t, r.Len())
		applyOverlay(t, r, keyOverlay("ghost", mail1, keyNew))
		assert.Nil(t, r.Get("ghost"), "an overlay names no partner")
		assert.Zero(t, r.Len())
	})
}

// TestRegistryApplyRefusesBadOverlays: an overlay that lacks a field, or
// lies under another key than its own, is refused naming the field, and
// changes nothing.
func TestRegistryApplyRefusesBadOverlays(t *testing.T) {
	r := subscribers.NewRegistry()
	r.Put(mailPartner("acme", hook1))
	want := r.Get("acme")
	kk := subscribers.KeyOverlayKey("acme", mail1)
	sk := subscribers.SecretsOverlayKey("acme", hook1)
	for name, tc := range map[string]struct {
		key   string
		value []byte
		want  string
	}{
		"a key without subscriber":             {kk, encode(t, keyOverlay("", mail1, keyNew)), "subscriber: missing"},
		"a key without address":                {subscribers.KeyOverlayKey("acme", ""), encode(t, keyOverlay("acme", "", keyNew)), "address: missing"},
		"a key without pgp_key":                {kk, encode(t, keyOverlay("acme", mail1, " ")), "pgp_key: missing"},
		"a key under another address's key":    {subscribers.KeyOverlayKey("acme", mail2), encode(t, keyOverlay("acme", mail1, keyNew)), "not its address's key"},
		"a key under another partner's key":    {subscribers.KeyOverlayKey("other", mail1), encode(t, keyOverlay("acme", mail1, keyNew)), "not its address's key"},
		"a key under a secrets key":            {sk, encode(t, keyOverlay("acme", mail1, keyNew)), "unknown field"},
		"a key that is not JSON":               {kk, []byte("{"), "partner key under key"},
		"secrets without subscriber":           {sk, encode(t, secretsOverlay("", hook1, secret2)), "subscriber: missing"},
		"secrets without url":                  {subscribers.SecretsOverlayKey("acme", ""), encode(t, secretsOverlay("acme", "", secret2)), "url: missing"},
		"no secrets":                           {sk, encode(t, secretsOverlay("acme", hook1)), "secrets: missing"},
		"a malformed secret":                   {sk, encode(t, secretsOverlay("acme", hook1, secret2, "nonsense")), "secrets[1]: must start with whsec_"},
		"secrets under another webhook's key":  {subscribers.SecretsOverlayKey("acme", hook2), encode(t, secretsOverlay("acme", hook1, secret2)), "not its webhook's key"},
		"secrets under a key overlay's key":    {kk, encode(t, secretsOverlay("acme", hook1, secret2)), "unknown field"},
		"a partner record under a key overlay": {kk, encode(t, mailPartner("acme", hook1)), "unknown field"},
		"a key kind this version does not know": {"~later/acme/0123", encode(t, keyOverlay("acme", mail1, keyNew)),
			"not a kind of record this version of Herald knows"},
	} {
		t.Run(name, func(t *testing.T) {
			err := r.Apply([]byte(tc.key), tc.value)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, want, r.Get("acme"), "nothing applied")
			assert.Empty(t, r.OverlayKeys("acme"))
		})
	}
}

// TestReplacedOverlays: an administrator's record replaces the partner's
// key or secrets only where it sets them differently from the record as
// written, or where the address or webhook is new to it.
func TestReplacedOverlays(t *testing.T) {
	written := mailPartner("acme", hook1, hook2)
	edit := func(f func(s *subscribers.Subscriber)) *subscribers.Subscriber {
		s := mailPartner("acme", hook1, hook2)
		f(s)
		return s
	}
	for name, tc := range map[string]struct {
		prev, next *subscribers.Subscriber
		want       []string
	}{
		"the record as written, suspended": {written, edit(func(s *subscribers.Subscriber) { s.Status = subscribers.StatusSuspended }), nil},
		"the same key, other spacing and case": {written, edit(func(s *subscribers.Subscriber) {
			s.Email[0] = subscribers.Email{Address: "SOC@acme.example", PGPKey: "\n" + keyOld + "\n"}
		}), nil},
		"a changed key": {written, edit(func(s *subscribers.Subscriber) { s.Email[0].PGPKey = keyNew }),
			[]string{subscribers.KeyOverlayKey("acme", mail1)}},
		"a key removed": {written, edit(func(s *subscribers.Subscriber) { s.Email[0].PGPKey = "" }),
			[]string{subscribers.KeyOverlayKey("acme", mail1)}},
		"a new address": {written, edit(func(s *subscribers.Subscriber) {
			s.Email = append(s.Email, subscribers.Email{Address: "new@acme.example"})
		}), []string{subscribers.KeyOverlayKey("acme", "new@acme.example")}},
		"changed secrets": {written, edit(func(s *subscribers.Subscriber) { s.Webhooks[1].Secrets = []string{secret1, secret2} }),
			[]string{subscribers.SecretsOverlayKey("acme", hook2)}},
		"a new record": {nil, written, []string{subscribers.KeyOverlayKey("acme", mail1), subscribers.KeyOverlayKey("acme", mail2),
			subscribers.SecretsOverlayKey("acme", hook1), subscribers.SecretsOverlayKey("acme", hook2)}},
	} {
		t.Run(name, func(t *testing.T) {
			assert.Equal(t, tc.want, subscribers.ReplacedOverlays(tc.prev, tc.next))
		})
	}
}

// TestOverlaysApplyToTheirIncarnation: a partner's own key and secrets
// apply only to the incarnation of the record they were made against: a
// record created again under the id (a new incarnation) is untouched by
// them, as a packed record through the registry, and InForce says so; an
// administrator's update, which keeps the incarnation, keeps them in
// force.
func TestOverlaysApplyToTheirIncarnation(t *testing.T) {
	r := subscribers.NewRegistry()
	first := mailPartner("acme", hook1)
	first.Incarnation = "inc-1"
	require.NoError(t, r.Apply([]byte("acme"), encode(t, first)))
	k, s := keyOverlay("acme", mail1, keyNew), secretsOverlay("acme", hook1, secret2)
	k.Incarnation, s.Incarnation = "inc-1", "inc-1"
	applyOverlay(t, r, k)
	applyOverlay(t, r, s)
	got := r.Get("acme")
	assert.Equal(t, []string{keyNew, ""}, pgpKeys(got))
	assert.Equal(t, []string{secret2}, got.Webhooks[0].Secrets)
	assert.True(t, k.InForce(r.Record("acme")))
	assert.True(t, s.InForce(r.Record("acme")))

	updated := mailPartner("acme", hook1)
	updated.Incarnation, updated.Name = "inc-1", "Acme Ltd"
	require.NoError(t, r.Apply([]byte("acme"), encode(t, updated)))
	assert.Equal(t, []string{keyNew, ""}, pgpKeys(r.Get("acme")), "an update keeps the incarnation and the partner's key")

	again := mailPartner("acme", hook1)
	again.Incarnation = "inc-2"
	require.NoError(t, r.Apply([]byte("acme"), encode(t, again)))
	got = r.Get("acme")
	assert.Equal(t, "inc-2", got.Incarnation, "the incarnation goes through the packed record")
	assert.Equal(t, []string{keyOld, ""}, pgpKeys(got), "the record's key, not the old incarnation's upload")
	assert.Equal(t, again.Webhooks[0].Secrets, got.Webhooks[0].Secrets)
	assert.False(t, k.InForce(r.Record("acme")))
	assert.False(t, s.InForce(r.Record("acme")))
	assert.Len(t, r.KeyOverlays("acme"), 1, "still held, for deletion to clear")

	legacy := mailPartner("acme", hook1) // written before incarnations
	require.NoError(t, r.Apply([]byte("acme"), encode(t, legacy)))
	old := keyOverlay("acme", mail1, keyNew)
	applyOverlay(t, r, old)
	assert.Equal(t, []string{keyNew, ""}, pgpKeys(r.Get("acme")), "a record and an overlay without incarnation match")
}

// TestSecretsOverlayAppliesOverItsSecrets: a partner's own secrets, a
// list made from the secrets the record held beside its new one, apply
// only while the record as written still holds those: an administrator's
// change of the webhook's secrets (a revoked secret) stands against a
// list made before it, whatever the order they are read in.
func TestSecretsOverlayAppliesOverItsSecrets(t *testing.T) {
	rotated := secretsOverlay("acme", hook1, secret1, secret2)
	revoked := partner("acme", hook1)
	revoked.Webhooks[0].Secrets = []string{secret2}
	for name, steps := range map[string][]any{
		"rotation then revocation": {rotated, revoked},
		"revocation then rotation": {revoked, rotated},
	} {
		t.Run(name, func(t *testing.T) {
			r := subscribers.NewRegistry()
			require.NoError(t, r.Apply([]byte("acme"), encode(t, partner("acme", hook1))))
			for _, step := range steps {
				switch step := step.(type) {
				case subscribers.SecretsOverlay:
					applyOverlay(t, r, step)
				case *subscribers.Subscriber:
					require.NoError(t, r.Apply([]byte("acme"), encode(t, step)))
				}
			}
			assert.Equal(t, []string{secret2}, r.Get("acme").Webhooks[0].Secrets, "the revoked secret1 stays revoked")
			assert.False(t, rotated.InForce(r.Record("acme")))
		})
	}
	r := subscribers.NewRegistry()
	require.NoError(t, r.Apply([]byte("acme"), encode(t, partner("acme", hook1))))
	applyOverlay(t, r, rotated)
	assert.Equal(t, []string{secret1, secret2}, r.Get("acme").Webhooks[0].Secrets, "in force over the secrets it was made over")
	assert.True(t, rotated.InForce(r.Record("acme")))

	// A list written before Over existed applies as it did then, over
	// whatever the record holds, so that an upgrade keeps the secrets
	// partners rotated.
	legacy := secretsOverlay("acme", hook1, secret2)
	legacy.Over = ""
	require.NoError(t, r.Apply([]byte("acme"), encode(t, revoked)))
	applyOverlay(t, r, legacy)
	assert.Equal(t, []string{secret2}, r.Get("acme").Webhooks[0].Secrets)
	assert.True(t, legacy.InForce(r.Record("acme")))
	legacy.Secrets = []string{secret1}
	applyOverlay(t, r, legacy)
	assert.Equal(t, []string{secret1}, r.Get("acme").Webhooks[0].Secrets)
}

// TestKeyOverlayAppliesOverItsKey: a partner's own key, made while the
// record as written held keyOld for the address, applies only while it
// still does: an administrator's replacement of the key (the partner's
// key compromised) stands against an upload made before it, whatever the
// order they are read in.
func TestKeyOverlayAppliesOverItsKey(t *testing.T) {
	uploaded := keyOverlay("acme", mail1, keyNew)
	uploaded.Over = subscribers.PGPKeyDigest(keyOld)
	const keyAdmin = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nadmin\n-----END PGP PUBLIC KEY BLOCK-----\n"
	replaced := mailPartner("acme", hook1)
	replaced.Email[0].PGPKey = keyAdmin
	for name, steps := range map[string][]any{
		"upload then replacement": {uploaded, replaced},
		"replacement then upload": {replaced, uploaded},
	} {
		t.Run(name, func(t *testing.T) {
			r := subscribers.NewRegistry()
			require.NoError(t, r.Apply([]byte("acme"), encode(t, mailPartner("acme", hook1))))
			for _, step := range steps {
				switch step := step.(type) {
				case subscribers.KeyOverlay:
					applyOverlay(t, r, step)
				case *subscribers.Subscriber:
					require.NoError(t, r.Apply([]byte("acme"), encode(t, step)))
				}
			}
			assert.Equal(t, []string{keyAdmin, ""}, pgpKeys(r.Get("acme")), "the administrator's key stands")
			assert.False(t, uploaded.InForce(r.Record("acme")))
		})
	}
	r := subscribers.NewRegistry()
	require.NoError(t, r.Apply([]byte("acme"), encode(t, mailPartner("acme", hook1))))
	applyOverlay(t, r, uploaded)
	assert.Equal(t, []string{keyNew, ""}, pgpKeys(r.Get("acme")), "in force over the key it was made over")
	assert.True(t, uploaded.InForce(r.Record("acme")))

	// Over the record's empty key: an address without a key has one too.
	first := keyOverlay("acme", mail2, keyNew)
	first.Over = subscribers.PGPKeyDigest("")
	applyOverlay(t, r, first)
	assert.Equal(t, []string{keyNew, keyNew}, pgpKeys(r.Get("acme")))
	assert.Equal(t, subscribers.PGPKeyDigest(keyOld), subscribers.PGPKeyDigest("\n"+keyOld+"  "),
		"keys are compared without the white space around them")

	// A key written before Over existed applies as it did then, over
	// whatever the record holds, so that an upgrade keeps the keys
	// partners uploaded.
	legacy := keyOverlay("acme", mail1, keyNew)
	require.NoError(t, r.Apply([]byte("acme"), encode(t, replaced)))
	applyOverlay(t, r, legacy)
	assert.Equal(t, keyNew, r.Get("acme").Email[0].PGPKey)
	assert.True(t, legacy.InForce(r.Record("acme")))
}
