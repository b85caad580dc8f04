package pgp_test

import (
	"bytes"
	"crypto"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
)

// TestRecipientCacheJudgesEachUse: a usable key's verdict holds only
// until its judgment can change, so it is refused once it has expired and
// still usable when asked about an earlier time; a key created in the
// future (the owner's clock ahead) is refused until it is valid, and
// usable from then on; a key that does not parse is refused every time.
func TestRecipientCacheJudgesEachUse(t *testing.T) {
	now := time.Now()
	var c pgp.RecipientCache
	key := expiringKey(t, now.Add(-time.Hour), time.Hour+2*time.Minute, time.Hour+2*time.Minute)
	require.NoError(t, c.Check(key, now))
	require.Error(t, c.Check(key, now.Add(3*time.Minute)), "expired a minute ago")
	require.NoError(t, c.Check(key, now.Add(time.Minute)), "and usable before")

	future := expiringKey(t, now.Add(time.Minute), 24*time.Hour, 24*time.Hour)
	require.Error(t, c.Check(future, now), "not valid yet")
	require.NoError(t, c.Check(future, now.Add(2*time.Minute)), "valid from its creation on: judged at the time asked")

	for range 2 {
		require.Error(t, c.Check("not a key", now))
	}
}

// TestRecipientCacheKeepsTheRecentlyUsed: a full cache forgets the key
// used least recently, and only that one, so an audience a little larger
// than the bound re-parses a few keys, not all of them.
func TestRecipientCacheKeepsTheRecentlyUsed(t *testing.T) {
	now := time.Now()
	keys := make([]string, 4)
	for i := range keys {
		keys[i] = expiringKey(t, now.Add(-time.Hour), 0, 0)
	}
	c := pgp.NewRecipientCacheOf(3)
	for _, k := range keys[:3] {
		require.NoError(t, c.Check(k, now))
	}
	require.NoError(t, c.Check(keys[0], now)) // the first is used again
	require.NoError(t, c.Check(keys[3], now)) // a fourth: one has to go
	require.Equal(t, 3, c.Len())
	for i, want := range []bool{true, false, true, true} {
		require.Equal(t, want, pgp.Cached(c, keys[i]), "key %d", i)
	}
}

// keySpec describes a key made by timedKey: an Ed25519 primary key made
// at created, with an encryption subkey.
type keySpec struct {
	created    time.Time
	life       time.Duration // the primary key's lifetime; 0: none
	sigLife    time.Duration // the user id self-signature's lifetime; 0: none
	subCreated time.Time     // when the encryption subkey was made; zero: with the key
	subLife    time.Duration // the encryption subkey's lifetime; 0: none
	revoked    time.Time     // when the key was revoked; zero: it is not
	reason     packet.ReasonForRevocation
	subRevoked time.Time // when the encryption subkey was revoked; zero: it is not
}

