package subscribers_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/subscribers"
)

var sizeSectors = []string{"agriculture", "food-processing", "construction", "manufacturing", "textiles",
	"warehousing-logistics", "recruitment", "hospitality", "care", "retail"}

// BenchmarkRegistrySize reports the live heap a registry of 100,000
// partners read from the topic (herald bench's: one sector, one email
// address and one webhook each) takes, per partner.
func BenchmarkRegistrySize(b *testing.B) {
	const n = 100_000
	recs := make([][]byte, n)
	for i := range recs {
		id := fmt.Sprintf("p-%06d", i)
		s := &subscribers.Subscriber{ID: id, Name: "Partner " + id, Kind: subscribers.KindBusiness,
			Sectors: []string{sizeSectors[i%len(sizeSectors)]}, Clearance: alerts.TLPAmber, Status: subscribers.StatusActive,
			Email: []subscribers.Email{{Address: "alerts@" + id + ".example"}},
			Webhooks: []subscribers.Webhook{{URL: fmt.Sprintf("http://127.0.0.1:%d/hooks/%s", 40000+i%16, id),
				Secrets: []string{secret1}, Format: subscribers.WebhookFormats[i%4]}}}
		s.Normalize()
		recs[i], _ = json.Marshal(s)
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for b.Loop() {
		before := heap()
		r := subscribers.NewRegistry()
		for i, rec := range recs {
			if err := r.Apply([]byte(fmt.Sprintf("p-%06d", i)), rec); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(heap()-before)/n, "B/partner")
		runtime.KeepAlive(r)
	}
}
