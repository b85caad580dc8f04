package demo

import (
	"fmt"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/sink"
	"github.com/herald-alerts/herald/subscribers"
)

// partner is one sample partner organisation and the key its mailbox
// decrypts with (nil for a partner without a key).
type partner struct {
	sub       *subscribers.Subscriber
	secretKey []byte
	publicKey []byte
}

// Partner ids of the sample set.
const (
	bank     = "northbank"
	agency   = "staffright"
	hotels   = "grandstay"
	ngo      = "freedom-trust"
	farms    = "harvest-farms"
	cleaning = "sparkle-cleaning"
)

// keyName drops the characters an OpenPGP user id may not hold in its name.
var keyName = strings.NewReplacer("(", "", ")", "", "<", "", ">", "")

// samplePartners builds the partner records: a bank, a recruitment agency,
// a hotel chain, an NGO, a suspended farm co-operative and a cleaning firm
// that takes only the most severe alerts. Every mailbox except the hotel
// chain's has a fresh Ed25519 key; webhooks point at hooks.
func samplePartners(hooks *sink.Receiver, now time.Time) ([]*partner, error) {
	secret := func() (string, error) { return whsig.NewSecret() }
	type spec struct {
		sub   subscribers.Subscriber
		key   bool
		hooks int // secrets of the partner's webhook (0: no webhook); two shows rotation
		max   alerts.TLP
	}
	specs := []spec{
		{sub: subscribers.Subscriber{ID: bank, Name: "Northbank plc (financial crime unit)", Kind: subscribers.KindBusiness,
			Sectors: []string{"financial-services"}, Clearance: alerts.TLPAmber, Sensitive: true, MinSeverity: alerts.SeverityModerate,
			Email: []subscribers.Email{{Address: "fincrime@northbank.example"}},
			// A pull channel, so that the sandbox's partner token (the
			// bank's) can read a TAXII collection and a MISP feed.
			Pull: &subscribers.Pull{MaxTLP: alerts.TLPAmber}}, key: true, hooks: 2},
		{sub: subscribers.Subscriber{ID: agency, Name: "StaffRight Recruitment Ltd", Kind: subscribers.KindBusiness,
			Sectors: []string{"recruitment", "hospitality"}, Regions: []string{"TLI", "TLJ"}, Clearance: alerts.TLPGreen,
			Email: []subscribers.Email{{Address: "compliance@staffright.example"}}}, key: true, hooks: 1},
		{sub: subscribers.Subscriber{ID: hotels, Name: "GrandStay Hotels Group", Kind: subscribers.KindBusiness,
			Sectors: []string{"hospitality"}, Clearance: alerts.TLPAmber, Sensitive: true,
			Email: []subscribers.Email{{Address: "security@grandstay.example"}}}},
		{sub: subscribers.Subscriber{ID: ngo, Name: "Freedom Trust (NGO)", Kind: subscribers.KindNGO,
			Sectors:   []string{"agriculture", "hospitality", "recruitment", "car-washes", "nail-bars", "care", "construction"},
			Clearance: alerts.TLPRed, Sensitive: true, AcceptsTest: true,
			Email: []subscribers.Email{{Address: "alerts@freedomtrust.example"}}}, key: true, hooks: 1, max: alerts.TLPGreen},
		{sub: subscribers.Subscriber{ID: farms, Name: "Harvest Farms Co-operative", Kind: subscribers.KindBusiness,
			Sectors: []string{"agriculture", "hospitality"}, Regions: []string{"TLF"}, Clearance: alerts.TLPGreen,
			Status: subscribers.StatusSuspended,
			Email:  []subscribers.Email{{Address: "office@harvestfarms.example"}}}, key: true, hooks: 1},
		{sub: subscribers.Subscriber{ID: cleaning, Name: "Sparkle Cleaning Services", Kind: subscribers.KindBusiness,
			Sectors: []string{"cleaning", "hospitality"}, Clearance: alerts.TLPGreen, MinSeverity: alerts.SeverityExtreme,
			Email: []subscribers.Email{{Address: "ops@sparkle.example"}}}},
	}
	out := make([]*partner, 0, len(specs))
	for _, sp := range specs {
		p := &partner{sub: &sp.sub}
		if sp.key {
			priv, pub, err := pgp.GenerateKey(keyName.Replace(sp.sub.Name), sp.sub.Email[0].Address, pgp.AlgoEd25519, now)
			if err != nil {
				return nil, fmt.Errorf("generate key of partner %s: %w", sp.sub.ID, err)
			}
			p.secretKey, p.publicKey = priv, pub
			p.sub.Email[0].PGPKey = string(pub)
		}
		if sp.hooks > 0 {
			w := subscribers.Webhook{URL: hooks.URL("/hooks/" + sp.sub.ID), MaxTLP: sp.max}
			for range sp.hooks {
				s, err := secret()
				if err != nil {
					return nil, fmt.Errorf("webhook secret of partner %s: %w", sp.sub.ID, err)
				}
				w.Secrets = append(w.Secrets, s)
			}
			p.sub.Webhooks = []subscribers.Webhook{w}
		}
		p.sub.Normalize()
		out = append(out, p)
	}
	return out, nil
}

