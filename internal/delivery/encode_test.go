package delivery

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
)

// FuzzReceiptEncode checks Receipt.Encode against json.Marshal, byte for
// byte, over every field, the escapes of strings included.
func FuzzReceiptEncode(f *testing.F) {
	f.Add("outcome", "al-1", "msg_x", "acme", "https://a.example/h?x=<&>", "deli\u2028vered", "err\x00\"\\\n\t\xff", 3, int64(1764500000123456789), int64(0), "r1")
	f.Add("", "", "", "", "", "", "", 0, int64(-62135596800000000), int64(1), "")
	f.Fuzz(func(t *testing.T, kind, alert, delivery, sub, target, state, errText string, attempt int, at, retryAt int64, ref string) {
		r := Receipt{Kind: kind, AlertID: alert, DeliveryID: delivery, Subscriber: sub, Incarnation: ref, Channel: state, Target: target,
			Decision: errText, Mode: ref, Rule: target, Reason: kind, State: state, Attempt: attempt, Error: errText,
			At: time.Unix(0, at).In(time.FixedZone("z", int(attempt%50000))), Type: alerts.Type(ref), TLP: alerts.TLP(state),
			Marking: alerts.Marking(kind), IssuedBy: sub, ApprovedBy: delivery, Title: errText, Digest: alert, By: target, Note: errText}
		if retryAt != 0 {
			r.RetryAt = time.Unix(0, retryAt).UTC()
		}
		if ref != "" {
			r.References = []string{ref, errText}
		}
		want, err := json.Marshal(r)
		got := r.Encode()
		if err != nil {
			if got != nil {
				t.Fatalf("json.Marshal fails (%v), Encode gave %s", err, got)
			}
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Encode\n%s\njson.Marshal\n%s", got, want)
		}
	})
}

// The direct encoders know these fields; a field added to Job or Receipt
// must be taught to them (or to Job.plain's fallback) before this test
// passes again.
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
		`Subscriber json:"subscriber"`, `Incarnation json:"incarnation,omitempty"`,
		`Channel json:"channel"`, `Target json:"target"`, `Mode json:"mode"`,
		`Attempt json:"attempt"`, `NotBefore json:"not_before,omitzero"`, `History json:"history,omitempty"`,
		`Held json:"held,omitempty"`, `Lineage json:"lineage,omitempty"`,
	}, fields(Job{}))
	require.Equal(t, []string{
		`Kind json:"kind"`, `AlertID json:"alert"`, `DeliveryID json:"delivery,omitempty"`,
		`Subscriber json:"subscriber"`, `Incarnation json:"incarnation,omitempty"`,
		`Channel json:"channel,omitempty"`, `Target json:"target,omitempty"`,
		`Decision json:"decision,omitempty"`, `Mode json:"mode,omitempty"`, `Rule json:"rule,omitempty"`,
		`Reason json:"reason,omitempty"`, `State json:"state,omitempty"`, `Attempt json:"attempt,omitempty"`,
		`Error json:"error,omitempty"`, `RetryAt json:"retry_at,omitzero"`, `At json:"at"`,
		`Type json:"type,omitempty"`, `TLP json:"tlp,omitempty"`, `Marking json:"marking,omitempty"`,
		`References json:"references,omitempty"`, `IssuedBy json:"issued_by,omitempty"`,
		`ApprovedBy json:"approved_by,omitempty"`, `Title json:"title,omitempty"`, `Digest json:"digest,omitempty"`,
		`By json:"by,omitempty"`, `Note json:"note,omitempty"`,
	}, fields(Receipt{}))
}

