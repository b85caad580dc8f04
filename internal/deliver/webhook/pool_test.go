package webhook

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPoolForgetsIdleHosts: a pool keeps at most maxHosts hosts' pools
// before it forgets those with no connection open, so delivering to ever
// new hosts does not grow it without end; a host still known is reused.
func TestPoolForgetsIdleHosts(t *testing.T) {
	p := newPool(Config{}.withDefaults(), newGuard(Config{}, false), newTLS(Config{}, nil))
	u := func(i int) *url.URL {
		v, err := url.Parse(fmt.Sprintf("https://h%d.example/hook", i))
		require.NoError(t, err)
		return v
	}
	first := p.host(u(0))
	require.Same(t, first, p.host(u(0)), "a known host's pool is reused")
	require.Same(t, first, p.host(&url.URL{Scheme: "https", Host: "H0.EXAMPLE"}), "whatever the case of its name")
	for i := 1; i < maxHosts; i++ {
		p.host(u(i))
	}
	require.Len(t, p.hosts, maxHosts)
	p.host(u(maxHosts))
	require.Len(t, p.hosts, 1, "the hosts with no connection open were forgotten")
	require.NotSame(t, first, p.host(u(0)), "a forgotten host gets a new pool")
}

// TestForgottenPoolHandsOutForgottenHosts: a route prepared from a pool
// just as the pool was forgotten (a renewed certificate's old pool, got
// before the renewal was seen) gets a host that is forgotten too, so that
// its delivery keeps no connection idle where Close cannot reach it and
// the route is prepared again.
func TestForgottenPoolHandsOutForgottenHosts(t *testing.T) {
	p := newPool(Config{}.withDefaults(), newGuard(Config{}, false), newTLS(Config{}, nil))
	u := &url.URL{Scheme: "https", Host: "partner.example"}
	known := p.host(u)
	p.forget()
	require.True(t, known.forgotten.Load())
	late := p.host(u)
	require.True(t, late.forgotten.Load(), "a host made after the pool was forgotten")
	require.Empty(t, p.hosts, "and the pool does not keep it")
}
