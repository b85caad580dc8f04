package bench_test

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"testing"

	"github.com/herald-alerts/herald/internal/bench"
	"github.com/herald-alerts/herald/internal/cli"
)

// TestMain runs Herald's command line instead of the tests when the bench
// starts this binary as its serve process (bench.ServeChildEnv): under
// `go test` the running program is the test binary, not herald.
func TestMain(m *testing.M) {
	if os.Getenv(bench.ServeChildEnv) != "" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := cli.Execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}
