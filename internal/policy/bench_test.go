package policy_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/subscribers"
)

// cachedKeyCheck stands for the cache a production caller puts in front of
// crypto/pgp.CheckRecipientKey: parsing a key costs tens of microseconds,
// a lookup keyed by the armoured text well under one.
type cachedKeyCheck struct {
	mu sync.RWMutex
	m  map[string]error
}

func (c *cachedKeyCheck) check(armored string, _ time.Time) error {
	c.mu.RLock()
	err, ok := c.m[armored]
	c.mu.RUnlock()
	if !ok {
		return fmt.Errorf("key not in cache")
	}
	return err
}

// BenchmarkMatch100k measures one alert against 100,000 partners spread
// over the 19 default sectors, 10% of them sharing the alert's two
// sectors, each with one email address (with a key) and one webhook:
// Candidates, then Evaluate for every candidate. The alert is TLP:AMBER,
// so every email needs a key check.
func BenchmarkMatch100k(b *testing.B) {
	const n = 100_000
	sectors := taxonomy.Default().Sectors()
	regions := []string{"TLC", "TLD", "TLE", "TLF", "TLG", "TLH", "TLI", "TLJ", "TLK", "TLL", "TLM", "TLN"}
	keys := &cachedKeyCheck{m: map[string]error{}}
	armored := make([]string, 16)
	for i := range armored {
		armored[i] = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n" + strings.Repeat(fmt.Sprintf("%064x\n", i), 10) + "-----END PGP PUBLIC KEY BLOCK-----\n"
		keys.m[armored[i]] = nil
	}
	reg := subscribers.NewRegistry()
	for i := range n {
		// Of every 20 partners one is in sector 0, one in sector 1, and 18
		// in the 17 others: exactly 10% share the alert's sectors.
		var sector string
		switch i % 20 {
		case 0, 1:
			sector = sectors[i%20].Slug
		default:
			sector = sectors[2+i%17].Slug
		}
		id := fmt.Sprintf("p%06d", i)
		s := &subscribers.Subscriber{
			ID: id, Name: id, Kind: subscribers.KindBusiness,
			Sectors:   []string{sector},
			Regions:   []string{regions[i%len(regions)], regions[(i+1)%len(regions)]},
			Clearance: alerts.TLPAmber, Sensitive: i%2 == 0,
			Email:    []subscribers.Email{{Address: id + "@partner.example", PGPKey: armored[i%len(armored)]}},
			Webhooks: []subscribers.Webhook{{URL: "https://" + id + ".partner.example/herald", Secrets: []string{"whsec_x"}}},
		}
		s.Normalize()
		reg.Put(s)
	}
	a := &alerts.Alert{
		ID: "bench", Title: "bench", Severity: alerts.SeveritySevere,
		Audience: alerts.Audience{Sectors: []string{sectors[0].Slug, sectors[1].Slug}, Regions: []string{"TLI", "TLJ", "TLK"},
			Subscribers: []string{"p000002", "p000003"}},
		Marking: alerts.MarkingOfficial, TLP: alerts.TLPAmber, Handling: alerts.Handling{Code: "P"},
	}
	a.Normalize()
	opt := policy.Options{KeyCheck: keys.check}
	now := time.Now()

	var cands, decisions, deliver int
	var ds []policy.Decision
	b.ReportAllocs()
	for b.Loop() {
		subs, _ := reg.Candidates(a)
		ds = ds[:0]
		for _, s := range subs {
			ds = policy.Append(ds, a, s, now, opt)
		}
		cands, decisions = len(subs), len(ds)
	}
	for _, d := range ds {
		if d.Decision == "deliver" {
			deliver++
		}
	}
	if cands != n/10+2 {
		b.Fatalf("candidates = %d, want %d", cands, n/10+2)
	}
	b.ReportMetric(float64(cands), "candidates/op")
	b.ReportMetric(float64(decisions), "decisions/op")
	b.ReportMetric(float64(deliver), "deliver/op")
}
