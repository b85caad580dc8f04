package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/segmentio/kafka-go"
	"github.com/valyala/fasthttp"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/subscribers"
)

// Sectors of the end-to-end partners; the latency partner is named.
const (
	webhookSector = "car-washes"
	emailSector   = "nail-bars"
	latencySector = "cleaning"
	latencyID     = "latency-partner"
	// stopTimeout bounds the deliver role's drain (bus DrainTimeout is 30s).
	stopTimeout = 45 * time.Second
)

// runEndToEnd runs 2 to 5: Herald's fanout and deliver roles run by
// app.Run on an embedded broker, with the partners registered through the
// subscribers topic; alerts are published to the alerts topic as the API
// would publish them.
func (e *env) runEndToEnd(ctx context.Context) ([]Result, error) {
	opt := e.opt
	b, err := app.OpenBus(ctx, e.cfg, false, opt.Log.With("component", "bench-e2e"))
	if err != nil {
		return nil, fmt.Errorf("end to end: open embedded broker: %w", err)
	}
	defer b.Close()
	if err := b.EnsureTopics(ctx, len(e.cfg.Delivery.RetrySchedule)); err != nil {
		return nil, fmt.Errorf("end to end: %w", err)
	}

	hooks := make([]*subscribers.Subscriber, opt.WebhookPartners)
	for i := range hooks {
		hooks[i] = e.partner(fmt.Sprintf("wh-%05d", i), webhookSector, false, true, i)
	}
	mails := make([]*subscribers.Subscriber, opt.EmailPartners)
	for i := range mails {
		mails[i] = e.partner(fmt.Sprintf("em-%05d", i), emailSector, true, false, i)
	}
	lat := e.partner(latencyID, latencySector, false, true, 0)
	e.progress("end to end: registering %d partners through the subscribers topic", len(hooks)+len(mails)+1)
	if err := register(ctx, b, slices.Concat(hooks, mails, []*subscribers.Subscriber{lat})); err != nil {
		return nil, fmt.Errorf("end to end: %w", err)
	}

	appCtx, stopApp := context.WithCancel(ctx)
	defer stopApp()
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- app.Run(appCtx, e.cfg, opt.Log, app.Options{Bus: b, Roles: []string{app.RoleFanout, app.RoleDeliver},
			Explicit: true, Started: func(*app.App) { close(started) }})
	}()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopApp()
		select {
		case err := <-errc:
			return err
		case <-time.After(stopTimeout):
			return fmt.Errorf("herald did not stop within %s of being asked to", stopTimeout)
		}
	}
	defer stop()
	select {
	case <-started:
	case err := <-errc:
		stopped = true
		return nil, fmt.Errorf("end to end: herald did not start: %w", err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	pub := b.Producer(bus.TopicAlerts)

	// Warm up: the first alert waits for the consumer groups to form.
	e.progress("end to end: waiting for the fan-out and deliver roles to join their groups")
	if _, err := e.latencyOnce(ctx, pub, lat, "bench-warm", time.Minute); err != nil {
		return nil, fmt.Errorf("end to end: warm-up: %w", err)
	}

	var results []Result
	if opt.runs(RunWebhook) {
		wh, err := e.webhookRun(ctx, b, pub, hooks)
		if err != nil {
			return nil, err
		}
		results = append(results, wh...)
	}
	if opt.runs(RunEmail) {
		em, err := e.emailRun(ctx, pub, mails)
		if err != nil {
			return results, err
		}
		results = append(results, em)
	}
	rss, err := peakRSS()
	if err != nil {
		return results, err
	}
	if opt.runs(RunLatency) {
		lr, err := e.latencyRun(ctx, pub, lat)
		if err != nil {
			return results, err
		}
		results = append(results, lr...)
	}
	results = append(results, Result{Name: PeakRSS, Herald: rss, Unit: unitMebibytes})
	if err := stop(); err != nil {
		return results, fmt.Errorf("end to end: herald stopped with an error: %w", err)
	}
	return results, nil
}

// register writes the subscriber records to the subscribers topic.
func register(ctx context.Context, b *bus.Bus, subs []*subscribers.Subscriber) error {
	p := b.Producer(bus.TopicSubscribers)
	const chunk = 1000
	for start := 0; start < len(subs); start += chunk {
		var msgs []kafka.Message
		for _, s := range subs[start:min(start+chunk, len(subs))] {
			v, err := json.Marshal(s)
			if err != nil {
				return fmt.Errorf("encode subscriber %s: %w", s.ID, err)
			}
			msgs = append(msgs, kafka.Message{Key: []byte(s.ID), Value: v})
		}
		if err := p.Write(ctx, msgs...); err != nil {
			return fmt.Errorf("register partners: %w", err)
		}
	}
	return nil
}

// deadline is how long an end-to-end pass of n deliveries may take before
// it counts as failed.
func deadline(n int) time.Duration {
	return max(endToEndMinDeadline, time.Duration(n)*5*time.Millisecond)
}

// webhookRun is run 2: Rounds alerts to every webhook partner, each beside
// a raw net/http pass posting the same body and headers to the same URLs
// with as many concurrent requests as Herald's deliver role allows itself
// (the reference of webhook.deliveries), and, for information, a raw
// fasthttp pass doing the same (webhook.raw_fasthttp: Herald's transport is
// fasthttp's, so this is the limit of the client it uses). It also reports
// the process's CPU time per delivery over Herald's passes (see
// passCPU).
func (e *env) webhookRun(ctx context.Context, b *bus.Bus, pub *bus.Producer, subs []*subscribers.Subscriber) ([]Result, error) {
	workers := e.concurrency(e.opt.Receivers)
	raw := &http.Client{
		Transport: &http.Transport{ForceAttemptHTTP2: true, MaxIdleConns: 1024, MaxIdleConnsPerHost: 64,
			IdleConnTimeout: 90 * time.Second, DisableCompression: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer raw.CloseIdleConnections()
	fast := &fasthttp.Client{MaxIdleConnDuration: 90 * time.Second, NoDefaultUserAgentHeader: true,
		DisableHeaderNamesNormalizing: true, DisablePathNormalizing: true}
	defer fast.CloseIdleConnections()
	var heraldTime, rawTime, fastTime, heraldCPU time.Duration
	var sample *captured
	for round := range e.opt.Rounds {
		heraldPass := func() error {
			return passCPU(ctx, b, cpuTime, &heraldCPU, func() (err error) {
				sample, err = e.publishAndWait(ctx, pub, "webhook", webhookSector, round, subs, e.hooks,
					func(s *subscribers.Subscriber) string { return s.Webhooks[0].URL }, &heraldTime)
				return err
			})
		}
		rawPass := func() error {
			e.progress("webhook: raw net/http: posting %d bodies of %d bytes", len(subs), len(sample.body))
			start := time.Now()
			err := parallel(ctx, workers, len(subs), func(i int) error {
				return rawPost(ctx, raw, subs[i].Webhooks[0].URL, sample)
			})
			if err != nil {
				return fmt.Errorf("webhook: raw baseline: %w: %w", err, errIncomplete)
			}
			rawTime += time.Since(start)
			return nil
		}
		fastPass := func() error {
			e.progress("webhook: raw fasthttp: posting %d bodies of %d bytes", len(subs), len(sample.body))
			start := time.Now()
			err := parallel(ctx, workers, len(subs), func(i int) error {
				return rawFastPost(fast, subs[i].Webhooks[0].URL, sample)
			})
			if err != nil {
				return fmt.Errorf("webhook: raw fasthttp reference: %w: %w", err, errIncomplete)
			}
			fastTime += time.Since(start)
			return nil
		}
		if err := alternate(round, heraldPass, rawPass, fastPass); err != nil {
			return nil, err
		}
	}
	n := e.opt.Rounds * len(subs)
	cpu := Result{Name: CPUPerDelivery, Herald: float64(heraldCPU.Nanoseconds()) / 1e3 / float64(n), Unit: unitMicroseconds}
	e.progress("webhook: %.1f µs of process CPU time per delivery", cpu.Herald)
	return []Result{
		rates(WebhookDeliveries, unitDeliveriesPerS, n, heraldTime, rawTime),
		rates(WebhookRawFastHTTP, unitDeliveriesPerS, n, heraldTime, fastTime),
		cpu,
	}, nil
}

// passCPU runs one Herald pass and adds to *total the CPU time cpu
// reports was used meanwhile: from just before the alert is written until
// every delivery has arrived and the deliver role has committed every job
// (so its outcome receipts are written too). Run 2 counts this whole
// process (cpuTime), which also hosts the embedded broker, the receivers
// and the bench itself, and not its raw passes; run 8 counts the serve
// process alone (processCPU).
func passCPU(ctx context.Context, b *bus.Bus, cpu func() (time.Duration, error), total *time.Duration, pass func() error) error {
	before, err := cpu()
	if err != nil {
		return err
	}
	if err := pass(); err != nil {
		return err
	}
	if err := waitCommitted(ctx, b, app.GroupDeliver, bus.TopicDeliveries); err != nil {
		return err
	}
	after, err := cpu()
	if err != nil {
		return err
	}
	*total += after - before
	return nil
}

// waitCommitted waits until group has committed every message of topic.
func waitCommitted(ctx context.Context, b *bus.Bus, group, topic string) error {
	const limit = 30 * time.Second
	give := time.Now().Add(limit)
	for {
		lag, err := b.Lag(ctx, group, topic)
		if err != nil {
			return fmt.Errorf("wait for %s to commit %s: %w", group, topic, err)
		}
		if lag == 0 {
			return nil
		}
		if time.Now().After(give) {
			return fmt.Errorf("%s had %d messages of %s uncommitted %s after the last delivery arrived", group, lag, topic, limit)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to commit %s: %w", group, topic, context.Cause(ctx))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// rawPost posts the captured body with the captured headers to url.
func rawPost(ctx context.Context, c *http.Client, url string, s *captured) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(s.body))
	if err != nil {
		return err
	}
	s.eachHeader(req.Header.Set)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// rawFastPost posts the captured body with the captured headers to url
// with fasthttp's client.
func rawFastPost(c *fasthttp.Client, url string, s *captured) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.DisableNormalizing()
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(url)
	s.eachHeader(req.Header.Set)
	req.SetBodyRaw(s.body)
	if err := c.DoTimeout(req, resp, 30*time.Second); err != nil {
		return err
	}
	if resp.StatusCode()/100 != 2 {
		return fmt.Errorf("post %s: status %d", url, resp.StatusCode())
	}
	return nil
}

// emailRun is run 3: Rounds alerts to every email partner, each beside a
// raw go-smtp pass sending the same message bytes to the same addresses
// over as many connections as Herald's pool (smtp.pool).
func (e *env) emailRun(ctx context.Context, pub *bus.Producer, subs []*subscribers.Subscriber) (Result, error) {
	conns := e.cfg.SMTP.Pool
	if conns <= 0 {
		conns = 4
	}
	var heraldTime, rawTime time.Duration
	var sample *captured
	for round := range e.opt.Rounds {
		heraldPass := func() (err error) {
			sample, err = e.publishAndWait(ctx, pub, "email", emailSector, round, subs, e.mails,
				func(s *subscribers.Subscriber) string { return s.Email[0].Address }, &heraldTime)
			return err
		}
		rawPass := func() error {
			e.progress("email: raw go-smtp: sending %d messages of %d bytes over %d connections", len(subs), len(sample.body), conns)
			start := time.Now()
			if err := rawSend(ctx, e.sink.Addr, conns, subs, sample.body); err != nil {
				return fmt.Errorf("email: raw baseline: %w: %w", err, errIncomplete)
			}
			rawTime += time.Since(start)
			return nil
		}
		if err := alternate(round, heraldPass, rawPass); err != nil {
			return Result{}, err
		}
	}
	return rates(EmailMessages, unitMessagesPerS, e.opt.Rounds*len(subs), heraldTime, rawTime), nil
}

// rawSend sends msg to every partner's address with bare go-smtp clients
// over conns connections.
func rawSend(ctx context.Context, addr string, conns int, subs []*subscribers.Subscriber, msg []byte) error {
	clients := make(chan *smtp.Client, conns)
	var dialErr error
	for range conns {
		d := net.Dialer{Timeout: 10 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			dialErr = err
			break
		}
		_ = conn.SetDeadline(time.Now().Add(deadline(len(subs))))
		clients <- smtp.NewClient(conn)
	}
	close(clients)
	var cs []*smtp.Client
	for c := range clients {
		cs = append(cs, c)
	}
	defer func() {
		for _, c := range cs {
			_ = c.Close()
		}
	}()
	if dialErr != nil {
		return fmt.Errorf("dial %s: %w", addr, dialErr)
	}
	pool := make(chan *smtp.Client, len(cs))
	for _, c := range cs {
		pool <- c
	}
	err := parallel(ctx, len(cs), len(subs), func(i int) error {
		c := <-pool
		defer func() { pool <- c }()
		if err := c.Mail("alerts@herald.example", nil); err != nil {
			return err
		}
		if err := c.Rcpt(subs[i].Email[0].Address, nil); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := w.Write(msg); err != nil {
			return err
		}
		return w.Close()
	})
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := c.Quit(); err != nil {
			return fmt.Errorf("quit: %w", err)
		}
	}
	return nil
}

// rates turns the two sides' times for n deliveries into a result.
func rates(name, unit string, n int, herald, raw time.Duration) Result {
	h := float64(n) / herald.Seconds()
	r := float64(n) / raw.Seconds()
	return Result{Name: name, Herald: h, Raw: ptr(r), Ratio: ptr(h / r), Unit: unit}
}

// latencyRun is run 4: LatencyAlerts alerts, one at a time, each to the
// latency partner's webhook, timed from the start of the publishing write
// to the receiver reading the request.
func (e *env) latencyRun(ctx context.Context, pub *bus.Producer, lat *subscribers.Subscriber) ([]Result, error) {
	e.progress("latency: %d single alerts, one at a time", e.opt.LatencyAlerts)
	ds := make([]time.Duration, 0, e.opt.LatencyAlerts)
	for k := range e.opt.LatencyAlerts {
		d, err := e.latencyOnce(ctx, pub, lat, "bench-latency-"+strconv.Itoa(k), 30*time.Second)
		if err != nil {
			return nil, fmt.Errorf("latency: %w", err)
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return []Result{
		{Name: LatencyP50, Herald: ms(percentile(ds, 50)), Unit: unitMilliseconds},
		{Name: LatencyP99, Herald: ms(percentile(ds, 99)), Unit: unitMilliseconds},
	}, nil
}

// latencyOnce publishes one alert named to lat and returns how long its
// webhook took to arrive.
func (e *env) latencyOnce(ctx context.Context, pub *bus.Producer, lat *subscribers.Subscriber, id string, timeout time.Duration) (time.Duration, error) {
	a := NewAlert(id, nil, []string{lat.ID})
	did := delivery.ID(a.ID, lat.ID, lat.Webhooks[0].URL)
	done := e.hooks.expect([]string{did}, false)
	start := time.Now()
	if err := pub.Write(ctx, alertMessage(a)); err != nil {
		return 0, fmt.Errorf("publish %s: %w", a.ID, err)
	}
	if err := waitDone(ctx, done, timeout, e.hooks, "delivery of "+a.ID); err != nil {
		return 0, fmt.Errorf("%w: %w", err, errIncomplete)
	}
	at, ok := e.hooks.arrival(did)
	if !ok {
		return 0, errors.New("arrival of " + a.ID + " not recorded")
	}
	return at.Sub(start), nil
}

// percentile returns the nearest-rank p-th percentile of sorted ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := (p*len(ds)+99)/100 - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// publishAndWait publishes one alert to sector and waits until the tracker
// has seen the delivery to target(s) of every partner in subs, adding the
// time taken to *elapsed. It returns one delivery as it arrived.
func (e *env) publishAndWait(ctx context.Context, pub *bus.Producer, channel, sector string, round int,
	subs []*subscribers.Subscriber, tr *tracker, target func(*subscribers.Subscriber) string, elapsed *time.Duration) (*captured, error) {
	a := NewAlert(fmt.Sprintf("bench-%s-%d", channel, round), []string{sector}, nil)
	ids := make([]string, len(subs))
	for i, s := range subs {
		ids[i] = delivery.ID(a.ID, s.ID, target(s))
	}
	e.progress("%s: herald: publishing %s to %d partners", channel, a.ID, len(subs))
	done := tr.expect(ids, true)
	start := time.Now()
	if err := pub.Write(ctx, alertMessage(a)); err != nil {
		return nil, fmt.Errorf("%s: publish %s: %w", channel, a.ID, err)
	}
	if err := waitDone(ctx, done, deadline(len(subs)), tr, channel+": deliveries of "+a.ID); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errIncomplete)
	}
	*elapsed += time.Since(start)
	return tr.captured(), nil
}

// alternate runs Herald's pass and the raw passes of one round. Herald
// goes first in the first round (the raw passes repeat the body Herald
// sent); then the order reverses every round, so that no pass always meets
// another's leftovers.
func alternate(round int, herald func() error, raws ...func() error) error {
	order := append([]func() error{herald}, raws...)
	if round%2 == 1 {
		slices.Reverse(order)
	}
	for _, pass := range order {
		if err := pass(); err != nil {
			return err
		}
	}
	return nil
}
