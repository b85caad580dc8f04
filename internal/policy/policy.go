// Package policy is Herald's dissemination policy (PRODUCT.md §3, rules 2
// to 5 and 8, and rule 7 through FollowUp): a pure function from an alert,
// one partner and the time to a decision for each of the partner's
// targets. Rule 1 (ingest) belongs to the fan-out and rule 6 (fail closed)
// to the delivery workers. It does no I/O and keeps no
// state, so the fan-out worker, the dry run of `herald publish` and the
// API's preview all decide alike.
//
// The policy denies by default and the most restrictive rule wins: checks
// run from the partner as a whole (suspension, timing, audience,
// clearance) down to each target (email encryption, webhook limits), and
// the first that says no decides. Labels follow FIRST TLP 2.0 and the UK
// Government Security Classifications (OFFICIAL, OFFICIAL-SENSITIVE);
// email is protected as RFC 3156 PGP/MIME and webhooks are signed per
// Standard Webhooks v1, by the delivery workers, in the Mode decided here.
package policy

import (
	"strconv"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/subscribers"
)

// Options are the operator's settings the policy depends on.
type Options struct {
	// AllowInsecureLoopback permits plain-HTTP webhooks whose host is a
	// loopback address or localhost (webhooks.allow_insecure_loopback),
	// for development only.
	AllowInsecureLoopback bool
	// KeyCheck reports why an armoured OpenPGP public key cannot be used
	// to encrypt at now, or nil if it can. Nil means every non-empty key
	// is usable. In production it is crypto/pgp.CheckRecipientKey, which
	// parses the key: that is by far the most expensive part of Evaluate,
	// so a caller evaluating many alerts should pass a cached check
	// (keyed by the armoured key, invalidated when the key's earliest
	// expiry passes).
	KeyCheck func(armored string, now time.Time) error
}

// Decision is the policy's verdict for one target of one partner. It is
// recorded, positive or not, with the rule that made it.
type Decision struct {
	// Subscriber is the partner's id.
	Subscriber string `json:"subscriber"`
	// Incarnation is the Incarnation of the partner's record decided with
	// (subscribers.Subscriber.Incarnation): the fan-out writes it on the
	// decision's job and receipt, so that it is delivered to, and belongs
	// to the history of, that incarnation of the partner's id alone.
	Incarnation string `json:"-"`
	// Channel is delivery.ChannelEmail, delivery.ChannelWebhook or
	// delivery.ChannelPull; it is empty when the partner has no targets.
	Channel string `json:"channel,omitempty"`
	// Target is the email address, the webhook URL, or delivery.TargetPull.
	Target string `json:"target"`
	// Decision is delivery.Deliver, delivery.Notice or delivery.Withhold.
	Decision string `json:"decision"`
	// Mode is how the content is protected (delivery.ModeSigned,
	// ModeEncrypted) or which content-free notice goes (ModeKeyNotice,
	// ModeCancelNotice); it is empty when the target is withheld.
	Mode string `json:"mode,omitempty"`
	// Rule names the rule that decided; see Rules.
	Rule string `json:"rule"`
	// Reason explains the decision in a sentence for people.
	Reason string `json:"reason"`
}

// Names of the rules, as recorded in decisions and receipts.
const (
	RuleSuspended     = "subscriber.suspended"
	RuleInvalidAlert  = "alert.invalid"
	RuleExpired       = "timing.expired"
	RuleTest          = "audience.test"
	RuleRedNamedOnly  = "audience.red-named-only"
	RuleNamed         = "audience.named"
	RuleSector        = "audience.sector"
	RuleRegion        = "audience.region"
	RuleSeverity      = "audience.severity"
	RuleClearance     = "clearance.tlp"
	RuleSensitive     = "clearance.sensitive"
	RuleNoTargets     = "subscriber.no-targets"
	RuleEmailSigned   = "email.signed"
	RuleEmailCrypt    = "email.encrypted"
	RuleNoUsableKey   = "email.no-usable-key"
	RuleWebhookRed    = "webhook.red"
	RuleWebhookTLP    = "webhook.max-tlp"
	RuleInsecure      = "webhook.insecure"
	RuleDisabled      = "webhook.disabled"
	RuleWebhookSign   = "webhook.signed"
	RulePullRed       = "pull.red"
	RulePullTLP       = "pull.max-tlp"
	RulePullAvailable = "pull.available"
	// RuleNoLongerEligible and RuleFollowUpNoKey are applied by FollowUp
	// (rule 7).
	RuleNoLongerEligible = "update.no-longer-eligible"
	RuleFollowUpNoKey    = "update.no-usable-key"
)

