package bench

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/config"
)

// ServeChildEnv, set in its environment, makes this test binary run
// Herald's command line (TestMain in main_test.go): the serve process of
// rss.workers.
const ServeChildEnv = "BENCH_TEST_RUN_HERALD"

// serveChild is Options.Serve in the tests: this test binary as Herald.
func serveChild(ctx context.Context, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = []string{ServeChildEnv + "=1"}
	return cmd
}

// A configuration written for the serve process reads back as the same
// configuration.
func TestWriteConfigReadsBack(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "HERALD_") {
			t.Setenv(k, "") // empty counts as unset
		}
	}
	c := config.Default()
	c.Kafka.Brokers = []string{"127.0.0.1:1234"}
	c.Kafka.Consumer.Linger = 1500 * time.Microsecond
	c.Delivery.RetrySchedule = []time.Duration{200 * time.Millisecond, time.Second}
	c.Webhooks.AllowCIDRs = []string{"127.0.0.0/8"}
	c.API.Tokens = []config.Token{{Name: "a", Role: config.RoleAnalyst, SHA256: config.HashToken("x")}}
	c.Delivery.Jitter = 0.25
	c.Log.Level = "warn"
	file := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, writeConfig(file, &c))
	got, err := config.Load(file)
	require.NoError(t, err)
	assert.Equal(t, c, *got)

	// Only what differs from the defaults is written, so that another
	// build (--serve-binary) meets only the keys the bench sets.
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	var doc map[string]map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc))
	assert.ElementsMatch(t, []string{"kafka", "delivery", "webhooks", "api", "log"}, slices.Collect(maps.Keys(doc)))
	assert.ElementsMatch(t, []string{"brokers", "consumer"}, slices.Collect(maps.Keys(doc["kafka"])))
	assert.Equal(t, map[string]any{"linger": "1.5ms"}, doc["kafka"]["consumer"])
	assert.Equal(t, map[string]any{"level": "warn"}, doc["log"])
}

func TestServeProcessReportsHowItEnded(t *testing.T) {
	sh := func(script string) func(context.Context, ...string) *exec.Cmd {
		return func(ctx context.Context, _ ...string) *exec.Cmd {
			return exec.CommandContext(ctx, "sh", "-c", script)
		}
	}
	t.Run("exits early", func(t *testing.T) {
		e := &env{opt: Options{Serve: sh("echo boom >&2; exit 3")}}
		p, err := e.startServe(t.Context(), nil, "serve")
		require.NoError(t, err)
		<-p.ctx.Done()
		assert.ErrorContains(t, context.Cause(p.ctx), "herald serve exited: exit status 3")
		assert.ErrorContains(t, p.stop(), "exited before it was asked to stop")
		assert.Contains(t, p.logTail(), "boom")
	})
	t.Run("stops on SIGTERM", func(t *testing.T) {
		e := &env{opt: Options{Serve: sh("trap 'exit 0' TERM; echo started; while :; do sleep 0.05; done")}}
		p, err := e.startServe(t.Context(), nil, "serve")
		require.NoError(t, err)
		require.Eventually(t, func() bool { return strings.Contains(p.log.String(), "started") }, 10*time.Second, 10*time.Millisecond)
		mib, err := processPeakRSS(p.cmd.Process.Pid)
		require.NoError(t, err)
		assert.Greater(t, mib, 0.0)
		require.NoError(t, p.stop())
		require.NoError(t, p.stop(), "a second stop answers as the first")
	})
	t.Run("HERALD_ settings stay out of its environment but for its own", func(t *testing.T) {
		t.Setenv("HERALD_KAFKA_BROKERS", "elsewhere:9092")
		e := &env{opt: Options{Serve: func(ctx context.Context, _ ...string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, "sh", "-c", "env; echo end")
			cmd.Env = []string{"OWN=1"}
			return cmd
		}}}
		p, err := e.startServe(t.Context(), []string{"HERALD_VIEW_DIR=/v"}, "serve")
		require.NoError(t, err)
		<-p.ctx.Done()
		out := p.log.String()
		assert.Contains(t, out, "end")
		assert.Contains(t, out, "OWN=1")
		assert.NotContains(t, out, "HERALD_KAFKA_BROKERS")
		assert.Contains(t, out, "HERALD_VIEW_DIR=/v", "the variables startServe is given are passed")
	})
}

func TestTailKeepsTheEnd(t *testing.T) {
	tl := &tail{max: 8}
	_, _ = tl.Write([]byte("abcdef"))
	_, _ = tl.Write([]byte("ghijkl"))
	assert.Equal(t, "efghijkl", tl.String())
}
