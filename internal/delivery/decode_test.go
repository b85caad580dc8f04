package delivery

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// FuzzDecodeJSONIsEncodingJSON: for any bytes, decodeJSON gives what
// encoding/json gives, value and error alike, for the two records it
// decodes on the delivery path: receipts (one or an array) and a job's
// fields beside its alert.
func FuzzDecodeJSONIsEncodingJSON(f *testing.F) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 123, time.UTC)
	r := Receipt{Kind: KindOutcome, AlertID: "al-1", DeliveryID: "msg_x", Subscriber: "acme", Channel: ChannelWebhook,
		Target: "https://h.example/x", State: StateRetrying, Attempt: 2, Error: "é\u2028<", RetryAt: at, At: at,
		References: []string{"al-0"}, TLP: "TLP:GREEN"}
	one := r.Encode()
	f.Add(one)
	f.Add(PackReceipts([][]byte{one, one})[0])
	for _, s := range []string{
		`{"alert":"al-1","at":"bad"}`,
		`{"alert":"al-1","attempt":1.5}`,
		`{"alert":"al-1","attempt":"1"}`,
		`{"ALERT":"al-1","Kind":"ack","at":null}`,
		`{"alert":"al-1",}`,
		`{"alert":"al-1"} x`,
		`[{"alert":"al-1"},{"alert":2}]`,
		`{"alert":"\ud800\xff","subscriber":"a\u0000"}`,
		`{"id":"x","alert":null,"subscriber":"s","channel":"email","target":"t","attempt":2,"history":[{"at":"2026-01-01T00:00:00Z","reason":"timeout"}]}`,
		`{"id":"x","not_before":"2026-01-01T00:00:00+01:00","mode":"content","attempt":-1}`,
		`{"references":{"a":1}}`,
		`[]`, `null`, ``, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		same(t, data, func() any { return new(Receipt) })
		same(t, data, func() any { return new([]Receipt) })
		same(t, data, func() any { return new(jobWire) })
	})
}

// same decodes data into a fresh value from mk with decodeJSON and with
// encoding/json and fails unless both agree.
func same(t *testing.T, data []byte, mk func() any) {
	t.Helper()
	fast, ref := mk(), mk()
	var errFast error
	switch v := fast.(type) {
	case *Receipt:
		errFast = decodeJSON(data, v)
	case *[]Receipt:
		errFast = decodeJSON(data, v)
	case *jobWire:
		errFast = decodeJSON(data, v)
	}
	errRef := json.Unmarshal(data, ref)
	if (errFast == nil) != (errRef == nil) || (errRef != nil && errFast.Error() != errRef.Error()) {
		t.Fatalf("%q into %T: decodeJSON %v, encoding/json %v", data, fast, errFast, errRef)
	}
	if errRef != nil {
		return
	}
	a, _ := json.Marshal(fast)
	b, _ := json.Marshal(ref)
	if string(a) != string(b) {
		t.Fatalf("%q into %T: decodeJSON %s, encoding/json %s", data, fast, a, b)
	}
}

// BenchmarkDecodeReceipts decodes a packed record of 100 outcomes with
// encoding/json and with decodeJSON.
func BenchmarkDecodeReceipts(b *testing.B) {
	at := time.Now().UTC()
	var encs [][]byte
	for i := range 100 {
		target := "https://h.example/x" + string(rune('a'+i%26))
		r := Receipt{Kind: KindOutcome, AlertID: "al-1", DeliveryID: ID("al-1", "acme", target), Subscriber: "acme",
			Channel: ChannelWebhook, Target: target, State: StateDelivered, Attempt: 1 + i%2, At: at}
		encs = append(encs, r.Encode())
	}
	v := PackReceipts(encs)[0]
	for _, c := range []struct {
		name   string
		decode func([]byte, *[]Receipt) error
	}{
		{"encoding_json", func(d []byte, rs *[]Receipt) error { return json.Unmarshal(d, rs) }},
		{"decodeJSON", decodeJSON[[]Receipt]},
		{"DecodeReceipts", func(d []byte, rs *[]Receipt) (err error) { *rs, err = DecodeReceipts("al-1", d); return err }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(v)))
			for b.Loop() {
				var rs []Receipt
				if err := c.decode(v, &rs); err != nil || len(rs) != 100 {
					b.Fatal(err, len(rs))
				}
			}
		})
	}
}

