package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tiny is the quick suite in a configuration of a few hundred deliveries,
// a status history of 5,000 receipts and a serve process (this test
// binary, see TestMain) with 2,000 partners.
var tiny = Options{Quick: true, Partners: 2_000, FanoutAlerts: 1, WebhookPartners: 150, EmailPartners: 150,
	Rounds: 2, LatencyAlerts: 5, Receivers: 3, StatusReceipts: 5_000, StatusRequests: 5, WorkerAlerts: 1,
	Serve: serveChild}

// TestRunTinySuite runs every run end to end and checks that every
// measurement is present and positive. Run returns an error when any
// delivery of any run did not arrive, so a nil error means all of them
// (200 × 2 fan-out jobs delivered for the signature count, 2 × 150
// webhooks and 2 × 150 emails through Herald and as many through the raw
// clients, 6 latency alerts) arrived.
func TestRunTinySuite(t *testing.T) {
	var progress bytes.Buffer
	opt := tiny
	opt.Progress = &progress
	results, err := Run(t.Context(), opt)
	require.NoError(t, err, "progress:\n%s", progress.String())

	names := make([]string, len(results))
	byName := map[string]Result{}
	for i, r := range results {
		names[i] = r.Name
		byName[r.Name] = r
	}
	assert.Equal(t, []string{FanoutJobs, FanoutSignsHerald, FanoutSignsSTIX, FanoutSignsMISP, FanoutSignsCAP, FanoutSignsEmail,
		WebhookDeliveries, WebhookRawFastHTTP, CPUPerDelivery, EmailMessages, LatencyP50, LatencyP99, PeakRSS,
		StatusReceipts, StatusRebuild, StatusLookup, StatusLookupP99, WorkersRSS, RolesCPUPerDelivery}, names)
	for _, r := range results {
		assert.Greater(t, r.Herald, 0.0, r.Name)
		assert.NotEmpty(t, r.Unit, r.Name)
		switch r.Name {
		case WebhookDeliveries, WebhookRawFastHTTP, EmailMessages:
			require.NotNil(t, r.Raw, r.Name)
			require.NotNil(t, r.Ratio, r.Name)
			assert.Greater(t, *r.Raw, 0.0, r.Name)
			assert.InDelta(t, r.Herald / *r.Raw, *r.Ratio, 1e-9, r.Name)
		default:
			assert.Nil(t, r.Raw, r.Name)
			assert.Nil(t, r.Ratio, r.Name)
		}
	}
	// One signature per alert and payload format for the webhook bodies,
	// however many partners; one per email message (each carries its own
	// protected headers).
	for _, r := range results {
		switch r.Name {
		case FanoutSignsHerald, FanoutSignsSTIX, FanoutSignsMISP, FanoutSignsCAP, FanoutSignsEmail:
			assert.Equal(t, 1.0, r.Herald, r.Name)
		}
	}
	assert.LessOrEqual(t, byName[LatencyP50].Herald, byName[LatencyP99].Herald)

	// CPU time per delivery: some, and less than a second; Herald's roles
	// alone, in a process of their own, too.
	assert.Equal(t, "µs", byName[CPUPerDelivery].Unit)
	assert.Less(t, byName[CPUPerDelivery].Herald, 1e6)
	assert.Equal(t, "µs", byName[RolesCPUPerDelivery].Unit)
	assert.Less(t, byName[RolesCPUPerDelivery].Herald, 1e6)

	// The status history is the one asked for, and every request was
	// answered (a wrong answer is an error of Run).
	assert.Equal(t, float64(tiny.StatusReceipts+statusTargetReceipts), byName[StatusReceipts].Herald)
	assert.Equal(t, "receipts/s", byName[StatusRebuild].Unit)
	assert.Equal(t, "ms", byName[StatusLookup].Unit)
	assert.LessOrEqual(t, byName[StatusLookup].Herald, byName[StatusLookupP99].Herald)

	// The serve process's peak resident set: a separate process's, in MiB.
	assert.Equal(t, "MiB", byName[WorkersRSS].Unit)
	assert.Less(t, byName[WorkersRSS].Herald, 64*1024.0)

	// Every figure with a goal is judged in the table and in JSON.
	var tb, js bytes.Buffer
	require.NoError(t, WriteTable(&tb, ThisMachine(), results))
	require.NoError(t, WriteJSON(&js, results))
	var out []struct {
		Name string
		Goal *struct {
			Text string
			Met  *bool
		}
	}
	require.NoError(t, json.Unmarshal(js.Bytes(), &out))
	require.Len(t, out, len(results))
	for i, name := range names {
		g, ok := Goals[name]
		if !ok {
			assert.Nil(t, out[i].Goal, name)
			continue
		}
		assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(name)+` .*`+regexp.QuoteMeta(g.String())+` (met|MISSED)\s*$`, tb.String())
		if assert.NotNil(t, out[i].Goal, name) {
			assert.Equal(t, g.String(), out[i].Goal.Text, name)
			assert.NotNil(t, out[i].Goal.Met, name)
		}
	}
}

