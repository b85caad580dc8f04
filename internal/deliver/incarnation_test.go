package deliver

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/delivery"
)

// TestJobOfAnotherIncarnationIsWithheld: a job decided for a partner's
// record that was deleted, and whose id was registered again since (a new
// incarnation: perhaps another organisation), is withheld when it
// arrives, content and notices alike, and never sent to the new record's
// targets; its outcome receipt names the incarnation it was decided for.
// A job or a record without an incarnation (written before Herald
// recorded it) is delivered as before.
func TestJobOfAnotherIncarnationIsWithheld(t *testing.T) {
	e := newEnv(t)
	a := testAlert("al-inc")
	job := func(sub, incarnation, mode string) *delivery.Job {
		hook := "https://" + sub + ".example/hook"
		old := testSub(sub, hook)
		old.Incarnation = "inc-old-00000000"
		e.reg.Put(old)
		require.True(t, e.reg.Delete(sub))
		now := testSub(sub, hook) // the same target, another organisation
		now.Incarnation = incarnation
		e.reg.Put(now)
		j := testJob(a, sub, delivery.ChannelWebhook, hook)
		j.Incarnation, j.Mode = "inc-old-00000000", mode
		return j
	}
	content := job("replaced", "inc-new-11111111", delivery.ModeSigned)
	notice := job("replaced-notice", "inc-new-22222222", delivery.ModeCancelNotice)
	same := job("kept", "inc-old-00000000", delivery.ModeSigned)
	untold := job("untold", "", delivery.ModeSigned) // a record from before incarnations
	unnamed := job("unnamed", "inc-new-33333333", delivery.ModeSigned)
	unnamed.Incarnation = "" // a job from before jobs named it
	e.start(e.runner())
	e.publish(content, notice, same, untold, unnamed)

	for _, j := range []*delivery.Job{content, notice} {
		rs := e.waitState(j.ID, delivery.StateWithheld)
		assert.Equal(t, RuleSubscriberReplaced, rs[0].Rule, j.Subscriber)
		assert.Equal(t, "inc-old-00000000", rs[0].Incarnation, "the receipt names the incarnation decided for")
	}
	for _, j := range []*delivery.Job{same, untold, unnamed} {
		rs := e.waitState(j.ID, delivery.StateDelivered)
		assert.Equal(t, j.Incarnation, rs[len(rs)-1].Incarnation, j.Subscriber)
	}
	assert.Empty(t, e.n.callsTo(content.Target), "nothing decided for the deleted partner goes to the new one")
	assert.Empty(t, e.n.callsTo(notice.Target))
}
