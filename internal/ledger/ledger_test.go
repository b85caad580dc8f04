package ledger_test

import (
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/stretchr/testify/require"
)

func TestFoldingReceipts(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	l := ledger.New()
	dec := func(sub, target, decision, mode, rule string) delivery.Receipt {
		return delivery.Receipt{Kind: delivery.KindDecision, AlertID: "a1", Subscriber: sub, Target: target,
			Decision: decision, Mode: mode, Rule: rule, At: at}
	}
	out := func(sub, target, state string, attempt int, err string) delivery.Receipt {
		return delivery.Receipt{Kind: delivery.KindOutcome, AlertID: "a1", Subscriber: sub, Target: target,
			State: state, Attempt: attempt, Error: err, At: at}
	}
	for _, r := range []delivery.Receipt{
		{Kind: delivery.KindAlert, AlertID: "a1", TLP: "AMBER", Marking: "OFFICIAL", Type: "alert", IssuedBy: "api:alice", At: at},
		dec("bank", "fc@bank.example", delivery.Deliver, delivery.ModeEncrypted, "email.encrypted"),
		dec("bank", "https://h.example/", delivery.Deliver, delivery.ModeSigned, "webhook.signed"),
		dec("hotel", "sec@hotel.example", delivery.Notice, delivery.ModeKeyNotice, "email.no-usable-key"),
		dec("farm", "f@farm.example", delivery.Withhold, "", "clearance.tlp"),
		out("bank", "fc@bank.example", delivery.StateRetrying, 1, "smtp 451"),
		out("bank", "fc@bank.example", delivery.StateDelivered, 2, ""),
		// A duplicate attempt that failed after the success does not undo it.
		out("bank", "fc@bank.example", delivery.StateRetrying, 3, "connection reset"),
		out("bank", "https://h.example/", delivery.StateDead, 1, "http 400"),
	} {
		l.Add(r)
	}
	a := l.Alert("a1")
	require.NotNil(t, a)
	require.Equal(t, "AMBER", string(a.TLP))
	require.Equal(t, "api:alice", a.IssuedBy)
	require.False(t, a.FannedOut.IsZero())

	byKey := map[string]ledger.Entry{}
	for _, e := range a.Entries() {
		byKey[e.Subscriber+" "+e.Target] = e
	}
	require.Equal(t, delivery.StateDelivered, byKey["bank fc@bank.example"].State)
	require.Equal(t, 3, byKey["bank fc@bank.example"].Attempts)
	require.Equal(t, delivery.StateDead, byKey["bank https://h.example/"].State)
	require.Equal(t, "http 400", byKey["bank https://h.example/"].LastError)
	require.Equal(t, delivery.StatePending, byKey["hotel sec@hotel.example"].State)
	require.Equal(t, delivery.StateWithheld, byKey["farm f@farm.example"].State)

	require.True(t, a.Received("bank", "", "fc@bank.example"))
	require.True(t, a.Received("bank", "", "https://h.example/"), "decided to deliver: an update must follow it")
	require.False(t, a.Received("hotel", "", "sec@hotel.example"), "a key notice carried no content")
	require.False(t, a.Received("farm", "", "f@farm.example"))
	require.False(t, a.Done(), "the hotel's notice is still pending")
	require.Equal(t, map[string]int{"delivered": 1, "dead": 1, "pending": 1, "withheld": 1}, a.Counts())

	l.Add(out("hotel", "sec@hotel.example", delivery.StateDelivered, 1, ""))
	require.True(t, a.Done())
	require.Nil(t, l.Alert("unknown"))
}

func TestRestoreGivesTheAlertTheFoldBuilt(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	l := ledger.New()
	for _, r := range []delivery.Receipt{
		{Kind: delivery.KindAlert, AlertID: "a1", TLP: "GREEN", Marking: "OFFICIAL", Title: "t", At: at},
		{Kind: delivery.KindDecision, AlertID: "a1", Subscriber: "bank", Target: "x@bank.example", Decision: delivery.Deliver, At: at},
		{Kind: delivery.KindDecision, AlertID: "a1", Subscriber: "farm", Target: "f@farm.example", Decision: delivery.Withhold, At: at},
		{Kind: delivery.KindOutcome, AlertID: "a1", Subscriber: "bank", Target: "x@bank.example", State: delivery.StateDelivered, Attempt: 1, At: at},
		{Kind: delivery.KindAck, AlertID: "a1", Subscriber: "bank", By: "soc", At: at},
	} {
		l.Add(r)
	}
	a := l.Alert("a1")
	got := ledger.Restore(a.Meta, a.Acks, a.Entries())
	require.Equal(t, a, got)
	require.True(t, got.Received("bank", "", "x@bank.example"))
	require.Equal(t, a.Counts(), got.Counts())

	none := ledger.New()
	none.Add(delivery.Receipt{Kind: delivery.KindAlert, AlertID: "a2", At: at})
	require.Equal(t, none.Alert("a2"), ledger.Restore(none.Alert("a2").Meta, nil, nil))
}

