package policy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/subscribers"
)

var now = time.Date(2026, 11, 5, 10, 0, 0, 0, time.UTC)

const (
	goodKey = "-----BEGIN PGP PUBLIC KEY BLOCK-----\ngood\n-----END PGP PUBLIC KEY BLOCK-----"
	badKey  = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nexpired\n-----END PGP PUBLIC KEY BLOCK-----"
)

var errExpiredKey = errors.New("key 0x1234 expired on 2025-01-01")

// keyCheck accepts goodKey and rejects everything else, as
// crypto/pgp.CheckRecipientKey would reject an expired key.
func keyCheck(armored string, at time.Time) error {
	if !at.Equal(now) {
		return fmt.Errorf("key checked at %s, want %s", at, now)
	}
	if armored == goodKey {
		return nil
	}
	return errExpiredKey
}

func newAlert() *alerts.Alert {
	a := &alerts.Alert{
		ID:       "a1",
		Title:    "Labour exploitation at building sites",
		Severity: alerts.SeverityModerate,
		Audience: alerts.Audience{Sectors: []string{"construction", "recruitment"}},
		Marking:  alerts.MarkingOfficial,
		TLP:      alerts.TLPGreen,
		Handling: alerts.Handling{Code: "P"},
	}
	a.Normalize()
	return a
}

func newSubscriber() *subscribers.Subscriber {
	s := &subscribers.Subscriber{
		ID:        "acme",
		Name:      "Acme Builders",
		Kind:      subscribers.KindBusiness,
		Sectors:   []string{"construction"},
		Clearance: alerts.TLPAmber,
		Email:     []subscribers.Email{{Address: "alerts@acme.example", PGPKey: goodKey}},
		Webhooks:  []subscribers.Webhook{{URL: "https://hooks.acme.example/herald", Secrets: []string{"whsec_x"}}},
	}
	s.Normalize()
	return s
}

// short renders a decision as decision/mode/rule for compact tables.
func short(d policy.Decision) string { return d.Decision + "/" + d.Mode + "/" + d.Rule }

