package deliver

import (
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
)

// endpointKey names the endpoint a job goes to, for concurrency limits and
// the circuit breaker: the webhook URL's host (with port), or "smtp" for
// email, which all goes through one relay.
func endpointKey(job *delivery.Job) string {
	if job.Channel == delivery.ChannelEmail {
		return "smtp"
	}
	u, err := url.Parse(job.Target)
	if err != nil || u.Host == "" {
		return job.Channel + ":" + job.Target
	}
	return strings.ToLower(u.Host)
}

// endpoint is the state of one endpoint: its attempt slots and circuit.
type endpoint struct {
	slots chan struct{}

	mu        sync.Mutex
	failures  int       // consecutive temporary failures
	openUntil time.Time // zero while closed
	trial     bool      // a half-open trial is running
	orphans   int       // attempts handed off by their batch, still running
}

// endpoints holds the state of every endpoint seen.
type endpoints struct {
	perEndpoint int
	breaker     config.Breaker

	mu       sync.Mutex
	m        map[string]*endpoint
	byTarget map[string]*endpoint // webhook URL → its endpoint (see forJob)
}

// maxTargets bounds the webhook URLs whose endpoint forJob remembers.
const maxTargets = 1 << 16

func newEndpoints(perEndpoint int, breaker config.Breaker) *endpoints {
	return &endpoints{perEndpoint: perEndpoint, breaker: breaker, m: make(map[string]*endpoint),
		byTarget: make(map[string]*endpoint)}
}

// get returns the state of key, creating it.
func (es *endpoints) get(key string) *endpoint {
	es.mu.Lock()
	defer es.mu.Unlock()
	return es.getLocked(key)
}

func (es *endpoints) getLocked(key string) *endpoint {
	e := es.m[key]
	if e == nil {
		e = &endpoint{slots: make(chan struct{}, es.perEndpoint)}
		es.m[key] = e
	}
	return e
}

// forJob returns the state of job's endpoint (endpointKey), remembering
// which endpoint each webhook URL belongs to, so that a URL is parsed once
// and not at every attempt.
func (es *endpoints) forJob(job *delivery.Job) *endpoint {
	if job.Channel != delivery.ChannelWebhook {
		return es.get(endpointKey(job))
	}
	es.mu.Lock()
	e := es.byTarget[job.Target]
	es.mu.Unlock()
	if e != nil {
		return e
	}
	key := endpointKey(job)
	es.mu.Lock()
	defer es.mu.Unlock()
	if len(es.byTarget) >= maxTargets {
		clear(es.byTarget)
	}
	e = es.getLocked(key)
	es.byTarget[job.Target] = e
	return e
}

// open counts the circuits open (or half-open) at now.
func (es *endpoints) open(now time.Time) int {
	es.mu.Lock()
	list := make([]*endpoint, 0, len(es.m))
	for _, e := range es.m {
		list = append(list, e)
	}
	es.mu.Unlock()
	n := 0
	for _, e := range list {
		e.mu.Lock()
		if !e.openUntil.IsZero() {
			n++
		}
		e.mu.Unlock()
	}
	return n
}

// admit decides whether a job for e may be attempted at now. It returns
// ok, and when not, until when the circuit stays open (zero when the
// endpoint is only saturated). trial reports a half-open trial, which the
// caller must end with record.
func (es *endpoints) admit(e *endpoint, now time.Time) (ok, trial bool, until time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.openUntil.IsZero() {
		if now.Before(e.openUntil) || e.trial {
			return false, false, maxTime(e.openUntil, now.Add(es.breaker.Cooldown/10))
		}
		e.trial = true
		return true, true, time.Time{}
	}
	if e.orphans > 0 {
		// An attempt here outlived its batch: until it ends, further jobs
		// would only hold their batches too.
		return false, false, time.Time{}
	}
	return true, false, time.Time{}
}

// record folds an attempt's result into e's circuit: success and
// permanent failures close it (the endpoint answers), temporary failures
// count towards opening it, and a failed trial re-opens it.
func (es *endpoints) record(e *endpoint, f *delivery.Failure, trial bool, now time.Time) (opened bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if trial {
		e.trial = false
	}
	if f == nil || !f.Temporary {
		e.failures, e.openUntil = 0, time.Time{}
		return false
	}
	e.failures++
	if trial || e.failures >= es.breaker.Failures {
		wasOpen := !e.openUntil.IsZero() && !trial
		e.openUntil = now.Add(es.breaker.Cooldown)
		return !wasOpen
	}
	return false
}

// openUntil returns when e's open circuit may be tried again, or zero
// while it is closed.
func (es *endpoints) openUntil(e *endpoint) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.openUntil
}

// release ends a trial that never attempted (the job was abandoned).
func (es *endpoints) release(e *endpoint, trial bool) {
	if !trial {
		return
	}
	e.mu.Lock()
	e.trial = false
	e.mu.Unlock()
}

func (es *endpoints) orphaned(e *endpoint, delta int) {
	e.mu.Lock()
	e.orphans += delta
	e.mu.Unlock()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
