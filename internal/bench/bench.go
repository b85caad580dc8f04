package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/sink"
)

// Options size the runs. Zero fields take the full-size defaults, or the
// quick ones when Quick is set.
type Options struct {
	// Quick runs a seconds-long version of every run.
	Quick bool
	// Partners is the fan-out population (100,000); one in ten shares the
	// alert's sector and matches.
	Partners int
	// FanoutAlerts is how many alerts are fanned out to them.
	FanoutAlerts int
	// WebhookPartners and EmailPartners are the partners of the end-to-end
	// webhook and email runs (one endpoint or address each).
	WebhookPartners, EmailPartners int
	// Rounds is how many alerts each end-to-end run publishes, each
	// beside one pass of its raw baseline.
	Rounds int
	// LatencyAlerts is how many single alerts the latency run publishes,
	// one at a time.
	LatencyAlerts int
	// Receivers is the number of loopback webhook receivers (hosts).
	Receivers int
	// Config is the base configuration: its delivery settings
	// (concurrency, per-endpoint limit, breaker) and smtp.pool are used as
	// they are; kafka, signing, smtp relay, webhook transport rules and
	// the retry schedule are replaced (see Run). Nil means the defaults.
	Config *config.Config
	// Log receives Herald's own logs; nil discards them.
	Log *slog.Logger
	// Progress, if set, is told what each run is doing.
	Progress io.Writer
	// StatusReceipts is how many receipts of other alerts the receipts
	// topic holds when the status lookup is timed (1,000,000; 50,000 with
	// Quick).
	StatusReceipts int
	// StatusRequests is how many status requests are timed.
	StatusRequests int
	// WorkerAlerts is how many alerts go through the separate fanout and
	// deliver process whose peak resident set is rss.workers.
	WorkerAlerts int
	// Serve, if set, makes the command that runs `herald serve` with args
	// for the workers and roles runs (`herald bench --serve-binary`). Nil runs this program (os.Executable) with args,
	// which is Herald's command line when the suite runs from
	// `herald bench`; a test binary dispatches to the command line in its
	// TestMain. The child's environment is this process's without HERALD_
	// variables, followed by the command's own Env, then HERALD_VIEW_DIR
	// and HERALD_PUBLISHING_KEY_FILE; the configuration file given to it
	// holds every other setting that differs from the defaults.
	Serve func(ctx context.Context, args ...string) *exec.Cmd
	// Runs, if not empty, limits the suite to the named runs (RunFanout,
	// RunWebhook, RunEmail, RunLatency, RunStatus, RunWorkers, RunRoles), to profile
	// one of them. Peak RSS is always reported.
	Runs []string
}

// Names of the runs, for Options.Runs.
const (
	RunFanout  = "fanout"
	RunWebhook = "webhook"
	RunEmail   = "email"
	RunLatency = "latency"
	RunStatus  = "status"
	RunWorkers = "workers"
	RunRoles   = "roles"
)

// AllRuns lists the runs in the order they run.
var AllRuns = []string{RunFanout, RunWebhook, RunEmail, RunLatency, RunStatus, RunWorkers, RunRoles}

// runs reports whether run is selected.
func (o Options) runs(run string) bool { return len(o.Runs) == 0 || slices.Contains(o.Runs, run) }

// Sizes of the full and quick suites.
var (
	fullOptions = Options{Partners: 100_000, FanoutAlerts: 5, WebhookPartners: 10_000, EmailPartners: 10_000, Rounds: 3,
		LatencyAlerts: 1_000, Receivers: 16, StatusReceipts: 1_000_000, StatusRequests: 50, WorkerAlerts: 3}
	quickOptions = Options{Partners: 100_000, FanoutAlerts: 2, WebhookPartners: 2_000, EmailPartners: 2_000, Rounds: 1,
		LatencyAlerts: 100, Receivers: 16, StatusReceipts: 50_000, StatusRequests: 50, WorkerAlerts: 1}
)

func (o Options) withDefaults() Options {
	d := fullOptions
	if o.Quick {
		d = quickOptions
	}
	pick := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	pick(&o.Partners, d.Partners)
	pick(&o.FanoutAlerts, d.FanoutAlerts)
	pick(&o.WebhookPartners, d.WebhookPartners)
	pick(&o.EmailPartners, d.EmailPartners)
	pick(&o.Rounds, d.Rounds)
	pick(&o.LatencyAlerts, d.LatencyAlerts)
	pick(&o.Receivers, d.Receivers)
	pick(&o.StatusReceipts, d.StatusReceipts)
	pick(&o.StatusRequests, d.StatusRequests)
	pick(&o.WorkerAlerts, d.WorkerAlerts)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return o
}

