package bench

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/subscribers"
)

// partner returns a partner in sector with, as asked, one email address
// at the loopback sink's domain and one webhook on receiver i mod the
// receiver count.
func (e *env) partner(id, sector string, withEmail, withWebhook bool, i int) *subscribers.Subscriber {
	s := &subscribers.Subscriber{
		ID: id, Name: "Partner " + id, Kind: subscribers.KindBusiness,
		Sectors: []string{sector}, Clearance: alerts.TLPAmber, Status: subscribers.StatusActive,
	}
	if withEmail {
		s.Email = []subscribers.Email{{Address: "alerts@" + id + ".example"}}
	}
	if withWebhook {
		s.Webhooks = []subscribers.Webhook{{
			URL:     fmt.Sprintf("%s/hooks/%s", e.recv.urls[i%len(e.recv.urls)], id),
			Secrets: []string{e.secret},
		}}
	}
	s.Normalize()
	return s
}

// NewAlert returns a valid TLP:GREEN OFFICIAL alert of realistic size
// (about 1.5 KiB of JSON) for sectors and named partners, issued now as if
// an analyst had published it through Herald.
func NewAlert(id string, sectors, named []string) *alerts.Alert {
	now := time.Now().UTC()
	a := &alerts.Alert{
		ID:      id,
		Title:   "Hand car wash network moving workers between sites under debt bondage",
		Summary: "Workers at several hand car washes are housed above the premises, have their passports held by a controller and are moved between sites weekly.",
		Body: "Intelligence from three independent sources indicates that a network operating hand car washes " +
			"recruits workers abroad with promises of construction work, charges them for travel and housing, " +
			"and deducts the debt from wages that are paid in cash, if at all.\n\n" +
			"Workers are collected from a shared house at 06:30 and returned after 20:00. The same vehicles are " +
			"seen at several sites. Payments for rent are made to one account in the name of a lettings company.\n",
		Indicators: []alerts.Indicator{
			{Type: "phone", Value: "+44 7700 900123", Context: "controller"},
			{Type: "vehicle", Value: "YX19 ABC", Context: "transport of workers"},
			{Type: "iban", Value: "GB33BUKB20201555555555", Context: "rent payments"},
			{Type: "address", Value: "12 Example Road, Leeds LS1 1AA", Context: "shared house"},
		},
		Actions:   []string{"Check right-to-work records of staff supplied by third parties", "Report matching payments"},
		Reporting: "Submit a SAR quoting the alert id, or call the modern slavery helpline.",
		Contact:   "Herald duty desk, 0300 000 0000",
		Severity:  alerts.SeveritySevere,
		Audience:  alerts.Audience{Sectors: sectors, Subscribers: named},
		Marking:   alerts.MarkingOfficial,
		TLP:       alerts.TLPGreen,
		Handling:  alerts.Handling{Code: "P"},
		Grading:   &alerts.Grading{Source: 2, Intelligence: "B"},
		IssuedBy:  "bench-analyst",
		IssuedAt:  &now,
	}
	a.Normalize()
	return a
}

// alertMessage encodes a for the alerts topic, keyed by its id.
func alertMessage(a *alerts.Alert) kafka.Message {
	v, _ := json.Marshal(a) // an Alert always encodes
	return kafka.Message{Key: []byte(a.ID), Value: v, Time: time.Now()}
}
