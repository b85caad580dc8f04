package fanout

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
)

// The fan-out's encoders know these fields; a field added to delivery.Job
// or delivery.Receipt must be taught to them (or to plainReceipt and
// encodeJob's fallback) before this test passes again.
func TestEncodersKnowEveryField(t *testing.T) {
	fields := func(v any) []string {
		var out []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			out = append(out, rt.Field(i).Name+" "+string(rt.Field(i).Tag))
		}
		return out
	}
	require.Equal(t, []string{
		`ID json:"id"`, `Alert json:"-"`, `AlertJSON json:"alert"`, `AlertDigest json:"-"`,
		`Subscriber json:"subscriber"`, `Channel json:"channel"`, `Target json:"target"`, `Mode json:"mode"`,
		`Attempt json:"attempt"`, `NotBefore json:"not_before,omitzero"`, `History json:"history,omitempty"`,
		`Held json:"held,omitempty"`, `Lineage json:"lineage,omitempty"`,
	}, fields(delivery.Job{}))
	require.Equal(t, []string{
		`Kind json:"kind"`, `AlertID json:"alert"`, `DeliveryID json:"delivery,omitempty"`,
		`Subscriber json:"subscriber"`, `Channel json:"channel,omitempty"`, `Target json:"target,omitempty"`,
		`Decision json:"decision,omitempty"`, `Mode json:"mode,omitempty"`, `Rule json:"rule,omitempty"`,
		`Reason json:"reason,omitempty"`, `State json:"state,omitempty"`, `Attempt json:"attempt,omitempty"`,
		`Error json:"error,omitempty"`, `RetryAt json:"retry_at,omitzero"`, `At json:"at"`,
		`Type json:"type,omitempty"`, `TLP json:"tlp,omitempty"`, `Marking json:"marking,omitempty"`,
		`References json:"references,omitempty"`, `IssuedBy json:"issued_by,omitempty"`,
		`ApprovedBy json:"approved_by,omitempty"`, `Title json:"title,omitempty"`, `Digest json:"digest,omitempty"`,
		`By json:"by,omitempty"`, `Note json:"note,omitempty"`,
	}, fields(delivery.Receipt{}))
}

// checkEncoders requires the fan-out's encoders to write exactly the
// bytes of the delivery package's (Job.Encode, json.Marshal).
func checkEncoders(t *testing.T, s string, at time.Time) {
	t.Helper()
	alert := []byte(`{"id":"a-1", "title" : "spaces kept as published"}`)
	jobs := []delivery.Job{
		{ID: "msg_" + s, AlertJSON: alert, Subscriber: s, Channel: delivery.ChannelEmail, Target: s, Mode: delivery.ModeSigned},
		{ID: s, AlertJSON: alert, Subscriber: "p", Channel: s, Target: "https://h.example/" + s, Mode: s},
		{ID: "x", AlertJSON: alert, Subscriber: "p", Channel: "webhook", Target: "t", Mode: "signed", NotBefore: at},
		{ID: "x", AlertJSON: alert, Subscriber: "p", Channel: "email", Target: "t", Mode: delivery.ModeCancelNotice,
			Held: []delivery.Held{{ID: s, Title: s}}},
		{ID: "x", AlertJSON: alert, Subscriber: "p", Channel: "webhook", Target: "t", Mode: "signed",
			Lineage: &delivery.Lineage{Root: s}},
		{ID: "x", Alert: &alerts.Alert{ID: "a-2", Title: s}, Subscriber: "p", Channel: "email", Target: "t", Mode: "signed"},
	}
	for _, j := range jobs {
		want, err := j.Encode()
		require.NoError(t, err)
		got, err := encodeJob(&j)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "job %+v", j)
	}
	receipts := []delivery.Receipt{
		{Kind: delivery.KindDecision, AlertID: s, Subscriber: s, Channel: s, Target: s, Decision: s, Mode: s,
			Rule: s, Reason: s, DeliveryID: s, At: at},
		{Kind: delivery.KindDecision, AlertID: "a", Subscriber: "p", Decision: delivery.Withhold, Rule: "r", Reason: s, At: at},
		{Kind: delivery.KindOutcome, AlertID: "a", DeliveryID: "d", Subscriber: "p", Channel: "pull", Target: s,
			Mode: "pull", State: delivery.StateAvailable, At: at},
		{Kind: s, AlertID: "a", Subscriber: "p", At: at},
		{Kind: delivery.KindAlert, AlertID: "a", At: at, Type: alerts.TypeUpdate, TLP: alerts.TLPAmber, Marking: alerts.MarkingOfficial,
			References: []string{s}, IssuedBy: s, ApprovedBy: s, Title: s, Digest: s},
		{Kind: delivery.KindOutcome, AlertID: "a", Subscriber: "p", Attempt: 2, Error: s, RetryAt: at, State: "retrying", At: at},
		{Kind: delivery.KindAck, AlertID: "a", Subscriber: "p", By: s, Note: s, At: at},
	}
	for _, r := range receipts {
		want, err := json.Marshal(r)
		require.NoError(t, err)
		require.Equal(t, string(want), string(ReceiptMessage(r).Value), "receipt %+v", r)
	}
}

func TestEncodersWriteWhatTheDeliveryPackageWrites(t *testing.T) {
	at := time.Date(2026, 11, 30, 7, 1, 2, 345_678_900, time.UTC)
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\there\nnewline\x00nul\x7f",
		"naïve café ☕", "line\u2028separator\u2029", "bad utf-8 \xff\xfe", "https://user:pw@hooks.example/x?q=1#f"} {
		checkEncoders(t, s, at)
	}
	for _, at := range []time.Time{{}, at.In(time.FixedZone("x", 5*3600+30*60)), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} {
		checkEncoders(t, "p", at)
	}
}

func FuzzEncoders(f *testing.F) {
	f.Add("plain", int64(0))
	f.Add("\u2028<&>\"\\\x01é\xff", int64(1_790_000_000_123_456_789))
	f.Fuzz(func(t *testing.T, s string, ns int64) {
		checkEncoders(t, s, time.Unix(0, ns).UTC())
	})
}