func TestEvaluate(t *testing.T) {
	past, future, justNow := now.Add(-time.Second), now.Add(time.Hour), now
	const (
		emailSigned  = "deliver/signed/email.signed"
		emailCrypt   = "deliver/encrypted/email.encrypted"
		keyNotice    = "notice/key-notice/email.no-usable-key"
		hookSigned   = "deliver/signed/webhook.signed"
		hookRed      = "withhold//webhook.red"
		hookMaxTLP   = "withhold//webhook.max-tlp"
		hookInsecure = "withhold//webhook.insecure"
	)
	both := func(rule string) []string { return []string{"withhold//" + rule, "withhold//" + rule} }
	tests := []struct {
		name   string
		alert  func(*alerts.Alert)
		sub    func(*subscribers.Subscriber)
		opt    policy.Options
		want   []string
		reason string // a substring of every decision's reason, if set
	}{
		{name: "in audience GREEN OFFICIAL: signed email and webhook", want: []string{emailSigned, hookSigned}, reason: "shares a sector"},
		{name: "CLEAR: signed", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPClear }, want: []string{emailSigned, hookSigned}},

		// Rule 2: suspension.
		{name: "suspended", sub: func(s *subscribers.Subscriber) { s.Status = subscribers.StatusSuspended },
			want: both(policy.RuleSuspended)},
		{name: "suspended even when named", alert: func(a *alerts.Alert) { a.Audience.Subscribers = []string{"acme"} },
			sub: func(s *subscribers.Subscriber) { s.Status = subscribers.StatusSuspended }, want: both(policy.RuleSuspended)},
		{name: "unknown status is not active", sub: func(s *subscribers.Subscriber) { s.Status = "paused" },
			want: both(policy.RuleSuspended), reason: `"paused"`},
		{name: "suspended beats expired", alert: func(a *alerts.Alert) { a.ExpiresAt = &past },
			sub: func(s *subscribers.Subscriber) { s.Status = subscribers.StatusSuspended }, want: both(policy.RuleSuspended)},

		// Deny by default on labels validation would have refused.
		{name: "missing TLP", alert: func(a *alerts.Alert) { a.TLP = "" }, want: both(policy.RuleInvalidAlert)},
		{name: "unknown TLP", alert: func(a *alerts.Alert) { a.TLP = "WHITE" }, want: both(policy.RuleInvalidAlert)},
		{name: "SECRET marking", alert: func(a *alerts.Alert) { a.Marking = "SECRET" }, want: both(policy.RuleInvalidAlert)},
		{name: "missing marking", alert: func(a *alerts.Alert) { a.Marking = "" }, want: both(policy.RuleInvalidAlert)},
		{name: "unknown severity", alert: func(a *alerts.Alert) { a.Severity = "huge" }, want: both(policy.RuleInvalidAlert)},
		{name: "unknown status", alert: func(a *alerts.Alert) { a.Status = "draft" }, want: both(policy.RuleInvalidAlert)},

		// Rule 8: timing.
		{name: "expired", alert: func(a *alerts.Alert) { a.ExpiresAt = &past }, want: both(policy.RuleExpired)},
		{name: "expires exactly now", alert: func(a *alerts.Alert) { a.ExpiresAt = &justNow }, want: both(policy.RuleExpired)},
		{name: "expires later", alert: func(a *alerts.Alert) { a.ExpiresAt = &future }, want: []string{emailSigned, hookSigned}},
		{name: "not_before in the future is not a withhold", alert: func(a *alerts.Alert) { a.NotBefore = &future },
			want: []string{emailSigned, hookSigned}},

		// Rule 2: tests and exercises.
		{name: "test without accepts_test", alert: func(a *alerts.Alert) { a.Status = alerts.StatusTest }, want: both(policy.RuleTest)},
		{name: "exercise without accepts_test", alert: func(a *alerts.Alert) { a.Status = alerts.StatusExercise }, want: both(policy.RuleTest)},
		{name: "test to named partner without accepts_test", alert: func(a *alerts.Alert) {
			a.Status = alerts.StatusTest
			a.Audience.Subscribers = []string{"acme"}
		}, want: both(policy.RuleTest)},
		{name: "test with accepts_test", alert: func(a *alerts.Alert) { a.Status = alerts.StatusTest },
			sub: func(s *subscribers.Subscriber) { s.AcceptsTest = true }, want: []string{emailSigned, hookSigned}},
		{name: "test beats RED not named", alert: func(a *alerts.Alert) { a.Status = alerts.StatusTest; a.TLP = alerts.TLPRed },
			want: both(policy.RuleTest)},

		// Rule 2: RED only to named partners.
		{name: "RED not named", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPRed },
			sub: func(s *subscribers.Subscriber) { s.Clearance = alerts.TLPRed }, want: both(policy.RuleRedNamedOnly)},
		{name: "RED named: email encrypted, webhook withheld", alert: func(a *alerts.Alert) {
			a.TLP = alerts.TLPRed
			a.Audience.Subscribers = []string{"acme"}
		}, sub: func(s *subscribers.Subscriber) { s.Clearance = alerts.TLPRed; s.Webhooks[0].MaxTLP = alerts.TLPRed },
			want: []string{emailCrypt, hookRed}},
		{name: "RED named without RED clearance", alert: func(a *alerts.Alert) {
			a.TLP = alerts.TLPRed
			a.Audience.Subscribers = []string{"acme"}
		}, want: both(policy.RuleClearance)},

		// Rule 2: named partners skip sector, region and severity.
		{name: "named outside sectors, regions and severity", alert: func(a *alerts.Alert) {
			a.Audience = alerts.Audience{Sectors: []string{"retail"}, Regions: []string{"TLI"}, Subscribers: []string{"other", "acme"}}
			a.Severity = alerts.SeverityMinor
		}, sub: func(s *subscribers.Subscriber) { s.Regions = []string{"TLM"}; s.MinSeverity = alerts.SeverityExtreme },
			want: []string{emailSigned, hookSigned}, reason: "named in audience.subscribers"},
		{name: "named with insufficient clearance", alert: func(a *alerts.Alert) {
			a.TLP = alerts.TLPAmberStrict
			a.Audience.Subscribers = []string{"acme"}
		}, want: both(policy.RuleClearance)},
		{name: "named OFFICIAL-SENSITIVE without sensitive", alert: func(a *alerts.Alert) {
			a.Marking = alerts.MarkingOfficialSensitive
			a.Audience.Subscribers = []string{"acme"}
		}, want: both(policy.RuleSensitive)},

		// Rule 2: sectors.
		{name: "no shared sector", sub: func(s *subscribers.Subscriber) { s.Sectors = []string{"retail", "care"} },
			want: both(policy.RuleSector)},
		{name: "partner without sectors", sub: func(s *subscribers.Subscriber) { s.Sectors = nil }, want: both(policy.RuleSector)},
		{name: "alert only to named partners", alert: func(a *alerts.Alert) { a.Audience = alerts.Audience{Subscribers: []string{"other"}} },
			want: both(policy.RuleSector)},
		{name: "second sector shared", sub: func(s *subscribers.Subscriber) { s.Sectors = []string{"care", "recruitment"} },
			want: []string{emailSigned, hookSigned}},

		// Rule 2: regions.
		{name: "regions disjoint", alert: func(a *alerts.Alert) { a.Audience.Regions = []string{"TLI", "TLJ"} },
			sub: func(s *subscribers.Subscriber) { s.Regions = []string{"TLM"} }, want: both(policy.RuleRegion)},
		{name: "regions overlap", alert: func(a *alerts.Alert) { a.Audience.Regions = []string{"TLI", "TLM"} },
			sub: func(s *subscribers.Subscriber) { s.Regions = []string{"TLN", "TLM"} }, want: []string{emailSigned, hookSigned}},
		{name: "alert for UK matches every region", alert: func(a *alerts.Alert) { a.Audience.Regions = []string{"UK"} },
			sub: func(s *subscribers.Subscriber) { s.Regions = []string{"TLM"} }, want: []string{emailSigned, hookSigned}},
		{name: "partner in UK matches every region", alert: func(a *alerts.Alert) { a.Audience.Regions = []string{"TLI"} },
			sub: func(s *subscribers.Subscriber) { s.Regions = []string{"UK"} }, want: []string{emailSigned, hookSigned}},
		{name: "partner with no regions matches every region", alert: func(a *alerts.Alert) { a.Audience.Regions = []string{"TLI"} },
			want: []string{emailSigned, hookSigned}},
		{name: "alert with no regions matches every partner", sub: func(s *subscribers.Subscriber) { s.Regions = []string{"TLM"} },
			want: []string{emailSigned, hookSigned}},

		// Rule 2: severity.
		{name: "severity equal to min_severity", sub: func(s *subscribers.Subscriber) { s.MinSeverity = alerts.SeverityModerate },
			want: []string{emailSigned, hookSigned}},
		{name: "severity one below min_severity", sub: func(s *subscribers.Subscriber) { s.MinSeverity = alerts.SeveritySevere },
			want: both(policy.RuleSeverity), reason: "moderate, below the partner's min_severity severe"},
		{name: "extreme reaches extreme", alert: func(a *alerts.Alert) { a.Severity = alerts.SeverityExtreme },
			sub: func(s *subscribers.Subscriber) { s.MinSeverity = alerts.SeverityExtreme }, want: []string{emailSigned, hookSigned}},

		// Rule 3: clearance.
		{name: "TLP equal to clearance", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			want: []string{emailCrypt, hookSigned}},
		{name: "TLP one above clearance", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmberStrict },
			want: both(policy.RuleClearance), reason: "TLP:AMBER+STRICT exceeds the partner's clearance TLP:AMBER"},
		{name: "invalid clearance", sub: func(s *subscribers.Subscriber) { s.Clearance = "" }, want: both(policy.RuleClearance)},
		{name: "OFFICIAL-SENSITIVE without sensitive", alert: func(a *alerts.Alert) { a.Marking = alerts.MarkingOfficialSensitive },
			want: both(policy.RuleSensitive)},
		{name: "clearance beats sensitive", alert: func(a *alerts.Alert) {
			a.Marking = alerts.MarkingOfficialSensitive
			a.TLP = alerts.TLPRed
			a.Audience.Subscribers = []string{"acme"}
		},
			want: both(policy.RuleClearance)},

		// Rule 4: email.
		{name: "OFFICIAL-SENSITIVE GREEN is encrypted", alert: func(a *alerts.Alert) { a.Marking = alerts.MarkingOfficialSensitive },
			sub: func(s *subscribers.Subscriber) { s.Sensitive = true }, want: []string{emailCrypt, hookSigned}},
		{name: "AMBER+STRICT is encrypted", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmberStrict },
			sub: func(s *subscribers.Subscriber) {
				s.Clearance = alerts.TLPAmberStrict
				s.Webhooks[0].MaxTLP = alerts.TLPAmberStrict
			},
			want: []string{emailCrypt, hookSigned}},
		{name: "AMBER without key: notice", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub: func(s *subscribers.Subscriber) { s.Email[0].PGPKey = "" }, want: []string{keyNotice, hookSigned}},
		{name: "AMBER with unusable key: notice naming the error", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub: func(s *subscribers.Subscriber) { s.Email[0].PGPKey = badKey; s.Webhooks = nil }, want: []string{keyNotice},
			reason: errExpiredKey.Error()},
		{name: "GREEN without key: signed", sub: func(s *subscribers.Subscriber) { s.Email[0].PGPKey = "" },
			want: []string{emailSigned, hookSigned}},
		{name: "GREEN with unusable key: signed, key not consulted", sub: func(s *subscribers.Subscriber) { s.Email[0].PGPKey = badKey },
			want: []string{emailSigned, hookSigned}},
		{name: "nil KeyCheck: any key is usable", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub: func(s *subscribers.Subscriber) { s.Email[0].PGPKey = badKey }, opt: policy.Options{}, want: []string{emailCrypt, hookSigned}},
		{name: "nil KeyCheck: missing key still a notice", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub: func(s *subscribers.Subscriber) { s.Email[0].PGPKey = "" }, opt: policy.Options{}, want: []string{keyNotice, hookSigned}},

		// Rule 5: webhooks.
		{name: "max_tlp equal to TLP", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub: func(s *subscribers.Subscriber) { s.Webhooks[0].MaxTLP = alerts.TLPAmber }, want: []string{emailCrypt, hookSigned}},
		{name: "max_tlp below TLP", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub: func(s *subscribers.Subscriber) { s.Webhooks[0].MaxTLP = alerts.TLPGreen }, want: []string{emailCrypt, hookMaxTLP}},
		{name: "invalid max_tlp", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].MaxTLP = "" }, want: []string{emailSigned, hookMaxTLP}},
		{name: "RED beats max_tlp and insecure", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPRed; a.Audience.Subscribers = []string{"acme"} },
			sub: func(s *subscribers.Subscriber) {
				s.Clearance = alerts.TLPRed
				s.Webhooks[0].URL = "http://hooks.acme.example/"
			}, want: []string{emailCrypt, hookRed}},
		{name: "plain http refused", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "http://hooks.acme.example/" },
			opt: policy.Options{AllowInsecureLoopback: true}, want: []string{emailSigned, hookInsecure}},
		{name: "plain http to loopback refused unless allowed", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "http://127.0.0.1:8080/" },
			want: []string{emailSigned, hookInsecure}},
		{name: "plain http to 127.0.0.1 allowed", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "http://127.0.0.1:8080/" },
			opt: policy.Options{AllowInsecureLoopback: true}, want: []string{emailSigned, hookSigned}},
		{name: "plain http to 127.9.9.9 allowed", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "http://127.9.9.9/" },
			opt: policy.Options{AllowInsecureLoopback: true}, want: []string{emailSigned, hookSigned}},
		{name: "plain http to [::1] allowed", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "http://[::1]:9000/x" },
			opt: policy.Options{AllowInsecureLoopback: true}, want: []string{emailSigned, hookSigned}},
		{name: "plain http to localhost allowed", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "http://LocalHost:9000/x" },
			opt: policy.Options{AllowInsecureLoopback: true}, want: []string{emailSigned, hookSigned}},
		{name: "plain http to a private address refused", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "http://10.0.0.1/" },
			opt: policy.Options{AllowInsecureLoopback: true}, want: []string{emailSigned, hookInsecure}},
		{name: "plain http to a name under localhost refused", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "http://localhost.evil.example/" },
			opt: policy.Options{AllowInsecureLoopback: true}, want: []string{emailSigned, hookInsecure}},
		{name: "other scheme refused", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "ftp://hooks.acme.example/" },
			opt: policy.Options{AllowInsecureLoopback: true}, want: []string{emailSigned, hookInsecure}},
		{name: "unparsable URL refused", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "https://%zz/" },
			want: []string{emailSigned, hookInsecure}},
		{name: "HTTPS upper case accepted", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "HTTPS://hooks.acme.example/" },
			want: []string{emailSigned, hookSigned}},
		{name: "HTTPS to loopback is for the connection guard", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "https://127.0.0.1/" },
			want: []string{emailSigned, hookSigned}},
		{name: "disabled endpoint", sub: func(s *subscribers.Subscriber) { s.Webhooks[0].Disabled = true },
			want: []string{emailSigned, "withhold//webhook.disabled"}},
		{name: "OFFICIAL-SENSITIVE by HTTPS webhook to a sensitive partner", alert: func(a *alerts.Alert) { a.Marking = alerts.MarkingOfficialSensitive },
			sub: func(s *subscribers.Subscriber) { s.Sensitive = true; s.Email = nil }, want: []string{hookSigned}},

		// Targets.
		{name: "every target in record order", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub: func(s *subscribers.Subscriber) {
				s.Email = append(s.Email, subscribers.Email{Address: "b@acme.example"}, subscribers.Email{Address: "c@acme.example", PGPKey: badKey})
				s.Webhooks = append(s.Webhooks, subscribers.Webhook{URL: "https://two.acme.example/", MaxTLP: alerts.TLPGreen})
			}, want: []string{emailCrypt, keyNotice, keyNotice, hookSigned, hookMaxTLP}},
		{name: "in audience without targets", sub: func(s *subscribers.Subscriber) { s.Email, s.Webhooks = nil, nil },
			want: []string{"withhold//subscriber.no-targets"}},
		{name: "withheld without targets", sub: func(s *subscribers.Subscriber) { s.Email, s.Webhooks = nil, nil; s.Sectors = nil },
			want: []string{"withhold//audience.sector"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, s := newAlert(), newSubscriber()
			if tc.alert != nil {
				tc.alert(a)
			}
			if tc.sub != nil {
				tc.sub(s)
			}
			opt := tc.opt
			if opt.KeyCheck == nil && !strings.HasPrefix(tc.name, "nil KeyCheck") {
				opt.KeyCheck = keyCheck
			}
			ds := policy.Evaluate(a, s, now, opt)
			got := make([]string, len(ds))
			for i, d := range ds {
				got[i] = short(d)
			}
			require.Equal(t, tc.want, got)
			var targets []string
			for _, e := range s.Email {
				targets = append(targets, delivery.ChannelEmail+" "+e.Address)
			}
			for _, w := range s.Webhooks {
				targets = append(targets, delivery.ChannelWebhook+" "+w.URL)
			}
			for i, d := range ds {
				assert.Equal(t, "acme", d.Subscriber)
				assert.NotEmpty(t, d.Reason)
				if tc.reason != "" {
					assert.Contains(t, d.Reason, tc.reason)
				}
				if len(targets) == 0 {
					assert.Empty(t, d.Channel+d.Target)
				} else {
					assert.Equal(t, targets[i], d.Channel+" "+d.Target)
				}
			}
		})
	}
}

