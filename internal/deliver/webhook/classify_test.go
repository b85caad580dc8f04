package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"testing"

	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

// TestClassifyError: fasthttp's own errors are temporary, its timeouts
// (which are no net.Error) ReasonTimeout; a cancelled attempt is the
// caller's doing whatever error ended it; the guard's refusal stays
// permanent.
func TestClassifyError(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	refused := &RefusedError{Addr: netip.MustParseAddr("127.0.0.1"), Reason: "loopback"}
	tests := []struct {
		name      string
		ctx       context.Context
		err       error
		reason    string
		temporary bool
	}{
		{"timeout", live, fasthttp.ErrTimeout, delivery.ReasonTimeout, true},
		{"wrapped timeout", live, fmt.Errorf("read: %w", fasthttp.ErrTimeout), delivery.ReasonTimeout, true},
		{"closed before answering", live, fasthttp.ErrConnectionClosed, delivery.ReasonConnect, true},
		{"deadline", live, context.DeadlineExceeded, delivery.ReasonTimeout, true},
		{"cancelled, ended by a timeout", cancelled, fasthttp.ErrTimeout, delivery.ReasonUnknown, true},
		{"cancelled", cancelled, context.Canceled, delivery.ReasonUnknown, true},
		{"refused", live, refused, delivery.ReasonRefused, false},
		{"refused, wrapped", live, fmt.Errorf("dial: %w", refused), delivery.ReasonRefused, false},
		{"other", live, errors.New("connection reset by peer"), delivery.ReasonConnect, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := classifyError(tt.ctx, tt.err)
			require.Equal(t, tt.reason, f.Reason)
			require.Equal(t, tt.temporary, f.Temporary)
			require.ErrorIs(t, f, tt.err)
		})
	}
}

// TestDrain: a body is read up to the limit and no further, and only a
// body that ended within it leaves the connection reusable.
func TestDrain(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		limit    int64
		excerpt  string
		complete bool
	}{
		{"empty", "", 100, "", true},
		{"short", "ok\x00done", 100, ": ok done", true},
		{"at the limit", "0123456789", 10, ": 0123456789", true},
		{"past the limit", "0123456789a", 10, ": 0123456789", false},
		{"excerpt of a long body", strings.Repeat("a", 250) + "b", 1000, ": " + strings.Repeat("a", 200), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &countingReader{s: tt.body}
			excerpt, complete := drain(r, tt.limit)
			require.Equal(t, tt.excerpt, excerpt)
			require.Equal(t, tt.complete, complete)
			require.LessOrEqual(t, r.n, tt.limit+1, "read at most one byte past the limit")
		})
	}
}

// countingReader reads s a few bytes at a time and counts what it gave.
type countingReader struct {
	s string
	n int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	if len(r.s) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), 7)], r.s)
	r.s = r.s[k:]
	r.n += int64(k)
	return k, nil
}
