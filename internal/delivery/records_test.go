package delivery_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/delivery"
)

var at = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

func outcomeOf(alert, sub string, attempt int) delivery.Receipt {
	return delivery.Receipt{Kind: delivery.KindOutcome, AlertID: alert, DeliveryID: delivery.ID(alert, sub, "https://h.example/"),
		Subscriber: sub, Channel: delivery.ChannelWebhook, Target: "https://h.example/", State: delivery.StateDelivered,
		Attempt: attempt, At: at}
}

func TestDecodeReceipts(t *testing.T) {
	a := outcomeOf("al-1", "acme", 1)
	b := delivery.Receipt{Kind: delivery.KindDecision, AlertID: "al-1", Subscriber: "bank", Channel: delivery.ChannelEmail,
		Target: "soc@bank.example", Decision: delivery.Deliver, Mode: delivery.ModeSigned, At: at}
	foreign := outcomeOf("al-2", "acme", 1)
	nul := outcomeOf("al-1", "ac\x00me", 1)
	incarnated := outcomeOf("al-1", "acme", 2)
	incarnated.Incarnation = "q8Yt2dN0bX1kPz7w"
	arr := func(rs ...delivery.Receipt) []byte {
		var encs [][]byte
		for _, r := range rs {
			encs = append(encs, r.Encode())
		}
		return []byte("[" + string(bytes.Join(encs, []byte(","))) + "]")
	}
	for _, tc := range []struct {
		name, key string
		value     []byte
		want      []delivery.Receipt
		err       string
	}{
		{name: "one object", key: "al-1", value: a.Encode(), want: []delivery.Receipt{a}},
		{name: "one object by encoding/json", key: "al-1", value: must(json.Marshal(b)), want: []delivery.Receipt{b}},
		{name: "array", key: "al-1", value: arr(a, b), want: []delivery.Receipt{a, b}},
		{name: "array of one", key: "al-1", value: arr(b), want: []delivery.Receipt{b}},
		// Receipts written before they named the record's incarnation
		// decode beside those that do, with an empty Incarnation.
		{name: "with and without an incarnation", key: "al-1", value: arr(a, incarnated), want: []delivery.Receipt{a, incarnated}},
		{name: "array after white space", key: "al-1", value: append([]byte(" \n\t"), arr(b, a)...), want: []delivery.Receipt{b, a}},
		{name: "empty array", key: "al-1", value: []byte(" [ ] "), err: "receipts: an empty array holds no receipt"},
		{name: "foreign alert in an array", key: "al-1", value: arr(a, b, a, foreign), err: `receipts[3].alert: receipt of alert "al-2" filed under key "al-1"`},
		{name: "foreign alert alone", key: "al-1", value: foreign.Encode(), err: `receipt.alert: receipt of alert "al-2" filed under key "al-1"`},
		{name: "NUL in a subscriber", key: "al-1", value: arr(a, nul), err: "receipts[1].subscriber: holds a NUL byte"},
		{name: "key not an alert id", key: "al 1", value: a.Encode(), err: `key "al 1" is not an alert id`},
		{name: "null element", key: "al-1", value: []byte(`[` + string(a.Encode()) + `,null]`), err: `receipts[1].alert: receipt of alert "" filed under key "al-1"`},
		{name: "garbage", key: "al-1", value: []byte("forged"), err: "decode receipt: "},
		{name: "garbage array", key: "al-1", value: []byte(`[{"kind":"outcome",`), err: "decode receipts: "},
		{name: "array of numbers", key: "al-1", value: []byte(`[1,2]`), err: "decode receipts: "},
		{name: "empty", key: "al-1", value: nil, err: "decode receipt: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := delivery.DecodeReceipts(tc.key, tc.value)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				assert.Nil(t, got, "a bad record is refused whole")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestPackReceipts packs receipts in order into bounded arrays, a lone
// TestDecodeReceiptsErrorKeepsWholeCharacters: the error about a receipt
// filed under another key quotes both, shortened on a character boundary:
// a key of non-ASCII text never leaves half a character in the error that
// reaches logs and the API.
func TestDecodeReceiptsErrorKeepsWholeCharacters(t *testing.T) {
	key := strings.Repeat("a", 79) + "é" // é is bytes 80 and 81
	r := outcomeOf("al-1", "acme", 1)
	for _, k := range []string{key, "al-2"} {
		if k == "al-2" {
			r.AlertID = key
		}
		_, err := delivery.DecodeReceipts(k, r.Encode())
		require.Error(t, err)
		assert.Contains(t, err.Error(), `"`+strings.Repeat("a", 79)+`…"`)
		assert.NotContains(t, err.Error(), `\x`, "no half character")
	}
}

// receipt as its object, and DecodeReceipts reads back what was packed.
func TestPackReceipts(t *testing.T) {
	encode := func(n int, note string) ([]delivery.Receipt, [][]byte) {
		var rs []delivery.Receipt
		var encs [][]byte
		for i := range n {
			r := outcomeOf("al-1", fmt.Sprintf("p%04d", i), i)
			r.Error = note
			rs = append(rs, r)
			encs = append(encs, r.Encode())
		}
		return rs, encs
	}
	unpack := func(t *testing.T, values [][]byte) ([]delivery.Receipt, []int) {
		var all []delivery.Receipt
		var sizes []int
		for _, v := range values {
			rs, err := delivery.DecodeReceipts("al-1", v)
			require.NoError(t, err)
			all = append(all, rs...)
			sizes = append(sizes, len(rs))
			if len(rs) == 1 {
				assert.Equal(t, byte('{'), v[0], "a lone receipt is written as an object")
			} else {
				assert.Equal(t, byte('['), v[0])
				assert.LessOrEqual(t, len(v), delivery.MaxRecordBytes)
			}
		}
		return all, sizes
	}

	t.Run("none", func(t *testing.T) {
		assert.Empty(t, delivery.PackReceipts(nil))
	})
	t.Run("one is an object, the same bytes", func(t *testing.T) {
		_, encs := encode(1, "")
		got := delivery.PackReceipts(encs)
		require.Len(t, got, 1)
		assert.Equal(t, encs[0], got[0])
	})
	t.Run("by count", func(t *testing.T) {
		rs, encs := encode(2*delivery.MaxRecordReceipts+1, "")
		values := delivery.PackReceipts(encs)
		got, sizes := unpack(t, values)
		assert.Equal(t, rs, got, "every receipt, in order")
		assert.Equal(t, []int{delivery.MaxRecordReceipts, delivery.MaxRecordReceipts, 1}, sizes)
	})
	t.Run("by size", func(t *testing.T) {
		rs, encs := encode(40, strings.Repeat("x", 50<<10))
		got, sizes := unpack(t, delivery.PackReceipts(encs))
		assert.Equal(t, rs, got, "every receipt, in order")
		assert.Equal(t, []int{10, 10, 10, 10}, sizes, "about 50 KiB each: ten to a 512 KiB record")
	})
	t.Run("one too large for company", func(t *testing.T) {
		rs, encs := encode(3, "")
		big := outcomeOf("al-1", "huge", 1)
		big.Error = strings.Repeat("y", delivery.MaxRecordBytes)
		rs = append(rs[:1], append([]delivery.Receipt{big}, rs[1:]...)...)
		encs = append(encs[:1], append([][]byte{big.Encode()}, encs[1:]...)...)
		got, sizes := unpack(t, delivery.PackReceipts(encs))
		assert.Equal(t, rs, got)
		assert.Equal(t, []int{1, 1, 2}, sizes)
	})
}

// FuzzDecodeReceipts: whatever a record holds, DecodeReceipts either
// refuses it or returns at least one receipt, every one of the key's
// alert; and what it returns, encoded and packed again, decodes alike.
func FuzzDecodeReceipts(f *testing.F) {
	a, b := outcomeOf("al-1", "acme", 1), outcomeOf("al-1", "bank", 2)
	f.Add("al-1", a.Encode())
	f.Add("al-1", delivery.PackReceipts([][]byte{a.Encode(), b.Encode()})[0])
	f.Add("al-1", []byte(`[]`))
	f.Add("al-1", []byte(`[{"alert":"al-1","kind":"ack"},{"alert":"al-2"}]`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		rs, err := delivery.DecodeReceipts(key, value)
		if err != nil {
			require.Nil(t, rs)
			return
		}
		require.NotEmpty(t, rs)
		encs := make([][]byte, len(rs))
		for i := range rs {
			require.Equal(t, key, rs[i].AlertID)
			encs[i] = rs[i].Encode()
		}
		var again []delivery.Receipt
		for _, v := range delivery.PackReceipts(encs) {
			got, err := delivery.DecodeReceipts(key, v)
			require.NoError(t, err)
			again = append(again, got...)
		}
		require.Len(t, again, len(rs))
		for i := range rs {
			require.Equal(t, string(rs[i].Encode()), string(again[i].Encode()))
		}
	})
}
