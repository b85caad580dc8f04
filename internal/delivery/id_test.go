package delivery

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// idAsFirstWritten is ID as it was first written; ids are in receipts,
// webhook-id headers and Message-IDs, so they must never change.
func idAsFirstWritten(alertID, subscriberID, target string) string {
	h := sha256.Sum256([]byte(alertID + "\x00" + subscriberID + "\x00" + target))
	return "msg_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h[:16]))
}

func TestIDNeverChanges(t *testing.T) {
	for _, c := range [][3]string{
		{"", "", ""},
		{"a-1", "acme", "https://acme.example/hook"},
		{"nca-2026-0042", "bank-of-x", "alerts@bank.example"},
		{"x", "y\x00z", "pull"},
		{strings.Repeat("é", 100), "p", "t"},
		{"a", strings.Repeat("s", 300), strings.Repeat("t", 300)}, // longer than the stack buffer
	} {
		got := ID(c[0], c[1], c[2])
		require.Equal(t, idAsFirstWritten(c[0], c[1], c[2]), got, "%q", c)
		require.Len(t, got, len("msg_")+26)
	}
	require.Equal(t, "msg_", ID("a", "b", "c")[:4])
}

func BenchmarkID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = ID("nca-2026-0042", "bank-of-x", "https://hooks.bank.example/herald/alerts")
	}
}

func BenchmarkIDAsFirstWritten(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = idAsFirstWritten("nca-2026-0042", "bank-of-x", "https://hooks.bank.example/herald/alerts")
	}
}
