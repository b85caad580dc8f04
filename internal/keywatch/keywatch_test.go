package keywatch_test

import (
	"bytes"
	"context"
	"crypto"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/keywatch"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/subscribers"
)

var now = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

// keyExpiringIn returns a public key made a day before now that expires
// left after now.
func keyExpiringIn(t testing.TB, left time.Duration) string {
	t.Helper()
	return keyMadeAt(t, now.Add(-day), left+day)
}

// keyMadeAt returns a public key made at created that expires lifetime
// later.
func keyMadeAt(t testing.TB, created time.Time, lifetime time.Duration) string {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, DefaultHash: crypto.SHA256,
		Time: func() time.Time { return created }, KeyLifetimeSecs: uint32(lifetime / time.Second)}
	e, err := openpgp.NewEntity("Partner", "", "soc@partner.example", cfg)
	require.NoError(t, err)
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	require.NoError(t, err)
	require.NoError(t, e.Serialize(w))
	require.NoError(t, w.Close())
	return buf.String()
}

func partner(id, status string, keys ...string) *subscribers.Subscriber {
	s := &subscribers.Subscriber{ID: id, Name: id, Kind: subscribers.KindBusiness, Clearance: alerts.TLPAmber, Status: status}
	for i, k := range keys {
		s.Email = append(s.Email, subscribers.Email{Address: string(rune('a'+i)) + "@" + id + ".example", PGPKey: k})
	}
	return s
}

type registry struct {
	mu   sync.Mutex
	subs []*subscribers.Subscriber
	rev  uint64
}

func (r *registry) List() []*subscribers.Subscriber {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.subs
}

func (r *registry) Revision() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rev
}

func (r *registry) Each(fn func(*subscribers.Subscriber)) {
	for _, s := range r.List() {
		fn(s)
	}
}

func (r *registry) set(subs ...*subscribers.Subscriber) {
	r.mu.Lock()
	r.subs = subs
	r.rev++
	r.mu.Unlock()
}

// watch returns a Watch (a process) on b.
func watch(b *bus.Bus, reg keywatch.Registry) *keywatch.Watch {
	w := keywatch.New()
	w.Registry, w.Ledger = reg, ledger.FromBus(b)
	w.Jobs, w.Receipts = b.Producer(bus.TopicDeliveries), b.Producer(bus.TopicReceipts)
	w.Thresholds = []time.Duration{30 * day, 7 * day}
	w.Now = func() time.Time { return now }
	w.Poll, w.Interval = 10*time.Millisecond, time.Hour
	return w
}

// running runs w until the test ends, and then wants Run to have
// returned no error.
func running(t *testing.T, w *keywatch.Watch) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// queued returns the jobs on the deliveries topic.
func queued(t testing.TB, b *bus.Bus) []*delivery.Job {
	t.Helper()
	var out []*delivery.Job
	require.NoError(t, b.ReadAll(context.Background(), bus.TopicDeliveries, func(m kafka.Message) error {
		require.NoError(t, b.Authenticate(m))
		j, err := delivery.DecodeJob(m.Value, nil)
		require.NoError(t, err)
		out = append(out, j)
		return nil
	}))
	return out
}

