package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/logtest"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/subscribers"
)

// keyLine returns the key line ("hbk1.…") of a publishing key file.
func keyLine(t *testing.T, data []byte) string {
	t.Helper()
	for l := range strings.Lines(string(data)) {
		if strings.HasPrefix(l, "hbk1.") {
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("no key line in %q", data)
	return ""
}

// keyFile writes a publishing key file of the given key lines, the
// signing key first.
func keyFile(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "publishing.key")
	require.NoError(t, os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	return p
}

// openWithKeys opens a bus on cfg's cluster with the publishing key file
// keys, as a Herald process configured with it does.
func openWithKeys(t *testing.T, cfg config.Config, keys string) *bus.Bus {
	t.Helper()
	cfg.Publishing.KeyFile = keys
	b, err := app.OpenBus(t.Context(), &cfg, true, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

// readRegistry reads the subscribers topic into a registry as every
// Herald process does (app.LoadRegistry: the records b authenticates, and
// those endorsements vouch for).
func readRegistry(t *testing.T, b *bus.Bus) *subscribers.Registry {
	t.Helper()
	reg, err := app.LoadRegistry(t.Context(), b, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return reg
}

// skippedSubscribers returns the lines of logs that report a record of the
// subscribers topic skipped.
func skippedSubscribers(logs string) []string {
	var out []string
	for l := range strings.Lines(logs) {
		if strings.Contains(l, "ignoring") && strings.Contains(l, "subscribers") {
			out = append(out, l)
		}
	}
	return out
}

// TestRotationKeepsPartners: a partner registered, and its own key
// uploaded, under publishing key A; the key rotated (B first, A second)
// following the operator guide; the subscribers topic's records vouched
// for while a process still signing with A changes the partner's record;
// the old key removed once the check says no record in force needs it,
// the topic compacted. The partner and its own key are still there, no
// record is reported skipped, and an alert reaches it, encrypted to that
// key. Without the endorsements, removing A loses them: the compacted
// topic keeps each partner's latest record, signed with A, for ever.
func TestRotationKeepsPartners(t *testing.T) {
	e := newServeEnv(t, nil)
	const addr = "soc@acme.example"
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	dataA, err := os.ReadFile(e.cfg.Publishing.KeyFile)
	require.NoError(t, err)
	dataB, err := busauth.Generate()
	require.NoError(t, err)
	lineA, lineB := keyLine(t, dataA), keyLine(t, dataB)
	onlyA, rotating, onlyB := keyFile(t, lineA), keyFile(t, lineB, lineA), keyFile(t, lineB)

	bA := e.cluster.Open(t, e.cfg.Kafka)
	register(t, bA, acmeCarWash())
	storeA := app.SubscriberStore{Bus: bA, Audit: app.AuditLog(bA, time.Now), Overlays: readRegistry(t, bA)}
	require.NoError(t, storeA.SetKey(t.Context(), "partner:acme-soc", storeA.Overlays.Record("acme"), addr, "", alice, time.Now()))
	require.Equal(t, alice, readRegistry(t, openWithKeys(t, e.cfg, onlyA)).Get("acme").Email[0].PGPKey)

	// The rotation: B first, A second, deployed.
	bBA := openWithKeys(t, e.cfg, rotating)
	store := app.SubscriberStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	ids := bBA.Keyring().IDs()
	scan, err := store.ScanSigners(t.Context())
	require.NoError(t, err)
	assert.Equal(t, app.KeyUse{Keys: []app.KeyCount{{ID: ids[0]}, {ID: ids[1], Records: 2}}}, scan.Use(), "the record and the partner's key, under A")

	// Without the re-signing, removing A now would lose the partner: the
	// latest records of acme and of its own key are signed with A alone.
	require.Nil(t, readRegistry(t, openWithKeys(t, e.cfg, onlyB)).Get("acme"), "acme under B alone, before the re-signing")

	// A process not yet given the new file changes the record after
	// the scan: the re-signing leaves it alone, never writing back the
	// older copy it read.
	renamed := acmeCarWash()
	renamed.Name = "Acme Car Wash Ltd"
	renamed.Normalize()
	require.NoError(t, storeA.Put(t.Context(), "cli:old-process", "", []*subscribers.Subscriber{renamed}, storeA.Overlays.Record))
	res, err := store.Resign(t.Context(), "cli:test", scan)
	require.NoError(t, err)
	assert.Equal(t, app.Resigned{Key: ids[0], Records: 1, Changed: 1}, res)

	// A registry that follows the topic holds the partner's key as it
	// was: the endorsement of an authentic record changes nothing.
	reg := readRegistry(t, bBA)
	assert.Equal(t, "Acme Car Wash Ltd", reg.Get("acme").Name)
	assert.Equal(t, alice, reg.Get("acme").Email[0].PGPKey)
	_, ignored := reg.OverlayRevision(subscribers.KeyOverlayKey("acme", addr))
	assert.False(t, ignored)

	// The check still finds the renamed record under A; a second run
	// vouches for it, a third has nothing left to do.
	scan, err = store.ScanSigners(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 1, scan.Use().Others())
	res, err = store.Resign(t.Context(), "cli:test", scan)
	require.NoError(t, err)
	assert.Equal(t, app.Resigned{Key: ids[0], Records: 1}, res)
	scan, err = store.ScanSigners(t.Context())
	require.NoError(t, err)
	assert.Equal(t, app.KeyUse{Keys: []app.KeyCount{{ID: ids[0], Records: 2}, {ID: ids[1]}}}, scan.Use(), "A may go")
	res, err = store.Resign(t.Context(), "cli:test", scan)
	require.NoError(t, err)
	assert.Equal(t, app.Resigned{Key: ids[0]}, res)

	// Each run is its own event in the audit trail, with its counts.
	var runs []string
	require.NoError(t, bBA.ReadAll(t.Context(), bus.TopicAudit, func(m kafka.Message) error {
		var a record.Audit
		require.NoError(t, json.Unmarshal(m.Value, &a))
		if a.Action == record.ActionKeysResign {
			runs = append(runs, fmt.Sprintf("%s %s %v/%v", a.Actor, a.Object, a.Details["records"], a.Details["changed"]))
		}
		return nil
	}))
	assert.Equal(t, []string{"cli:test topic:subscribers 1/1", "cli:test topic:subscribers 1/0", "cli:test topic:subscribers 0/0"}, runs)

	// A removed, the topic compacted: the partner and its own key are
	// still there, and loading them logs no record skipped.
	e.cluster.Kfake().Compact()
	bB := openWithKeys(t, e.cfg, onlyB)
	var logs logtest.Buffer
	loaded, err := app.LoadRegistry(t.Context(), bB, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	assert.Empty(t, skippedSubscribers(logs.String()))
	acme := loaded.Get("acme")
	require.NotNil(t, acme, "the partner is gone once A is removed")
	assert.Equal(t, "Acme Car Wash Ltd", acme.Name)
	assert.Equal(t, alice, acme.Email[0].PGPKey, "the partner's own key")

	// And an alert reaches it, encrypted to its own key.
	e.cfg.Publishing.KeyFile = onlyB
	e.cfg.Release.SecondAnalyst = nil // an AMBER alert published straight away
	e.start(t, app.RoleFanout, app.RoleDeliver)
	a := carWashAlert("a-after-rotation")
	a.TLP = alerts.TLPAmber // sent encrypted, or not at all
	publish(t, bB, a)
	require.Eventually(t, func() bool { return e.sink.Count() >= 1 }, 60*time.Second, 50*time.Millisecond, "the alert:\n%s", e.logs)
	m := e.sink.Messages()[0]
	assert.Equal(t, []string{addr}, m.To)
	assert.Contains(t, string(m.Data), "multipart/encrypted")
	assert.Empty(t, skippedSubscribers(e.logs.String()), "the vouched records are no records skipped")
}

// rotationEnv registers acme under publishing key A and returns a bus of
// a process still on A, one on the rotating file (B first, A second) and
// the file of B alone.
func rotationEnv(t *testing.T) (e *serveEnv, bA, bBA *bus.Bus, onlyB string) {
	t.Helper()
	e = newServeEnv(t, nil)
	dataA, err := os.ReadFile(e.cfg.Publishing.KeyFile)
	require.NoError(t, err)
	dataB, err := busauth.Generate()
	require.NoError(t, err)
	lineA, lineB := keyLine(t, dataA), keyLine(t, dataB)
	bA = e.cluster.Open(t, e.cfg.Kafka)
	register(t, bA, acmeCarWash())
	return e, bA, openWithKeys(t, e.cfg, keyFile(t, lineB, lineA)), keyFile(t, lineB)
}

// TestResignNeverUndoesANewerRecord: an administrator (on the rotating
// file) suspends acme between the re-signing's scan and its write, and
// deletes beta; the re-signing process dies right after its write (no
// later step runs); A is removed and the topic compacted; a new process
// rebuilds its registry from the topic. acme is still suspended, beta
// still deleted, and an alert for their sector reaches neither (but
// gamma, which reads it). A copy of the older records written under their
// keys would have landed last, undone both for ever.
func TestResignNeverUndoesANewerRecord(t *testing.T) {
	e, _, bBA, onlyB := rotationEnv(t)
	beta, gamma := acmeCarWash(), acmeCarWash()
	beta.ID, beta.Email = "beta", []subscribers.Email{{Address: "soc@beta.example"}}
	gamma.ID, gamma.Email = "gamma", []subscribers.Email{{Address: "soc@gamma.example"}}
	register(t, e.cluster.Open(t, e.cfg.Kafka), beta)
	register(t, bBA, gamma)
	store := app.SubscriberStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	scan, err := store.ScanSigners(t.Context())
	require.NoError(t, err)

	ctx, die := context.WithCancel(t.Context())
	once := false
	*app.ResignBeforeWrite = func() {
		if once {
			return
		}
		once = true
		suspended := acmeCarWash()
		suspended.Status = subscribers.StatusSuspended
		suspended.Normalize()
		admin := app.SubscriberStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
		reg := readRegistry(t, bBA)
		require.NoError(t, admin.Put(t.Context(), "cli:admin", "", []*subscribers.Subscriber{suspended}, reg.Record))
		require.NoError(t, admin.Delete(t.Context(), "cli:admin", "beta"))
	}
	*app.ResignAfterWrite = die
	t.Cleanup(func() { *app.ResignBeforeWrite, *app.ResignAfterWrite = nil, nil })
	_, err = store.Resign(ctx, "cli:test", scan)
	require.ErrorIs(t, err, context.Canceled, "the run died after its write")
	require.True(t, once)

	e.cluster.Kfake().Compact()
	bB := openWithKeys(t, e.cfg, onlyB)
	reg := readRegistry(t, bB)
	require.NotNil(t, reg.Get("acme"))
	assert.Equal(t, subscribers.StatusSuspended, reg.Get("acme").Status, "the suspension stands")
	assert.Nil(t, reg.Get("beta"), "the deletion stands")

	e.cfg.Publishing.KeyFile = onlyB
	e.cfg.Release.SecondAnalyst = nil
	e.start(t, app.RoleFanout, app.RoleDeliver)
	publish(t, bB, carWashAlert("a-after-rotation"))
	require.Eventually(t, func() bool { return e.sink.Count() >= 1 }, 60*time.Second, 50*time.Millisecond, "the alert:\n%s", e.logs)
	for _, m := range e.sink.Messages() {
		assert.Equal(t, []string{"soc@gamma.example"}, m.To)
	}
}

// TestResignCountsWhatRegistriesHold: the latest record of acme is one no
// key verifies (written by another client with a key of its own); every
// registry skips it and holds the record before it, signed with A. No
// endorsement can keep that record once A is removed (a newer record of
// a removed key looks the same as the forged one), so the check must say
// A is still needed, however often the re-signing runs, until an
// administrator writes acme's record again; then A may go, and acme
// stays.
func TestResignCountsWhatRegistriesHold(t *testing.T) {
	e, _, bBA, onlyB := rotationEnv(t)
	other, err := busauth.Generate()
	require.NoError(t, err)
	forger := openWithKeys(t, e.cfg, keyFile(t, keyLine(t, other)))
	forged := acmeCarWash()
	forged.Name = "Forged"
	v, err := json.Marshal(forged)
	require.NoError(t, err)
	require.NoError(t, forger.Producer(bus.TopicSubscribers).Write(t.Context(), kafka.Message{Key: []byte("acme"), Value: v}))
	require.Equal(t, "Acme Car Wash", readRegistry(t, bBA).Get("acme").Name)

	store := app.SubscriberStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	scan, err := store.ScanSigners(t.Context())
	require.NoError(t, err)
	u := scan.Use()
	assert.Equal(t, 2, u.Others(), "acme's record and its overlay's tombstone, under A")
	assert.Equal(t, 1, u.Unverified)
	assert.Equal(t, 1, u.Blocked, "acme's record, followed by the forged one")
	res, err := store.Resign(t.Context(), "cli:test", scan)
	require.NoError(t, err)
	assert.Equal(t, app.Resigned{Key: bBA.Keyring().IDs()[0], Records: 1, Blocked: 1}, res)
	scan, err = store.ScanSigners(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 1, scan.Use().Others(), "A still keeps acme: it may not go")
	assert.Equal(t, "Acme Car Wash", readRegistry(t, bBA).Get("acme").Name, "what registries hold is unchanged")

	// The administrator writes acme's record again: A may go.
	admin := app.SubscriberStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	reg := readRegistry(t, bBA)
	require.NoError(t, admin.Put(t.Context(), "cli:admin", "", []*subscribers.Subscriber{reg.Record("acme")}, reg.Record))
	scan, err = store.ScanSigners(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 0, scan.Use().Others())
	acme := readRegistry(t, openWithKeys(t, e.cfg, onlyB)).Get("acme")
	require.NotNil(t, acme, "acme is gone once A is removed")
	assert.Equal(t, "Acme Car Wash", acme.Name)
}

// TestEndorsementsThatVouchForNothing: an endorsement signed
// with a key of no Herald keyring, one with no herald-auth header, and
// one Herald signed that names
// another offset than acme's latest record, vouch for nothing: once A is
// removed acme is gone, and the check counts acme's record under A. A
// real run then keeps acme as it was.
func TestEndorsementsThatVouchForNothing(t *testing.T) {
	e, _, bBA, onlyB := rotationEnv(t)
	store := app.SubscriberStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	var at kafka.Message
	require.NoError(t, bBA.ReadAll(t.Context(), bus.TopicSubscribers, func(m kafka.Message) error {
		if string(m.Key) == "acme" {
			at = m
		}
		return nil
	}))
	forged := acmeCarWash()
	forged.Name = "Forged"
	fv, err := json.Marshal(forged)
	require.NoError(t, err)
	endorse := func(offset int64, value []byte) kafka.Message {
		v, err := json.Marshal(map[string]any{"key": "acme", "partition": at.Partition, "offset": offset, "value": value, "auth": "", "by": "x", "at": time.Now()})
		require.NoError(t, err)
		return kafka.Message{Key: []byte(subscribers.EndorsementPrefix + "acme"), Value: v}
	}
	other, err := busauth.Generate()
	require.NoError(t, err)
	forger := openWithKeys(t, e.cfg, keyFile(t, keyLine(t, other)))
	require.NoError(t, forger.Producer(bus.TopicSubscribers).WriteToPartition(t.Context(), at.Partition, endorse(at.Offset, fv)))
	// One with no herald-auth at all, written by a plain client.
	raw := &kafka.Writer{Addr: kafka.TCP(e.cluster.Addrs()...), Topic: bBA.Topic(bus.TopicSubscribers), RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, Balancer: kafka.BalancerFunc(func(kafka.Message, ...int) int { return at.Partition })}
	t.Cleanup(func() { raw.Close() })
	require.NoError(t, raw.WriteMessages(t.Context(), endorse(at.Offset, fv)))
	require.NoError(t, bBA.Producer(bus.TopicSubscribers).WriteToPartition(t.Context(), at.Partition, endorse(at.Offset+1, at.Value)))

	assert.Nil(t, readRegistry(t, openWithKeys(t, e.cfg, onlyB)).Get("acme"), "nothing vouches for acme")
	scan, err := store.ScanSigners(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 2, scan.Use().Others(), "acme's record and its overlay's tombstone, under A")

	res, err := store.Resign(t.Context(), "cli:test", scan)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Records)
	scan, err = store.ScanSigners(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 0, scan.Use().Others())
	acme := readRegistry(t, openWithKeys(t, e.cfg, onlyB)).Get("acme")
	require.NotNil(t, acme)
	assert.Equal(t, "Acme Car Wash", acme.Name)
}

// TestNextRotationVouchesAfresh: partners registered under A (acme with
// its own key, beta, delta); rotated to B first, vouched for with B;
// beta then renamed and gamma registered under B. The next rotation puts
// C first, B (and A) still held; delta is renamed under C. `keys resign`
// vouches afresh with C for every record B kept (the records A signed
// that B's endorsements vouch for, beta's and gamma's records, all under
// the same ~resign/ keys), retires delta's endorsement, no longer needed,
// and the check then says only C is needed. A and B removed, the topic
// compacted: a new process holds every partner as it was, acme's own key
// included, reading them logs no warning, and an alert reaches them all.
// (beta's endorsement lies on the partition of its own tombstone's key:
// retiring its old endorsement with a tombstone written after the fresh
// one would remove the fresh one at compaction.)
func TestNextRotationVouchesAfresh(t *testing.T) {
	e := newServeEnv(t, nil)
	const addr = "soc@acme.example"
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	dataA, err := os.ReadFile(e.cfg.Publishing.KeyFile)
	require.NoError(t, err)
	dataB, err := busauth.Generate()
	require.NoError(t, err)
	dataC, err := busauth.Generate()
	require.NoError(t, err)
	lineA, lineB, lineC := keyLine(t, dataA), keyLine(t, dataB), keyLine(t, dataC)
	partner := func(id, name string) *subscribers.Subscriber {
		s := acmeCarWash()
		s.ID, s.Name, s.Email = id, name, []subscribers.Email{{Address: "soc@" + id + ".example"}}
		s.Normalize()
		return s
	}
	var bal kafka.Murmur2Balancer
	onOwnPartition := func(k string) bool {
		return bal.Balance(kafka.Message{Key: []byte(k)}, 0, 1, 2) == bal.Balance(kafka.Message{Key: []byte(subscribers.EndorsementPrefix + k)}, 0, 1, 2)
	}
	require.True(t, onOwnPartition("beta"), "beta's endorsement key falls on beta's partition")
	require.False(t, onOwnPartition("delta"), "delta's endorsement key falls on another partition")

	bA := e.cluster.Open(t, e.cfg.Kafka)
	register(t, bA, acmeCarWash(), partner("beta", "Beta"), partner("delta", "Delta"))
	storeA := app.SubscriberStore{Bus: bA, Audit: app.AuditLog(bA, time.Now), Overlays: readRegistry(t, bA)}
	require.NoError(t, storeA.SetKey(t.Context(), "partner:acme-soc", storeA.Overlays.Record("acme"), addr, "", alice, time.Now()))

	// The first rotation: B first, A second, vouched for with B.
	bBA := openWithKeys(t, e.cfg, keyFile(t, lineB, lineA))
	storeB := app.SubscriberStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	scan, err := storeB.ScanSigners(t.Context())
	require.NoError(t, err)
	first, err := storeB.Resign(t.Context(), "cli:test", scan)
	require.NoError(t, err)
	require.Positive(t, first.Records)
	scan, err = storeB.ScanSigners(t.Context())
	require.NoError(t, err)
	require.Zero(t, scan.Use().Others(), "A may go")
	register(t, bBA, partner("beta", "Beta Ltd"), partner("gamma", "Gamma"))

	// The next rotation: C first, B and A still held; delta renamed
	// under C.
	bCBA := openWithKeys(t, e.cfg, keyFile(t, lineC, lineB, lineA))
	register(t, bCBA, partner("delta", "Delta Ltd"))
	storeC := app.SubscriberStore{Bus: bCBA, Audit: app.AuditLog(bCBA, time.Now)}
	ids := bCBA.Keyring().IDs()
	scan, err = storeC.ScanSigners(t.Context())
	require.NoError(t, err)
	u := scan.Use()
	assert.Equal(t, 2, u.Keys[0].Records, "delta's record and its overlay's tombstone, under C")
	assert.Equal(t, first.Records-2+2+4, u.Keys[1].Records, "under B: what its endorsements keep (but delta's), gamma's record and overlay tombstone, and the endorsements of delta and beta no longer needed")
	assert.Zero(t, u.Keys[2].Records, "under A: nothing, its records are kept by B's endorsements")
	res, err := storeC.Resign(t.Context(), "cli:test", scan)
	require.NoError(t, err)
	assert.Equal(t, app.Resigned{Key: ids[0], Records: first.Records - 2 + 2, Retired: 2}, res,
		"vouched afresh (beta's endorsements replaced); delta's endorsements retired")
	scan, err = storeC.ScanSigners(t.Context())
	require.NoError(t, err)
	assert.Equal(t, app.KeyUse{Keys: []app.KeyCount{{ID: ids[0], Records: res.Records + 2}, {ID: ids[1]}, {ID: ids[2]}}}, scan.Use(), "A and B may go")
	// A partner registered afterwards on beta's partition: what resign
	// wrote there is no longer the active segment, which compaction
	// leaves alone.
	require.Equal(t, 2, bal.Balance(kafka.Message{Key: []byte("iota")}, 0, 1, 2), "iota lies on beta's partition")
	register(t, bCBA, partner("iota", "Iota"))
	var endorsements []string
	require.NoError(t, bCBA.ReadAll(t.Context(), bus.TopicSubscribers, func(m kafka.Message) error {
		if k := string(m.Key); strings.HasPrefix(k, subscribers.EndorsementPrefix) {
			assert.Equal(t, bal.Balance(kafka.Message{Key: []byte(strings.TrimPrefix(k, subscribers.EndorsementPrefix))}, 0, 1, 2), m.Partition,
				"%s lies on its record's partition", k)
			endorsements = append(endorsements, k)
		}
		return nil
	}))
	assert.Contains(t, endorsements, subscribers.EndorsementPrefix+"gamma")

	// A and B removed, the topic compacted: a new process holds every
	// partner, and reading them logs no warning.
	e.cluster.Kfake().Compact()
	onlyC := keyFile(t, lineC)
	bC := openWithKeys(t, e.cfg, onlyC)
	var logs logtest.Buffer
	reg, err := app.LoadRegistry(t.Context(), bC, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	assert.NotContains(t, logs.String(), "level=WARN")
	for id, name := range map[string]string{"acme": "Acme Car Wash", "beta": "Beta Ltd", "gamma": "Gamma", "delta": "Delta Ltd", "iota": "Iota"} {
		if assert.NotNil(t, reg.Get(id), "%s is gone once A and B are removed", id) {
			assert.Equal(t, name, reg.Get(id).Name)
		}
	}
	if acme := reg.Get("acme"); assert.NotNil(t, acme) {
		assert.Equal(t, alice, acme.Email[0].PGPKey, "the partner's own key")
	}

	// And an alert reaches every partner.
	e.cfg.Publishing.KeyFile = onlyC
	e.cfg.Release.SecondAnalyst = nil
	e.start(t, app.RoleFanout, app.RoleDeliver)
	publish(t, bC, carWashAlert("a-after-next-rotation"))
	require.Eventually(t, func() bool { return e.sink.Count() >= 5 }, 60*time.Second, 50*time.Millisecond, "the alert:\n%s", e.logs)
	var to []string
	for _, m := range e.sink.Messages() {
		to = append(to, m.To...)
	}
	assert.ElementsMatch(t, []string{addr, "soc@beta.example", "soc@gamma.example", "soc@delta.example", "soc@iota.example"}, to)
	assert.Empty(t, skippedSubscribers(e.logs.String()), "the vouched records are no records skipped")
}

// TestAnEndorsementFollowedUnderItsKeyKeepsNothing: acme's record, signed
// with A, is vouched for with B; then another record lands under the
// endorsement's key after it (here a tombstone, as another run retiring a
// stale endorsement writes; a record of another client does the same).
// Compaction removes the endorsement, so the check must count acme's
// record under A again (it said A may go, and removing A then lost acme),
// and a run vouches for it afresh, after that record: A removed, the topic
// compacted, acme stays.
func TestAnEndorsementFollowedUnderItsKeyKeepsNothing(t *testing.T) {
	e, _, bBA, onlyB := rotationEnv(t)
	store := app.SubscriberStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	scan, err := store.ScanSigners(t.Context())
	require.NoError(t, err)
	_, err = store.Resign(t.Context(), "cli:test", scan)
	require.NoError(t, err)
	scan, err = store.ScanSigners(t.Context())
	require.NoError(t, err)
	require.Zero(t, scan.Use().Others(), "A may go")

	var at kafka.Message
	require.NoError(t, bBA.ReadAll(t.Context(), bus.TopicSubscribers, func(m kafka.Message) error {
		if string(m.Key) == subscribers.EndorsementPrefix+"acme" {
			at = m
		}
		return nil
	}))
	require.NotNil(t, at.Value, "acme's endorsement")
	require.NoError(t, bBA.Producer(bus.TopicSubscribers).WriteToPartition(t.Context(), at.Partition, kafka.Message{Key: at.Key}))

	scan, err = store.ScanSigners(t.Context())
	require.NoError(t, err)
	ids := bBA.Keyring().IDs()
	assert.Equal(t, 1, scan.Use().Others(), "acme's record, under A: compaction removes its endorsement")
	// A partner registered on that partition afterwards: the tombstone is
	// no longer the active segment, which compaction leaves alone.
	var bal kafka.Murmur2Balancer
	id := "zeta"
	for i := 0; bal.Balance(kafka.Message{Key: []byte(id)}, 0, 1, 2) != at.Partition; i++ {
		id = fmt.Sprintf("zeta%d", i)
	}
	zeta := acmeCarWash()
	zeta.ID, zeta.Email = id, []subscribers.Email{{Address: "soc@zeta.example"}}
	register(t, bBA, zeta)
	e.cluster.Kfake().Compact()
	require.Nil(t, readRegistry(t, openWithKeys(t, e.cfg, onlyB)).Get("acme"), "acme under B alone, its endorsement compacted away")

	res, err := store.Resign(t.Context(), "cli:test", scan)
	require.NoError(t, err)
	assert.Equal(t, app.Resigned{Key: ids[0], Records: 1}, res)
	scan, err = store.ScanSigners(t.Context())
	require.NoError(t, err)
	assert.Zero(t, scan.Use().Others(), "A may go")
	e.cluster.Kfake().Compact()
	acme := readRegistry(t, openWithKeys(t, e.cfg, onlyB)).Get("acme")
	require.NotNil(t, acme, "acme is gone once A is removed")
	assert.Equal(t, "Acme Car Wash", acme.Name)
}

// TestTwoRunsAtOnceKeepEachOthersEndorsements: acme, registered under A,
// is vouched for with B, then renamed under B. At the next rotation (C
// first) one run reads the topic (acme's endorsement, naming a record no
// longer in force, is stale); a process still signing with B renames acme
// again; a second run then vouches for that record with C. The first run,
// writing last, finds acme changed and must not retire the endorsement
// key the second run has just written under: its tombstone would remove
// the fresh endorsement at compaction. After both runs the check says
// only C is needed; B and A removed, the topic compacted, acme stays.
func TestTwoRunsAtOnceKeepEachOthersEndorsements(t *testing.T) {
	e := newServeEnv(t, nil)
	dataA, err := os.ReadFile(e.cfg.Publishing.KeyFile)
	require.NoError(t, err)
	dataB, err := busauth.Generate()
	require.NoError(t, err)
	dataC, err := busauth.Generate()
	require.NoError(t, err)
	lineA, lineB, lineC := keyLine(t, dataA), keyLine(t, dataB), keyLine(t, dataC)
	named := func(name string) *subscribers.Subscriber {
		s := acmeCarWash()
		s.Name = name
		return s
	}
	register(t, e.cluster.Open(t, e.cfg.Kafka), acmeCarWash())
	bBA := openWithKeys(t, e.cfg, keyFile(t, lineB, lineA))
	storeB := app.SubscriberStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	scan, err := storeB.ScanSigners(t.Context())
	require.NoError(t, err)
	_, err = storeB.Resign(t.Context(), "cli:test", scan)
	require.NoError(t, err)
	register(t, bBA, named("Acme Ltd"))

	bCBA := openWithKeys(t, e.cfg, keyFile(t, lineC, lineB, lineA))
	storeC := app.SubscriberStore{Bus: bCBA, Audit: app.AuditLog(bCBA, time.Now)}
	slow, err := storeC.ScanSigners(t.Context())
	require.NoError(t, err)
	register(t, bBA, named("Acme Group"))
	fast, err := storeC.ScanSigners(t.Context())
	require.NoError(t, err)
	_, err = storeC.Resign(t.Context(), "cli:fast", fast)
	require.NoError(t, err)
	res, err := storeC.Resign(t.Context(), "cli:slow", slow)
	require.NoError(t, err)
	assert.Equal(t, 2, res.Changed, "acme's record and its overlay's tombstone, written again after the slow run's read")
	scan, err = storeC.ScanSigners(t.Context())
	require.NoError(t, err)
	assert.Zero(t, scan.Use().Others(), "B and A may go: the fast run's endorsement of acme stands")

	// B and A removed, the topic compacted (a record after the runs'
	// writes on every partition: compaction leaves the active segment
	// alone): acme stays, as renamed last.
	for p := range 3 {
		require.NoError(t, bCBA.Producer(bus.TopicSubscribers).WriteToPartition(t.Context(), p, kafka.Message{Key: []byte(subscribers.EndorsementPrefix + "nobody")}))
	}
	e.cluster.Kfake().Compact()
	acme := readRegistry(t, openWithKeys(t, e.cfg, keyFile(t, lineC))).Get("acme")
	require.NotNil(t, acme, "acme is gone once B and A are removed")
	assert.Equal(t, "Acme Group", acme.Name)
}
