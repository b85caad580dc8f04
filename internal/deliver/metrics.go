package deliver

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the runner's Prometheus collectors.
type metrics struct {
	outcomes   *prometheus.CounterVec
	latency    *prometheus.HistogramVec
	reschedule *prometheus.CounterVec
	handoffs   prometheus.Counter
	open       prometheus.GaugeFunc
}

func newMetrics(es *endpoints, now func() time.Time) *metrics {
	return &metrics{
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_delivery_outcomes_total",
			Help: "Outcomes of delivery jobs by channel, state and reason.",
		}, []string{"channel", "state", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_delivery_attempt_seconds",
			Help:    "Duration of delivery attempts by channel.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"channel"}),
		reschedule: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_delivery_rescheduled_total",
			Help: "Jobs moved to a retry tier without an attempt, by cause (not-due, circuit-open, saturated, shutdown).",
		}, []string{"cause"}),
		handoffs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_delivery_handoffs_total",
			Help: "Attempts that outlived their batch and finished in the background under a lease.",
		}),
		open: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_delivery_open_circuits",
			Help: "Endpoints whose circuit breaker is open or half-open.",
		}, func() float64 { return float64(es.open(now())) }),
	}
}

// Collectors returns the runner's Prometheus collectors: outcomes by
// channel, state and reason; attempt latency by channel; jobs rescheduled
// without an attempt; hand-offs; and open circuits.
func (r *Runner) Collectors() []prometheus.Collector {
	m := r.metrics
	return []prometheus.Collector{m.outcomes, m.latency, m.reschedule, m.handoffs, m.open}
}
