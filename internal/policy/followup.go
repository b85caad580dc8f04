package policy

import (
	"github.com/herald-alerts/herald/internal/delivery"
)

// silent lists the withholds after which not even a content-free cancel
// notice may go to a target that received the original:
//
//   - subscriber.suspended: a suspended partner gets nothing (rule 2), and
//     suspension is how an administrator cuts off a partner whose systems
//     or staff can no longer be trusted; telling it which alert changed
//     would tell it something.
//   - alert.invalid: a malformed alert goes nowhere.
//   - timing.expired: nothing is delivered after expires_at (rule 8).
//   - audience.test: an exercise or test has no effect on partners that do
//     not take part; a "withdrawn" notice from an exercise could be read
//     as withdrawing the real alert.
//   - webhook.insecure: the channel itself is forbidden; a notice would
//     leave over plain HTTP.
//   - webhook.disabled: the endpoint asked never to be called again.
var silent = map[string]bool{
	RuleSuspended:    true,
	RuleInvalidAlert: true,
	RuleExpired:      true,
	RuleTest:         true,
	RuleInsecure:     true,
	RuleDisabled:     true,
}

// FollowUp applies rule 7 of PRODUCT.md §3 to the decisions Evaluate made
// for an update or cancel. received reports whether a target of the
// incarnation of the partner's record a decision was made with
// (Decision.Incarnation) received (was delivered the content of) the
// alert it references. A target that
// received the original never learns of the follow-up only as a key
// notice or not at all:
//
//   - now withheld: it gets a content-free cancel notice instead
//     (delivery.ModeCancelNotice, rule update.no-longer-eligible; on the
//     pull channel, which sends nothing, the alerts the follow-up
//     supersedes leave the partner's pull collection), unless
//     the withhold is one after which nothing at all may go (suspension,
//     expiry, a test the partner does not take, an insecure or disabled
//     webhook);
//   - unable to read it (the follow-up must be encrypted and the address
//     has no usable key): a content-free notice naming the alert it holds,
//     saying it was updated or withdrawn, with the key advice
//     (delivery.ModeFollowUpKeyNotice, rule update.no-usable-key).
//
// Every other decision is kept: a still-eligible target gets the update
// with content as usual, and a newly eligible one gets it as if it were
// new. ds is not modified.
func FollowUp(ds []Decision, received func(subscriber, incarnation, target string) bool) []Decision {
	out := make([]Decision, len(ds))
	copy(out, ds)
	for i := range out {
		d := &out[i]
		if d.Target == "" || !received(d.Subscriber, d.Incarnation, d.Target) {
			continue
		}
		switch {
		case d.Decision == delivery.Withhold && !silent[d.Rule]:
			what := "only a content-free notice that it was withdrawn goes"
			if d.Channel == delivery.ChannelPull {
				what = "the alerts it supersedes are withdrawn from the partner's pull collection"
			}
			d.Reason = "received the alert this one supersedes but is no longer eligible (" + d.Rule + ": " + d.Reason + "); " + what
			d.Decision, d.Mode, d.Rule = delivery.Notice, delivery.ModeCancelNotice, RuleNoLongerEligible
		case d.Decision == delivery.Notice && d.Mode == delivery.ModeKeyNotice:
			d.Reason = "received the alert this one supersedes but cannot read this one (" + d.Reason +
				"); a content-free notice that the alert it holds was updated or withdrawn goes, with the key advice"
			d.Mode, d.Rule = delivery.ModeFollowUpKeyNotice, RuleFollowUpNoKey
		}
	}
	return out
}
