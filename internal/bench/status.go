package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/view"
)

// The status run's history (issue 12): one alert with 1,000 receipts among
// the receipts of other alerts.
const (
	statusTarget = "bench-status-target"
	// statusTargetReceipts is the target alert's receipts: its alert
	// receipt, 500 decisions and 499 outcomes (500 deliveries shown).
	statusTargetReceipts = 1000
	statusTargetEntries  = 500
	// statusPartners is the audience of every other alert: 2,001 receipts
	// each (its alert receipt, a decision and an outcome per partner).
	statusPartners = 1000
	// statusBatch is how many receipts go to the broker in one write.
	statusBatch = 20_000
	// statusReadyTimeout bounds the view's rebuild and the api role's start.
	statusReadyTimeout = 10 * time.Minute
)

// runStatus is run 6: StatusReceipts receipts of other alerts and the
// target alert's 1,000 receipts, written straight to the receipts topic of
// an embedded broker of its own; a view (internal/view) built from scratch
// from them, timed (status.rebuild); then the api role, as app.Run wires
// it, started on loopback with that view, and GET
// /v1/alerts/{id}/deliveries for the target alert timed StatusRequests
// times with an analyst's token (status.lookup: the median, and p99).
func (e *env) runStatus(ctx context.Context) ([]Result, error) {
	opt := e.opt
	c := *e.cfg
	b, err := app.OpenBus(ctx, &c, false, opt.Log.With("component", "bench-status"))
	if err != nil {
		return nil, fmt.Errorf("status: open embedded broker: %w", err)
	}
	defer b.Close()
	if err := b.EnsureTopics(ctx, len(c.Delivery.RetrySchedule)); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}

	e.progress("status: writing %d receipts of other alerts and the target alert's %d to the receipts topic",
		opt.StatusReceipts, statusTargetReceipts)
	start := time.Now()
	written, err := writeStatusHistory(ctx, b, opt.StatusReceipts)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	e.progress("status: %d receipts written in %s", written, time.Since(start).Round(time.Millisecond))
	results := []Result{{Name: StatusReceipts, Herald: float64(written), Unit: unitReceipts}}

	dir := filepath.Join(e.dir, "status-view")
	defer os.RemoveAll(dir)
	e.progress("status: building a view of the topics from scratch")
	build, err := buildView(ctx, b, dir, int64(written), opt)
	if err != nil {
		return results, fmt.Errorf("status: %w", err)
	}
	rebuild := Result{Name: StatusRebuild, Herald: float64(written) / build.Seconds(), Unit: unitReceiptsPerS}
	e.progress("status: view built in %s: %.0f receipts/s", build.Round(time.Millisecond), rebuild.Herald)
	results = append(results, rebuild)

	ds, err := e.timeStatus(ctx, b, &c, dir)
	if err != nil {
		return results, fmt.Errorf("status: %w", err)
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return append(results,
		Result{Name: StatusLookup, Herald: ms(percentile(ds, 50)), Unit: unitMilliseconds},
		Result{Name: StatusLookupP99, Herald: ms(percentile(ds, 99)), Unit: unitMilliseconds},
	), nil
}

// writeStatusHistory writes others receipts of other alerts (alerts of
// 2,001 receipts, the last one cut short) with the target alert's 1,000 in
// the middle of them to the receipts topic, in big batches, encoded by
// fanout.ReceiptMessage and authenticated by the producer as the fan-out's
// and the deliver role's are. It returns how many it wrote.
func writeStatusHistory(ctx context.Context, b *bus.Bus, others int) (int, error) {
	p := b.Producer(bus.TopicReceipts)
	batches := make(chan []kafka.Message, 2)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		var err error
		for batch := range batches {
			if err == nil {
				err = p.Write(ctx, batch...)
				if err != nil {
					cancel()
				}
			}
		}
		errc <- err
	}()

	written := 0
	batch := make([]kafka.Message, 0, statusBatch)
	add := func(r delivery.Receipt) {
		batch = append(batch, fanout.ReceiptMessage(r))
		written++
		if len(batch) == statusBatch {
			select {
			case batches <- batch:
			case <-ctx.Done():
			}
			batch = make([]kafka.Message, 0, statusBatch)
		}
	}
	perAlert := 1 + 2*statusPartners
	alertsN := (others+perAlert-1)/perAlert + 1
	at := time.Now().Add(-time.Duration(alertsN) * time.Minute).UTC()
	writeAlert := func(id string, n, partners int) {
		at = at.Add(time.Minute)
		statusReceipts(id, n, partners, at, add)
	}
	otherWritten, targetDone := 0, false
	for i := 0; otherWritten < others && ctx.Err() == nil; i++ {
		n := min(perAlert, others-otherWritten)
		writeAlert(fmt.Sprintf("bench-status-%06d", i), n, statusPartners)
		otherWritten += n
		if !targetDone && otherWritten >= others/2 {
			writeAlert(statusTarget, statusTargetReceipts, statusTargetEntries)
			targetDone = true
		}
	}
	if !targetDone {
		writeAlert(statusTarget, statusTargetReceipts, statusTargetEntries)
	}
	if len(batch) > 0 {
		select {
		case batches <- batch:
		case <-ctx.Done():
		}
	}
	close(batches)
	if err := <-errc; err != nil {
		return 0, fmt.Errorf("write receipts: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("write receipts: %w", err)
	}
	return written, nil
}