// Result is one measurement. Raw and Ratio are set where the figure has a
// raw-transport baseline measured in the same run; Ratio is Herald / Raw.
// webhook.raw_fasthttp is such a figure for information, without a goal:
// Herald's webhook rate against a raw fasthttp client's (the client
// Herald's transport uses), while webhook.deliveries keeps net/http's as
// its reference (issue 12).
type Result struct {
	Name   string   `json:"name"`
	Herald float64  `json:"herald"`
	Raw    *float64 `json:"raw,omitempty"`
	Ratio  *float64 `json:"ratio,omitempty"`
	Unit   string   `json:"unit"`
}

// Names of the results, in the order Run returns them.
const (
	FanoutJobs          = "fanout.jobs"
	FanoutSignsHerald   = "fanout.signatures_per_alert.herald"
	FanoutSignsSTIX     = "fanout.signatures_per_alert.stix"
	FanoutSignsMISP     = "fanout.signatures_per_alert.misp"
	FanoutSignsCAP      = "fanout.signatures_per_alert.cap"
	FanoutSignsEmail    = "email.signatures_per_message"
	WebhookDeliveries   = "webhook.deliveries"
	WebhookRawFastHTTP  = "webhook.raw_fasthttp"
	CPUPerDelivery      = "cpu.per_delivery_us"
	EmailMessages       = "email.messages"
	LatencyP50          = "latency.p50"
	LatencyP99          = "latency.p99"
	PeakRSS             = "rss.peak"
	StatusReceipts      = "status.receipts"
	StatusRebuild       = "status.rebuild"
	StatusLookup        = "status.lookup"
	StatusLookupP99     = "status.lookup.p99"
	WorkersRSS          = "rss.workers"
	RolesCPUPerDelivery = "cpu.roles_per_delivery_us"
	unitJobsPerSecond   = "jobs/s"
	unitSignatures      = "signatures"
	unitDeliveriesPerS  = "deliveries/s"
	unitMessagesPerS    = "msgs/s"
	unitMilliseconds    = "ms"
	unitMicroseconds    = "µs"
	unitMebibytes       = "MiB"
	unitReceipts        = "receipts"
	unitReceiptsPerS    = "receipts/s"
	retryWaitFirst      = 200 * time.Millisecond
	endToEndMinDeadline = 60 * time.Second
)

// Goal is a target a result is reported against (on two cores); it is not
// enforced.
type Goal struct {
	// Ratio says the goal is on Result.Ratio rather than Result.Herald.
	Ratio bool
	// AtLeast or AtMost bounds the value (whichever is not zero).
	AtLeast, AtMost float64
}

// Goals are the targets of the issue, by result name.
var Goals = map[string]Goal{
	FanoutJobs:        {AtLeast: 100_000},
	FanoutSignsHerald: {AtMost: 1},
	FanoutSignsSTIX:   {AtMost: 1},
	FanoutSignsMISP:   {AtMost: 1},
	FanoutSignsCAP:    {AtMost: 1},
	FanoutSignsEmail:  {AtMost: 1},
	WebhookDeliveries: {Ratio: true, AtLeast: 0.8},
	EmailMessages:     {Ratio: true, AtLeast: 0.8},
	CPUPerDelivery:    {AtMost: CPUPerDeliveryBaseline / 2},
	LatencyP50:        {AtMost: 5},
	LatencyP99:        {AtMost: 10},
	PeakRSS:           {AtMost: 256},
	StatusLookup:      {AtMost: 50},
	StatusLookupP99:   {AtMost: 50},
	WorkersRSS:        {AtMost: 128},
}

// CPUPerDeliveryBaseline is "today's" cpu.per_delivery_us, measured the
// same way on the commit before the work of issue 12 began (73479c6,
// `herald bench --run webhook`: the median of nine runs, 154–221 µs; see
// docs/BENCHMARKS.md). The goal is half of it.
const CPUPerDeliveryBaseline float64 = 165

// String renders the goal, e.g. "ratio ≥ 0.7".
func (g Goal) String() string {
	s := ""
	if g.Ratio {
		s = "ratio "
	}
	if g.AtLeast != 0 {
		return s + "≥ " + formatValue(g.AtLeast)
	}
	return s + "≤ " + formatValue(g.AtMost)
}

