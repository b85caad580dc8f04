package fanout_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
)

// growing is the deliveries producer; the topic gains partitions right
// after the fan-out asked it where keys go (an operator scaling out the
// deliver roles while a large fan-out is being written: Worker.write
// takes one Placement for all its slices, and every Write reads the
// partition count again once partitionsTTL has passed).
type growing struct {
	*bus.Producer
	grow func()
	used **bus.Placement
}

func (g growing) Placement(ctx context.Context) (*bus.Placement, error) {
	place, err := g.Producer.Placement(ctx)
	*g.used = place
	g.grow()
	return place, err
}

// TestPacksFollowTheirPartnersWhenPartitionsGrow: partitions added while
// an alert is fanned out move none of its jobs. Every job lands on the
// partition its partner's key went to by the placement the fan-out took
// for the alert, the one of the partner's earlier jobs, whatever the
// record's key, so that no job of a pack sits on a partition that is
// neither its partner's old one nor its new one.
func TestPacksFollowTheirPartnersWhenPartitionsGrow(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	ctx := context.Background()
	reg := subscribers.NewRegistry()
	for _, s := range partners() {
		reg.Put(s)
	}
	for i := range 60 {
		s := &subscribers.Subscriber{ID: fmt.Sprintf("hotel-%04d", i), Name: "Hotel", Kind: "business",
			Sectors: []string{"hospitality"}, Clearance: "GREEN", Email: []subscribers.Email{{Address: fmt.Sprintf("sec@%d.example", i)}}}
		s.Normalize()
		reg.Put(s)
	}
	p := b.Producer(bus.TopicDeliveries)
	grow := func() {
		client := &kafka.Client{Addr: kafka.TCP(c.Addrs()...)}
		_, err := client.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{
			Topics: []kafka.TopicPartitionsConfig{{Name: b.Topic(bus.TopicDeliveries), Count: 7}}})
		require.NoError(t, err)
		// Until the producer's partition count is the new one.
		require.Eventually(t, func() bool {
			place, err := p.Placement(ctx)
			if err != nil {
				return false
			}
			for i := range 60 {
				if place.Partition(fmt.Appendf(nil, "hotel-%04d", i)) >= 3 {
					return true
				}
			}
			return false
		}, 15*time.Second, 100*time.Millisecond)
	}
	var used *bus.Placement
	h := &history{Source: ledger.FromBus(b), published: map[string]*view.Published{}}
	e := &env{bus: b, reg: reg, history: h, w: &fanout.Worker{
		Registry: reg, Policy: policy.Options{},
		Deliveries: growing{Producer: p, grow: grow, used: &used}, Receipts: b.Producer(bus.TopicReceipts),
		Quarantine: b.Producer(bus.TopicQuarantine), History: h, Authenticate: b.Authenticate,
		Now: func() time.Time { return now }, Log: slog.New(slog.DiscardHandler),
	}}
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, alert("grown", nil))}))

	place, err := p.Placement(ctx)
	require.NoError(t, err)
	moved := 0
	n := 0
	require.NoError(t, b.ReadAll(ctx, bus.TopicDeliveries, func(m kafka.Message) error {
		js, _, err := delivery.DecodeJobs(m.Value, nil)
		require.NoError(t, err)
		for _, j := range js {
			n++
			require.Equal(t, used.Partition([]byte(j.Subscriber)), m.Partition,
				"job for %s in a record keyed %s: not where its partner's key went when the fan-out began", j.Subscriber, m.Key)
			if place.Partition([]byte(j.Subscriber)) != m.Partition {
				moved++
			}
		}
		return nil
	}))
	require.Equal(t, 63, n)
	require.NotZero(t, moved, "the topic grew under the fan-out: some partners' keys go elsewhere now")
}
