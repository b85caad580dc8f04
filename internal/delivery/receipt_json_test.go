package delivery

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
)

// FuzzReceiptEncode checks Receipt.Encode against json.Marshal, byte for
// byte, over every field, the escapes of strings included.
func FuzzReceiptEncode(f *testing.F) {
	f.Add("outcome", "al-1", "msg_x", "acme", "https://a.example/h?x=<&>", "deli\u2028vered", "err\x00\"\\\n\t\xff", 3, int64(1764500000123456789), int64(0), "r1")
	f.Add("", "", "", "", "", "", "", 0, int64(-62135596800000000), int64(1), "")
	f.Fuzz(func(t *testing.T, kind, alert, delivery, sub, target, state, errText string, attempt int, at, retryAt int64, ref string) {
		r := Receipt{Kind: kind, AlertID: alert, DeliveryID: delivery, Subscriber: sub, Channel: state, Target: target,
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
