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