// statusReceipts makes n receipts of alert id: its alert receipt, then one
// decision for each of partners partners (a webhook or an email address in
// turn), then one delivered outcome each, until n are made.
func statusReceipts(id string, n, partners int, at time.Time, add func(delivery.Receipt)) {
	a := NewAlert(id, []string{webhookSector}, nil)
	add(delivery.Receipt{Kind: delivery.KindAlert, AlertID: id, At: at, Type: a.Type, TLP: a.TLP, Marking: a.Marking,
		IssuedBy: a.IssuedBy, Title: a.Title, Digest: a.Digest()})
	n--
	target := func(i int) (sub, channel, target string) {
		sub = fmt.Sprintf("p-%06d", i)
		if i%2 == 0 {
			return sub, delivery.ChannelEmail, "alerts@" + sub + ".example"
		}
		return sub, delivery.ChannelWebhook, "https://hooks." + sub + ".example/herald"
	}
	for i := 0; n > 0; i++ {
		p := i % partners
		sub, ch, t := target(p)
		did := delivery.ID(id, sub, t)
		if i < partners {
			add(delivery.Receipt{Kind: delivery.KindDecision, AlertID: id, DeliveryID: did, Subscriber: sub, Channel: ch,
				Target: t, Decision: delivery.Deliver, Mode: delivery.ModeSigned, Rule: ch + ".deliver", At: at})
		} else {
			add(delivery.Receipt{Kind: delivery.KindOutcome, AlertID: id, DeliveryID: did, Subscriber: sub, Channel: ch,
				Target: t, Mode: delivery.ModeSigned, State: delivery.StateDelivered, Attempt: 1, At: at.Add(time.Second)})
		}
		n--
	}
}

// buildView builds a view of b's topics in dir from scratch, checks that
// it applied want receipts, closes it and returns how long it took to be
// ready.
func buildView(ctx context.Context, b *bus.Bus, dir string, want int64, opt Options) (time.Duration, error) {
	v, err := view.Open(dir, view.Options{Log: opt.Log.With("component", "bench-view")})
	if err != nil {
		return 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- v.Run(rctx, b) }()
	var took time.Duration
	var runErr error
	select {
	case <-v.Ready():
		took = time.Since(start)
		cancel()
		runErr = <-done
	case runErr = <-done:
		runErr = fmt.Errorf("view stopped before it was ready: %w", runErr)
	case <-time.After(statusReadyTimeout):
		cancel()
		<-done
		runErr = fmt.Errorf("view not ready within %s", statusReadyTimeout)
	}
	applied := v.Stats().Applied[bus.TopicReceipts]
	if err := errors.Join(runErr, v.Close()); err != nil {
		return 0, fmt.Errorf("build view: %w", err)
	}
	if applied != want {
		return 0, fmt.Errorf("build view: %d receipts applied, want %d", applied, want)
	}
	return took, nil
}

