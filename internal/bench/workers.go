package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/subscribers"
)

// workersStartTimeout bounds the serve process's start: loading the
// registry of Partners partners and joining the consumer groups.
const workersStartTimeout = 2 * time.Minute

// runWorkers is run 7: Herald's own fanout and deliver roles in a process of
// their own, `herald serve --roles fanout,deliver`, against an embedded
// broker in this process, with the fan-out population (Partners partners,
// one in ten matching) registered through the subscribers topic.
// WorkerAlerts alerts go through it to the loopback receivers and sink;
// then its peak resident set (VmHWM of /proc/<pid>/status) is read and it
// is stopped with SIGTERM.
func (e *env) runWorkers(ctx context.Context) ([]Result, error) {
	var rss float64
	err := e.againstServe(ctx, RunWorkers, e.population(e.opt.Partners), func(p *serveProcess, b *bus.Bus, subs []*subscribers.Subscriber) error {
		var err error
		rss, err = e.throughWorkers(p, b, subs)
		return err
	})
	if err != nil {
		return nil, err
	}
	e.progress("workers: peak resident set of the fanout and deliver process %.0f MiB", rss)
	return []Result{{Name: WorkersRSS, Herald: rss, Unit: unitMebibytes}}, nil
}

// againstServe is what the workers and roles runs share: an embedded
// broker of the run's own in this process, with subs registered through
// the subscribers topic, and `herald serve --roles fanout,deliver` started
// against it with the settings of serveConfig. through runs with both;
// then the process must stop cleanly.
func (e *env) againstServe(ctx context.Context, run string, subs []*subscribers.Subscriber,
	through func(p *serveProcess, b *bus.Bus, subs []*subscribers.Subscriber) error) error {
	c := *e.cfg
	b, err := app.OpenBus(ctx, &c, false, e.opt.Log.With("component", "bench-"+run))
	if err != nil {
		return fmt.Errorf("%s: open embedded broker: %w", run, err)
	}
	defer b.Close()
	if err := b.EnsureTopics(ctx, len(c.Delivery.RetrySchedule)); err != nil {
		return fmt.Errorf("%s: %w", run, err)
	}
	e.progress("%s: registering %d partners through the subscribers topic", run, len(subs))
	if err := register(ctx, b, subs); err != nil {
		return fmt.Errorf("%s: %w", run, err)
	}
	cfg, env := e.serveConfig(b, run)
	file := filepath.Join(e.dir, run+".yaml")
	if err := writeConfig(file, cfg); err != nil {
		return fmt.Errorf("%s: %w", run, err)
	}
	e.progress("%s: starting herald serve --roles fanout,deliver against this process's broker", run)
	child, err := e.startServe(ctx, env, "serve", "--roles", app.RoleFanout+","+app.RoleDeliver, "--config", file)
	if err != nil {
		return fmt.Errorf("%s: %w", run, err)
	}
	defer child.stop()
	if err := through(child, b, subs); err != nil {
		return fmt.Errorf("%s: %w%s", run, err, child.logTail())
	}
	if err := child.stop(); err != nil {
		return fmt.Errorf("%s: %w%s", run, err, child.logTail())
	}
	return nil
}

// throughWorkers waits for the serve process to deliver a first alert,
// sends WorkerAlerts alerts to the matching partners through it, and
// returns its peak resident set in MiB. It stops waiting when the process
// exits.
func (e *env) throughWorkers(p *serveProcess, b *bus.Bus, subs []*subscribers.Subscriber) (float64, error) {
	ctx := p.ctx
	pub := b.Producer(bus.TopicAlerts)
	e.progress("workers: waiting for the process to load %d partners and join its groups", len(subs))
	// subs[0] matches the alerts' sector and has a webhook.
	if _, err := e.latencyOnce(ctx, pub, subs[0], "bench-workers-warm", workersStartTimeout); err != nil {
		return 0, fmt.Errorf("warm-up: %w", err)
	}
	if mib, err := processPeakRSS(p.cmd.Process.Pid); err == nil {
		e.progress("workers: peak resident set with the partners loaded and one alert delivered: %.0f MiB", mib)
	}
	var hooks, mails []string
	for k := range e.opt.WorkerAlerts {
		a := NewAlert(fmt.Sprintf("bench-workers-%d", k), []string{fanoutSectors[0]}, nil)
		hooks, mails = hooks[:0], mails[:0]
		for _, s := range subs {
			if s.Sectors[0] == fanoutSectors[0] {
				hooks = append(hooks, delivery.ID(a.ID, s.ID, s.Webhooks[0].URL))
				mails = append(mails, delivery.ID(a.ID, s.ID, s.Email[0].Address))
			}
		}
		e.progress("workers: publishing %s to %d partners (%d webhooks, %d emails)", a.ID, len(hooks), len(hooks), len(mails))
		hooksDone, mailsDone := e.hooks.expect(hooks, false), e.mails.expect(mails, false)
		if err := pub.Write(ctx, alertMessage(a)); err != nil {
			return 0, fmt.Errorf("publish %s: %w", a.ID, err)
		}
		n := len(hooks) + len(mails)
		if err := waitDone(ctx, hooksDone, deadline(n), e.hooks, "webhook deliveries of "+a.ID); err != nil {
			return 0, fmt.Errorf("%w: %w", err, errIncomplete)
		}
		if err := waitDone(ctx, mailsDone, deadline(n), e.mails, "email deliveries of "+a.ID); err != nil {
			return 0, fmt.Errorf("%w: %w", err, errIncomplete)
		}
	}
	return processPeakRSS(p.cmd.Process.Pid)
}

