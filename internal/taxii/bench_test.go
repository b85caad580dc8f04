package taxii_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/taxii"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/subscribers"
)

// The pull benchmarks' history: a partner with benchPull deliveries on its
// pull channel among benchOthers deliveries by email and webhook (issue
// 12: an answer costs what it returns, not the partner's history).
const (
	benchPull    = 1000
	benchOthers  = 20000
	benchPage    = 100 // objects per page, TAXII's default
	benchPartner = "pb"
	benchToken   = "tok-pb-bench"
)

// discardReceipts accepts every receipt and keeps none: each iteration
// reads the same view (the pulls it would record do not change it).
type discardReceipts struct{}

func (discardReceipts) WriteReceipt(context.Context, delivery.Receipt) error { return nil }

// pullFixture is a view caught up with the history and a pull server
// answering from it.
type pullFixture struct {
	mux     *http.ServeMux
	objects int // objects in the collection (every version)
	reg     *subscribers.Registry
	sub     *subscribers.Subscriber
}

// newPullFixture writes the history straight to an embedded broker (the
// pull alerts to the alerts topic, every receipt to the receipts topic, in
// big batches, authenticated by the bus producer), builds a view from
// scratch and serves the partner's collection from it.
func newPullFixture(tb testing.TB) *pullFixture {
	c := kafkatest.Start(tb, kafkatest.RetryTiers(0), kafkatest.LogLevel(slog.LevelError))
	b := c.Open(tb, c.Config())
	ctx := context.Background()
	var published, receipts []kafka.Message
	// Alerts go out one a minute, each by email and webhook; one in every
	// benchOthers/2/benchPull also by pull.
	at := time.Now().UTC().Add(-30 * 24 * time.Hour)
	every := benchOthers / 2 / benchPull
	for i := range benchOthers / 2 {
		at = at.Add(time.Minute)
		id := fmt.Sprintf("bo-%06d", i)
		add := func(channel, target, mode, state string) {
			r := delivery.Receipt{Kind: delivery.KindDecision, AlertID: id, Subscriber: benchPartner, Channel: channel,
				Target: target, Decision: delivery.Deliver, Mode: mode, Rule: channel, DeliveryID: delivery.ID(id, benchPartner, target), At: at}
			receipts = append(receipts, fanout.ReceiptMessage(r))
			r.Kind, r.Decision, r.Rule, r.State, r.Attempt, r.At = delivery.KindOutcome, "", "", state, 1, at.Add(time.Second)
			receipts = append(receipts, fanout.ReceiptMessage(r))
		}
		add(delivery.ChannelEmail, "soc@pb.example", delivery.ModeSigned, delivery.StateDelivered)
		add(delivery.ChannelWebhook, "https://hooks.pb.example/herald", delivery.ModeSigned, delivery.StateDelivered)
		if i%every == 0 {
			a := alert(id, nil)
			v, err := json.Marshal(a)
			require.NoError(tb, err)
			published = append(published, kafka.Message{Key: []byte(id), Value: v})
			add(delivery.ChannelPull, delivery.TargetPull, delivery.ModePull, delivery.StateAvailable)
		}
	}
	require.Len(tb, published, benchPull)
	for _, w := range []struct {
		topic string
		msgs  []kafka.Message
	}{{bus.TopicAlerts, published}, {bus.TopicReceipts, receipts}} {
		for len(w.msgs) > 0 {
			n := min(len(w.msgs), 20000)
			require.NoError(tb, b.Producer(w.topic).Write(ctx, w.msgs[:n]...))
			w.msgs = w.msgs[n:]
		}
	}

	v := runView(tb, b)

	reg := subscribers.NewRegistry()
	sub := &subscribers.Subscriber{ID: benchPartner, Name: "Pull bench", Kind: subscribers.KindBusiness,
		Sectors: []string{"financial-services"}, Clearance: "AMBER",
		Email:    []subscribers.Email{{Address: "soc@pb.example"}},
		Webhooks: []subscribers.Webhook{{URL: "https://hooks.pb.example/herald", Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}},
		Pull:     &subscribers.Pull{MaxTLP: "GREEN"}}
	sub.Normalize()
	reg.Put(sub)
	s := &taxii.Server{Source: v, Registry: reg, Receipts: discardReceipts{}, Agency: agency}
	f := &pullFixture{mux: http.NewServeMux(), reg: reg, sub: sub}
	s.Register(f.mux, func(_ *http.Request, tok string) (taxii.Caller, bool) {
		return taxii.Caller{Name: "pb-octi", Role: taxii.RolePartner, Subscriber: benchPartner}, tok == benchToken
	}, nil)
	f.objects = f.sync(tb)
	return f
}

// page requests one page of objects and returns its objects and next.
func (f *pullFixture) page(tb testing.TB, next string) (int, string) {
	q := url.Values{"limit": {itoa(benchPage)}}
	if next != "" {
		q.Set("next", next)
	}
	req := httptest.NewRequest(http.MethodGet, collectionPath(benchPartner)+"objects/?"+q.Encode(), nil)
	req.Header.Set("Accept", taxii.MediaTAXII)
	req.Header.Set("Authorization", "Bearer "+benchToken)
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		tb.Fatalf("objects: %d %s", rec.Code, rec.Body)
	}
	var env struct {
		Objects []json.RawMessage `json:"objects"`
		Next    string            `json:"next"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		tb.Fatal(err)
	}
	return len(env.Objects), env.Next
}

// sync pages through the whole collection and returns its objects.
func (f *pullFixture) sync(tb testing.TB) int {
	total, next := 0, ""
	for {
		n, cursor := f.page(tb, next)
		total += n
		if cursor == "" {
			return total
		}
		next = cursor
	}
}

// BenchmarkPullPage measures one page of /objects/ (benchPage objects)
// of a collection of benchPull alerts for a partner with benchOthers
// deliveries by other channels.
func BenchmarkPullPage(b *testing.B) {
	f := newPullFixture(b)
	b.ResetTimer()
	for b.Loop() {
		if n, next := f.page(b, ""); n != benchPage || next == "" {
			b.Fatalf("first page: %d objects, next %q", n, next)
		}
	}
}

// BenchmarkPullSync measures a full sync of that collection, benchPage
// objects a page, following next.
func BenchmarkPullSync(b *testing.B) {
	f := newPullFixture(b)
	b.ResetTimer()
	for b.Loop() {
		if n := f.sync(b); n != f.objects {
			b.Fatalf("sync: %d objects, want %d", n, f.objects)
		}
	}
	b.ReportMetric(float64(f.objects), "objects")
}

// BenchmarkPullRemake measures the first page of that collection when the
// kept one may not serve it (here: the partner's record changed, as a new
// decision about its pull entries would also do), so that it is made
// again from the view.
func BenchmarkPullRemake(b *testing.B) {
	f := newPullFixture(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		changed := *f.sub
		changed.Name = fmt.Sprintf("Pull bench %d", i)
		f.reg.Put(&changed)
		if n, next := f.page(b, ""); n != benchPage || next == "" {
			b.Fatalf("first page: %d objects, next %q", n, next)
		}
	}
}

// TestPullBenchmarkFixture keeps the benchmarks' fixture honest: the
// collection holds every pull alert, and nothing of the other channels.
func TestPullBenchmarkFixture(t *testing.T) {
	f := newPullFixture(t)
	require.Greater(t, f.objects, benchPull, "every pull alert's report and indicators")
	n, next := f.page(t, "")
	require.Equal(t, benchPage, n)
	require.NotEmpty(t, next)
}