// TestEncryptionNeverSkipped checks rules 3 and 4 over every combination:
// no email ever carries content unencrypted at TLP:AMBER and above or
// OFFICIAL-SENSITIVE, encrypted content goes only to a usable key, nothing
// reaches a partner beyond its clearance, and RED never goes by webhook.
func TestEncryptionNeverSkipped(t *testing.T) {
	tlps := []alerts.TLP{alerts.TLPClear, alerts.TLPGreen, alerts.TLPAmber, alerts.TLPAmberStrict, alerts.TLPRed}
	markings := []alerts.Marking{alerts.MarkingOfficial, alerts.MarkingOfficialSensitive}
	keys := []string{"", goodKey, badKey}
	seen := map[string]bool{}
	n := 0
	for _, tlp := range tlps {
		for _, marking := range markings {
			for _, clearance := range tlps {
				for _, maxTLP := range tlps {
					for _, sensitive := range []bool{false, true} {
						for _, key := range keys {
							for _, named := range []bool{false, true} {
								a, s := newAlert(), newSubscriber()
								a.TLP, a.Marking = tlp, marking
								if named {
									a.Audience.Subscribers = []string{s.ID}
								}
								s.Clearance, s.Sensitive, s.Email[0].PGPKey = clearance, sensitive, key
								s.Webhooks[0].MaxTLP = maxTLP
								restricted := tlp.Rank() >= alerts.TLPAmber.Rank() || marking.Sensitive()
								for _, d := range policy.Evaluate(a, s, now, policy.Options{KeyCheck: keyCheck}) {
									n++
									seen[d.Rule] = true
									where := fmt.Sprintf("%s %s clearance=%s max_tlp=%s sensitive=%v key=%v named=%v: %+v",
										tlp, marking, clearance, maxTLP, sensitive, len(key) > 0, named, d)
									require.Contains(t, []string{delivery.Deliver, delivery.Notice, delivery.Withhold}, d.Decision, where)
									require.Equal(t, d.Decision == delivery.Withhold, d.Mode == "", where)
									if d.Decision == delivery.Withhold {
										continue
									}
									require.False(t, tlp.Exceeds(clearance), where)
									require.True(t, !marking.Sensitive() || sensitive, where)
									require.True(t, tlp != alerts.TLPRed || named, where)
									switch d.Channel {
									case delivery.ChannelEmail:
										if restricted {
											require.NotEqual(t, delivery.ModeSigned, d.Mode, where)
											if d.Decision == delivery.Deliver {
												require.Equal(t, delivery.ModeEncrypted, d.Mode, where)
												require.Equal(t, goodKey, key, where)
											}
										} else {
											require.Equal(t, delivery.ModeSigned, d.Mode, where)
										}
									case delivery.ChannelWebhook:
										require.NotEqual(t, alerts.TLPRed, tlp, where)
										require.False(t, tlp.Exceeds(maxTLP), where)
										require.Equal(t, delivery.ModeSigned, d.Mode, where)
									default:
										t.Fatalf("unexpected channel: %s", where)
									}
								}
							}
						}
					}
				}
			}
		}
	}
	require.Equal(t, 5*2*5*5*2*3*2*2, n)
	for _, r := range []string{policy.RuleEmailSigned, policy.RuleEmailCrypt, policy.RuleNoUsableKey, policy.RuleWebhookSign,
		policy.RuleWebhookRed, policy.RuleWebhookTLP, policy.RuleClearance, policy.RuleSensitive, policy.RuleRedNamedOnly} {
		assert.True(t, seen[r], "rule %s never exercised", r)
	}
}

