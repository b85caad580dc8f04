package fanout

import (
	"encoding/json"
	"time"

	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/segmentio/kafka-go"
)

// The fan-out writes one job and one receipt per target of an alert, tens
// of thousands for an alert to a sector, and encoding them with
// encoding/json's reflection was most of its own work. The encoders below
// write the same bytes (delivery.Job.Encode's, json.Marshal's of a
// delivery.Receipt) for what the fan-out writes most: jobs without lineage,
// held alerts or not_before, and decision and outcome receipts. Anything
// else goes through the encoders of the delivery package. encode_test.go
// checks that the bytes are the same, and fails when delivery.Job or
// delivery.Receipt gain a field these encoders do not know.

// ReceiptMessage encodes a receipt for the receipts topic, keyed by alert id.
func ReceiptMessage(r delivery.Receipt) kafka.Message {
	return kafka.Message{Key: []byte(r.AlertID), Value: appendReceipt(nil, &r)}
}

// receiptSize is about what a decision or outcome receipt takes besides
// its subscriber, target, delivery id, rule and reason.
const receiptSize = 160

// appendReceipt appends r as json.Marshal encodes it.
func appendReceipt(b []byte, r *delivery.Receipt) []byte {
	if !plainReceipt(r) {
		v, _ := json.Marshal(r) // a Receipt always encodes
		return append(b, v...)
	}
	b = append(b, `{"kind":`...)
	b = appendString(b, r.Kind)
	b = append(b, `,"alert":`...)
	b = appendString(b, r.AlertID)
	b = appendField(b, `,"delivery":`, r.DeliveryID)
	b = append(b, `,"subscriber":`...)
	b = appendString(b, r.Subscriber)
	b = appendField(b, `,"channel":`, r.Channel)
	b = appendField(b, `,"target":`, r.Target)
	b = appendField(b, `,"decision":`, r.Decision)
	b = appendField(b, `,"mode":`, r.Mode)
	b = appendField(b, `,"rule":`, r.Rule)
	b = appendField(b, `,"reason":`, r.Reason)
	b = appendField(b, `,"state":`, r.State)
	b = append(b, `,"at":"`...)
	b = r.At.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// plainReceipt reports whether r sets only the fields of decision and
// outcome receipts that appendReceipt writes itself.
func plainReceipt(r *delivery.Receipt) bool {
	return r.Attempt == 0 && r.Error == "" && r.RetryAt.IsZero() && r.Type == "" && r.TLP == "" &&
		r.Marking == "" && r.References == nil && r.IssuedBy == "" && r.ApprovedBy == "" && r.Title == "" &&
		r.Digest == "" && r.By == "" && r.Note == "" && plainTime(r.At)
}

// plainTime reports whether t encodes as its RFC 3339 form (time.Time's
// MarshalJSON refuses years outside 0–9999).
func plainTime(t time.Time) bool {
	y := t.Year()
	return y >= 0 && y <= 9999
}

// encodeJob encodes j as delivery.Job.Encode does.
func encodeJob(j *delivery.Job) ([]byte, error) {
	if j.Attempt != 0 || !j.NotBefore.IsZero() || j.History != nil || j.Held != nil || j.Lineage != nil || len(j.AlertJSON) == 0 {
		return j.Encode()
	}
	b := make([]byte, 0, len(j.AlertJSON)+len(j.ID)+len(j.Subscriber)+len(j.Target)+96)
	b = append(b, `{"id":`...)
	b = appendString(b, j.ID)
	b = append(b, `,"alert":`...)
	b = append(b, j.AlertJSON...)
	b = append(b, `,"subscriber":`...)
	b = appendString(b, j.Subscriber)
	b = append(b, `,"channel":`...)
	b = appendString(b, j.Channel)
	b = append(b, `,"target":`...)
	b = appendString(b, j.Target)
	b = append(b, `,"mode":`...)
	b = appendString(b, j.Mode)
	return append(b, `,"attempt":0}`...), nil
}

// appendField appends name and s unless s is empty (omitempty).
func appendField(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, name...), s)
}

// appendString appends s as a JSON string as encoding/json writes it: the
// common case (printable ASCII with nothing to escape) directly, anything
// else through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
