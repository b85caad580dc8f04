package delivery

import (
	"encoding/json"

	fastjson "github.com/segmentio/encoding/json"
)

// decodeJSON decodes data into *v as encoding/json does, faster: the
// records every delivery passes through (its job, and its receipts, which
// every view and ledger reads) are decoded by segmentio/encoding's
// decoder, which decodes them in well under half the time. Should it
// refuse data, encoding/json decodes it again from a zero value, so that
// what a malformed record gets is encoding/json's answer: the same result
// or error as ever, an error that names the field without quoting the
// record (segmentio's quote the bytes they stopped at).
func decodeJSON[T any](data []byte, v *T) error {
	if fastjson.Unmarshal(data, v) == nil {
		return nil
	}
	var zero T
	*v = zero
	return json.Unmarshal(data, v)
}