func TestEvaluateDoesNotModifyInputs(t *testing.T) {
	a, s := newAlert(), newSubscriber()
	a.TLP = alerts.TLPAmber
	a0, _ := json.Marshal(a)
	s0, _ := json.Marshal(s)
	policy.Evaluate(a, s, now, policy.Options{KeyCheck: keyCheck})
	a1, _ := json.Marshal(a)
	s1, _ := json.Marshal(s)
	require.JSONEq(t, string(a0), string(a1))
	require.JSONEq(t, string(s0), string(s1))
}

func TestAppend(t *testing.T) {
	a, s := newAlert(), newSubscriber()
	dst := []policy.Decision{{Subscriber: "earlier"}}
	dst = policy.Append(dst, a, s, now, policy.Options{})
	require.Len(t, dst, 3)
	require.Equal(t, "earlier", dst[0].Subscriber)
	require.Equal(t, policy.Evaluate(a, s, now, policy.Options{}), dst[1:])
}

func TestDecisionJSON(t *testing.T) {
	d := policy.Decision{Subscriber: "acme", Target: "", Decision: delivery.Withhold, Rule: policy.RuleSector, Reason: "r"}
	b, err := json.Marshal(d)
	require.NoError(t, err)
	require.JSONEq(t, `{"subscriber":"acme","target":"","decision":"withhold","rule":"audience.sector","reason":"r"}`, string(b))
}