func TestAcknowledgementsOldestFirst(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	l := ledger.New()
	for _, r := range []delivery.Receipt{
		{Kind: delivery.KindAck, AlertID: "a1", Subscriber: "hotel", By: "hotel-soc", At: at.Add(time.Minute)},
		{Kind: delivery.KindAck, AlertID: "a1", Subscriber: "farm", By: "email link", At: at.Add(time.Minute)},
		{Kind: delivery.KindAck, AlertID: "a1", Subscriber: "bank", By: "soc", Note: "seen", At: at},
		// A partner's second acknowledgement does not count.
		{Kind: delivery.KindAck, AlertID: "a1", Subscriber: "bank", By: "email link", At: at.Add(time.Hour)},
	} {
		l.Add(r)
	}
	require.Equal(t, []ledger.Ack{
		{Subscriber: "bank", By: "soc", Note: "seen", At: at},
		{Subscriber: "farm", By: "email link", At: at.Add(time.Minute)},
		{Subscriber: "hotel", By: "hotel-soc", At: at.Add(time.Minute)},
	}, l.Alert("a1").Acknowledgements())

	none := ledger.New()
	none.Add(delivery.Receipt{Kind: delivery.KindAlert, AlertID: "a2", At: at})
	require.Empty(t, none.Alert("a2").Acknowledgements())
}

// TestAckOfItsIncarnation: a partner's acknowledgement is its record's
// (Alert.Ack): the first of each incarnation counts, a record of another
// incarnation (the id registered again) neither sees its predecessor's nor
// is refused its own, and one recorded before acknowledgements named the
// incarnation belongs to every record of the id, as before.
func TestAckOfItsIncarnation(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	ack := func(inc, by string, d time.Duration) delivery.Receipt {
		return delivery.Receipt{Kind: delivery.KindAck, AlertID: "a1", Subscriber: "bank", Incarnation: inc, By: by, At: at.Add(d)}
	}
	decided := func(inc string) delivery.Receipt {
		return delivery.Receipt{Kind: delivery.KindDecision, AlertID: "a1", Subscriber: "bank", Incarnation: inc,
			Target: "soc@bank.example", Channel: delivery.ChannelEmail, Decision: delivery.Deliver, At: at}
	}
	for _, tc := range []struct {
		name     string
		receipts []delivery.Receipt
		asker    string
		by       string // "" for none
	}{
		{"own", []delivery.Receipt{ack("inc-1", "old", 0)}, "inc-1", "old"},
		{"predecessor's", []delivery.Receipt{ack("inc-1", "old", 0)}, "inc-2", ""},
		{"own after the predecessor's", []delivery.Receipt{ack("inc-1", "old", 0), ack("inc-2", "new", time.Minute)}, "inc-2", "new"},
		{"own after the predecessor's, decided for it", []delivery.Receipt{decided("inc-2"), ack("inc-1", "old", 0), ack("inc-2", "new", time.Minute)}, "inc-2", "new"},
		{"the decided record's stays", []delivery.Receipt{decided("inc-1"), ack("inc-1", "old", 0), ack("inc-2", "new", time.Minute)}, "inc-1", "old"},
		// A process still holding the partner's old record acknowledges
		// late: the acknowledgement of the record the alert was decided
		// for stays, read in either order.
		{"a late ack of the old record", []delivery.Receipt{decided("inc-2"), ack("inc-2", "new", 0), ack("inc-1", "old", time.Minute)}, "inc-2", "new"},
		{"a late ack of the old record, read first", []delivery.Receipt{decided("inc-2"), ack("inc-1", "old", time.Minute), ack("inc-2", "new", 0)}, "inc-2", "new"},
		{"the old record's own, not replaced back", []delivery.Receipt{decided("inc-2"), ack("inc-2", "new", 0), ack("inc-1", "old", time.Minute)}, "inc-1", ""},
		{"first of its own counts", []delivery.Receipt{ack("inc-2", "new", 0), ack("inc-2", "again", time.Minute)}, "inc-2", "new"},
		{"before incarnations", []delivery.Receipt{ack("", "old", 0), ack("inc-2", "new", time.Minute)}, "inc-2", "old"},
		{"a record without one", []delivery.Receipt{ack("inc-1", "old", 0)}, "", "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := ledger.New()
			for _, r := range tc.receipts {
				l.Add(r)
			}
			a := l.Alert("a1")
			k, ok := a.Ack("bank", tc.asker)
			require.Equal(t, tc.by != "", ok)
			require.Equal(t, tc.by, k.By)
			require.Equal(t, a, ledger.Restore(a.Meta, a.Acks, a.Entries()))
		})
	}
}