// sampleAlerts returns the three alerts the demo publishes: a TLP:GREEN
// OFFICIAL sector warning, a TLP:AMBER OFFICIAL-SENSITIVE alert, and a
// cancel of the first raised to TLP:AMBER (an update or cancel may raise,
// never lower, the original's labels).
func sampleAlerts(now time.Time) []*alerts.Alert {
	issued := now.UTC().Truncate(time.Second)
	mk := func(a alerts.Alert) *alerts.Alert {
		a.ID = alerts.NewID(now)
		a.IssuedBy, a.IssuedAt = "demo:analyst", &issued
		return &a
	}
	green := mk(alerts.Alert{
		Title:   "Labour exploitation via third-party agency supplying hotel housekeeping staff",
		Summary: "An organised crime group is placing workers in hotel housekeeping roles through a front recruitment agency, retaining their wages and passports.",
		Body: "Workers are recruited abroad with promises of well-paid hospitality work, transported in groups, and housed in\n" +
			"overcrowded addresses controlled by the group. Wages are paid into accounts the workers do not control.\n" +
			"Hotels using the agency may be unknowingly funding the exploitation.",
		Severity: alerts.SeveritySevere,
		Audience: alerts.Audience{Sectors: []string{"hospitality", "recruitment", "financial-services"}},
		Marking:  alerts.MarkingOfficial,
		TLP:      alerts.TLPGreen,
		Handling: alerts.Handling{Code: "P"},
		Grading:  &alerts.Grading{Source: 2, Intelligence: "B"},
		Indicators: []alerts.Indicator{
			{Type: "phone", Value: "+44 7700 900123", Context: "agency contact number"},
			{Type: "iban", Value: "GB33BUKB20201555555555", Context: "account receiving workers' wages"},
			{Type: "address", Value: "14 Example Road, Luton", Context: "worker accommodation"},
		},
		Actions: []string{
			"Check whether you use an agency trading with the phone number above.",
			"Look for several workers sharing one bank account or one home address.",
		},
		Reporting: "Report a match to the Modern Slavery and Human Trafficking Unit, or submit a SAR with glossary code XXMSHTXX.",
		Contact:   "msht-alerts@agency.example",
	})
	amber := mk(alerts.Alert{
		Title:    "Named recruitment front company linked to forced labour in hotel sector",
		Summary:  "Details of the front company and the accounts it uses to take workers' wages.",
		Body:     "The company trades as \"Example Staffing Solutions\" and invoices hotels weekly; wages are swept to the account below within a day.",
		Severity: alerts.SeverityExtreme,
		Audience: alerts.Audience{Sectors: []string{"hospitality", "financial-services"}},
		Marking:  alerts.MarkingOfficialSensitive,
		TLP:      alerts.TLPAmber,
		Handling: alerts.Handling{Code: "C", Conditions: "Share only within your organisation's financial crime and safeguarding teams."},
		Indicators: []alerts.Indicator{
			{Type: "name", Value: "Example Staffing Solutions Ltd"},
			{Type: "account", Value: "20-20-15 55555555"},
		},
		Reporting: "Submit a SAR and call the MSHTU tactical advisors.",
	})
	cancel := mk(alerts.Alert{
		Type:       alerts.TypeCancel,
		References: []string{green.ID},
		Title:      "Withdrawn: hotel housekeeping agency warning now subject to a live operation",
		Summary:    "The agency named in the earlier warning is the subject of a live operation. Do not act on the earlier warning or approach the agency.",
		Severity:   alerts.SeveritySevere,
		Audience:   green.Audience,
		Marking:    alerts.MarkingOfficial,
		TLP:        alerts.TLPAmber,
		Handling:   alerts.Handling{Code: "C", Conditions: "Do not disclose the existence of the operation outside your safeguarding team."},
		Contact:    "msht-alerts@agency.example",
	})
	return []*alerts.Alert{green, amber, cancel}
}

// expected is what the policy must decide, and what must then happen, for
// one alert at one target of one partner.
type expected struct {
	alert    int // index into the published alerts
	partner  string
	channel  string
	decision string
	mode     string
	rule     string
}