func TestRunOnlySelectedRunsAndRejectsUnknown(t *testing.T) {
	opt := tiny
	opt.Runs = []string{RunLatency}
	results, err := Run(t.Context(), opt)
	require.NoError(t, err)
	require.Len(t, results, 3)
	assert.Equal(t, LatencyP50, results[0].Name)
	assert.Equal(t, PeakRSS, results[2].Name)

	opt.Runs = []string{"fan-out"}
	_, err = Run(t.Context(), opt)
	require.ErrorContains(t, err, `unknown run "fan-out"`)
}

func TestGoalsOfIssue12(t *testing.T) {
	for _, tc := range []struct {
		name string
		goal Goal
	}{
		{WebhookDeliveries, Goal{Ratio: true, AtLeast: 0.8}},
		{EmailMessages, Goal{Ratio: true, AtLeast: 0.8}},
		{LatencyP50, Goal{AtMost: 5}},
		{LatencyP99, Goal{AtMost: 10}},
		{StatusLookup, Goal{AtMost: 50}},
		{StatusLookupP99, Goal{AtMost: 50}},
		{WorkersRSS, Goal{AtMost: 128}},
		{CPUPerDelivery, Goal{AtMost: CPUPerDeliveryBaseline / 2}},
		{PeakRSS, Goal{AtMost: 256}},
	} {
		assert.Equal(t, tc.goal, Goals[tc.name], tc.name)
	}
	assert.Greater(t, CPUPerDeliveryBaseline, 0.0, "today's figure, measured")
	assert.NotContains(t, Goals, StatusRebuild, "reported, no goal")

	assert.True(t, Goals[LatencyP50].Met(Result{Herald: 4.9}))
	assert.False(t, Goals[LatencyP50].Met(Result{Herald: 5.1}))
	assert.True(t, Goals[StatusLookup].Met(Result{Herald: 49.9}))
	assert.False(t, Goals[StatusLookup].Met(Result{Herald: 50.1}))
	assert.True(t, Goals[WebhookDeliveries].Met(Result{Herald: 1, Ratio: ptr(0.8)}))
	assert.False(t, Goals[WebhookDeliveries].Met(Result{Herald: 1e9, Ratio: ptr(0.79)}))
	assert.False(t, Goals[WebhookDeliveries].Met(Result{Herald: 1e9}), "no ratio, not met")
	assert.Equal(t, "ratio ≥ 0.80", Goals[EmailMessages].String())
	assert.Equal(t, "≤ 10", Goals[LatencyP99].String())
	assert.Equal(t, "≤ 128", Goals[WorkersRSS].String())
}

func TestTrackerCountsOnlyExpectedDeliveries(t *testing.T) {
	var tr tracker
	done := tr.expect([]string{"a", "b"}, true)
	now := time.Now()
	tr.record("x", now, nil) // not expected: counted, not arrived
	tr.record("a", now, &captured{body: []byte("first")})
	tr.record("a", now, nil) // a duplicate
	assert.Equal(t, 1, tr.missing())
	select {
	case <-done:
		t.Fatal("done before every delivery arrived")
	default:
	}
	tr.record("b", now.Add(time.Millisecond), &captured{body: []byte("second")})
	<-done
	assert.Equal(t, "first", string(tr.captured().body))
	assert.Equal(t, 1, tr.dups)
	assert.EqualValues(t, 1, tr.other.Load())
	at, ok := tr.arrival("b")
	assert.True(t, ok)
	assert.Equal(t, now.Add(time.Millisecond), at)

	err := waitDone(t.Context(), tr.expect([]string{"c"}, false), 10*time.Millisecond, &tr, "test")
	require.ErrorContains(t, err, "1 deliveries had not arrived")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.Error(t, waitDone(ctx, tr.expect([]string{"c"}, false), time.Minute, &tr, "test"))
	select {
	case <-tr.expect(nil, false):
	default:
		t.Fatal("a phase that expects nothing is done at once")
	}
}

func TestMessageID(t *testing.T) {
	for _, tc := range []struct {
		msg, id string
		ok      bool
	}{
		{"From: a@b\r\nMessage-ID: <msg_abc@herald.example>\r\nSubject: x\r\n\r\nbody", "msg_abc", true},
		{"message-id:   <msg_x@h>\r\n\r\n", "msg_x", true},
		{"Subject: x\r\n\r\nMessage-ID: <in-body@h>\r\n", "", false},
		{"Message-ID: <no-domain>\r\n\r\n", "", false},
	} {
		id, ok := messageID([]byte(tc.msg))
		assert.Equal(t, tc.ok, ok, tc.msg)
		assert.Equal(t, tc.id, id, tc.msg)
	}
}

