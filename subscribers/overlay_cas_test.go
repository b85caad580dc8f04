package subscribers_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/subscribers"
)

const (
	secret3 = "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoM="
	keyAlt  = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nalt\n-----END PGP PUBLIC KEY BLOCK-----\n"
)

// secretsAt is secretsOverlay made as the seq'th change of its webhook's
// secrets.
func secretsAt(seq uint64, secrets ...string) subscribers.SecretsOverlay {
	o := secretsOverlay("acme", hook1, secrets...)
	o.Seq = seq
	return o
}

// keyAt is keyOverlay for mail1 made as the seq'th change of its key.
func keyAt(seq uint64, key string) subscribers.KeyOverlay {
	o := keyOverlay("acme", mail1, key)
	o.Seq = seq
	return o
}

// TestOverlaysMadeFromTheSameStateOneStands: two changes of a partner's
// secrets, or of its key, made from the same state (two api processes
// each answering a request from what it had read): the first read from
// the topic is in force, the second is ignored and the registry says so;
// a change made after the first is read goes after it.
func TestOverlaysMadeFromTheSameStateOneStands(t *testing.T) {
	t.Run("secrets", func(t *testing.T) {
		r := subscribers.NewRegistry()
		require.NoError(t, r.Apply([]byte("acme"), encode(t, partner("acme", hook1))))
		key := subscribers.SecretsOverlayKey("acme", hook1)
		rev, _ := r.OverlayRevision(key)
		seq, err := r.NextSecretsSeq(r.Get("acme"), hook1)
		require.NoError(t, err)
		require.EqualValues(t, 1, seq)
		first, second := secretsAt(seq, secret1, secret2), secretsAt(seq, secret1, secret3)

		applyOverlay(t, r, first)
		afterFirst, ignored := r.OverlayRevision(key)
		assert.NotEqual(t, rev, afterFirst)
		assert.False(t, ignored)
		applyOverlay(t, r, second)
		afterSecond, ignored := r.OverlayRevision(key)
		assert.NotEqual(t, afterFirst, afterSecond, "read, though not taken")
		assert.True(t, ignored, "the latest record under the key is not the one in force")
		assert.Equal(t, []string{secret1, secret2}, r.Get("acme").Webhooks[0].Secrets, "the first stands")
		assert.Equal(t, []subscribers.SecretsOverlay{first}, r.SecretsOverlays("acme"))

		seq, err = r.NextSecretsSeq(r.Get("acme"), hook1)
		require.NoError(t, err)
		require.EqualValues(t, 2, seq, "after the highest read")
		applyOverlay(t, r, secretsAt(seq, secret2))
		_, ignored = r.OverlayRevision(key)
		assert.False(t, ignored)
		assert.Equal(t, []string{secret2}, r.Get("acme").Webhooks[0].Secrets)
	})
	t.Run("keys", func(t *testing.T) {
		r := subscribers.NewRegistry()
		require.NoError(t, r.Apply([]byte("acme"), encode(t, mailPartner("acme"))))
		seq, err := r.NextKeySeq(r.Get("acme"), "SOC@acme.example")
		require.NoError(t, err)
		require.EqualValues(t, 1, seq)
		first, second := keyAt(seq, keyNew), keyAt(seq, keyAlt)
		applyOverlay(t, r, first)
		applyOverlay(t, r, second)
		_, ignored := r.OverlayRevision(subscribers.KeyOverlayKey("acme", mail1))
		assert.True(t, ignored)
		assert.Equal(t, []string{keyNew, ""}, pgpKeys(r.Get("acme")), "the first stands")
		assert.Equal(t, []subscribers.KeyOverlay{first}, r.KeyOverlays("acme"))
	})
}

// TestStaleAddNeverBringsBackARetiredSecret: a partner retires a secret
// (it leaked) while another request adds one, each from the same list.
// Whichever the topic holds first stands: the add made before the
// retirement never brings the retired secret back.
func TestStaleAddNeverBringsBackARetiredSecret(t *testing.T) {
	added := secretsAt(1, secret1, secret2)
	retire := secretsAt(2, secret2)                     // made from added: secret1 leaked
	staleAdd := secretsAt(2, secret1, secret2, secret3) // made from added too
	for name, c := range map[string]struct {
		steps []subscribers.SecretsOverlay
		want  []string
	}{
		"retirement read first": {[]subscribers.SecretsOverlay{added, retire, staleAdd}, []string{secret2}},
		// The DELETE answers 409 then: the leaked secret stays until
		// retired again, from the list in force.
		"addition read first": {[]subscribers.SecretsOverlay{added, staleAdd, retire}, []string{secret1, secret2, secret3}},
	} {
		t.Run(name, func(t *testing.T) {
			r := subscribers.NewRegistry()
			require.NoError(t, r.Apply([]byte("acme"), encode(t, partner("acme", hook1))))
			for _, o := range c.steps {
				applyOverlay(t, r, o)
			}
			assert.Equal(t, c.want, r.Get("acme").Webhooks[0].Secrets)
		})
	}
}