// Met reports whether r meets the goal.
func (g Goal) Met(r Result) bool {
	v := r.Herald
	if g.Ratio {
		if r.Ratio == nil {
			return false
		}
		v = *r.Ratio
	}
	if g.AtLeast != 0 {
		return v >= g.AtLeast
	}
	return v <= g.AtMost
}

// Run runs the whole suite on this machine, in this process, and returns
// every measurement. It returns an error, with the results measured so
// far, when a run fails to deliver everything it sent, or cannot start.
//
// Runs: (1) fan-out of Partners partners through fanout.Worker into an
// embedded broker of its own, then the jobs of the last alert delivered
// through Herald's notifiers to count signatures; (2) webhook and (3) email
// end to end — alert published to Kafka, fanned out and delivered by
// internal/app's fanout and deliver roles — beside a raw net/http client
// and a raw go-smtp client sending the same bytes to the same loopback
// receivers, with the process's CPU time per webhook delivery; (4)
// latency from publication to webhook arrival; (5) the process's peak
// resident set during runs 1 to 3; (6) the status question answered by
// the api role from its view of a receipts topic holding StatusReceipts
// receipts of other alerts; (7) the peak resident set of a separate `herald
// serve --roles fanout,deliver` process with Partners partners registered,
// against a broker in this process.
//
// For loopback delivery the configuration is set to
// webhooks.allow_insecure_loopback true and webhooks.allow_cidrs
// [127.0.0.0/8], smtp.tls none, and a short retry schedule.
func Run(ctx context.Context, opt Options) ([]Result, error) {
	opt = opt.withDefaults()
	for _, r := range opt.Runs {
		if !slices.Contains(AllRuns, r) {
			return nil, fmt.Errorf("bench: unknown run %q: want one of %s", r, strings.Join(AllRuns, ", "))
		}
	}
	var cfg config.Config
	if opt.Config != nil {
		cfg = *opt.Config
	} else {
		c, err := config.Load("")
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		cfg = *c
	}
	env, err := newEnv(ctx, opt, &cfg)
	if err != nil {
		return nil, err
	}
	defer env.close()

	var results []Result
	if opt.runs(RunFanout) {
		fo, err := env.runFanout(ctx)
		results = append(results, fo...)
		if err != nil {
			return results, err
		}
	}
	e2e, err := env.runEndToEnd(ctx)
	results = append(results, e2e...)
	if err != nil {
		return results, err
	}
	if opt.runs(RunStatus) {
		st, err := env.runStatus(ctx)
		results = append(results, st...)
		if err != nil {
			return results, err
		}
	}
	if opt.runs(RunWorkers) {
		wk, err := env.runWorkers(ctx)
		results = append(results, wk...)
		if err != nil {
			return results, err
		}
	}
	if opt.runs(RunRoles) {
		ro, err := env.runRoles(ctx)
		results = append(results, ro...)
		if err != nil {
			return results, err
		}
	}
	return results, nil
}

// env is what the runs share: the key, the loopback receivers and sink.
type env struct {
	opt     Options
	cfg     *config.Config
	dir     string
	signer  *pgp.Signer
	secret  string
	hooks   *tracker
	mails   *tracker
	recv    *receivers
	sink    *sink.SMTP
	started time.Time
}