// TestNotices: one notice per key for the tightest threshold crossed, none
// for keys that do not expire, have expired, are revoked, or belong to a
// suspended partner; checking again, or from a new process, sends nothing
// more; the gauges count the keys.
func TestNotices(t *testing.T) {
	b := kafkatest.New(t)
	revoked, _ := pgptest.RecipientKey(t, pgptest.Revoked)
	expired, _ := pgptest.RecipientKey(t, pgptest.Expired)
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	in10, in5, in60 := keyExpiringIn(t, 10*day), keyExpiringIn(t, 5*day), keyExpiringIn(t, 60*day)
	reg := &registry{}
	reg.set(
		partner("acme", subscribers.StatusActive, in10, in5, in60, alice, expired, revoked, ""),
		partner("paused", subscribers.StatusSuspended, in10),
	)
	w := watch(b, reg)
	require.NoError(t, w.Check(t.Context(), reg.List()))
	jobs := queued(t, b)
	require.Len(t, jobs, 2)
	got := map[string]time.Duration{}
	for _, j := range jobs {
		k, err := delivery.KeyExpiryOf(j)
		require.NoError(t, err)
		assert.Equal(t, "acme", j.Subscriber)
		assert.Equal(t, delivery.ModeKeyExpiryNotice, j.Mode)
		got[j.Target] = k.Threshold
	}
	assert.Equal(t, map[string]time.Duration{"a@acme.example": 30 * day, "b@acme.example": 7 * day}, got,
		"10 days left: the 30-day notice; 5 days left: the 7-day one only")
	assert.Equal(t, 2.0, testutil.ToFloat64(w.Collectors()[0]), "keys expiring within 30 days")
	assert.Equal(t, 1.0, testutil.ToFloat64(w.Collectors()[1]), "keys expired")

	// The ledger answers for them as for alerts.
	ids := []string{jobs[0].Alert.ID, jobs[1].Alert.ID}
	known, err := ledger.FromBus(b).Lookup(t.Context(), ids)
	require.NoError(t, err)
	for _, id := range ids {
		a := known[id]
		require.NotNil(t, a)
		assert.Equal(t, w.Claim(), a.IssuedBy)
		es := a.Entries()
		require.Len(t, es, 1)
		assert.Equal(t, delivery.Notice, es[0].Decision)
		assert.Equal(t, keywatch.Rule, es[0].Rule)
		assert.Equal(t, delivery.StatePending, es[0].State)
	}

	require.NoError(t, w.Check(t.Context(), reg.List()))
	restarted := watch(b, reg)
	require.NoError(t, restarted.Check(t.Context(), reg.List()))
	assert.Len(t, queued(t, b), 2, "nothing twice, in this process or the next")

	// Five days later the first key crosses 7 days: its second notice.
	later := watch(b, reg)
	later.Now = func() time.Time { return now.Add(5 * day) }
	require.NoError(t, later.Check(t.Context(), reg.List()))
	jobs = queued(t, b)
	require.Len(t, jobs, 3)
	k, err := delivery.KeyExpiryOf(jobs[2])
	require.NoError(t, err)
	assert.Equal(t, "a@acme.example", k.Address)
	assert.Equal(t, 7*day, k.Threshold)

	// A new key for the address is a new key: its own notices.
	reg.set(partner("acme", subscribers.StatusActive, keyExpiringIn(t, 20*day)))
	require.NoError(t, restarted.Check(t.Context(), reg.List()))
	assert.Len(t, queued(t, b), 4)
}

// TestKeyDatedInTheFuture: a key made after now (its owner's clock
// ahead) cannot be used yet and gets no notice; once it can, the same
// process warns of its expiry: a key is judged at every check, not once.
func TestKeyDatedInTheFuture(t *testing.T) {
	b := kafkatest.New(t)
	reg := &registry{}
	reg.set(partner("acme", subscribers.StatusActive, keyMadeAt(t, now.Add(day), 11*day)))
	w := watch(b, reg)
	shared := &pgp.RecipientCache{} // the process's, which the policy uses too
	w.Keys = shared
	require.NoError(t, w.Check(t.Context(), reg.List()))
	assert.Empty(t, queued(t, b), "not usable yet")
	assert.Equal(t, 1, shared.Len(), "parsed into the cache it was given")

	w.Now = func() time.Time { return now.Add(2 * day) }
	require.NoError(t, w.Check(t.Context(), reg.List()))
	jobs := queued(t, b)
	require.Len(t, jobs, 1, "usable now, and it expires in 10 days")
	k, err := delivery.KeyExpiryOf(jobs[0])
	require.NoError(t, err)
	assert.Equal(t, 30*day, k.Threshold)
	assert.Equal(t, now.Add(12*day), k.Expires)
}