// RuleInfo describes one rule for documentation.
type RuleInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Rules lists every rule the policy records, in the order they are
// checked, each with a one-line description.
func Rules() []RuleInfo {
	return []RuleInfo{
		{RuleSuspended, "withhold: a partner whose status is not active gets nothing"},
		{RuleInvalidAlert, "withhold: an alert with an unknown TLP, marking, severity or status goes nowhere (deny by default)"},
		{RuleExpired, "withhold: nothing is delivered at or after the alert's expires_at"},
		{RuleTest, "withhold: exercise and test alerts reach only partners with accepts_test, named or not"},
		{RuleRedNamedOnly, "withhold: TLP:RED goes only to partners named in audience.subscribers"},
		{RuleNamed, "audience: a partner named in audience.subscribers is in the audience whatever its sectors, regions and min_severity (noted in the decision's reason)"},
		{RuleSector, "withhold: a partner not named must share a sector with the alert"},
		{RuleRegion, "withhold: where alert and partner both give regions they must share one; UK on either side matches all"},
		{RuleSeverity, "withhold: a partner not named gets only alerts at or above its min_severity"},
		{RuleClearance, "withhold: the alert's TLP must not exceed the partner's clearance, named or not"},
		{RuleSensitive, "withhold: OFFICIAL-SENSITIVE needs a partner cleared as sensitive, named or not"},
		{RuleNoTargets, "withhold: the partner is in the audience but has no email address, webhook or pull channel"},
		{RuleEmailSigned, "deliver: below TLP:AMBER and OFFICIAL, email is PGP/MIME signed"},
		{RuleEmailCrypt, "deliver: TLP:AMBER and above and OFFICIAL-SENSITIVE go PGP/MIME signed and encrypted to the address's key"},
		{RuleNoUsableKey, "notice: content that must be encrypted is not sent to an address without a usable key; a content-free notice goes instead"},
		{RuleWebhookRed, "withhold: TLP:RED never goes by webhook"},
		{RuleWebhookTLP, "withhold: the alert's TLP exceeds the endpoint's max_tlp"},
		{RuleInsecure, "withhold: the endpoint's URL breaks the webhook URL rule (subscribers.WebhookURL): HTTPS, or plain HTTP to loopback when the operator allows it; no credentials or fragment"},
		{RuleDisabled, "withhold: the endpoint answered 410 Gone and is disabled until an administrator re-enables it"},
		{RuleWebhookSign, "deliver: the webhook is signed (Standard Webhooks v1 and an OpenPGP detached signature)"},
		{RulePullRed, "withhold: TLP:RED is never served by pull"},
		{RulePullTLP, "withhold: the alert's TLP exceeds the pull channel's max_tlp"},
		{RulePullAvailable, "deliver: the alert joins the partner's pull collection (TAXII 2.1 and MISP feed), served only to its partner token and only while the policy, judged again at each request against the partner's current record, still allows it"},
		{RuleNoLongerEligible, "notice: a target that received the referenced alert but may not receive its update or cancel gets a content-free notice that the alert it holds was withdrawn"},
		{RuleFollowUpNoKey, "notice: a target that received the referenced alert but cannot read its encrypted update or cancel (no usable key) gets a content-free notice that the alert it holds was updated or withdrawn, with the key advice"},
	}
}