// state is the final state the entry must reach: an alert let into a
// pull collection stays available until the partner pulls it.
func (e expected) state() string {
	switch {
	case e.decision == delivery.Withhold:
		return delivery.StateWithheld
	case e.channel == delivery.ChannelPull:
		return delivery.StateAvailable
	}
	return delivery.StateDelivered
}

// expectations is the outcome table the demo checks, written out by hand
// from PRODUCT.md §3 rather than computed by the policy it checks.
func expectations() []expected {
	const (
		email, hook, pull               = delivery.ChannelEmail, delivery.ChannelWebhook, delivery.ChannelPull
		inPull                          = delivery.ModePull
		deliver, notice, withhold       = delivery.Deliver, delivery.Notice, delivery.Withhold
		signed, encrypted               = delivery.ModeSigned, delivery.ModeEncrypted
		keyNotice, cancelNotice         = delivery.ModeKeyNotice, delivery.ModeCancelNotice
		followUpKeyNotice               = delivery.ModeFollowUpKeyNotice
		green, amber, cancelOfGreen int = 0, 1, 2
	)
	return []expected{
		// 1. TLP:GREEN OFFICIAL, severe, to hospitality, recruitment and financial services.
		{green, bank, email, deliver, signed, policy.RuleEmailSigned},
		{green, bank, hook, deliver, signed, policy.RuleWebhookSign},
		{green, bank, pull, deliver, inPull, policy.RulePullAvailable},
		{green, agency, email, deliver, signed, policy.RuleEmailSigned},
		{green, agency, hook, deliver, signed, policy.RuleWebhookSign},
		{green, hotels, email, deliver, signed, policy.RuleEmailSigned},
		{green, ngo, email, deliver, signed, policy.RuleEmailSigned},
		{green, ngo, hook, deliver, signed, policy.RuleWebhookSign},
		{green, farms, email, withhold, "", policy.RuleSuspended},
		{green, farms, hook, withhold, "", policy.RuleSuspended},
		{green, cleaning, email, withhold, "", policy.RuleSeverity},

		// 2. TLP:AMBER OFFICIAL-SENSITIVE, extreme, to hospitality and financial services.
		{amber, bank, email, deliver, encrypted, policy.RuleEmailCrypt},
		{amber, bank, hook, deliver, signed, policy.RuleWebhookSign},
		{amber, bank, pull, deliver, inPull, policy.RulePullAvailable},
		{amber, agency, email, withhold, "", policy.RuleClearance},
		{amber, agency, hook, withhold, "", policy.RuleClearance},
		{amber, hotels, email, notice, keyNotice, policy.RuleNoUsableKey},
		{amber, ngo, email, deliver, encrypted, policy.RuleEmailCrypt},
		{amber, ngo, hook, withhold, "", policy.RuleWebhookTLP},
		{amber, farms, email, withhold, "", policy.RuleSuspended},
		{amber, farms, hook, withhold, "", policy.RuleSuspended},
		{amber, cleaning, email, withhold, "", policy.RuleClearance},

		// 3. Cancel of 1 at TLP:AMBER OFFICIAL: those who had 1 and may
		// still receive it get the cancel; those who had 1 and may not now
		// get a content-free cancel notice; the hotel, which had 1 and has
		// no key to read the encrypted cancel, a content-free notice that
		// alert 1 was withdrawn, with the key advice (rule 7); the
		// suspended partner nothing.
		{cancelOfGreen, bank, email, deliver, encrypted, policy.RuleEmailCrypt},
		{cancelOfGreen, bank, hook, deliver, signed, policy.RuleWebhookSign},
		{cancelOfGreen, bank, pull, deliver, inPull, policy.RulePullAvailable},
		{cancelOfGreen, agency, email, notice, cancelNotice, policy.RuleNoLongerEligible},
		{cancelOfGreen, agency, hook, notice, cancelNotice, policy.RuleNoLongerEligible},
		{cancelOfGreen, hotels, email, notice, followUpKeyNotice, policy.RuleFollowUpNoKey},
		{cancelOfGreen, ngo, email, deliver, encrypted, policy.RuleEmailCrypt},
		{cancelOfGreen, ngo, hook, notice, cancelNotice, policy.RuleNoLongerEligible},
		{cancelOfGreen, farms, email, withhold, "", policy.RuleSuspended},
		{cancelOfGreen, farms, hook, withhold, "", policy.RuleSuspended},
		{cancelOfGreen, cleaning, email, withhold, "", policy.RuleSeverity},
	}
}