func newEnv(ctx context.Context, opt Options, base *config.Config) (*env, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e := &env{opt: opt, hooks: &tracker{}, mails: &tracker{}, started: time.Now()}
	var err error
	if e.dir, err = os.MkdirTemp("", "herald-bench-"); err != nil {
		return nil, fmt.Errorf("bench: temporary directory: %w", err)
	}
	priv, _, err := pgp.GenerateKey("Herald bench", "alerts@herald.example", "ed25519", time.Now().Add(-time.Minute))
	if err != nil {
		e.close()
		return nil, fmt.Errorf("bench: generate signing key: %w", err)
	}
	keyFile := filepath.Join(e.dir, "signing.asc")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		e.close()
		return nil, fmt.Errorf("bench: write signing key: %w", err)
	}
	if e.signer, err = pgp.LoadSigner(priv, nil, time.Now()); err != nil {
		e.close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	if e.recv, err = startReceivers(opt.Receivers, e.hooks); err != nil {
		e.close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	if e.sink, err = startSink(e.mails); err != nil {
		e.close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	e.secret = "whsec_" + base64.StdEncoding.EncodeToString(key)

	pubKeyFile := filepath.Join(e.dir, "publishing.key")
	pubKey, err := busauth.Generate()
	if err == nil {
		err = os.WriteFile(pubKeyFile, pubKey, 0o600)
	}
	if err != nil {
		e.close()
		return nil, fmt.Errorf("bench: publishing key: %w", err)
	}

	c := *base
	c.Publishing.KeyFile = pubKeyFile
	c.Kafka.Brokers = nil
	c.Kafka.Embedded.Listen = "127.0.0.1:0"
	c.Kafka.Embedded.DataDir = ""
	c.Kafka.CreateTopics = true
	c.Kafka.TLS = config.KafkaTLS{}
	c.Kafka.SASL = config.KafkaSASL{}
	c.Signing = config.Signing{KeyFile: keyFile}
	c.SMTP.Host, c.SMTP.Port, c.SMTP.TLS = "127.0.0.1", e.sink.Port, "none"
	c.SMTP.Username, c.SMTP.PasswordFile = "", ""
	c.SMTP.From = "Herald alerts <alerts@herald.example>"
	c.Webhooks.AllowInsecureLoopback = true
	c.Webhooks.AllowCIDRs = []string{"127.0.0.0/8"}
	c.Delivery.RetrySchedule = []time.Duration{retryWaitFirst, time.Second, 5 * time.Second}
	e.cfg = &c
	return e, nil
}

func (e *env) close() {
	if e.recv != nil {
		e.recv.close()
	}
	if e.sink != nil {
		e.sink.Close()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
}

// progress tells the user what is happening.
func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.opt.Progress, "[%5.1fs] "+format+"\n", append([]any{time.Since(e.started).Seconds()}, args...)...)
}

// concurrency is the number of attempts Herald's deliver role runs at once
// against r receivers (webhook hosts): the process bound, or the
// per-endpoint bound times the endpoints, whichever is lower. The raw
// webhook baseline uses as many workers.
func (e *env) concurrency(endpoints int) int {
	c := cmp.Or(e.cfg.Delivery.Concurrency, 64)
	p := cmp.Or(e.cfg.Delivery.PerEndpoint, 4)
	return max(1, min(c, p*endpoints))
}

// Machine describes where the suite ran, for the report.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPU       string `json:"cpu"`
	GoVersion string `json:"go"`
	OS        string `json:"os"`
}

// ThisMachine describes this machine: runtime.NumCPU, the CPU model from
// /proc/cpuinfo where there is one, and the Go version.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, CPU: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// WriteJSON writes results as a JSON array; a result with a goal carries
// it as "goal": {"text", "ratio" (the goal is on the ratio), "at_least" or
// "at_most", "met"}.
func WriteJSON(w io.Writer, results []Result) error {
	type goal struct {
		Text    string  `json:"text"`
		Ratio   bool    `json:"ratio,omitempty"`
		AtLeast float64 `json:"at_least,omitempty"`
		AtMost  float64 `json:"at_most,omitempty"`
		Met     bool    `json:"met"`
	}
	type withGoal struct {
		Result
		Goal *goal `json:"goal,omitempty"`
	}
	out := make([]withGoal, len(results))
	for i, r := range results {
		out[i].Result = r
		if g, ok := Goals[r.Name]; ok {
			out[i].Goal = &goal{Text: g.String(), Ratio: g.Ratio, AtLeast: g.AtLeast, AtMost: g.AtMost, Met: g.Met(r)}
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// WriteTable writes results as a table for people, with each goal and
// whether it was met.
func WriteTable(w io.Writer, m Machine, results []Result) error {
	fmt.Fprintf(w, "machine: %d CPUs, %s, %s, %s\n\n", m.CPUs, m.CPU, m.GoVersion, m.OS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measurement\therald\traw\tratio\tunit\tgoal\t")
	for _, r := range results {
		raw, ratio := "-", "-"
		if r.Raw != nil {
			raw = formatValue(*r.Raw)
		}
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *r.Ratio)
		}
		goal := ""
		if g, ok := Goals[r.Name]; ok {
			mark := "met"
			if !g.Met(r) {
				mark = "MISSED"
			}
			goal = g.String() + " " + mark
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Name, formatValue(r.Herald), raw, ratio, r.Unit, goal)
	}
	return tw.Flush()
}

// formatValue prints large values as integers and small ones with two
// decimals.
func formatValue(v float64) string {
	if v >= 100 || v == float64(int64(v)) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// ptr returns a pointer to v.
func ptr(v float64) *float64 { return &v }

// errIncomplete marks a run that did not deliver everything it sent.
var errIncomplete = errors.New("not everything was delivered")
