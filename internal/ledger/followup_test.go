package ledger_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/stretchr/testify/require"
)

// history is the alerts topic and the ledger of a test: published
// answers from the alerts it holds, known from their alert receipts.
type history struct {
	held  map[string]*alerts.Alert
	known map[string]*ledger.Alert
}

func newHistory() *history {
	return &history{held: map[string]*alerts.Alert{}, known: map[string]*ledger.Alert{}}
}

// publish adds an alert fanned out under its own digest.
func (h *history) publish(a *alerts.Alert) {
	h.held[a.ID] = a
	h.known[a.ID] = ledger.Restore(ledger.Meta{ID: a.ID, Type: a.Type, TLP: a.TLP, Marking: a.Marking,
		Digest: a.Digest(), FannedOut: *a.IssuedAt}, nil, nil)
}

func (h *history) published(id string) (*alerts.Alert, error) {
	if a, ok := h.held[id]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("alert %s: %w", id, ledger.ErrGone)
}

func followUp(id string, typ alerts.Type, at time.Time, refs ...string) *alerts.Alert {
	return &alerts.Alert{ID: id, Type: typ, References: refs, IssuedAt: &at, Title: "T " + id,
		TLP: alerts.TLPGreen, Marking: alerts.MarkingOfficial}
}

// TestUntraceableChainIsAFieldError: a chain that cannot be traced (more
// than a thousand alerts, an alert without issued_at, references in a
// circle) is a fact about the history, which asking again does not
// change: CheckReferences names the reference, where it used to return
// the error as a failure to find out (the publisher answered "Kafka
// unavailable", the fan-out retried its batch for ever). A failure of
// published stays an error.
func TestUntraceableChainIsAFieldError(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

	long := newHistory() // u0 updates u1 … u1000 updates root: 1002 alerts
	long.publish(followUp("root", alerts.TypeAlert, t0))
	prev := "root"
	for i := 1000; i >= 0; i-- {
		id := fmt.Sprintf("u%d", i)
		long.publish(followUp(id, alerts.TypeUpdate, t0, prev))
		prev = id
	}

	unissued := newHistory()
	unissued.publish(followUp("root", alerts.TypeAlert, t0))
	unissued.publish(followUp("u0", alerts.TypeUpdate, t0, "root"))
	unissued.held["root"] = &alerts.Alert{ID: "root", Type: alerts.TypeAlert}
	delete(unissued.known, "root") // the ledger is asked of direct references only

	circle := newHistory()
	circle.publish(followUp("u0", alerts.TypeUpdate, t0, "u1"))
	circle.publish(followUp("u1", alerts.TypeUpdate, t0, "u0"))

	for _, tc := range []struct {
		name string
		h    *history
		want string
	}{
		{"more than a thousand alerts", long, "more than 1000 alerts"},
		{"an alert without issued_at", unissued, "alert root has no issued_at"},
		{"references in a circle", circle, "circle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := followUp("new", alerts.TypeUpdate, t0.Add(time.Hour), "u0")
			errs, err := ledger.CheckReferences(up, tc.h.known, ledger.Remembered(tc.h.published))
			require.NoError(t, err, "an untraceable chain is no failure to find out")
			require.Len(t, errs, 1)
			require.Equal(t, "references[0]", errs[0].Field)
			require.Contains(t, errs[0].Message, "cannot be traced")
			require.Contains(t, errs[0].Message, tc.want)
		})
	}

	t.Run("a failure to find out", func(t *testing.T) {
		up := followUp("new", alerts.TypeUpdate, t0.Add(time.Hour), "u0")
		unavailable := errors.New("kafka unavailable")
		_, err := ledger.CheckReferences(up, long.known, func(string) (*alerts.Alert, error) { return nil, unavailable })
		require.ErrorIs(t, err, unavailable)
	})

	t.Run("chains too long together", func(t *testing.T) {
		h := newHistory() // a0 … a599 and b0 … b599: 600 alerts each
		for _, c := range []string{"a", "b"} {
			h.publish(followUp(c+"-root", alerts.TypeAlert, t0))
			prev := c + "-root"
			for i := 598; i >= 0; i-- {
				id := fmt.Sprintf("%s%d", c, i)
				h.publish(followUp(id, alerts.TypeUpdate, t0, prev))
				prev = id
			}
		}
		up := followUp("new", alerts.TypeUpdate, t0.Add(time.Hour), "a0", "b0")
		errs, err := ledger.CheckReferences(up, h.known, ledger.Remembered(h.published))
		require.NoError(t, err)
		require.Len(t, errs, 1)
		require.Equal(t, "references", errs[0].Field)
		require.Contains(t, errs[0].Message, "more than 1000 alerts")
	})
}

// TestSurvivorUnderAReferencedIDIsNotTheAlert: when retention deleted a
// referenced alert's record and a later record under its id with other
// content survived (quarantined duplicate-id), published answers the
// survivor; CheckReferences judges the reference against the alert that
// was fanned out (its receipt's digest), and finds its record gone.
func TestSurvivorUnderAReferencedIDIsNotTheAlert(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	h := newHistory()
	h.publish(followUp("orig", alerts.TypeAlert, t0))
	survivor := followUp("orig", alerts.TypeAlert, t0.Add(time.Minute))
	survivor.Title = "Another alert under its id"
	h.held["orig"] = survivor

	up := followUp("new", alerts.TypeUpdate, t0.Add(time.Hour), "orig")
	errs, err := ledger.CheckReferences(up, h.known, h.published)
	require.NoError(t, err)
	require.Len(t, errs, 1)
	require.Equal(t, "references[0]", errs[0].Field)
	require.Contains(t, errs[0].Message, `alert "orig"'s record has left the alerts topic`)
}
