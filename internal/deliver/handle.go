package deliver

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/subscribers"
)

// Task states.
const (
	queued    = iota // waiting for a slot
	running          // attempting
	done             // finished; its result goes to the batch
	abandoned        // never started; the batch rescheduled it
	orphaned         // still running when the batch handed it off
)

// task is one job of a batch that is being attempted.
type task struct {
	job        *delivery.Job
	sub        *subscribers.Subscriber
	notifier   Notifier
	ep         *endpoint
	trial      bool
	dispatched time.Time

	mu        sync.Mutex
	state     int
	collected bool // the batch has its result
}

// result is the end of one attempt.
type result struct {
	t       *task
	failure *delivery.Failure
	at      time.Time
	took    time.Duration // since dispatch
	skipped bool          // not attempted: rescheduled by the task itself
}

// batch is one round of a partition's jobs: the jobs it dispatched and the
// records it must write, as soon as they are settled, before the handler
// may return.
type batch struct {
	r       *Runner
	o       *out
	mu      sync.Mutex
	tasks   []*task
	results chan result
	abort   chan struct{}
}

// newBatch returns an empty batch for up to n jobs.
func (r *Runner) newBatch(n int) *batch {
	return &batch{r: r, o: newOut(), results: make(chan result, n), abort: make(chan struct{})}
}

// empty reports whether b has nothing to wait for or write.
func (b *batch) empty() bool {
	b.mu.Lock()
	n := len(b.tasks)
	b.mu.Unlock()
	return n == 0 && b.o.empty()
}

// leaseState tracks an attempt handed off by its batch, by delivery id and
// attempt: in flight, or settled (its outcome is written).
type leaseState struct {
	settled bool
	at      time.Time
}

func leaseKey(job *delivery.Job) string { return job.ID + "#" + strconv.Itoa(job.Attempt) }

