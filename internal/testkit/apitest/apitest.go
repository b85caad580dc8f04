// Package apitest sends a test's HTTP request to a Herald API and reads
// the whole answer: the one helper the end-to-end tests of several
// packages (the app, the demo sandbox, the command line's docs and
// integrity tests) share.
package apitest

import (
	"io"
	"net/http"

	"github.com/stretchr/testify/require"
)

// Do sends req with the default client and returns the answer's status
// code and body, failing t if either cannot be had. t may be a test or
// the collector of require.EventuallyWithT, which polls with it.
func Do(t require.TestingT, req *http.Request) (int, []byte) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}
