package policy_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/subscribers"
)

func TestFollowUp(t *testing.T) {
	const cancelNotice = "notice/cancel-notice/update.no-longer-eligible"
	update := func(a *alerts.Alert) {
		a.ID, a.Type, a.References = "a2", alerts.TypeUpdate, []string{"a1"}
	}
	tests := []struct {
		name     string
		alert    func(*alerts.Alert)
		sub      func(*subscribers.Subscriber)
		received []string // targets that received the original
		want     []string
	}{
		{name: "still eligible: update with content",
			received: []string{"alerts@acme.example", "https://hooks.acme.example/herald"},
			want:     []string{"deliver/signed/email.signed", "deliver/signed/webhook.signed"}},
		{name: "newly eligible: update with content",
			want: []string{"deliver/signed/email.signed", "deliver/signed/webhook.signed"}},
		{name: "raised above clearance: cancel notice to targets that had it",
			alert:    func(a *alerts.Alert) { a.TLP = alerts.TLPAmberStrict },
			received: []string{"alerts@acme.example", "https://hooks.acme.example/herald"},
			want:     []string{cancelNotice, cancelNotice}},
		{name: "raised above clearance: nothing to targets that did not have it",
			alert:    func(a *alerts.Alert) { a.TLP = alerts.TLPAmberStrict },
			received: []string{"alerts@acme.example"},
			want:     []string{cancelNotice, "withhold//clearance.tlp"}},
		{name: "raised to OFFICIAL-SENSITIVE", alert: func(a *alerts.Alert) { a.Marking = alerts.MarkingOfficialSensitive },
			received: []string{"alerts@acme.example"}, want: []string{cancelNotice, "withhold//clearance.sensitive"}},
		{name: "audience narrowed to other sectors", alert: func(a *alerts.Alert) { a.Audience.Sectors = []string{"retail"} },
			received: []string{"alerts@acme.example", "https://hooks.acme.example/herald"}, want: []string{cancelNotice, cancelNotice}},
		{name: "raised to RED: webhook gets a cancel notice, email the encrypted update",
			alert:    func(a *alerts.Alert) { a.TLP = alerts.TLPRed; a.Audience.Subscribers = []string{"acme"} },
			sub:      func(s *subscribers.Subscriber) { s.Clearance = alerts.TLPRed },
			received: []string{"alerts@acme.example", "https://hooks.acme.example/herald"},
			want:     []string{"deliver/encrypted/email.encrypted", cancelNotice}},
		{name: "raised above max_tlp", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub:      func(s *subscribers.Subscriber) { s.Webhooks[0].MaxTLP = alerts.TLPGreen },
			received: []string{"https://hooks.acme.example/herald"},
			want:     []string{"deliver/encrypted/email.encrypted", cancelNotice}},
		{name: "pull raised above its max_tlp: the original leaves the collection", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub: func(s *subscribers.Subscriber) {
				s.Email, s.Webhooks, s.Pull = nil, nil, &subscribers.Pull{MaxTLP: alerts.TLPGreen}
			},
			received: []string{"pull"},
			want:     []string{cancelNotice}},
		{name: "pull still eligible", sub: func(s *subscribers.Subscriber) {
			s.Email, s.Webhooks, s.Pull = nil, nil, &subscribers.Pull{MaxTLP: alerts.TLPGreen}
		},
			received: []string{"pull"}, want: []string{"deliver/pull/pull.available"}},
		{name: "key no longer usable: a notice naming the alert it holds, with the key advice", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub:      func(s *subscribers.Subscriber) { s.Email[0].PGPKey = badKey },
			received: []string{"alerts@acme.example"},
			want:     []string{"notice/followup-key-notice/update.no-usable-key", "deliver/signed/webhook.signed"}},
		{name: "key not usable and never had the original: plain key notice", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub:  func(s *subscribers.Subscriber) { s.Email[0].PGPKey = badKey },
			want: []string{"notice/key-notice/email.no-usable-key", "deliver/signed/webhook.signed"}},

		// Withholds after which nothing at all goes.
		{name: "suspended: nothing", sub: func(s *subscribers.Subscriber) { s.Status = subscribers.StatusSuspended },
			received: []string{"alerts@acme.example", "https://hooks.acme.example/herald"},
			want:     []string{"withhold//subscriber.suspended", "withhold//subscriber.suspended"}},
		{name: "update expired: nothing", alert: func(a *alerts.Alert) { past := now.Add(-time.Minute); a.ExpiresAt = &past },
			received: []string{"alerts@acme.example", "https://hooks.acme.example/herald"},
			want:     []string{"withhold//timing.expired", "withhold//timing.expired"}},
		{name: "test update to a partner not in tests: nothing", alert: func(a *alerts.Alert) { a.Status = alerts.StatusTest },
			received: []string{"alerts@acme.example", "https://hooks.acme.example/herald"},
			want:     []string{"withhold//audience.test", "withhold//audience.test"}},
		{name: "webhook now insecure: nothing over it", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "http://hooks.acme.example/herald" },
			received: []string{"http://hooks.acme.example/herald"},
			want:     []string{"deliver/signed/email.signed", "withhold//webhook.insecure"}},
		{name: "webhook disabled: nothing over it", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].Disabled = true },
			received: []string{"https://hooks.acme.example/herald"},
			want:     []string{"deliver/signed/email.signed", "withhold//webhook.disabled"}},
		{name: "partner without targets: nothing", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPRed },
			sub: func(s *subscribers.Subscriber) { s.Email, s.Webhooks = nil, nil }, received: []string{""},
			want: []string{"withhold//audience.red-named-only"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, s := newAlert(), newSubscriber()
			s.Incarnation = "q8Yt2dN0bX1kPz7w"
			update(a)
			if tc.alert != nil {
				tc.alert(a)
			}
			if tc.sub != nil {
				tc.sub(s)
			}
			ds := policy.Evaluate(a, s, now, policy.Options{KeyCheck: keyCheck})
			before := append([]policy.Decision(nil), ds...)
			var asked []string
			got := policy.FollowUp(ds, func(sub, incarnation, target string) bool {
				require.Equal(t, "acme", sub)
				require.Equal(t, s.Incarnation, incarnation, "asked about the incarnation decided with")
				asked = append(asked, target)
				for _, r := range tc.received {
					if r == target {
						return true
					}
				}
				return false
			})
			require.Equal(t, before, ds, "FollowUp modified its input")
			short := make([]string, len(got))
			for i, d := range got {
				short[i] = d.Decision + "/" + d.Mode + "/" + d.Rule
				assert.Equal(t, ds[i].Subscriber, d.Subscriber)
				assert.Equal(t, ds[i].Channel, d.Channel)
				assert.Equal(t, ds[i].Target, d.Target)
				switch d.Rule {
				case policy.RuleNoLongerEligible:
					assert.Contains(t, d.Reason, ds[i].Rule, "the notice's reason keeps the rule that withheld")
					assert.Equal(t, delivery.ModeCancelNotice, d.Mode)
				case policy.RuleFollowUpNoKey:
					assert.Contains(t, d.Reason, ds[i].Reason, "the notice's reason keeps why the key is unusable")
					assert.Equal(t, delivery.ModeFollowUpKeyNotice, d.Mode)
				default:
					assert.Equal(t, ds[i], d)
				}
			}
			require.Equal(t, tc.want, short)
			for _, target := range asked {
				assert.NotEmpty(t, target, "received asked about a decision without a target")
			}
		})
	}
}

func TestFollowUpEmpty(t *testing.T) {
	got := policy.FollowUp(nil, func(string, string, string) bool { t.Fatal("received called"); return false })
	require.Empty(t, got)
}