// TestOverlayWithoutSeqAppliesAsBefore: an overlay written before Seq
// existed (none in its JSON) takes the place of whatever the registry
// holds, as every overlay did then, so an upgrade drops none; an overlay
// with a Seq goes after it.
func TestOverlayWithoutSeqAppliesAsBefore(t *testing.T) {
	r := subscribers.NewRegistry()
	require.NoError(t, r.Apply([]byte("acme"), encode(t, partner("acme", hook1))))
	applyOverlay(t, r, secretsAt(7, secret1, secret2))
	old := fmt.Sprintf(`{"subscriber":"acme","url":%q,"secrets":[%q],"by":"partner:acme-soc","at":"2025-03-01T12:00:00Z","over":%q}`,
		hook1, secret3, subscribers.SecretsDigest([]string{secret1}))
	require.NoError(t, r.Apply([]byte(subscribers.SecretsOverlayKey("acme", hook1)), []byte(old)))
	assert.Equal(t, []string{secret3}, r.Get("acme").Webhooks[0].Secrets, "over a list with a Seq")
	applyOverlay(t, r, secretsAt(1, secret2))
	assert.Equal(t, []string{secret2}, r.Get("acme").Webhooks[0].Secrets, "a list with a Seq goes after one without")

	require.NoError(t, r.Apply([]byte("acme"), encode(t, mailPartner("acme", hook1))))
	applyOverlay(t, r, keyAt(3, keyNew))
	applyOverlay(t, r, keyOverlay("acme", mail1, keyAlt))
	assert.Equal(t, []string{keyAlt, ""}, pgpKeys(r.Get("acme")))
}

// TestTombstoneStartsTheKeyAfresh: after a tombstone of the key (an
// administrator's change of the secrets, a deletion), the next overlay
// read takes its place whatever its Seq; writers go on after the highest
// Seq read, so a change made after the tombstone goes after one made
// before it.
func TestTombstoneStartsTheKeyAfresh(t *testing.T) {
	r := subscribers.NewRegistry()
	require.NoError(t, r.Apply([]byte("acme"), encode(t, partner("acme", hook1))))
	applyOverlay(t, r, secretsAt(4, secret1, secret2))
	key := subscribers.SecretsOverlayKey("acme", hook1)
	require.NoError(t, r.Apply([]byte(key), nil))
	assert.Equal(t, []string{secret1}, r.Get("acme").Webhooks[0].Secrets)
	seq, err := r.NextSecretsSeq(r.Get("acme"), hook1)
	require.NoError(t, err)
	assert.EqualValues(t, 5, seq)
	applyOverlay(t, r, secretsAt(2, secret1, secret3))
	_, ignored := r.OverlayRevision(key)
	assert.False(t, ignored)
	assert.Equal(t, []string{secret1, secret3}, r.Get("acme").Webhooks[0].Secrets)
}

// TestNextSeqOnlyFromTheStateInForce: a writer gets a Seq only for a
// change made from the key or secrets the registry holds in force now:
// after another change is read, or once the record is gone or created
// again, it gets ErrOverlayChanged, and writes nothing.
func TestNextSeqOnlyFromTheStateInForce(t *testing.T) {
	r := subscribers.NewRegistry()
	rec := mailPartner("acme", hook1)
	rec.Incarnation = "inc-1"
	require.NoError(t, r.Apply([]byte("acme"), encode(t, rec)))
	read := r.Get("acme")
	_, err := r.NextSecretsSeq(read, hook1)
	require.NoError(t, err)
	_, err = r.NextKeySeq(read, mail1)
	require.NoError(t, err)

	s, k := secretsAt(1, secret1, secret2), keyAt(1, keyNew)
	s.Incarnation, k.Incarnation = "inc-1", "inc-1"
	applyOverlay(t, r, s)
	applyOverlay(t, r, k)
	_, err = r.NextSecretsSeq(read, hook1)
	assert.ErrorIs(t, err, subscribers.ErrOverlayChanged)
	_, err = r.NextKeySeq(read, mail1)
	assert.ErrorIs(t, err, subscribers.ErrOverlayChanged)
	_, err = r.NextKeySeq(r.Get("acme"), mail2)
	assert.NoError(t, err, "the other address's key did not change")
	_, err = r.NextSecretsSeq(r.Get("acme"), "https://other.acme.example/hook")
	assert.ErrorIs(t, err, subscribers.ErrOverlayChanged, "no such webhook")

	now := r.Get("acme")
	again := mailPartner("acme", hook1)
	again.Incarnation = "inc-2"
	require.NoError(t, r.Apply([]byte("acme"), encode(t, again)))
	_, err = r.NextSecretsSeq(now, hook1)
	assert.ErrorIs(t, err, subscribers.ErrOverlayChanged, "created again")
	require.NoError(t, r.Apply([]byte("acme"), nil))
	_, err = r.NextKeySeq(now, mail1)
	assert.ErrorIs(t, err, subscribers.ErrOverlayChanged, "deleted")
}