// timeStatus runs the api role (app.Run) on b with the view in dir, waits
// for /readyz, and times StatusRequests requests for the target alert's
// deliveries after one untimed request.
func (e *env) timeStatus(ctx context.Context, b *bus.Bus, base *config.Config, dir string) ([]time.Duration, error) {
	tok := make([]byte, 24)
	_, _ = rand.Read(tok)
	token := "bench-" + hex.EncodeToString(tok)
	c := *base
	c.API.Listen = "127.0.0.1:0"
	c.API.PublicURL = ""
	c.API.Tokens = []config.Token{{Name: "bench-analyst", Role: config.RoleAnalyst, SHA256: config.HashToken(token)}}
	c.View.Dir = dir
	c.Metrics.Listen = ""

	appCtx, stopApp := context.WithCancel(ctx)
	defer stopApp()
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- app.Run(appCtx, &c, slog.New(quietReadyz{e.opt.Log.Handler()}), app.Options{Bus: b, Roles: []string{app.RoleAPI}, Explicit: true,
			Started: func(a *app.App) { addrc <- a.APIAddr() }})
	}()
	stop := func() error {
		stopApp()
		select {
		case err := <-errc:
			return err
		case <-time.After(stopTimeout):
			return fmt.Errorf("the api role did not stop within %s of being asked to", stopTimeout)
		}
	}
	var addr string
	select {
	case addr = <-addrc:
	case err := <-errc:
		return nil, fmt.Errorf("the api role did not start: %w", err)
	case <-ctx.Done():
		return nil, errors.Join(ctx.Err(), stop())
	}
	ds, err := e.requestStatus(ctx, "http://"+addr, token)
	if serr := stop(); serr != nil {
		err = errors.Join(err, fmt.Errorf("the api role stopped with an error: %w", serr))
	}
	return ds, err
}

// requestStatus waits for base's /readyz, then times the requests.
func (e *env) requestStatus(ctx context.Context, base, token string) ([]time.Duration, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	e.progress("status: waiting for the api role's /readyz (its view catching up)")
	give := time.Now().Add(statusReadyTimeout)
	for {
		code, _, err := get(ctx, client, base+"/readyz", "")
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(give) {
			return nil, fmt.Errorf("the api role's /readyz did not answer 200 within %s (last: %d, %v)", statusReadyTimeout, code, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	url := base + "/v1/alerts/" + statusTarget + "/deliveries"
	e.progress("status: %d requests GET /v1/alerts/%s/deliveries (%d deliveries)", e.opt.StatusRequests, statusTarget, statusTargetEntries)
	ds := make([]time.Duration, 0, e.opt.StatusRequests)
	for i := range e.opt.StatusRequests + 1 {
		start := time.Now()
		code, body, err := get(ctx, client, url, token)
		took := time.Since(start)
		if err != nil {
			return nil, err
		}
		if code != http.StatusOK {
			return nil, fmt.Errorf("GET %s: status %d: %.200s", url, code, body)
		}
		var d api.Deliveries
		if err := json.Unmarshal(body, &d); err != nil {
			return nil, fmt.Errorf("GET %s: decode the answer: %w", url, err)
		}
		if d.ID != statusTarget || len(d.Deliveries) != statusTargetEntries {
			return nil, fmt.Errorf("GET %s: %d deliveries of %q, want %d of %q", url, len(d.Deliveries), d.ID, statusTargetEntries, statusTarget)
		}
		if i > 0 { // the first warms the connection up
			ds = append(ds, took)
		}
	}
	return ds, nil
}

// quietReadyz drops the api's log lines of /readyz requests: the bench
// polls it until the view has caught up, and each 503 before then is
// logged as an error.
type quietReadyz struct{ slog.Handler }

func (q quietReadyz) Handle(ctx context.Context, r slog.Record) error {
	readyz := false
	r.Attrs(func(a slog.Attr) bool {
		readyz = a.Key == "route" && a.Value.String() == "GET /readyz"
		return !readyz
	})
	if readyz {
		return nil
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietReadyz) WithAttrs(as []slog.Attr) slog.Handler {
	return quietReadyz{q.Handler.WithAttrs(as)}
}

func (q quietReadyz) WithGroup(name string) slog.Handler {
	return quietReadyz{q.Handler.WithGroup(name)}
}

// get sends GET url, with token as bearer token if not empty, and returns
// the status and the body.
func get(ctx context.Context, c *http.Client, url, token string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, fmt.Errorf("GET %s: read the answer: %w", url, err)
	}
	return resp.StatusCode, body, nil
}
