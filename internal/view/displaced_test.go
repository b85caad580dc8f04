package view_test

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// TestDisplacedBindings: a record of alert-ids under a bound id that the
// view does not accept (signed with another keyring, written with no
// herald-auth at all, an authentic tombstone, an authentic binding to
// another digest) displaces the binding: compaction would keep it instead.
// The view names each such id with the binding in force (Displaced) and
// wakes its reader (Displacements), until a copy of the binding follows;
// it stays bound to its first binding throughout. A record before the
// binding, or under an unbound id, displaces nothing. A view rebuilt from
// the topic finds the same.
func TestDisplacedBindings(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	v := run(t, t.TempDir(), b)
	ctx := t.Context()
	raw := &kafka.Writer{Addr: kafka.TCP(b.Brokers()...), Topic: b.Topic(bus.TopicAlertIDs), Balancer: &kafka.Murmur2Balancer{},
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	t.Cleanup(func() { _ = raw.Close() })

	binding := func(id string) record.Binding {
		return record.Binding{ID: id, Digest: "sha256:" + id, FannedOut: at(time.Minute), Offset: -1}
	}
	w.bind(true, binding("u1")) // before u1's binding: displaces nothing
	for _, id := range []string{"d1", "d2", "d3", "d4", "u1"} {
		w.bind(false, binding(id))
	}
	require.NoError(t, v.Sync(ctx))
	select {
	case <-v.Displacements():
		t.Fatal("nothing is displaced yet")
	default:
	}

	forged := binding("d1")
	forged.Digest = "sha256:forged"
	w.bind(true, forged)
	d2, copied := w.place(bus.TopicAlertIDs, "d2"), binding("d2")
	require.NoError(t, raw.WriteMessages(ctx, kafka.Message{Key: []byte("d2"), Value: copied.Encode()}))
	require.NoError(t, b.Producer(bus.TopicAlertIDs).Write(ctx, kafka.Message{Key: []byte("d3")}))
	other := binding("d4")
	other.Digest = "sha256:other"
	w.bind(false, other)
	w.bind(true, binding("u2")) // no binding of u2 to displace
	require.NoError(t, v.Sync(ctx))
	select {
	case <-v.Displacements():
	default:
		t.Fatal("the reader was not woken")
	}

	why := func(v *running) map[string]string {
		t.Helper()
		ds, err := v.Displaced(ctx)
		require.NoError(t, err)
		out := map[string]string{}
		for _, d := range ds {
			assert.Equal(t, binding(d.Binding.ID).Digest, d.Binding.Digest, "the binding in force, never the intruder's")
			out[d.Binding.ID] = d.Why
		}
		return out
	}
	assert.Equal(t, map[string]string{"d1": record.DisplacedUnauthentic, "d2": record.DisplacedUnauthentic,
		"d3": record.DisplacedUnreadable, "d4": record.DisplacedOtherDigest}, why(v))
	ds, err := v.Displaced(ctx)
	require.NoError(t, err)
	for _, d := range ds {
		if d.Binding.ID == "d2" {
			assert.Equal(t, d2.Partition, d.Partition)
			assert.Equal(t, d2.Offset, d.Offset, "the place of the record that displaced it")
			assert.Equal(t, binding("d2"), d.Binding)
		}
	}
	for _, id := range []string{"d1", "d2", "d3", "d4"} {
		held, ok := v.Binding(id)
		require.True(t, ok, id)
		assert.Equal(t, binding(id).Digest, held.Digest, id)
	}
	st := v.Stats()
	assert.EqualValues(t, w.authentic[bus.TopicAlertIDs], st.Applied[bus.TopicAlertIDs], "only bindings are applied")
	assert.EqualValues(t, w.forged[bus.TopicAlertIDs]+1, st.Skipped[bus.TopicAlertIDs])
	assert.EqualValues(t, 1, st.Malformed[bus.TopicAlertIDs], "the tombstone")

	// A copy of a binding ends its displacement, and wakes no one.
	w.bind(false, binding("d1"))
	w.bind(false, binding("d3"))
	require.NoError(t, v.Sync(ctx))
	want := map[string]string{"d2": record.DisplacedUnauthentic, "d4": record.DisplacedOtherDigest}
	assert.Equal(t, want, why(v))
	select {
	case <-v.Displacements():
		t.Fatal("a copy displaces nothing")
	default:
	}

	// A view rebuilt from the topic reads the bindings, the records after
	// them and the copies, in order, and finds the same.
	assert.Equal(t, want, why(run(t, t.TempDir(), b)))
}

// TestARotatedBindingCopyDisplacesNothing: a binding signed with publishing
// key A, then its copy (same key and value) signed with B, as `herald keys
// resign --alert-ids` writes after a rotation. A view holding B first and
// A second holds A's binding and takes the copy for no displacement (the
// fan-out would write nothing again); a view rebuilt with B alone (A
// removed) skips A's binding and holds the copy as the binding, displaced
// by nothing.
func TestARotatedBindingCopyDisplacesNothing(t *testing.T) {
	c := kafkatest.Start(t)
	secretA, secretB := bytes.Repeat([]byte{1}, busauth.KeySize), bytes.Repeat([]byte{2}, busauth.KeySize)
	open := func(secrets ...[]byte) *bus.Bus {
		k, err := busauth.New(secrets...)
		require.NoError(t, err)
		return c.OpenWith(t, c.Config(), bus.Options{Keyring: k, Log: kafkatest.Logger(t, slog.LevelError)})
	}
	bA, bBA, bB := open(secretA), open(secretB, secretA), open(secretB)
	ctx := t.Context()
	bd := record.Binding{ID: "r1", Digest: "sha256:r1", FannedOut: at(time.Minute), Offset: -1}
	m := kafka.Message{Key: []byte(bd.ID), Value: bd.Encode()}
	require.NoError(t, bA.Producer(bus.TopicAlertIDs).Write(ctx, m))
	rotating := run(t, t.TempDir(), bBA)
	require.NoError(t, rotating.Sync(ctx))
	require.NoError(t, bBA.Producer(bus.TopicAlertIDs).Write(ctx, m))
	require.NoError(t, rotating.Sync(ctx))
	for name, v := range map[string]*running{"B, A": rotating, "B alone, rebuilt": run(t, t.TempDir(), bB)} {
		held, ok := v.Binding(bd.ID)
		require.True(t, ok, name)
		assert.Equal(t, bd.Digest, held.Digest, name)
		ds, err := v.Displaced(ctx)
		require.NoError(t, err)
		assert.Empty(t, ds, "%s: the copy displaces nothing", name)
		select {
		case <-v.Displacements():
			t.Fatalf("%s: a copy wakes no one", name)
		default:
		}
	}
}
