package delivery_test

import (
	"encoding/json"
	"testing"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/stretchr/testify/require"
)

// TestJobCarriesAlertBytesAsTheyAre: the alert travels inside the job as
// the bytes the fan-out read, never re-encoded, and every rendering is keyed
// by their digest.
func TestJobCarriesAlertBytesAsTheyAre(t *testing.T) {
	raw := []byte(`{"id":"op-7",   "title":"Spaced out","severity":"minor","tlp":"GREEN","marking":"OFFICIAL","handling":{"code":"P"},"audience":{"sectors":["care"]}}`)
	j := delivery.Job{ID: delivery.ID("op-7", "acme", "x@acme.example"), AlertJSON: raw, Subscriber: "acme",
		Channel: delivery.ChannelEmail, Target: "x@acme.example", Mode: delivery.ModeSigned}
	v, err := j.Encode()
	require.NoError(t, err)
	require.Contains(t, string(v), string(raw), "the alert bytes are not re-encoded")
	compacted, err := json.Marshal(j)
	require.NoError(t, err)
	require.JSONEq(t, string(v), string(compacted), "Encode and encoding/json agree")

	cache := delivery.NewAlertCache(2)
	a1, err := delivery.DecodeJob(v, cache)
	require.NoError(t, err)
	a2, err := delivery.DecodeJob(v, cache)
	require.NoError(t, err)
	require.Same(t, a1.Alert, a2.Alert, "one decode per alert")
	require.Equal(t, "Spaced out", a1.Alert.Title)
	require.NotZero(t, a1.AlertDigest)

	// Another alert under the same id: another entry, another digest.
	other := []byte(`{"id":"op-7","title":"Other text","severity":"minor","tlp":"GREEN","marking":"OFFICIAL","handling":{"code":"P"},"audience":{"sectors":["care"]}}`)
	j.AlertJSON = other
	v2, err := json.Marshal(j)
	require.NoError(t, err)
	b, err := delivery.DecodeJob(v2, cache)
	require.NoError(t, err)
	require.NotSame(t, a1.Alert, b.Alert)
	require.NotEqual(t, a1.AlertDigest, b.AlertDigest)
	require.Equal(t, "Other text", b.Alert.Title)

	// A cache of one alert, alternating between the two: each decode
	// gives its own bytes' alert, whatever was evicted.
	one := delivery.NewAlertCache(1)
	for i := range 4 {
		x, err := delivery.DecodeJob(v, one)
		require.NoError(t, err)
		require.Equal(t, "Spaced out", x.Alert.Title, "round %d", i)
		y, err := delivery.DecodeJob(v2, one)
		require.NoError(t, err)
		require.Equal(t, "Other text", y.Alert.Title, "round %d", i)
	}

	// A job built from a decoded alert only encodes it.
	j2 := delivery.Job{ID: j.ID, Alert: &alerts.Alert{ID: "op-7", Title: "t"}, Subscriber: "acme",
		Channel: delivery.ChannelEmail, Target: "x@acme.example"}
	v3, err := json.Marshal(j2)
	require.NoError(t, err)
	var back delivery.Job
	require.NoError(t, json.Unmarshal(v3, &back))
	require.Equal(t, "t", back.Alert.Title)

	for name, bad := range map[string]string{
		"no alert":      `{"id":"x","subscriber":"s","channel":"email","target":"t"}`,
		"wrong id":      `{"id":"msg_x","alert":{"id":"a"},"subscriber":"s","channel":"email","target":"t"}`,
		"bad channel":   `{"id":"x","alert":{"id":"a"},"subscriber":"s","channel":"fax","target":"t"}`,
		"not json":      `{`,
		"alert garbage": `{"id":"x","alert":[1],"subscriber":"s","channel":"email","target":"t"}`,
	} {
		_, err := delivery.DecodeJob([]byte(bad), cache)
		require.Error(t, err, name)
	}
}

// TestAJobWithoutSubscriberOrTargetSaysWhich: a job refused for a missing
// subscriber or target names the field that is missing, so whoever reads
// the dead letter knows what the writer left out.
func TestAJobWithoutSubscriberOrTargetSaysWhich(t *testing.T) {
	for _, tc := range []struct {
		name, subscriber, target, want string
	}{
		{"no subscriber", "", "t@acme.example", "delivery job has no subscriber"},
		{"no target", "acme", "", "delivery job has no target"},
		{"neither", "", "", "delivery job has no subscriber and no target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := json.Marshal(map[string]any{"id": delivery.ID("a", tc.subscriber, tc.target),
				"alert": map[string]any{"id": "a"}, "subscriber": tc.subscriber, "channel": "email",
				"target": tc.target})
			require.NoError(t, err)
			_, err = delivery.DecodeJob(v, nil)
			require.EqualError(t, err, tc.want)
		})
	}
}