// serveConfig is the serve process's configuration for run: the bench's,
// with b's broker as kafka.brokers, no metrics listener and warnings only
// in its log, for its file; and the variables for its environment:
// view.dir (a folder named after run in the bench's temporary folder) and
// publishing.key_file (the bench's, so the same key authenticates both
// sides). Those two go as HERALD_ variables, which a build that does not
// know them ignores, so that --serve-binary can run a build from before
// them (issue 12's baseline, 73479c6).
func (e *env) serveConfig(b *bus.Bus, run string) (*config.Config, []string) {
	c := *e.cfg
	c.Kafka.Brokers = b.Brokers()
	c.Kafka.CreateTopics = false
	c.Metrics.Listen = ""
	c.Log = config.Log{Level: "warn", Format: "text"}
	env := []string{"HERALD_VIEW_DIR=" + filepath.Join(e.dir, run+"-view"),
		"HERALD_PUBLISHING_KEY_FILE=" + c.Publishing.KeyFile}
	c.View.Dir = config.Default().View.Dir
	c.Publishing.KeyFile = config.Default().Publishing.KeyFile
	return &c, env
}

// serveProcess is a running `herald serve` child process.
type serveProcess struct {
	cmd *exec.Cmd
	log *tail
	// ctx ends when the process exits, with the exit as its cause.
	ctx    context.Context
	done   chan struct{}
	err    error
	once   sync.Once
	result error
}

// startServe starts Herald's command line with args in a child process
// (Options.Serve, or this program), with this process's environment less
// its HERALD_ variables, plus env.
func (e *env) startServe(ctx context.Context, env []string, args ...string) (*serveProcess, error) {
	var cmd *exec.Cmd
	if e.opt.Serve != nil {
		cmd = e.opt.Serve(ctx, args...)
	} else {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find this program to run herald serve: %w", err)
		}
		cmd = exec.Command(exe, args...)
	}
	vars := make([]string, 0, len(os.Environ())+len(cmd.Env)+len(env))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			vars = append(vars, kv)
		}
	}
	cmd.Env = append(append(vars, cmd.Env...), env...)
	p := &serveProcess{cmd: cmd, log: &tail{max: 16 << 10}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(cmd.Args, " "), err)
	}
	pctx, cancel := context.WithCancelCause(ctx)
	p.ctx = pctx
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		cancel(fmt.Errorf("herald serve exited: %v", p.err))
	}()
	return p, nil
}

// stop asks the process to stop (SIGTERM), waits for it to drain and exit,
// and reports how it exited. Calls after the first return the first's
// answer.
func (p *serveProcess) stop() error {
	p.once.Do(func() {
		select {
		case <-p.done:
			p.result = fmt.Errorf("herald serve exited before it was asked to stop: %v", p.err)
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			if p.err != nil {
				p.result = fmt.Errorf("herald serve stopped with an error: %w", p.err)
			}
		case <-time.After(stopTimeout):
			_ = p.cmd.Process.Kill()
			<-p.done
			p.result = fmt.Errorf("herald serve did not stop within %s of SIGTERM", stopTimeout)
		}
	})
	return p.result
}

// logTail returns the end of the process's log, to append to an error.
func (p *serveProcess) logTail() string {
	s := strings.TrimSpace(p.log.String())
	if s == "" {
		return ""
	}
	return "\nherald serve's log (end):\n" + s
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// writeConfig writes c to file as a configuration file config.Load reads:
// every key (as mapstructure names it) whose value differs from the
// default, with that value, durations as Go durations, in JSON, which YAML
// reads.
func writeConfig(file string, c *config.Config) error {
	doc, err := json.MarshalIndent(configDocument(reflect.ValueOf(*c), reflect.ValueOf(config.Default())), "", "  ")
	if err != nil {
		return fmt.Errorf("encode configuration: %w", err)
	}
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		return fmt.Errorf("write configuration: %w", err)
	}
	return nil
}

// configDocument turns a configuration value into what its YAML would
// decode to, keeping only the settings that differ from def (the
// defaults): the serve process gets the same configuration from its own
// defaults, and another build started with --serve-binary reads only the
// keys the bench sets, not every key this build knows.
func configDocument(v, def reflect.Value) any {
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Struct:
		m := map[string]any{}
		for i := range v.NumField() {
			if reflect.DeepEqual(v.Field(i).Interface(), def.Field(i).Interface()) {
				continue
			}
			m[v.Type().Field(i).Tag.Get("mapstructure")] = configDocument(v.Field(i), def.Field(i))
		}
		return m
	case v.Kind() == reflect.Slice:
		l := make([]any, v.Len())
		for i := range l {
			l[i] = configDocument(v.Index(i), reflect.Zero(v.Type().Elem()))
		}
		return l
	}
	return v.Interface()
}