// record is one record of a key's history in the subscribers topic: an
// overlay, or a tombstone (nil).
type record = *subscribers.SecretsOverlay

// heldAfter returns the secrets a registry holds in force for hook1 once it
// has read acme's record and then history.
func heldAfter(t *testing.T, history []record) []string {
	t.Helper()
	r := subscribers.NewRegistry()
	require.NoError(t, r.Apply([]byte("acme"), encode(t, partner("acme", hook1))))
	for _, o := range history {
		if o == nil {
			require.NoError(t, r.Apply([]byte(subscribers.SecretsOverlayKey("acme", hook1)), nil))
			continue
		}
		applyOverlay(t, r, *o)
	}
	return r.Get("acme").Webhooks[0].Secrets
}

// TestCompactedKeyHoldsWhatTheOthersHold: compaction leaves a process
// that reads the topic later a suffix of a key's records. Whatever the
// suffix, it holds the secrets every process that read them all holds, as
// long as the latest record is one they took; when it is one they ignored,
// the secrets in force written again at a higher Seq make it so.
func TestCompactedKeyHoldsWhatTheOthersHold(t *testing.T) {
	w, l := secretsAt(1, secret1, secret2), secretsAt(1, secret1, secret3) // made at once
	retire := secretsAt(2, secret2)                                        // made after w was read
	stale := secretsAt(2, secret1, secret2, secret3)                       // made after w too: ignored
	again := secretsAt(2, secret1, secret2)                                // w's list written again
	for name, history := range map[string][]record{
		"a change after the one ignored":       {&w, &l, &retire},
		"two ignored, then a change":           {&w, &l, &retire, &stale, secretsPtr(secretsAt(3, secret2, secret3))},
		"the ignored one's list written again": {&w, &l, &again},
		"after a tombstone":                    {&w, nil, &l, &retire},
	} {
		t.Run(name, func(t *testing.T) {
			want := heldAfter(t, history)
			for i := range history {
				assert.Equal(t, want, heldAfter(t, history[i:]), "a process that read from record %d on", i)
			}
		})
	}
	t.Run("the latest ignored", func(t *testing.T) {
		history := []record{&w, &l}
		assert.Equal(t, []string{secret1, secret2}, heldAfter(t, history))
		assert.Equal(t, []string{secret1, secret3}, heldAfter(t, history[1:]),
			"why the writer of an ignored list writes the one in force again")
	})
}

func secretsPtr(o subscribers.SecretsOverlay) *subscribers.SecretsOverlay { return &o }

// TestOverlayReadAgainIsTheSameOverlay: the very overlay in force read
// again under its key (a copy re-signed with a new publishing key, `herald
// keys resign`) is the same overlay, not a rival made from the same state:
// the registry holds it as before, says the latest record under the key is
// the one in force, and counts no change; a later change goes after it.
func TestOverlayReadAgainIsTheSameOverlay(t *testing.T) {
	t.Run("secrets", func(t *testing.T) {
		r := subscribers.NewRegistry()
		require.NoError(t, r.Apply([]byte("acme"), encode(t, partner("acme", hook1))))
		key := subscribers.SecretsOverlayKey("acme", hook1)
		o := secretsAt(1, secret1, secret2)
		applyOverlay(t, r, o)
		rev, before := r.Revision(), r.Get("acme")
		readBefore, _ := r.OverlayRevision(key)

		applyOverlay(t, r, o)
		read, ignored := r.OverlayRevision(key)
		assert.NotEqual(t, readBefore, read, "read")
		assert.False(t, ignored, "the latest record under the key is the overlay in force")
		assert.Equal(t, rev, r.Revision(), "no change")
		assert.Equal(t, before, r.Get("acme"))
		assert.Equal(t, []subscribers.SecretsOverlay{o}, r.SecretsOverlays("acme"))
		seq, err := r.NextSecretsSeq(r.Get("acme"), hook1)
		require.NoError(t, err)
		assert.EqualValues(t, 2, seq)
	})
	t.Run("keys", func(t *testing.T) {
		r := subscribers.NewRegistry()
		require.NoError(t, r.Apply([]byte("acme"), encode(t, mailPartner("acme"))))
		key := subscribers.KeyOverlayKey("acme", mail1)
		o := keyAt(1, keyNew)
		applyOverlay(t, r, o)
		rev := r.Revision()

		applyOverlay(t, r, o)
		_, ignored := r.OverlayRevision(key)
		assert.False(t, ignored, "the latest record under the key is the overlay in force")
		assert.Equal(t, rev, r.Revision(), "no change")
		assert.Equal(t, []string{keyNew, ""}, pgpKeys(r.Get("acme")))

		// A rival made from the same state is still refused.
		applyOverlay(t, r, keyAt(1, keyAlt))
		_, ignored = r.OverlayRevision(key)
		assert.True(t, ignored)
		assert.Equal(t, []string{keyNew, ""}, pgpKeys(r.Get("acme")))
	})
}
