package deliver

import (
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
)

// TestLeaseCountsOnlyWhenItsHeadersAuthenticate: a job comes back as a
// lease only when Herald wrote its lease header. A copy of an authentic
// job record (its authenticators kept) with a lease header added, or a
// lease record without herald-auth-headers (as written before Herald
// covered headers), is an authentic job handled as not leased: attempted,
// and the delivery id makes a duplicate harmless at the partner.
func TestLeaseCountsOnlyWhenItsHeadersAuthenticate(t *testing.T) {
	e := newEnv(t)
	r := e.runner()
	job := testJob(testAlert("al-l1"), "acme", delivery.ChannelWebhook, hookA)
	v, err := job.Encode()
	require.NoError(t, err)
	tier := bus.RetryTopic(0)
	lease := kafka.Header{Key: headerLease, Value: []byte("1")}

	leased := e.bus.AsWritten(tier, kafka.Message{Key: []byte("acme"), Value: v, Headers: []kafka.Header{lease}})
	plain := e.bus.AsWritten(tier, kafka.Message{Key: []byte("acme"), Value: v})
	forged := plain
	forged.Headers = append([]kafka.Header{lease}, plain.Headers...)
	legacy := plain
	legacy.Headers = append([]kafka.Header{lease}, kafka.Header{Key: busauth.Header, Value: []byte(bus.Header(plain, busauth.Header))})

	for name, tc := range map[string]struct {
		m     kafka.Message
		lease bool
	}{
		"written by Herald":           {leased, true},
		"no lease":                    {plain, false},
		"lease added to a copy":       {forged, false},
		"without herald-auth-headers": {legacy, false},
	} {
		t.Run(name, func(t *testing.T) {
			o := newOut()
			jobs, leases, err := r.decode(o, []kafka.Message{tc.m})
			require.NoError(t, err)
			require.Len(t, jobs, 1, "the job itself is Herald's")
			assert.Equal(t, job.ID, jobs[0].ID)
			assert.Equal(t, []bool{tc.lease}, leases)
			assert.True(t, o.empty(), "nothing dead-lettered")
		})
	}
}