// Reasons of the positive decisions, fixed so that deciding allocates
// little.
const (
	namedPrefix   = "named in audience.subscribers; "
	matchedPrefix = "shares a sector, region and severity with the alert; "

	reasonEmailSigned    = "signed email: the alert is below TLP:AMBER and OFFICIAL"
	reasonEmailEncrypted = "signed and encrypted email to the address's key: the alert is TLP:AMBER or above, or OFFICIAL-SENSITIVE"
	reasonWebhookHTTPS   = "signed webhook over HTTPS"
	reasonWebhookLoop    = "signed webhook over plain HTTP to loopback, allowed by webhooks.allow_insecure_loopback"
	reasonPull           = "in the partner's pull collection (TAXII 2.1 and MISP feed)"
	reasonNoKey          = "the alert must be encrypted and the address has no OpenPGP key; only a content-free notice goes"
)

// reasons are the reasons of the positive decisions with their prefix,
// concatenated once: a fan-out to 10,000 partners holds 20,000 decisions,
// and a reason made for each would add 2 MB to them.
type reasons struct {
	emailSigned, emailEncrypted, noKey, webhookHTTPS, webhookLoop, pull string
}

var (
	matchedReasons = reasons{
		emailSigned: matchedPrefix + reasonEmailSigned, emailEncrypted: matchedPrefix + reasonEmailEncrypted,
		noKey: matchedPrefix + reasonNoKey, webhookHTTPS: matchedPrefix + reasonWebhookHTTPS,
		webhookLoop: matchedPrefix + reasonWebhookLoop, pull: matchedPrefix + reasonPull,
	}
	namedReasons = reasons{
		emailSigned: namedPrefix + reasonEmailSigned, emailEncrypted: namedPrefix + reasonEmailEncrypted,
		noKey: namedPrefix + reasonNoKey, webhookHTTPS: namedPrefix + reasonWebhookHTTPS,
		webhookLoop: namedPrefix + reasonWebhookLoop, pull: namedPrefix + reasonPull,
	}
)

// Evaluate decides, for every target of s, whether and how a may reach it
// at now. It returns one decision per email address, then one per
// webhook, in record order, then one for the pull channel if the partner
// has one. When a rule about the partner as a whole says no, every target
// gets that withhold; a partner without targets gets one decision with an
// empty Channel and Target.
func Evaluate(a *alerts.Alert, s *subscribers.Subscriber, now time.Time, opt Options) []Decision {
	return Append(make([]Decision, 0, max(1, targets(s))), a, s, now, opt)
}

// targets counts the partner's targets.
func targets(s *subscribers.Subscriber) int {
	n := len(s.Email) + len(s.Webhooks)
	if s.Pull != nil {
		n++
	}
	return n
}

// Pull returns the decision for the partner's pull channel, with
// Evaluate's rules; ok is false when the partner has no pull channel. It
// is what the pull servers ask at every request.
func Pull(a *alerts.Alert, s *subscribers.Subscriber, now time.Time, opt Options) (d Decision, ok bool) {
	if s.Pull == nil {
		return Decision{}, false
	}
	only := *s // the pull channel alone: no key to check, no URL to parse
	only.Email, only.Webhooks = nil, nil
	var one [1]Decision
	return Append(one[:0], a, &only, now, opt)[0], true
}

// Append is Evaluate appending to dst, for callers that evaluate many
// partners into one slice.
func Append(dst []Decision, a *alerts.Alert, s *subscribers.Subscriber, now time.Time, opt Options) []Decision {
	from := len(dst)
	dst = appendDecisions(dst, a, s, now, opt)
	for i := from; i < len(dst); i++ {
		dst[i].Incarnation = s.Incarnation
	}
	return dst
}

