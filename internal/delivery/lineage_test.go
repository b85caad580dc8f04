package delivery_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/stretchr/testify/require"
)

// chainOf returns a lookup over the given alerts.
func chainOf(as ...*alerts.Alert) func(string) (*alerts.Alert, error) {
	m := map[string]*alerts.Alert{}
	for _, a := range as {
		m[a.ID] = a
	}
	return func(id string) (*alerts.Alert, error) {
		if a, ok := m[id]; ok {
			return a, nil
		}
		return nil, fmt.Errorf("alert %s is not published", id)
	}
}

func issued(id string, typ alerts.Type, at time.Time, refs []string, inds ...alerts.Indicator) *alerts.Alert {
	return &alerts.Alert{ID: id, Type: typ, References: refs, IssuedAt: &at, Indicators: inds}
}

// TestTraceLineage follows an update of an update back to its root,
// gathers the referenced alerts' issue times, gives each recipient only
// the earlier indicators of the alerts it received, and gives the
// renderers' context.
func TestTraceLineage(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	phone := alerts.Indicator{Type: "phone", Value: "+44 7700 900123"}
	url := alerts.Indicator{Type: "url", Value: "https://jobs.example/"}
	iban := alerts.Indicator{Type: "iban", Value: "GB33BUKB20201555555555"}
	root := issued("root", alerts.TypeAlert, t0, nil, phone, url)
	up1 := issued("up1", alerts.TypeUpdate, t0.Add(time.Hour), []string{"root"}, phone, iban)
	other := issued("other", alerts.TypeAlert, t0.Add(30*time.Minute), nil, url)
	up2 := issued("up2", alerts.TypeUpdate, t0.Add(2*time.Hour), []string{"up1", "other"})
	lookup := chainOf(root, up1, other, up2)

	traced, err := delivery.TraceLineage(up2, lookup)
	require.NoError(t, err)
	require.Equal(t, "root", traced.Root)
	require.Equal(t, t0, traced.RootIssuedAt)
	require.Equal(t, []delivery.Ref{{ID: "up1", IssuedAt: t0.Add(time.Hour)}, {ID: "other", IssuedAt: t0.Add(30 * time.Minute)}}, traced.References)
	require.Equal(t, []string{"up1", "other", "root"}, traced.Chain(), "breadth first from the references")
	require.Empty(t, traced.Earlier, "nothing is withdrawn until a recipient is named")

	l := traced.For(func(string) bool { return true })
	require.Equal(t, []alerts.Indicator{phone, iban, url, phone, url}, l.Earlier, "a recipient of every earlier alert")
	onlyOther := traced.For(func(id string) bool { return id == "other" })
	require.Equal(t, []alerts.Indicator{url}, onlyOther.Earlier,
		"a partner that never received root or up1 is not shown their phone or IBAN")
	require.Empty(t, traced.For(func(string) bool { return false }).Earlier, "a partner new to the chain sees nothing withdrawn")
	require.NotEqual(t, l.Digest(), onlyOther.Digest(), "renderings for different histories are keyed apart")
	require.Equal(t, l.Digest(), traced.For(func(string) bool { return true }).Digest(), "the same history, the same key")
	require.Nil(t, (*delivery.Lineage)(nil).For(func(string) bool { return true }))

	ctx := l.Context("National Crime Agency", "alerts@nca.example")
	require.Equal(t, "National Crime Agency", ctx.Agency)
	require.Equal(t, "alerts@nca.example", ctx.Sender)
	require.Equal(t, "root", ctx.Root)
	require.Equal(t, t0, ctx.RootIssuedAt)
	require.Len(t, ctx.References, 2)
	require.Equal(t, l.Earlier, ctx.Earlier)

	again, err := delivery.TraceLineage(up2, lookup)
	require.NoError(t, err)
	require.Equal(t, traced.Digest(), again.Digest(), "deterministic")
	require.NotEqual(t, l.Digest(), (*delivery.Lineage)(nil).Digest())

	none, err := delivery.TraceLineage(root, lookup)
	require.NoError(t, err)
	require.Nil(t, none, "an alert that references nothing is its own root")
	require.Equal(t, "", none.Context("A", "s").Root)
	require.Zero(t, none.Digest())
}

func TestTraceLineageFails(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	up := issued("up", alerts.TypeUpdate, t0, []string{"gone"})
	_, err := delivery.TraceLineage(up, chainOf(up))
	require.ErrorContains(t, err, "gone")
	var untraceable *delivery.UntraceableError
	require.False(t, errors.As(err, &untraceable), "a failed lookup is lookup's error, not a fact about the chain: %v", err)

	unissued := &alerts.Alert{ID: "x", Type: alerts.TypeAlert}
	_, err = delivery.TraceLineage(issued("u", alerts.TypeUpdate, t0, []string{"x"}), chainOf(unissued))
	require.ErrorContains(t, err, "issued_at")
	require.ErrorAs(t, err, &untraceable)

	a := issued("a", alerts.TypeUpdate, t0, []string{"b"})
	b := issued("b", alerts.TypeUpdate, t0, []string{"a"})
	_, err = delivery.TraceLineage(issued("c", alerts.TypeCancel, t0, []string{"a"}), chainOf(a, b))
	require.ErrorContains(t, err, "circle")
	require.ErrorAs(t, err, &untraceable)

	long := make([]*alerts.Alert, 1002) // long[i] updates long[i+1]; the last is the root
	for i := range long {
		var refs []string
		if i < len(long)-1 {
			refs = []string{fmt.Sprintf("l%d", i+1)}
		}
		long[i] = issued(fmt.Sprintf("l%d", i), alerts.TypeUpdate, t0, refs)
	}
	_, err = delivery.TraceLineage(long[0], chainOf(long...))
	require.ErrorContains(t, err, "more than 1000 alerts")
	require.ErrorAs(t, err, &untraceable)

	_, err = delivery.TraceLineage(up, func(string) (*alerts.Alert, error) { return nil, errors.New("view closed") })
	require.ErrorContains(t, err, "view closed")
	require.False(t, errors.As(err, &untraceable))
}

// TestJobCarriesLineage: the lineage survives the job's encoding.
func TestJobCarriesLineage(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	raw := []byte(`{"id":"up","type":"update","references":["root"],"title":"T","severity":"minor","tlp":"GREEN","marking":"OFFICIAL","handling":{"code":"P"},"audience":{"sectors":["care"]}}`)
	l := &delivery.Lineage{Root: "root", RootIssuedAt: t0, References: []delivery.Ref{{ID: "root", IssuedAt: t0}},
		Earlier: []alerts.Indicator{{Type: "email", Value: "x@y.example"}}}
	j := delivery.Job{ID: delivery.ID("up", "acme", "https://h.example/"), AlertJSON: raw, Subscriber: "acme",
		Channel: delivery.ChannelWebhook, Target: "https://h.example/", Mode: delivery.ModeSigned, Lineage: l}
	v, err := j.Encode()
	require.NoError(t, err)
	got, err := delivery.DecodeJob(v, nil)
	require.NoError(t, err)
	require.Equal(t, l, got.Lineage)
	require.Equal(t, l.Digest(), got.Lineage.Digest())
}