func TestNeedsRelease(t *testing.T) {
	list := []string{"AMBER", "amber+strict", "TLP:RED", "official-sensitive"}
	for _, tc := range []struct {
		tlp     alerts.TLP
		marking alerts.Marking
		want    bool
	}{
		{alerts.TLPClear, alerts.MarkingOfficial, false},
		{alerts.TLPGreen, alerts.MarkingOfficial, false},
		{alerts.TLPGreen, alerts.MarkingOfficialSensitive, true},
		{alerts.TLPAmber, alerts.MarkingOfficial, true},
		{alerts.TLPAmberStrict, alerts.MarkingOfficial, true},
		{alerts.TLPRed, alerts.MarkingOfficial, true},
	} {
		a := &alerts.Alert{TLP: tc.tlp, Marking: tc.marking}
		assert.Equal(t, tc.want, policy.NeedsRelease(a, list), "%s %s", tc.tlp, tc.marking)
		assert.False(t, policy.NeedsRelease(a, nil), "an empty list turns release off")
	}
}

func TestRules(t *testing.T) {
	rules := policy.Rules()
	names := map[string]bool{}
	for _, r := range rules {
		assert.False(t, names[r.Name], "rule %s listed twice", r.Name)
		names[r.Name] = true
		assert.NotEmpty(t, r.Description, r.Name)
		assert.NotContains(t, r.Description, "\n", r.Name)
	}
	for _, r := range []string{policy.RuleSuspended, policy.RuleInvalidAlert, policy.RuleExpired, policy.RuleTest,
		policy.RuleRedNamedOnly, policy.RuleNamed, policy.RuleSector, policy.RuleRegion, policy.RuleSeverity,
		policy.RuleClearance, policy.RuleSensitive, policy.RuleNoTargets, policy.RuleEmailSigned, policy.RuleEmailCrypt,
		policy.RuleNoUsableKey, policy.RuleWebhookRed, policy.RuleWebhookTLP, policy.RuleInsecure, policy.RuleDisabled,
		policy.RuleWebhookSign, policy.RulePullRed, policy.RulePullTLP, policy.RulePullAvailable,
		policy.RuleNoLongerEligible, policy.RuleFollowUpNoKey} {
		assert.True(t, names[r], "rule %s missing from Rules()", r)
	}
	assert.Len(t, rules, 25)
}