// appendDecisions is Append without the record's incarnation.
func appendDecisions(dst []Decision, a *alerts.Alert, s *subscribers.Subscriber, now time.Time, opt Options) []Decision {
	rule, reason, named := partner(a, s, now)
	if rule != "" {
		return withholdAll(dst, s, rule, reason)
	}
	if targets(s) == 0 {
		return append(dst, Decision{Subscriber: s.ID, Decision: delivery.Withhold, Rule: RuleNoTargets,
			Reason: "in the audience but the record has no email address, webhook or pull channel"})
	}
	prefix, why := matchedPrefix, &matchedReasons
	if named {
		prefix, why = namedPrefix, &namedReasons
	}
	encrypt := a.MustEncrypt()
	for _, e := range s.Email {
		d := Decision{Subscriber: s.ID, Channel: delivery.ChannelEmail, Target: e.Address}
		switch {
		case !encrypt:
			d.Decision, d.Mode, d.Rule, d.Reason = delivery.Deliver, delivery.ModeSigned, RuleEmailSigned, why.emailSigned
		case e.PGPKey == "":
			d.Decision, d.Mode, d.Rule = delivery.Notice, delivery.ModeKeyNotice, RuleNoUsableKey
			d.Reason = why.noKey
		default:
			var err error
			if opt.KeyCheck != nil {
				err = opt.KeyCheck(e.PGPKey, now)
			}
			if err != nil {
				d.Decision, d.Mode, d.Rule = delivery.Notice, delivery.ModeKeyNotice, RuleNoUsableKey
				d.Reason = prefix + "the alert must be encrypted and the address's key is not usable (" + err.Error() + "); only a content-free notice goes"
			} else {
				d.Decision, d.Mode, d.Rule, d.Reason = delivery.Deliver, delivery.ModeEncrypted, RuleEmailCrypt, why.emailEncrypted
			}
		}
		dst = append(dst, d)
	}
	for _, w := range s.Webhooks {
		d := Decision{Subscriber: s.ID, Channel: delivery.ChannelWebhook, Target: w.URL, Decision: delivery.Withhold}
		_, loopback, urlErr := subscribers.WebhookURL(w.URL, opt.AllowInsecureLoopback)
		switch {
		case a.TLP == alerts.TLPRed:
			d.Rule, d.Reason = RuleWebhookRed, "TLP:RED never goes by webhook"
		case !w.MaxTLP.Valid() || a.TLP.Exceeds(w.MaxTLP):
			d.Rule, d.Reason = RuleWebhookTLP, a.TLP.Label()+" exceeds the endpoint's max_tlp "+w.MaxTLP.Label()
		case urlErr != nil:
			d.Rule, d.Reason = RuleInsecure, "the endpoint's URL is refused: "+urlErr.Error()
		case w.Disabled:
			d.Rule, d.Reason = RuleDisabled, "the endpoint answered 410 Gone and is disabled"
		case loopback:
			d.Decision, d.Mode, d.Rule, d.Reason = delivery.Deliver, delivery.ModeSigned, RuleWebhookSign, why.webhookLoop
		default:
			d.Decision, d.Mode, d.Rule, d.Reason = delivery.Deliver, delivery.ModeSigned, RuleWebhookSign, why.webhookHTTPS
		}
		dst = append(dst, d)
	}
	if p := s.Pull; p != nil {
		d := Decision{Subscriber: s.ID, Channel: delivery.ChannelPull, Target: delivery.TargetPull, Decision: delivery.Withhold}
		switch {
		case a.TLP == alerts.TLPRed:
			d.Rule, d.Reason = RulePullRed, "TLP:RED is never served by pull"
		case !p.MaxTLP.Valid() || a.TLP.Exceeds(p.MaxTLP):
			d.Rule, d.Reason = RulePullTLP, a.TLP.Label()+" exceeds the pull channel's max_tlp "+p.MaxTLP.Label()
		default:
			d.Decision, d.Mode, d.Rule, d.Reason = delivery.Deliver, delivery.ModePull, RulePullAvailable, why.pull
		}
		dst = append(dst, d)
	}
	return dst
}

