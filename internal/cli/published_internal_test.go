package cli

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/herald-alerts/herald/internal/publish"
)

// TestPublishedNotFannedOut: the sentence for a published alert not yet
// fanned out names its issuer and approver as the alerts topic holds them
// (the CLI's own analyst cannot approve what it published, so
// TestStatusOfAPendingAlert sees only an issuer).
func TestPublishedNotFannedOut(t *testing.T) {
	for _, tc := range []struct {
		ex   publish.Existing
		want string
	}{
		{publish.Existing{Published: "sha256:x", IssuedBy: "api:alice", ApprovedBy: "api:bob"},
			"alert a-9, issued by api:alice, approved by api:bob, is published; the fan-out has not recorded its decisions yet"},
		{publish.Existing{Published: "sha256:x", IssuedBy: "cli:carol"},
			"alert a-9, issued by cli:carol, is published; the fan-out has not recorded its decisions yet"},
		{publish.Existing{Published: "sha256:x"},
			"alert a-9 is published; the fan-out has not recorded its decisions yet"},
	} {
		assert.Equal(t, tc.want, publishedNotFannedOut("a-9", &tc.ex))
	}
}
