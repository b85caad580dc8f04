package deliver

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/subscribers"
)

// TestKeyExpiryNoticeIsContentFree: a key-expiry notice is not an alert the
// policy judges (no sector, no clearance): like a cancel notice it goes to
// an active partner's address and is stopped only by a suspension or the
// address leaving the record.
func TestKeyExpiryNoticeIsContentFree(t *testing.T) {
	e := newEnv(t)
	ok := testSub("ok")
	ok.Sectors, ok.Clearance = nil, alerts.TLPClear // the policy would send it no alert
	e.reg.Put(ok)
	suspended := testSub("suspended")
	suspended.Status = subscribers.StatusSuspended
	e.reg.Put(suspended)
	e.reg.Put(testSub("moved"))

	now := time.Now()
	notice := func(sub, addr string) *delivery.Job {
		return delivery.KeyExpiry{Subscriber: sub, Address: addr, Fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567",
			Expires: now.Add(10 * 24 * time.Hour), Threshold: 30 * 24 * time.Hour}.Job(now)
	}
	j1 := notice("ok", "alerts@ok.example")
	j2 := notice("suspended", "alerts@suspended.example")
	j3 := notice("moved", "old@moved.example")
	e.start(e.runner())
	e.publish(j1, j2, j3)

	e.waitState(j1.ID, delivery.StateDelivered)
	assert.Equal(t, policy.RuleSuspended, e.waitState(j2.ID, delivery.StateWithheld)[0].Rule)
	assert.Equal(t, RuleTargetRemoved, e.waitState(j3.ID, delivery.StateWithheld)[0].Rule)
	calls := e.n.callsTo("alerts@ok.example")
	if assert.Len(t, calls, 1) {
		assert.Equal(t, delivery.ModeKeyExpiryNotice, calls[0].job.Mode, "the mode is never changed by the policy")
	}
}