// TestOneProcessSends: processes that find the same key at the same moment
// queue one notice between them.
func TestOneProcessSends(t *testing.T) {
	b := kafkatest.New(t)
	reg := &registry{}
	reg.set(partner("acme", subscribers.StatusActive, keyExpiringIn(t, 10*day)))
	ws := make([]*keywatch.Watch, 4)
	for i := range ws {
		ws[i] = watch(b, reg)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, len(ws))
	for i, w := range ws {
		wg.Go(func() {
			<-start
			errs[i] = w.Check(context.Background(), reg.List())
		})
	}
	close(start)
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	jobs := queued(t, b)
	require.Len(t, jobs, 1, "one process queued it")
	// The others' claims are in the topic too; the first one names the
	// process that sent it.
	var claims []string
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicReceipts, func(m kafka.Message) error {
		rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
		require.NoError(t, err)
		for _, r := range rs {
			if r.Kind == delivery.KindAlert {
				claims = append(claims, r.IssuedBy)
			}
		}
		return nil
	}))
	require.NotEmpty(t, claims)
	sent := 0.0
	for _, w := range ws {
		sent += testutil.ToFloat64(w.Collectors()[2])
		if w.Claim() == claims[0] {
			assert.Equal(t, 1.0, testutil.ToFloat64(w.Collectors()[2]), "the first claim's process sent it")
		}
	}
	assert.Equal(t, 1.0, sent)
}

// TestRunChecksWhenARecordChanges: a record stored while Run runs is
// checked within a poll, not an hour later.
func TestRunChecksWhenARecordChanges(t *testing.T) {
	b := kafkatest.New(t)
	reg := &registry{}
	reg.set(partner("acme", subscribers.StatusActive))
	running(t, watch(b, reg))
	reg.set(partner("acme", subscribers.StatusActive, keyExpiringIn(t, 10*day)))
	require.Eventually(t, func() bool { return len(queued(t, b)) == 1 }, 10*time.Second, 20*time.Millisecond)
}

func TestExpiring(t *testing.T) {
	expired, _ := pgptest.RecipientKey(t, pgptest.Expired)
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	subs := []*subscribers.Subscriber{
		partner("acme", subscribers.StatusActive, keyExpiringIn(t, 20*day), alice, "not a key"),
		partner("globex", subscribers.StatusSuspended, keyExpiringIn(t, 40*day), expired, keyExpiringIn(t, 2*day)),
	}
	keys := keywatch.Expiring(subs, now, 30*day)
	var got []string
	for _, k := range keys {
		assert.Len(t, k.Fingerprint, 40)
		got = append(got, k.Subscriber+" "+k.Address+" "+k.Expires.Format(time.DateOnly))
	}
	assert.Equal(t, []string{"globex b@globex.example 2020-01-02", "globex c@globex.example 2026-11-22", "acme a@acme.example 2026-12-10"}, got)
}

// TestRunWarnsOfAPartnersOwnKey: a key the partner uploaded itself (an
// overlay beside its record, applied by the real registry) is the key
// Herald warns of; the record's own key, which it replaces, is not.
func TestRunWarnsOfAPartnersOwnKey(t *testing.T) {
	b := kafkatest.New(t)
	reg := subscribers.NewRegistry()
	reg.Put(partner("acme", subscribers.StatusActive, keyExpiringIn(t, 400*day)))
	running(t, watch(b, reg))
	own := keyExpiringIn(t, 10*day)
	reg.PutKeyOverlay(subscribers.KeyOverlay{Subscriber: "acme", Address: "a@acme.example", PGPKey: own, By: "partner:acme-soc", At: now})
	require.Eventually(t, func() bool { return len(queued(t, b)) == 1 }, 10*time.Second, 20*time.Millisecond)
	k, err := delivery.KeyExpiryOf(queued(t, b)[0])
	require.NoError(t, err)
	assert.Equal(t, 30*day, k.Threshold, "the partner's own key expires in 10 days")
	assert.Equal(t, "a@acme.example", queued(t, b)[0].Target)
}