// partner applies the rules about the partner as a whole. It returns the
// rule and reason of a withhold, or an empty rule and whether the partner
// is in the audience because it is named.
func partner(a *alerts.Alert, s *subscribers.Subscriber, now time.Time) (rule, reason string, named bool) {
	if !s.Active() {
		return RuleSuspended, "the partner's status is " + quote(s.Status) + ", not active: it gets nothing", false
	}
	if r := invalid(a); r != "" {
		return RuleInvalidAlert, r, false
	}
	if a.ExpiresAt != nil && !now.Before(*a.ExpiresAt) {
		return RuleExpired, "the alert expired at " + a.ExpiresAt.UTC().Format(time.RFC3339), false
	}
	if a.Status.IsTest() && !s.AcceptsTest {
		return RuleTest, "the alert is a " + string(a.Status) + " and the partner does not accept tests", false
	}
	named = a.Named(s.ID)
	if a.TLP == alerts.TLPRed && !named {
		return RuleRedNamedOnly, "TLP:RED goes only to partners named in audience.subscribers", false
	}
	if !named {
		if !s.SharesSector(a.Audience.Sectors) {
			return RuleSector, "the partner shares no sector with the alert", false
		}
		if !sharesRegion(a.Audience.Regions, s.Regions) {
			return RuleRegion, "the partner shares no region with the alert", false
		}
		if a.Severity.Rank() < s.MinSeverity.Rank() {
			return RuleSeverity, "the alert is " + string(a.Severity) + ", below the partner's min_severity " + string(s.MinSeverity), false
		}
	}
	if !s.Clearance.Valid() || a.TLP.Exceeds(s.Clearance) {
		return RuleClearance, a.TLP.Label() + " exceeds the partner's clearance " + s.Clearance.Label(), named
	}
	if a.Marking != alerts.MarkingOfficial && !s.Sensitive {
		return RuleSensitive, "the alert is " + string(a.Marking) + " and the partner is not cleared for it", named
	}
	return "", "", named
}

// invalid reports why the alert's labels cannot be judged, or "". A
// validated alert always passes; an unvalidated one with an unknown label
// must not slip through as if it were the least restricted.
func invalid(a *alerts.Alert) string {
	switch {
	case !a.TLP.Valid():
		return "the alert's TLP " + quote(string(a.TLP)) + " is not a TLP 2.0 label"
	case !a.Marking.Valid():
		return "the alert's marking " + quote(string(a.Marking)) + " is not OFFICIAL or OFFICIAL-SENSITIVE"
	case !a.Severity.Valid():
		return "the alert's severity " + quote(string(a.Severity)) + " is not a CAP severity"
	}
	switch a.Status {
	case alerts.StatusActual, alerts.StatusExercise, alerts.StatusTest, "":
		return ""
	}
	return "the alert's status " + quote(string(a.Status)) + " is not actual, exercise or test"
}

// sharesRegion applies rule 2's regions: no regions on either side, or
// UK on either side, matches every region; otherwise they must share one.
func sharesRegion(alert, partner []string) bool {
	if len(alert) == 0 || len(partner) == 0 {
		return true
	}
	for _, p := range partner {
		if p == taxonomy.AllRegions {
			return true
		}
	}
	for _, r := range alert {
		if r == taxonomy.AllRegions {
			return true
		}
		for _, p := range partner {
			if r == p {
				return true
			}
		}
	}
	return false
}

func withholdAll(dst []Decision, s *subscribers.Subscriber, rule, reason string) []Decision {
	if targets(s) == 0 {
		return append(dst, Decision{Subscriber: s.ID, Decision: delivery.Withhold, Rule: rule, Reason: reason})
	}
	for _, e := range s.Email {
		dst = append(dst, Decision{Subscriber: s.ID, Channel: delivery.ChannelEmail, Target: e.Address,
			Decision: delivery.Withhold, Rule: rule, Reason: reason})
	}
	for _, w := range s.Webhooks {
		dst = append(dst, Decision{Subscriber: s.ID, Channel: delivery.ChannelWebhook, Target: w.URL,
			Decision: delivery.Withhold, Rule: rule, Reason: reason})
	}
	if s.Pull != nil {
		dst = append(dst, Decision{Subscriber: s.ID, Channel: delivery.ChannelPull, Target: delivery.TargetPull,
			Decision: delivery.Withhold, Rule: rule, Reason: reason})
	}
	return dst
}

func quote(s string) string { return strconv.Quote(s) }

// NeedsRelease reports whether a must wait for a second analyst before it
// is fanned out (PRODUCT.md §10): its TLP or its marking is listed in
// release.second_analyst. It is the one home of the rule: publishing holds
// such an alert as pending, and the fan-out refuses one that arrives
// without a second analyst's approval.
func NeedsRelease(a *alerts.Alert, secondAnalyst []string) bool {
	for _, s := range secondAnalyst {
		if alerts.NormalizeTLP(s) == a.TLP || alerts.Marking(strings.ToUpper(strings.TrimSpace(s))) == a.Marking {
			return true
		}
	}
	return false
}