// checkJobEncode requires Encode to write exactly encodeReflect's bytes,
// for plain jobs (written directly) and the others.
func checkJobEncode(t *testing.T, s string, at time.Time) {
	t.Helper()
	alert := []byte(`{"id":"a-1", "title" : "spaces kept as published"}`)
	jobs := []Job{
		{ID: "msg_" + s, AlertJSON: alert, Subscriber: s, Channel: ChannelEmail, Target: s, Mode: ModeSigned},
		{ID: s, AlertJSON: alert, Subscriber: "p", Channel: s, Target: "https://h.example/" + s, Mode: s},
		{ID: "x", AlertJSON: alert, Subscriber: "p", Incarnation: s, Channel: "email", Target: "t", Mode: ModeSigned},
		{ID: "x", AlertJSON: alert, Subscriber: "p", Incarnation: s, Channel: "email", Target: "t", Mode: ModeSigned, Attempt: 2},
		{ID: "x", AlertJSON: alert, Subscriber: "p", Channel: "webhook", Target: "t", Mode: "signed", NotBefore: at},
		{ID: "x", AlertJSON: alert, Subscriber: "p", Channel: "email", Target: "t", Mode: ModeCancelNotice,
			Held: []Held{{ID: s, Title: s}}},
		{ID: "x", AlertJSON: alert, Subscriber: "p", Channel: "webhook", Target: "t", Mode: "signed",
			Lineage: &Lineage{Root: s}},
		{ID: "x", Alert: &alerts.Alert{ID: "a-2", Title: s}, Subscriber: "p", Channel: "email", Target: "t", Mode: "signed"},
	}
	for _, j := range jobs {
		want, err := j.encodeReflect()
		require.NoError(t, err)
		got, err := j.Encode()
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "job %+v", j)

		// Without its alert, as a pack carries it: encoding/json's bytes
		// less the alert member, plain jobs included.
		w := jobWire(j)
		w.AlertJSON = nil
		full, err := json.Marshal(w)
		require.NoError(t, err)
		bare, err := j.EncodeBare()
		require.NoError(t, err)
		require.Equal(t, strings.Replace(string(full), `"alert":null,`, "", 1), string(bare), "job %+v", j)
	}
}

func TestJobEncodeWritesWhatEncodingJSONWrites(t *testing.T) {
	at := time.Date(2026, 11, 30, 7, 1, 2, 345_678_900, time.UTC)
	for _, s := range []string{"", "plain", `quote " and \ backslash`, "<script>&amp;</script>", "tab\there\nnewline\x00nul\x7f",
		"naïve café ☕", "line\u2028separator\u2029", "bad utf-8 \xff\xfe", "https://user:pw@hooks.example/x?q=1#f"} {
		checkJobEncode(t, s, at)
	}
}

func FuzzJobEncode(f *testing.F) {
	f.Add("plain", int64(0))
	f.Add("\u2028<&>\"\\\x01é\xff", int64(1_790_000_000_123_456_789))
	f.Fuzz(func(t *testing.T, s string, ns int64) {
		checkJobEncode(t, s, time.Unix(0, ns).UTC())
	})
}

// TestReceiptEncodeAllocatesOnce: the receipts written for every delivery
// (the fan-out's decision, the deliver role's outcome) and an alert's own
// receipt are encoded into one allocation, not grown as they are written.
func TestReceiptEncodeAllocatesOnce(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	target := "https://hooks.partner-with-a-long-name.example/herald/alerts?token=0123456789abcdef"
	id := ID("al-2026-11-30-0001", "recruitment-agency-0001", target)
	for _, r := range []Receipt{
		{Kind: KindDecision, AlertID: "al-2026-11-30-0001", DeliveryID: id, Subscriber: "recruitment-agency-0001",
			Incarnation: "inc_0123456789abcdefghij", Channel: ChannelWebhook, Target: target, Decision: "deliver", Mode: ModeSigned, Rule: "deliver.clearance", State: StatePending, At: at},
		{Kind: KindOutcome, AlertID: "al-2026-11-30-0001", DeliveryID: id, Subscriber: "recruitment-agency-0001",
			Incarnation: "inc_0123456789abcdefghij", Channel: ChannelWebhook, Target: target, State: StateRetrying, Attempt: 2, Reason: ReasonTimeout,
			Error: "post: attempt deadline of 30s exceeded", RetryAt: at.Add(time.Minute), At: at},
		{Kind: KindAlert, AlertID: "al-2026-11-30-0001", Subscriber: "", At: at, Type: alerts.TypeUpdate, TLP: alerts.TLPAmber,
			Marking: alerts.MarkingOfficialSensitive, References: []string{"al-2026-11-29-0007", "al-2026-11-28-0002"},
			IssuedBy: "api:alice", ApprovedBy: "api:bob", Title: strings.Repeat("Forced labour at car washes in the North West, ", 4),
			Digest: strings.Repeat("ab", 32)},
	} {
		if n := testing.AllocsPerRun(100, func() { r.Encode() }); n != 1 {
			t.Errorf("%s receipt: Encode made %v allocations, want 1", r.Kind, n)
		}
	}
	j := Job{ID: id, AlertJSON: []byte(`{"id":"al-2026-11-30-0001"}`), Subscriber: "recruitment-agency-0001",
		Incarnation: "inc_0123456789abcdefghij", Channel: ChannelWebhook, Target: target, Mode: ModeEncrypted}
	if n := testing.AllocsPerRun(100, func() { j.EncodeBare() }); n != 1 {
		t.Errorf("a job of a pack: EncodeBare made %v allocations, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { j.Encode() }); n != 1 {
		t.Errorf("a job with its alert: Encode made %v allocations, want 1", n)
	}
}
