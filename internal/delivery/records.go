package delivery

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/herald-alerts/herald/alerts"
)

// A record of the receipts topic, keyed by an alert id, holds either one
// receipt (a JSON object, as Receipt.Encode writes it) or a JSON array of
// receipts of that alert, applied in their order. Records of one receipt
// are what Herald wrote before it packed receipts (the topic keeps them
// 400 days) and what it still writes for a receipt on its own; writers
// pack receipts with PackReceipts, readers decode with DecodeReceipts.

// Bounds of a record PackReceipts makes: well below the 1 MB that
// kafka-go's writer and Kafka brokers accept by default.
const (
	// MaxRecordReceipts is the most receipts one record holds.
	MaxRecordReceipts = 500
	// MaxRecordBytes is the most bytes a record of more than one receipt
	// holds (a receipt larger than that on its own is its own record).
	MaxRecordBytes = 512 << 10
)

// DecodeReceipts decodes the value of a record of the receipts topic
// filed under key: one receipt object, or an array of receipts (its first
// byte that is not white space is '['), in the order they are applied.
// The record is refused whole, with an error naming the receipt, when key
// is not an alert id, when the array is empty, or when any receipt is of
// another alert than key or names a subscriber holding a NUL byte (the
// ledger and the view join subscribers and targets with NUL).
func DecodeReceipts(key string, value []byte) ([]Receipt, error) {
	if !alerts.ValidID(key) {
		return nil, fmt.Errorf("key %q is not an alert id", truncate(key))
	}
	var rs []Receipt
	array := false
	if v := bytes.TrimLeft(value, " \t\r\n"); len(v) > 0 && v[0] == '[' {
		// Sized once, where growing the slice by doubling allocated and
		// copied twice the receipts' size (a Receipt is ~400 bytes).
		rs = make([]Receipt, 0, receiptsIn(v))
		if err := decodeJSON(v, &rs); err != nil {
			return nil, fmt.Errorf("decode receipts: %w", err)
		}
		if len(rs) == 0 {
			return nil, errors.New("receipts: an empty array holds no receipt")
		}
		array = true
	} else {
		rs = make([]Receipt, 1)
		if err := decodeJSON(value, &rs[0]); err != nil {
			return nil, fmt.Errorf("decode receipt: %w", err)
		}
	}
	name := func(i int) string {
		if array {
			return fmt.Sprintf("receipts[%d]", i)
		}
		return "receipt"
	}
	for i := range rs {
		r := &rs[i]
		// The ledger folds a receipt into its alert id, and is read by
		// key: a receipt filed under another key is not that alert's.
		if r.AlertID != key {
			return nil, fmt.Errorf("%s.alert: receipt of alert %q filed under key %q", name(i), truncate(r.AlertID), truncate(key))
		}
		if strings.IndexByte(r.Subscriber, 0) >= 0 {
			return nil, fmt.Errorf("%s.subscriber: holds a NUL byte", name(i))
		}
	}
	return rs, nil
}

// receiptStart begins every receipt Receipt.Encode writes. A JSON string
// escapes its quotes, so it cannot hold this sequence: outside nested
// objects, which a receipt has none of, it counts receipts.
var receiptStart = []byte(`{"kind":`)

// receiptsIn estimates the receipts in a packed record, for the capacity
// of the slice they are decoded into: exact for a record PackReceipts
// made, and never more than a record of MaxRecordReceipts holds.
func receiptsIn(v []byte) int {
	return max(1, min(bytes.Count(v, receiptStart), MaxRecordReceipts))
}

// truncate shortens s, from a record, for an error message
// (alerts.Clip).
func truncate(s string) string { return alerts.Clip(s, 80, "…") }

// PackReceipts returns the values of the records that carry encoded, the
// encodings of receipts of one alert (Receipt.Encode, one JSON object
// each) in the order they are to be applied: consecutive receipts share a
// record, a JSON array, of at most MaxRecordReceipts receipts and
// MaxRecordBytes bytes; a receipt alone in its record is written as it is
// (a JSON object, as before receipts were packed). The values of single
// receipts are encoded's own.
func PackReceipts(encoded [][]byte) [][]byte {
	if len(encoded) <= 1 {
		return encoded
	}
	out := make([][]byte, 0, 1+len(encoded)/MaxRecordReceipts)
	for i := 0; i < len(encoded); {
		// The receipts of the next record: [i, j).
		j, size := i+1, 2+len(encoded[i])
		for j < len(encoded) && j-i < MaxRecordReceipts && size+1+len(encoded[j]) <= MaxRecordBytes {
			size += 1 + len(encoded[j])
			j++
		}
		if j == i+1 {
			out = append(out, encoded[i])
			i = j
			continue
		}
		b := make([]byte, 0, size)
		b = append(b, '[')
		for k := i; k < j; k++ {
			if k > i {
				b = append(b, ',')
			}
			b = append(b, encoded[k]...)
		}
		out = append(out, append(b, ']'))
		i = j
	}
	return out
}