func TestParseHWM(t *testing.T) {
	mib, err := parseHWM([]byte("Name:\therald\nVmPeak:\t  999 kB\nVmHWM:\t  262144 kB\nVmRSS:\t 1 kB\n"))
	require.NoError(t, err)
	assert.Equal(t, 256.0, mib)
	_, err = parseHWM([]byte("Name:\therald\n"))
	require.Error(t, err)
	_, err = parseHWM([]byte("VmHWM:\tmany kB\n"))
	require.Error(t, err)
}

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis; utime 250 and stime
	// 75 ticks of 1/100 s.
	stat := []byte("4242 (herald (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 12 0 123456 1000000 2000 18446744073709551615")
	d, err := parseStatCPU(stat)
	require.NoError(t, err)
	assert.Equal(t, 3250*time.Millisecond, d)
	_, err = parseStatCPU([]byte("4242 (herald) S 1 2 3"))
	require.ErrorContains(t, err, "fields after the command name")
	_, err = parseStatCPU([]byte("4242 (herald) S 1 4242 4242 0 -1 4194560 1234 0 0 0 x 75 0"))
	require.ErrorContains(t, err, "utime")
	_, err = parseStatCPU([]byte("no name"))
	require.Error(t, err)

	// This process's own, read from /proc, agrees with getrusage(2) to
	// the tick: after 100 ms of CPU time by getrusage, /proc says at
	// least 80 ms more.
	before, err := processCPU(os.Getpid())
	require.NoError(t, err)
	start, err := cpuTime()
	require.NoError(t, err)
	for {
		now, err := cpuTime()
		require.NoError(t, err)
		if now-start >= 100*time.Millisecond {
			break
		}
	}
	after, err := processCPU(os.Getpid())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, after-before, 80*time.Millisecond)
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 1000; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	assert.Equal(t, 500*time.Millisecond, percentile(ds, 50))
	assert.Equal(t, 990*time.Millisecond, percentile(ds, 99))
	assert.Equal(t, 7*time.Millisecond, percentile([]time.Duration{7 * time.Millisecond}, 99))
	assert.Zero(t, percentile(nil, 50))
}

func TestOutputFormats(t *testing.T) {
	results := []Result{
		{Name: FanoutJobs, Herald: 123456.7, Unit: unitJobsPerSecond},
		{Name: WebhookDeliveries, Herald: 600, Raw: ptr(1000), Ratio: ptr(0.6), Unit: unitDeliveriesPerS},
		{Name: StatusRebuild, Herald: 90000, Unit: unitReceiptsPerS},
		{Name: StatusLookup, Herald: 3.5, Unit: unitMilliseconds},
	}
	var js bytes.Buffer
	require.NoError(t, WriteJSON(&js, results))
	var raw []map[string]any
	require.NoError(t, json.Unmarshal(js.Bytes(), &raw))
	require.Len(t, raw, 4)
	assert.Equal(t, map[string]any{"name": FanoutJobs, "herald": 123456.7, "unit": "jobs/s",
		"goal": map[string]any{"text": "≥ 100000", "at_least": 100000.0, "met": true}}, raw[0])
	assert.Equal(t, map[string]any{"name": WebhookDeliveries, "herald": 600.0, "raw": 1000.0, "ratio": 0.6, "unit": "deliveries/s",
		"goal": map[string]any{"text": "ratio ≥ 0.80", "ratio": true, "at_least": 0.8, "met": false}}, raw[1])
	assert.Equal(t, map[string]any{"name": StatusRebuild, "herald": 90000.0, "unit": "receipts/s"}, raw[2], "no goal")
	assert.Equal(t, map[string]any{"text": "≤ 50", "at_most": 50.0, "met": true}, raw[3]["goal"])

	js.Reset()
	require.NoError(t, WriteJSON(&js, nil))
	assert.Equal(t, "[]\n", js.String())

	var tb bytes.Buffer
	require.NoError(t, WriteTable(&tb, Machine{CPUs: 2, CPU: "Test CPU", GoVersion: "go1.26", OS: "linux/amd64"}, results))
	lines := strings.Split(strings.TrimSpace(tb.String()), "\n")
	assert.Contains(t, lines[0], "2 CPUs, Test CPU, go1.26")
	assert.True(t, slices.ContainsFunc(lines, func(l string) bool {
		return strings.Contains(l, FanoutJobs) && strings.Contains(l, "123457") && strings.Contains(l, "≥ 100000 met")
	}), tb.String())
	assert.True(t, slices.ContainsFunc(lines, func(l string) bool {
		return strings.Contains(l, WebhookDeliveries) && strings.Contains(l, "0.60") && strings.Contains(l, "ratio ≥ 0.80 MISSED")
	}), tb.String())
}

func TestRawPostFailsOnNon2xx(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	err := rawPost(t.Context(), srv.Client(), srv.URL, &captured{header: http.Header{}, body: []byte("{}")})
	require.ErrorContains(t, err, "status 503")
}