// TestDecodedSlicesAreSizedByWhatTheyHold checks the capacity hints of
// DecodeReceipts and DecodeJobs: exact for what Herald packs, and bounded
// by the most a record holds whatever a record says, so that a record
// stuffed with what starts a receipt or a job cannot make a decoder
// allocate more than a full record's slice.
func TestDecodedSlicesAreSizedByWhatTheyHold(t *testing.T) {
	at := time.Now().UTC()
	var encs [][]byte
	for i := range 7 {
		r := Receipt{Kind: KindOutcome, AlertID: "al-1", Subscriber: fmt.Sprintf("p%d", i), State: StateDelivered, At: at,
			Note: `a note that says {"kind":"x"} in the clear`}
		encs = append(encs, r.Encode())
	}
	packed := PackReceipts(encs)
	if len(packed) != 1 {
		t.Fatalf("PackReceipts made %d records of 7 receipts, want 1", len(packed))
	}
	if n := receiptsIn(packed[0]); n != 7 {
		t.Errorf("receiptsIn of a pack of 7 receipts whose notes quote a receipt = %d, want 7", n)
	}
	rs, err := DecodeReceipts("al-1", packed[0])
	if err != nil || len(rs) != 7 || cap(rs) != 7 {
		t.Errorf("DecodeReceipts: %d receipts in a slice of capacity %d, %v; want 7 in 7", len(rs), cap(rs), err)
	}
	stuffed := []byte("[" + strings.Repeat(`{"kind":{"kind":{"kind":`, 100_000) + "]")
	if n := receiptsIn(stuffed); n != MaxRecordReceipts {
		t.Errorf("receiptsIn of a record stuffed with 300,000 receipt starts = %d, want the bound %d", n, MaxRecordReceipts)
	}
	if n := JobsIn([]byte(strings.Repeat(`{"id":"subscriber":`, 100_000))); n != MaxRecordJobs {
		t.Errorf("JobsIn of a record stuffed with 100,000 jobs' members = %d, want the bound %d", n, MaxRecordJobs)
	}
	if n := receiptsIn([]byte("[]")); n != 1 {
		t.Errorf("receiptsIn of an empty array = %d, want 1", n)
	}
}

// TestJobsInCountsNoticesHoldingAlerts: the capacity hint of a pack's
// jobs counts the jobs, not the held alerts of the notices among them
// (whose elements begin as a job does).
func TestJobsInCountsNoticesHoldingAlerts(t *testing.T) {
	alert := []byte(`{"id":"op-9","title":"Held"}`)
	var bare [][]byte
	for i := range 5 {
		sub := fmt.Sprintf("p%d", i)
		j := Job{ID: ID("op-9", sub, "sec@p.example"), Subscriber: sub, Channel: ChannelEmail, Target: "sec@p.example",
			Mode: ModeCancelNotice, Held: []Held{{ID: "op-7"}, {ID: "op-8", Title: "Earlier"}}}
		b, err := j.EncodeBare()
		if err != nil {
			t.Fatal(err)
		}
		bare = append(bare, b)
	}
	packed := PackJobs(alert, bare)
	if len(packed) != 1 {
		t.Fatalf("PackJobs made %d records of 5 jobs, want 1", len(packed))
	}
	rest, _, _, ok := splitRecord(packed[0])
	if !ok {
		t.Fatal("splitRecord refused a pack")
	}
	if n := JobsIn(rest); n != 5 {
		t.Errorf("JobsIn of a pack of 5 notices holding 2 alerts each = %d, want 5", n)
	}
}
