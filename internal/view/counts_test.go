package view_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/view"
)

// An alert that waited longer for its approval than the answering
// process's release.pending_ttl now allows (submitted under a longer one,
// or approved by a process with another) is still counted as published
// since its approval, as the list's approved_at says: how far back an
// approval reaches is learnt from the alerts the view holds, not from a
// setting.
func TestPublishedSinceCountsALongWaitForApproval(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	a := alert(t, "slow", "Approved after a long wait", alerts.TLPAmber, "api:alice", at(0), "", time.Time{})
	w.submit(a, at(8*time.Minute))
	w.release(false, record.Release{Kind: record.Approved, ID: "slow", Digest: a.Digest(), By: "api:bob", At: at(5 * time.Minute)})
	v := run(t, t.TempDir(), b)

	listed, _, err := v.List(view.ListQuery{State: record.StatePublished, Limit: view.MaxLimit})
	require.NoError(t, err)
	require.Len(t, listed, 1)
	require.Equal(t, at(5*time.Minute), listed[0].Released())

	got, err := v.Counts(view.CountQuery{Since: at(4 * time.Minute)})
	require.NoError(t, err)
	require.NotNil(t, got.PublishedSince)
	assert.Equal(t, 1, *got.PublishedSince, "approved at 5 minutes, after since")
}