// timedKey makes the key spec describes, armoured and public, and returns
// it with every time it was made with, where its judgment may change.
func timedKey(t *testing.T, spec keySpec) (string, []time.Time) {
	t.Helper()
	at := func(tm time.Time) *packet.Config {
		return &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, DefaultHash: crypto.SHA256,
			Time: func() time.Time { return tm }}
	}
	cfg := at(spec.created)
	cfg.KeyLifetimeSecs = uint32(spec.life / time.Second)
	e, err := openpgp.NewEntity("Partner", "", "soc@partner.example", cfg)
	require.NoError(t, err)
	times := []time.Time{spec.created}
	if spec.life != 0 {
		times = append(times, spec.created.Add(spec.life))
	}
	if spec.sigLife != 0 {
		for _, id := range e.Identities {
			secs := uint32(spec.sigLife / time.Second)
			id.SelfSignature.SigLifetimeSecs = &secs
			require.NoError(t, id.SelfSignature.SignUserId(id.UserId.Id, e.PrimaryKey, e.PrivateKey, cfg))
		}
		times = append(times, spec.created.Add(spec.sigLife))
	}
	if !spec.subCreated.IsZero() || spec.subLife != 0 {
		sub := cmpOr(spec.subCreated, spec.created)
		sc := at(sub)
		sc.KeyLifetimeSecs = uint32(spec.subLife / time.Second)
		e.Subkeys = nil
		require.NoError(t, e.AddEncryptionSubkey(sc))
		times = append(times, sub)
		if spec.subLife != 0 {
			times = append(times, sub.Add(spec.subLife))
		}
	}
	if !spec.subRevoked.IsZero() {
		require.NoError(t, e.RevokeSubkey(&e.Subkeys[0], packet.KeyRetired, "retired", at(spec.subRevoked)))
		times = append(times, spec.subRevoked)
	}
	if !spec.revoked.IsZero() {
		require.NoError(t, e.RevokeKey(spec.reason, "revoked", at(spec.revoked)))
		times = append(times, spec.revoked)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	require.NoError(t, err)
	require.NoError(t, e.Serialize(w))
	require.NoError(t, w.Close())
	return buf.String(), times
}

func cmpOr(t, or time.Time) time.Time {
	if t.IsZero() {
		return or
	}
	return t
}

