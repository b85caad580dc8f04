package delivery

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzSplitAlert checks DecodeJob's one-pass split against encoding/json:
// whenever splitAlert takes a record apart, decoding the rest and taking
// the alert's bytes gives what encoding/json gives for the whole record,
// and the record is valid JSON exactly when the rest and the alert are.
func FuzzSplitAlert(f *testing.F) {
	for _, s := range []string{
		`{"id":"x","alert":{"id":"a","t":"}\"{"},"subscriber":"s","channel":"email","target":"t","attempt":2}`,
		`{"alert":null}`,
		` { "alert" : [1,{"a":"]"}] , "id" : "y" } `,
		`{"id":"x","alert":{"id":"a"},"alert":{"id":"b"}}`,
		`{"id":"x","Alert":{"id":"a"}}`,
		`{"id":"x","alert":{"id":"a"}`,
		`{"alert":"\u0061\\","history":[{"at":"2026-01-01T00:00:00Z"}]}`,
		`{"alert":{"a":[}]}}`,
		`[]`,
		`{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		rest, raw, ok := splitAlert(v)
		if !ok {
			return
		}
		var whole, split jobWire
		errWhole := json.Unmarshal(v, &whole)
		errRest := json.Unmarshal(rest, &split)
		validAlert := json.Valid(raw)
		if (errWhole == nil) != (errRest == nil && validAlert) {
			t.Fatalf("%q: whole decodes %v, rest %v, alert valid %v", v, errWhole, errRest, validAlert)
		}
		if errWhole != nil {
			return
		}
		split.AlertJSON = raw
		a, _ := json.Marshal(Job(whole))
		b, _ := json.Marshal(Job(split))
		if !bytes.Equal(a, b) || !bytes.Equal(whole.AlertJSON, raw) {
			t.Fatalf("%q: whole %s, split %s (alert %q)", v, a, b, raw)
		}
	})
}