// TestPull: the pull channel is judged like a webhook (max_tlp, never
// RED) after the rules about the partner as a whole, and is decided last.
func TestPull(t *testing.T) {
	const (
		available = "deliver/pull/pull.available"
		red       = "withhold//pull.red"
		maxTLP    = "withhold//pull.max-tlp"
	)
	tests := []struct {
		name  string
		alert func(*alerts.Alert)
		sub   func(*subscribers.Subscriber)
		want  string
	}{
		{name: "GREEN within a GREEN pull", want: available},
		{name: "AMBER above a GREEN pull", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber }, want: maxTLP},
		{name: "AMBER within an AMBER pull", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmber },
			sub: func(s *subscribers.Subscriber) { s.Pull.MaxTLP = alerts.TLPAmber }, want: available},
		{name: "RED never, even named and cleared", alert: func(a *alerts.Alert) {
			a.TLP, a.Audience.Subscribers = alerts.TLPRed, []string{"acme"}
		}, sub: func(s *subscribers.Subscriber) { s.Clearance, s.Pull.MaxTLP = alerts.TLPRed, alerts.TLPRed }, want: red},
		{name: "another sector sees nothing", alert: func(a *alerts.Alert) { a.Audience.Sectors = []string{"retail"} },
			want: "withhold//audience.sector"},
		{name: "suspended", sub: func(s *subscribers.Subscriber) { s.Status = subscribers.StatusSuspended },
			want: "withhold//subscriber.suspended"},
		{name: "above clearance", alert: func(a *alerts.Alert) { a.TLP = alerts.TLPAmberStrict },
			sub: func(s *subscribers.Subscriber) { s.Pull.MaxTLP = alerts.TLPAmberStrict }, want: "withhold//clearance.tlp"},
		{name: "OFFICIAL-SENSITIVE needs sensitive", alert: func(a *alerts.Alert) { a.Marking = alerts.MarkingOfficialSensitive },
			want: "withhold//clearance.sensitive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, s := newAlert(), newSubscriber()
			s.Pull = &subscribers.Pull{MaxTLP: alerts.TLPGreen}
			if tt.alert != nil {
				tt.alert(a)
			}
			if tt.sub != nil {
				tt.sub(s)
			}
			ds := policy.Evaluate(a, s, now, policy.Options{KeyCheck: keyCheck})
			require.Len(t, ds, 3, "email, webhook, pull")
			d := ds[2]
			assert.Equal(t, delivery.ChannelPull, d.Channel)
			assert.Equal(t, delivery.TargetPull, d.Target)
			assert.Equal(t, tt.want, short(d), d.Reason)
			one, ok := policy.Pull(a, s, now, policy.Options{KeyCheck: keyCheck})
			require.True(t, ok)
			assert.Equal(t, d, one, "Pull is Evaluate's pull decision")
		})
	}
	t.Run("pull alone is a target", func(t *testing.T) {
		s := newSubscriber()
		s.Email, s.Webhooks, s.Pull = nil, nil, &subscribers.Pull{MaxTLP: alerts.TLPGreen}
		ds := policy.Evaluate(newAlert(), s, now, policy.Options{})
		require.Len(t, ds, 1)
		assert.Equal(t, available, short(ds[0]))
	})
	t.Run("no pull channel", func(t *testing.T) {
		_, ok := policy.Pull(newAlert(), newSubscriber(), now, policy.Options{KeyCheck: keyCheck})
		assert.False(t, ok)
	})
}