// TestVerdictIsTheJudgmentAtEveryTime: a cached verdict is, at every
// time, what parsing and judging the key afresh then finds (its error
// text and its Info): for keys that expire, whose encryption subkey
// expires, whose self-signature expires, that are revoked (from a time,
// or compromised: at any time), whose subkey is revoked, made in the
// future or with a subkey made in the future, asked about a second and
// half a second before, at and after each of the key's times, in
// ascending, descending and shuffled order on the same cache.
func TestVerdictIsTheJudgmentAtEveryTime(t *testing.T) {
	b := now
	h := time.Hour
	specs := map[string]keySpec{
		"primary expires":           {created: b.Add(-h), life: 2 * h},
		"encryption subkey expires": {created: b.Add(-h), subLife: 90 * time.Minute},
		"subkey expires first":      {created: b.Add(-h), life: 3 * h, subLife: 2 * h},
		"self-signature expires":    {created: b.Add(-h), sigLife: 2 * h},
		"revoked later":             {created: b.Add(-h), revoked: b.Add(10 * time.Minute), reason: packet.KeySuperseded},
		"revoked as compromised":    {created: b.Add(-h), revoked: b.Add(10 * time.Minute), reason: packet.KeyCompromised},
		"subkey revoked later":      {created: b.Add(-h), subRevoked: b.Add(20 * time.Minute)},
		"made in the future":        {created: b.Add(15 * time.Minute), life: h},
		"subkey made in the future": {created: b.Add(-h), subCreated: b.Add(30 * time.Minute)},
		"future subkey expires":     {created: b.Add(-h), life: 4 * h, subCreated: b.Add(30 * time.Minute), subLife: h},
	}
	type key struct {
		armored string
		times   []time.Time
	}
	keys := map[string]key{}
	for name, spec := range specs {
		k, times := timedKey(t, spec)
		keys[name] = key{k, times}
	}
	for _, name := range []string{pgptest.Alice, pgptest.Expired, pgptest.Revoked, pgptest.SignOnly, pgptest.V6} {
		k, _ := pgptest.RecipientKey(t, name)
		info, err := pgp.InspectKey(k, now)
		require.NoError(t, err)
		times := []time.Time{pgptest.Created, now}
		if !info.Expires.IsZero() {
			times = append(times, info.Expires)
		}
		keys["fixture "+name] = key{k, times}
	}
	offsets := []time.Duration{-time.Second, -time.Second / 2, 0, time.Second / 2, time.Second}
	for name, k := range keys {
		t.Run(name, func(t *testing.T) {
			var at []time.Time
			for _, tm := range k.times {
				for _, d := range offsets {
					at = append(at, tm.Add(d))
				}
			}
			slices.SortFunc(at, time.Time.Compare)
			down := slices.Clone(at)
			slices.Reverse(down)
			shuffled := slices.Clone(at)
			rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			var c pgp.RecipientCache
			changes := 0
			var last string
			for i, when := range slices.Concat(at, down, shuffled) {
				v := c.Judge(k.armored, when)
				require.True(t, v.Parses())
				fresh := pgp.CheckRecipientKey(k.armored, when)
				info, err := pgp.InspectKey(k.armored, when)
				require.NoError(t, err)
				require.Equal(t, errText(fresh), errText(v.Err), "at %s", when)
				require.Equal(t, info.Fingerprint, v.Info.Fingerprint)
				require.True(t, info.Expires.Equal(v.Info.Expires), "at %s: expires %s, want %s", when, v.Info.Expires, info.Expires)
				if i < len(at) && errText(v.Err) != last {
					changes, last = changes+1, errText(v.Err)
				}
			}
			t.Logf("%d judgments, %d changes ascending", 3*len(at), changes)
		})
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestSteadyIsExact: the interval a verdict holds in ends exactly where
// the judgment changes, to the second (go-crypto compares whole seconds,
// an expiry at e still valid at e): a key that expires at e is judged
// usable over [created, e+1s) and a verdict made at e holds no further.
func TestSteadyIsExact(t *testing.T) {
	created := now.Add(-time.Hour)
	k, _ := timedKey(t, keySpec{created: created, life: 2 * time.Hour})
	e := created.Add(2 * time.Hour)
	from, until, err := pgp.Steady(k, now)
	require.NoError(t, err)
	require.Equal(t, created.Unix(), from)
	require.Equal(t, e.Unix()+1, until)
	require.NoError(t, pgp.CheckRecipientKey(k, e.Add(999*time.Millisecond)))
	require.Error(t, pgp.CheckRecipientKey(k, e.Add(time.Second)))
	require.Error(t, pgp.CheckRecipientKey(k, created.Add(-time.Second)))
}

// armourVariants returns n armours of the same key, each with a comment
// header of its own: n distinct entries for caches keyed by the armour,
// made without generating n keys.
func armourVariants(armored string, n int) []string {
	const begin = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n"
	out := make([]string, n)
	for i := range out {
		out[i] = strings.Replace(armored, begin, fmt.Sprintf("%sComment: %d\n", begin, i), 1)
	}
	return out
}

// heapPer returns the heap that fill keeps, per key, over n keys.
func heapPer(n int, fill func()) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC() // the first may leave what an earlier cycle's finalizers freed
	runtime.ReadMemStats(&before)
	fill()
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// TestVerdictsHeapPerKey: a RecipientCache full of n keys' verdicts keeps
// under 1 KiB of heap a key, where a parsed key is 6.5 KiB or more, so
// 131,072 keys take tens of MiB, not a GiB.
func TestVerdictsHeapPerKey(t *testing.T) {
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	keys := armourVariants(alice, 2000)
	c := &pgp.RecipientCache{}
	per := heapPer(len(keys), func() {
		for _, k := range keys {
			require.NoError(t, c.Check(k, now))
		}
	})
	runtime.KeepAlive(keys) // the armours are not the cache's
	runtime.KeepAlive(c)
	require.Equal(t, len(keys), c.Len())
	t.Logf("%.0f B a verdict", per)
	require.Less(t, per, 1024.0, "heap a key")
}

// TestParsedKeysRefuseUnparsed: the notifier's parsed keys judge with the
// shared verdicts first: a key that cannot be encrypted to is refused
// without being parsed or kept (its verdict is in the shared cache); a
// usable key is parsed once, kept, and still judged at the time asked.
func TestParsedKeysRefuseUnparsed(t *testing.T) {
	verdicts := &pgp.RecipientCache{}
	p := &pgp.ParsedKeys{Verdicts: verdicts}
	for _, name := range []string{pgptest.Expired, pgptest.Revoked, pgptest.SignOnly, pgptest.V6} {
		k, _ := pgptest.RecipientKey(t, name)
		_, err := p.Recipient(k, now)
		require.Equal(t, errText(pgp.CheckRecipientKey(k, now)), errText(err), name)
	}
	_, err := p.Recipient("not a key", now)
	require.Error(t, err)
	require.Equal(t, 0, p.Len(), "nothing unusable kept parsed")
	require.Equal(t, 5, verdicts.Len(), "judged in the shared verdicts")

	key := expiringKey(t, now.Add(-time.Hour), 2*time.Hour, 2*time.Hour)
	for range 3 {
		r, err := p.Recipient(key, now)
		require.NoError(t, err)
		require.NotNil(t, r)
	}
	require.Equal(t, 1, p.Len())
	_, err = p.Recipient(key, now.Add(2*time.Hour))
	require.ErrorContains(t, err, "expired")
}

// BenchmarkRecipientCacheAudience is what the policy pays for the keys of
// one alert's audience of 1,000 partners, each with its own key, asked
// for in the same order every time: within the bound (every key cached)
// and with a bound a tenth smaller than the audience, where an LRU finds
// none cached and parses every key again.
//
//	go test -run '^$' -bench RecipientCacheAudience -benchmem ./crypto/pgp/
func BenchmarkRecipientCacheAudience(b *testing.B) {
	now := time.Now()
	keys := make([]string, 1000)
	for i := range keys {
		_, pub, err := pgp.GenerateKey("Partner", fmt.Sprintf("soc%d@partner.example", i), pgp.AlgoEd25519, now.Add(-time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = string(pub)
	}
	for _, bc := range []struct {
		name string
		c    *pgp.RecipientCache
	}{
		{"within-bound", &pgp.RecipientCache{}},
		{"beyond-bound", pgp.NewRecipientCacheOf(len(keys) * 9 / 10)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				for _, k := range keys {
					if err := bc.c.Check(k, now); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
		})
	}
}

// BenchmarkKeyHeap measures the heap a key takes cached as a verdict
// (RecipientCache) and parsed (ParsedKeys, its verdicts not counted), for
// Ed25519 and RSA-3072 keys, over 1,000 keys (armours of one fixture key
// with a comment each: the caches key by the armour).
//
//	go test -run '^$' -bench KeyHeap -benchtime 3x ./crypto/pgp/
func BenchmarkKeyHeap(b *testing.B) {
	const n = 1000
	for _, algo := range []struct{ name, key string }{{"ed25519", pgptest.Alice}, {"rsa3072", pgptest.Bob}} {
		pub, _ := pgptest.RecipientKey(b, algo.key)
		keys := armourVariants(pub, n)
		b.Run(algo.name+"/verdict", func(b *testing.B) {
			var per float64
			for b.Loop() {
				c := &pgp.RecipientCache{}
				per = heapPer(n, func() {
					for _, k := range keys {
						if err := c.Check(k, now); err != nil {
							b.Fatal(err)
						}
					}
				})
				runtime.KeepAlive(c)
				runtime.KeepAlive(keys)
			}
			b.ReportMetric(per, "B/key")
		})
		b.Run(algo.name+"/parsed", func(b *testing.B) {
			var per float64
			for b.Loop() {
				v := &pgp.RecipientCache{}
				for _, k := range keys {
					if err := v.Check(k, now); err != nil {
						b.Fatal(err)
					}
				}
				p := &pgp.ParsedKeys{Verdicts: v}
				per = heapPer(n, func() {
					for _, k := range keys {
						if _, err := p.Recipient(k, now); err != nil {
							b.Fatal(err)
						}
					}
				})
				runtime.KeepAlive(p)
				runtime.KeepAlive(keys)
			}
			b.ReportMetric(per, "B/key")
		})
	}
}