// handle processes one batch of topic deliveries (tier < 0) or of retry
// tier tier, and returns nil only when every job's outcome is written.
//
// Partitions are independent FIFOs: they run side by side, each in offset
// order, and each writes its outcomes as soon as they are settled, so that
// a job waiting for its time in one partition never holds back the
// outcomes of the others. The batch's offsets are committed when handle
// returns, after every partition's outcomes were written.
func (r *Runner) handle(ctx context.Context, tier int, msgs []kafka.Message) error {
	type tp struct {
		topic     string
		partition int
	}
	var order []tp
	parts := make(map[tp][]kafka.Message)
	for _, m := range msgs {
		k := tp{m.Topic, m.Partition}
		if _, ok := parts[k]; !ok {
			order = append(order, k)
		}
		parts[k] = append(parts[k], m)
	}
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for i, k := range order {
		wg.Go(func() {
			if err := r.sequence(ctx, tier, parts[k]); err != nil {
				errs[i] = fmt.Errorf("%s[%d]: %w", k.topic, k.partition, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write outcomes of %d jobs: %w", len(msgs), err)
	}
	if r.beforeCommit != nil {
		if err := r.beforeCommit(msgs); err != nil {
			return err
		}
	}
	return nil
}

// sequence processes the messages of one partition in order and writes
// their records: at the end, and before it waits longer than Hold for a
// job that is not yet due, so that such a wait holds back nothing already
// settled. It returns the first error writing them.
func (r *Runner) sequence(ctx context.Context, tier int, msgs []kafka.Message) error {
	o := newOut()
	jobs, leases, err := r.decode(o, msgs)
	if err != nil {
		return err
	}
	b := r.newBatch(len(jobs))
	b.o = o
	// settle waits for b's attempts (handing off stragglers), writes b's
	// records and starts a new batch.
	settle := func() error {
		b.wait()
		if err := r.flush(ctx, b.o); err != nil {
			return err
		}
		b = r.newBatch(len(jobs))
		return nil
	}
	head := true // no job of this sequence has been dispatched yet
	stopped := false
	for i, job := range jobs {
		lease := leases[i]
		now := r.now()
		if job.Expired(now) {
			r.expire(b.o, job)
			continue
		}
		if job.NotBefore.After(now) {
			if stopped {
				r.forward(b.o, job, lease, causeShutdown)
				continue
			}
			remaining, limit := job.NotBefore.Sub(now), r.holdLimit(tier, head)
			wake := job.NotBefore
			if remaining > limit {
				if !head || tier < 0 || r.tierFor(remaining) != tier {
					r.forward(b.o, job, lease, causeNotDue)
					continue
				}
				// It would come straight back to this tier: wait one
				// span of it first, so that it hops instead of spinning.
				wake = now.Add(limit)
			}
			// A long wait first writes what is settled: waiting for the
			// attempts running (at most Hold) and writing their outcomes
			// fits within it. A short one holds them no longer than a
			// batch may hold an attempt, and keeps the attempts around
			// it running side by side.
			if wake.Sub(now) > r.cfg.Hold && !b.empty() {
				if err := settle(); err != nil {
					return err
				}
			}
			if err := r.sleepUntil(ctx, wake); err != nil {
				stopped = true
				r.forward(b.o, job, lease, causeShutdown)
				continue
			}
			if job.NotBefore.After(r.now()) {
				r.forward(b.o, job, lease, causeNotDue)
				continue
			}
		}
		if lease {
			switch st, ok := r.lease(job); {
			case ok && st.settled:
				r.dropLease(job)
				continue
			case ok:
				r.reschedule(b.o, job, r.now().Add(r.jittered(r.cfg.RetrySchedule[0])), true, causeLeaseBusy)
				continue
			}
			// Unknown here: the attempt that took the lease was lost (a
			// crash) or ran elsewhere; run the job again.
		}
		head = false
		r.dispatch(ctx, b, job)
	}
	return settle()
}

// decode authenticates and decodes one partition's messages into the jobs
// they carry, in order (a record may pack many), and whether each came
// under a lease; it adds to o the dead letters of what it refuses. It
// fails only when this process cannot authenticate anything.
func (r *Runner) decode(o *out, msgs []kafka.Message) (jobs []*delivery.Job, leases []bool, err error) {
	jobs = make([]*delivery.Job, 0, len(msgs))
	for _, m := range msgs {
		if err := r.bus.Authenticate(m); err != nil {
			if errors.Is(err, bus.ErrNoKeyring) {
				// This process cannot tell; the records are not at fault.
				return nil, nil, fmt.Errorf("authenticate delivery jobs: %w", err)
			}
			r.deadUnattributed(o, m, err)
			continue
		}
		js, bad, err := delivery.DecodeJobs(m.Value, r.alerts)
		if err != nil {
			r.deadInvalid(o, m, err)
			continue
		}
		for _, x := range bad {
			r.deadRefusedJob(o, m, x)
		}
		lease := r.leased(m)
		for _, j := range js {
			jobs = append(jobs, j)
			leases = append(leases, lease)
		}
	}
	return jobs, leases, nil
}

// leased reports whether m, an authentic job record, came back as a lease:
// only when Herald wrote its lease header (bus.AuthenticateHeaders). A
// lease header that does not authenticate (added to a copy of the record,
// or written before Herald covered headers) is ignored: the job is
// attempted, the safe side, as its delivery id makes a duplicate
// harmless at the partner.
func (r *Runner) leased(m kafka.Message) bool {
	if bus.Header(m, headerLease) == "" {
		return false
	}
	if err := r.bus.AuthenticateHeaders(m); err != nil {
		r.log.Warn("ignoring a lease header Herald did not write: the job is attempted as not leased",
			"source", bus.Source(m), "error", err)
		return false
	}
	return true
}

// holdLimit is how long a sequence of tier may wait for a job that is
// not yet due: the head of a tier waits up to the tier's longest jittered
// wait; later jobs up to TierHold; the deliveries topic never waits.
func (r *Runner) holdLimit(tier int, head bool) time.Duration {
	if tier < 0 {
		return 0
	}
	limit := time.Duration(float64(r.cfg.RetrySchedule[tier])*(1+r.cfg.Jitter)) + 10*time.Millisecond
	if !head {
		limit = min(limit, r.cfg.TierHold)
	}
	return limit
}

// dispatch checks job against the subscriber's current record and the
// endpoint's circuit, and starts its attempt.
func (r *Runner) dispatch(ctx context.Context, b *batch, job *delivery.Job) {
	now := r.now()
	sub := r.reg.Get(job.Subscriber)
	if sub == nil {
		r.withhold(b.o, job, RuleSubscriberDeleted, "the subscriber record was deleted")
		return
	}
	if rule, why := r.recheck(job, sub, now); rule != "" {
		r.withhold(b.o, job, rule, why)
		return
	}
	n := r.notifiers[job.Channel]
	if n == nil {
		n = missingNotifier(job.Channel)
	}
	ep := r.endpoints.forJob(job)
	ok, trial, until := r.endpoints.admit(ep, now)
	if !ok {
		due := now.Add(r.jittered(r.cfg.RetrySchedule[0]))
		cause := causeSaturated
		if !until.IsZero() {
			due = maxTime(due, until)
			cause = causeCircuitOpen
		}
		r.reschedule(b.o, job, due, false, cause)
		return
	}
	t := &task{job: job, sub: sub, notifier: n, ep: ep, trial: trial, dispatched: time.Now()}
	b.mu.Lock()
	b.tasks = append(b.tasks, t)
	b.mu.Unlock()
	r.workers.submit(func() { r.run(ctx, b, t) })
}

// missingNotifier fails jobs of a channel the runner has no notifier for.
type missingNotifier string

func (m missingNotifier) Notify(context.Context, *delivery.Job, *subscribers.Subscriber) error {
	return delivery.Temporary(delivery.ReasonConfig, fmt.Errorf("no notifier for channel %q", string(m)))
}

// run acquires t's endpoint slot and attempts it. It runs on one of the
// runner's workers, which bound the attempts of the process to
// Concurrency.
func (r *Runner) run(ctx context.Context, b *batch, t *task) {
	gotSlot := false
	release := func() {
		if gotSlot {
			<-t.ep.slots
		}
	}
	select {
	case t.ep.slots <- struct{}{}:
		gotSlot = true
	case <-b.abort:
	}
	t.mu.Lock()
	if t.state == abandoned || !gotSlot {
		// The batch gave up on it before it started.
		t.mu.Unlock()
		release()
		r.endpoints.release(t.ep, t.trial)
		return
	}
	if !t.trial {
		// The circuit may have opened while the job waited for a slot.
		if until := r.endpoints.openUntil(t.ep); !until.IsZero() {
			t.state = done
			t.mu.Unlock()
			release()
			now := r.now()
			r.reschedule(b.o, t.job, maxTime(until, now.Add(r.jittered(r.cfg.RetrySchedule[0]))), false, causeCircuitOpen)
			b.results <- result{t: t, skipped: true}
			return
		}
	}
	t.state = running
	t.mu.Unlock()

	f := r.attempt(ctx, t)
	release()
	at := r.now()
	opened := r.endpoints.record(t.ep, f, t.trial, at)
	if opened {
		r.log.Warn("circuit opened: endpoint failing, its jobs are rescheduled without attempts",
			"endpoint", endpointKey(t.job), "cooldown", r.cfg.Breaker.Cooldown)
	}
	res := result{t: t, failure: f, at: at, took: time.Since(t.dispatched)}

	t.mu.Lock()
	if t.state == orphaned {
		t.mu.Unlock()
		r.finishOrphan(res)
		return
	}
	t.state = done
	t.mu.Unlock()
	b.results <- res
}

// attempt calls the notifier once, under the attempt deadline.
func (r *Runner) attempt(ctx context.Context, t *task) *delivery.Failure {
	deadline := r.deadline
	actx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), r.cfg.AttemptTimeout, deadline)
	defer cancel()
	start := time.Now()
	err := t.notifier.Notify(actx, t.job, t.sub)
	r.metrics.latency.WithLabelValues(t.job.Channel).Observe(time.Since(start).Seconds())
	f := delivery.Classify(err)
	if f != nil && f.Reason == delivery.ReasonUnknown && errors.Is(context.Cause(actx), deadline) {
		f = delivery.Temporary(delivery.ReasonTimeout, fmt.Errorf("%w: %w", deadline, err))
	}
	return f
}

// wait collects the results of the batch's attempts, and hands off the
// stragglers (see the package doc).
func (b *batch) wait() {
	r := b.r
	b.mu.Lock()
	tasks := b.tasks
	b.mu.Unlock()
	remaining := len(tasks)
	holdUntil := time.Now().Add(r.cfg.Hold)
	var slowest time.Duration
	completed := 0
	timer := time.NewTimer(r.cfg.Hold)
	defer timer.Stop()
	for remaining > 0 {
		deadline := holdUntil
		// Stragglers are the few left when most of the batch is done.
		if completed > 0 && remaining <= max(1, len(tasks)/10) {
			limit := max(r.cfg.Grace, 4*slowest)
			var last time.Time
			for _, t := range tasks {
				if !t.collected && t.dispatched.After(last) {
					last = t.dispatched
				}
			}
			if s := last.Add(limit); s.Before(deadline) {
				deadline = s
			}
		}
		timer.Reset(time.Until(deadline))
		select {
		case res := <-b.results:
			res.t.collected = true
			remaining--
			if res.skipped {
				continue
			}
			completed++
			slowest = max(slowest, res.took)
			r.conclude(b.o, res.t.job, res.failure, res.at)
		case <-timer.C:
			b.handoff(tasks)
			return
		}
	}
}

// handoff stops waiting for the batch's unfinished tasks: those not
// started are rescheduled, those running continue in the background under
// a lease.
func (b *batch) handoff(tasks []*task) {
	r := b.r
	now := r.now()
	finishing := 0
	for _, t := range tasks {
		if t.collected {
			continue
		}
		t.mu.Lock()
		switch t.state {
		case done:
			finishing++
		case queued:
			// Never started: due at once, at the back of the first tier.
			t.state = abandoned
			r.reschedule(b.o, t.job, now, false, causeSaturated)
		case running:
			t.state = orphaned
			r.orphans.Add(1)
			r.endpoints.orphaned(t.ep, 1)
			r.setLease(t.job, leaseState{at: now})
			// The attempt ends by its deadline; its outcome is written
			// right after. The lease is due well after that.
			due := now.Add(2*r.cfg.AttemptTimeout - time.Since(t.dispatched) + time.Second)
			r.reschedule(b.o, t.job, due, true, causeHandoff)
			r.metrics.handoffs.Inc()
			r.log.Info("attempt outlived its batch: handed off under a lease",
				"delivery", t.job.ID, "endpoint", endpointKey(t.job), "running", time.Since(t.dispatched))
		}
		t.mu.Unlock()
	}
	close(b.abort)
	for range finishing {
		res := <-b.results
		res.t.collected = true
		if !res.skipped {
			r.conclude(b.o, res.t.job, res.failure, res.at)
		}
	}
}

// finishOrphan writes the outcome of a handed-off attempt and settles its
// lease; if the write fails the lease runs the job again.
func (r *Runner) finishOrphan(res result) {
	defer r.orphans.Done()
	t := res.t
	r.endpoints.orphaned(t.ep, -1)
	o := newOut()
	r.conclude(o, t.job, res.failure, res.at)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.flush(ctx, o); err != nil {
		r.dropLease(t.job)
		r.log.Warn("write outcome of handed-off attempt: its lease will run the job again", "delivery", t.job.ID, "error", err)
		return
	}
	r.setLease(t.job, leaseState{settled: true, at: r.now()})
}

func (r *Runner) lease(job *delivery.Job) (leaseState, bool) {
	r.leaseMu.Lock()
	defer r.leaseMu.Unlock()
	st, ok := r.leases[leaseKey(job)]
	return st, ok
}

func (r *Runner) setLease(job *delivery.Job, st leaseState) {
	r.leaseMu.Lock()
	defer r.leaseMu.Unlock()
	r.leases[leaseKey(job)] = st
	// Settled leases whose copy was consumed elsewhere are forgotten after
	// a day.
	if len(r.leases) > 1024 {
		for k, v := range r.leases {
			if v.settled && st.at.Sub(v.at) > 24*time.Hour {
				delete(r.leases, k)
			}
		}
	}
}

func (r *Runner) dropLease(job *delivery.Job) {
	r.leaseMu.Lock()
	defer r.leaseMu.Unlock()
	delete(r.leases, leaseKey(job))
}
