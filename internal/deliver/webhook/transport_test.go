package webhook_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/webhooktest"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSuccessBodyBeyondBound: a 2xx answer is a delivery whatever its
// body. A body within MaxResponseBytes is read to its end and the
// connection kept; a longer one is read up to the bound only, and the
// connection dropped.
func TestSuccessBodyBeyondBound(t *testing.T) {
	const bound = 4 << 10
	rc := webhooktest.New(t)
	n, sub, job := loopbackJob(t, rc, webhook.Config{MaxResponseBytes: bound}, "a-body")

	rc.Script(webhooktest.Body(http.StatusOK, strings.Repeat("k", bound)))
	require.NoError(t, n.Notify(context.Background(), job, sub))
	require.NoError(t, n.Notify(context.Background(), job, sub))
	require.EqualValues(t, 1, rc.Conns(), "a body within the bound leaves the connection reusable")

	rc.Script(webhooktest.Body(http.StatusOK, strings.Repeat("x", 64*bound)))
	require.NoError(t, n.Notify(context.Background(), job, sub), "a 2xx with a big body is delivered")
	require.Eventually(t, func() bool { return rc.ActiveConns() == 0 }, 5*time.Second, 10*time.Millisecond,
		"the connection of an unread body is dropped")
	require.NoError(t, n.Notify(context.Background(), job, sub))
	require.EqualValues(t, 2, rc.Conns())

	rc.Script(webhooktest.Body(http.StatusServiceUnavailable, strings.Repeat("y", 64*bound)))
	f := failure(t, n.Notify(context.Background(), job, sub), delivery.ReasonHTTP5xx, true)
	require.ErrorContains(t, f, "503 Service Unavailable: yyyy")
}

// TestResponseHeaderBound: a response whose header block exceeds 64 KiB is
// a temporary failure, not a delivery; a large one within it is read.
func TestResponseHeaderBound(t *testing.T) {
	rc := webhooktest.New(t)
	n, sub, job := loopbackJob(t, rc, webhook.Config{}, "a-headers")
	header := func(size int) webhooktest.Step {
		return func(w http.ResponseWriter, _ *http.Request, _ <-chan struct{}) {
			w.Header().Set("X-Padding", strings.Repeat("p", size))
			w.WriteHeader(http.StatusNoContent)
		}
	}
	rc.Script(header(32 << 10))
	require.NoError(t, n.Notify(context.Background(), job, sub))
	rc.Script(header(70 << 10))
	f := failure(t, n.Notify(context.Background(), job, sub), delivery.ReasonConnect, true)
	require.NotErrorIs(t, f, context.DeadlineExceeded)
}

// TestContextDeadlineBoundsAttempt: the attempt ends by the context's
// deadline when it comes before the configured Timeout.
func TestContextDeadlineBoundsAttempt(t *testing.T) {
	rc := webhooktest.New(t)
	rc.Script(webhooktest.Hang())
	n, sub, job := loopbackJob(t, rc, webhook.Config{Timeout: time.Minute}, "a-ctx-deadline")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	failure(t, n.Notify(ctx, job, sub), delivery.ReasonTimeout, true)
	require.Less(t, time.Since(start), 10*time.Second)
}

// listen runs handle for every connection accepted on 127.0.0.1:0 until
// the test ends, and returns the address and a count of connections.
func listen(t *testing.T, handle func(net.Conn)) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted = new(atomic.Int64)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), accepted
}

// TestCancelEndsConnect: cancelling the context ends an attempt stuck in
// the TLS handshake at once, and its connection is closed.
func TestCancelEndsConnect(t *testing.T) {
	in := make(chan struct{}, 1)
	gone := make(chan struct{}, 1)
	addr, _ := listen(t, func(c net.Conn) {
		in <- struct{}{}
		_, _ = io.Copy(io.Discard, c) // never answers the ClientHello
		gone <- struct{}{}
	})
	ca := webhooktest.NewCA(t)
	n := newNotifier(t, loopbackTLS(ca), webhooktest.NewSigner(t))
	target := "https://partner.test:" + portOf(t, addr) + "/h"
	sub := testSub(target)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- n.Notify(ctx, testJob(testAlert("a-cancel-tls"), sub, target), sub) }()
	<-in
	cancel()
	select {
	case err := <-errc:
		failure(t, err, delivery.ReasonUnknown, true)
	case <-time.After(2 * time.Second):
		t.Fatal("the attempt did not end when its context was cancelled")
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("the connection was not closed")
	}
}

// TestCancelEndsExchange: cancelling the context ends an attempt waiting
// for the response at once, and its connection is not kept.
func TestCancelEndsExchange(t *testing.T) {
	rc := webhooktest.New(t)
	rc.Script(webhooktest.Hang())
	n, sub, job := loopbackJob(t, rc, webhook.Config{Timeout: time.Minute}, "a-cancel")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- n.Notify(ctx, job, sub) }()
	require.Eventually(t, func() bool { return rc.Count() == 1 }, 5*time.Second, 5*time.Millisecond)
	cancel()
	select {
	case err := <-errc:
		failure(t, err, delivery.ReasonUnknown, true)
	case <-time.After(2 * time.Second):
		t.Fatal("the attempt did not end when its context was cancelled")
	}
	require.Eventually(t, func() bool { return rc.ActiveConns() == 0 }, 5*time.Second, 10*time.Millisecond)
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	return port
}

// TestStaleConnection: a kept-alive connection that the server closed
// while it was idle does not fail the next delivery, which goes out on a
// new connection; a new connection closed without an answer is not tried
// again.
func TestStaleConnection(t *testing.T) {
	closed := make(chan struct{}, 4)
	var requests atomic.Int64
	addr, accepted := listen(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		requests.Add(1)
		_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		c.Close() // no "Connection: close": the client finds out on its next request
		closed <- struct{}{}
	})
	n := newNotifier(t, webhook.Config{AllowInsecureLoopback: true, Timeout: 5 * time.Second}, webhooktest.NewSigner(t))
	target := "http://" + addr + "/h"
	sub := testSub(target)
	job := testJob(testAlert("a-stale"), sub, target)
	require.NoError(t, n.Notify(context.Background(), job, sub))
	<-closed
	require.NoError(t, n.Notify(context.Background(), job, sub))
	require.EqualValues(t, 2, requests.Load())
	require.EqualValues(t, 2, accepted.Load())

	mute, mutes := listen(t, func(c net.Conn) {
		_, _ = http.ReadRequest(bufio.NewReader(c)) // and close without a word
	})
	target = "http://" + mute + "/h"
	sub = testSub(target)
	failure(t, n.Notify(context.Background(), testJob(testAlert("a-mute"), sub, target), sub), delivery.ReasonConnect, true)
	require.EqualValues(t, 1, mutes.Load(), "a new connection is not tried again")
}

// TestStaleConnections: when every kept-alive connection of a host was
// closed by the server while idle (its keep-alive timeout ran out), the
// next delivery goes out on a new connection, however many of them the
// pool held.
func TestStaleConnections(t *testing.T) {
	const idle = 3
	var served atomic.Int64
	arrived, release, closed := make(chan struct{}, idle), make(chan struct{}), make(chan struct{}, idle)
	addr, accepted := listen(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		first := served.Add(1) <= idle
		if first {
			arrived <- struct{}{}
			<-release // so that the first deliveries take a connection each
		}
		_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		if first {
			c.Close() // no "Connection: close": the client finds out on its next request
			closed <- struct{}{}
		}
	})
	n := newNotifier(t, webhook.Config{AllowInsecureLoopback: true, Timeout: 5 * time.Second}, webhooktest.NewSigner(t))
	target := "http://" + addr + "/h"
	sub := testSub(target)
	job := testJob(testAlert("a-stale-all"), sub, target)
	errc := make(chan error, idle)
	for range idle {
		go func() { errc <- n.Notify(context.Background(), job, sub) }()
	}
	for range idle {
		<-arrived
	}
	close(release)
	for range idle {
		require.NoError(t, <-errc)
		<-closed
	}
	require.NoError(t, n.Notify(context.Background(), job, sub), "a delivery after the server closed every idle connection")
	require.EqualValues(t, idle+1, accepted.Load())
}

// TestRebindingRefused: a name that resolved to an allowed address and
// later resolves to a forbidden one is refused at the next connection.
func TestRebindingRefused(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.TLS(ca))
	var rebound atomic.Bool
	lookup := func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host != "partner.test" {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		if rebound.Load() {
			return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	cfg := webhook.Config{Timeout: 5 * time.Second, RootCAs: ca.Pool(), AllowCIDRs: mustPrefixes("127.0.0.1/32"), LookupIP: lookup}
	n := newNotifier(t, cfg, webhooktest.NewSigner(t))
	target := rc.URLFor("partner.test", "/h")
	sub := testSub(target)
	job := testJob(testAlert("a-rebind"), sub, target)
	require.NoError(t, n.Notify(context.Background(), job, sub))
	n.Close() // drop the kept-alive connection
	rebound.Store(true)
	f := failure(t, n.Notify(context.Background(), job, sub), delivery.ReasonRefused, false)
	var refused *webhook.RefusedError
	require.ErrorAs(t, f, &refused)
	require.Equal(t, netip.MustParseAddr("127.0.0.2"), refused.Addr)
	require.Equal(t, 1, rc.Count())
}

// mtlsEndpoint is a notifier with a client certificate for first.agency.test
// in its client-certificate folder, a partner whose endpoint on rc uses it,
// and a job of alert id for it; renew overwrites the certificate's files
// with one for second.agency.test.
func mtlsEndpoint(t *testing.T, ca *webhooktest.CA, rc *webhooktest.Receiver, id string) (n *webhook.Notifier,
	sub *subscribers.Subscriber, job *delivery.Job, renew func()) {
	t.Helper()
	cert, key := ca.ClientCertFiles(t, "first.agency.test")
	cfg := loopbackTLS(ca)
	cfg.ClientCertDir = filepath.Dir(cert)
	n = newNotifier(t, cfg, webhooktest.NewSigner(t))
	target := rc.URLFor("partner.test", "/mtls")
	sub = testSub(target)
	sub.Webhooks[0].ClientCert, sub.Webhooks[0].ClientKey = cert, key
	renew = func() {
		t.Helper()
		renewedCert, renewedKey := ca.ClientCertFiles(t, "second.agency.test")
		for _, f := range [][2]string{{renewedCert, cert}, {renewedKey, key}} {
			data, err := os.ReadFile(f[0])
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(f[1], data, 0o600))
		}
	}
	return n, sub, testJob(testAlert(id), sub, target), renew
}

// TestRenewedCertificateClosesIdle: a renewed client certificate makes a
// new pool, and the old pool's idle connection is closed.
func TestRenewedCertificateClosesIdle(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.RequireClientCert(ca))
	n, sub, job, renew := mtlsEndpoint(t, ca, rc, "a-renew")
	require.NoError(t, n.Notify(context.Background(), job, sub))
	require.EqualValues(t, 1, rc.ActiveConns())

	renew()
	require.NoError(t, n.Notify(context.Background(), job, sub))
	reqs := rc.Requests()
	require.Equal(t, "second.agency.test", reqs[len(reqs)-1].ClientCN)
	require.EqualValues(t, 2, rc.Conns())
	require.Eventually(t, func() bool { return rc.ActiveConns() == 1 }, 5*time.Second, 10*time.Millisecond,
		"the old certificate's idle connection is closed")
}

// TestTLSVersionFloor: a server that speaks nothing newer than TLS 1.1 is
// refused in the handshake.
func TestTLSVersionFloor(t *testing.T) {
	ca := webhooktest.NewCA(t)
	srvTLS := ca.ServerTLS()
	srvTLS.MinVersion, srvTLS.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvTLS)
	require.NoError(t, err)
	var served atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		served.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}), ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })

	n := newNotifier(t, loopbackTLS(ca), webhooktest.NewSigner(t))
	target := "https://partner.test:" + portOf(t, ln.Addr().String()) + "/h"
	sub := testSub(target)
	failure(t, n.Notify(context.Background(), testJob(testAlert("a-tls11"), sub, target), sub), delivery.ReasonTLS, true)
	require.Zero(t, served.Load())
}

// TestForgottenHostKeepsNoConnection: a route prepared before its host's
// pool was forgotten (the pool forgets hosts with no connection open once
// it knows 4,096) is prepared again, so its connections are kept alive in
// a pool that Close reaches.
func TestForgottenHostKeepsNoConnection(t *testing.T) {
	rc := webhooktest.New(t)
	n, sub, job := loopbackJob(t, rc, webhook.Config{}, "a-forgotten")
	require.NoError(t, n.Notify(context.Background(), job, sub))
	n.Close()
	require.Eventually(t, func() bool { return rc.ActiveConns() == 0 }, 5*time.Second, 10*time.Millisecond)

	webhook.ForgetIdleHosts(n)
	conns := rc.Conns()
	require.NoError(t, n.Notify(context.Background(), job, sub))
	require.NoError(t, n.Notify(context.Background(), job, sub))
	require.Equal(t, conns+1, rc.Conns(), "the route is prepared again: its host's pool keeps the connection for the next delivery")
	n.Close()
	require.Eventually(t, func() bool { return rc.ActiveConns() == 0 }, 5*time.Second, 10*time.Millisecond,
		"Close closes the idle connection of a route made before its host was forgotten")
}

// TestTLSServerName: the server's certificate is verified against the
// URL's host, an IP literal or a name in any case, not against the address
// the name resolved to.
func TestTLSServerName(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.TLS(ca)) // certified for localhost, partner.test, 127.0.0.1, ::1
	cfg := loopbackTLS(ca)
	cfg.LookupIP = webhooktest.Resolver(map[string][]string{"partner.test": {"127.0.0.1"}, "other.test": {"127.0.0.1"}})
	n := newNotifier(t, cfg, webhooktest.NewSigner(t))
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"127.0.0.1", true},
		{"PARTNER.Test", true},
		{"other.test", false},
	} {
		t.Run(tt.host, func(t *testing.T) {
			target := rc.URLFor(tt.host, "/h")
			sub := testSub(target)
			before := rc.Count()
			err := n.Notify(context.Background(), testJob(testAlert("a-sni"), sub, target), sub)
			if tt.ok {
				require.NoError(t, err)
				require.Equal(t, before+1, rc.Count())
				return
			}
			failure(t, err, delivery.ReasonTLS, true)
			require.Equal(t, before, rc.Count())
		})
	}
}

// TestRenewedCertificateInFlight: a delivery still under way when its
// client certificate is renewed leaves no idle connection in the old pool,
// which Close no longer reaches.
func TestRenewedCertificateInFlight(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.RequireClientCert(ca))
	hold := make(chan struct{})
	held := func(w http.ResponseWriter, _ *http.Request, release <-chan struct{}) {
		select {
		case <-hold:
		case <-release:
		}
		w.WriteHeader(http.StatusNoContent)
	}
	rc.Script(held, webhooktest.Status(http.StatusNoContent))
	n, sub, job, renew := mtlsEndpoint(t, ca, rc, "a-renew-inflight")
	first := make(chan error, 1)
	go func() { first <- n.Notify(context.Background(), job, sub) }()
	require.Eventually(t, func() bool { return rc.Count() == 1 }, 5*time.Second, 5*time.Millisecond)

	renew()
	require.NoError(t, n.Notify(context.Background(), job, sub))
	close(hold)
	require.NoError(t, <-first)
	n.Close()
	require.Eventually(t, func() bool { return rc.ActiveConns() == 0 }, 5*time.Second, 10*time.Millisecond,
		"the old certificate's connection is not left idle where Close cannot reach it")
}

// An endpoint under an internationalised host name is reached by its
// ASCII (punycode) form: the name looked up, the TLS server name and the
// Host header, as net/http's client sent them.
func TestInternationalHostName(t *testing.T) {
	ca := webhooktest.NewCA(t)
	rc := webhooktest.New(t, webhooktest.TLS(ca))
	var host, serverName string
	rc.Script(func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		host, serverName = r.Host, r.TLS.ServerName
		w.WriteHeader(http.StatusNoContent)
	})
	const ascii = "xn--bcher-kva.partner.test"
	cfg := webhook.Config{Timeout: 5 * time.Second, RootCAs: ca.Pool(), AllowCIDRs: mustPrefixes("127.0.0.1/32"),
		LookupIP: webhooktest.Resolver(map[string][]string{ascii: {"127.0.0.1"}})}
	n := newNotifier(t, cfg, webhooktest.NewSigner(t))
	target := rc.URLFor("bücher.partner.test", "/h")
	sub := testSub(target)
	require.NoError(t, n.Notify(context.Background(), testJob(testAlert("a-idn"), sub, target), sub))
	assert.Equal(t, fmt.Sprintf("%s:%d", ascii, rc.Port()), host)
	assert.Equal(t, ascii, serverName)

	// A name IDNA refuses (registration refuses it too) is the endpoint's
	// fault, for good.
	bad := rc.URLFor("ü_x.partner.test", "/h")
	sub = testSub(bad)
	failure(t, n.Notify(context.Background(), testJob(testAlert("a-idn-bad"), sub, bad), sub), delivery.ReasonRefused, false)
}

// TestCertificateStampSeesACopyThatKeepsItsTime: a certificate replaced by
// one of the same size and modification time still changes the stamp a
// route is known by, so the new one is used.
func TestCertificateStampSeesACopyThatKeepsItsTime(t *testing.T) {
	f := filepath.Join(t.TempDir(), "client.pem")
	require.NoError(t, os.WriteFile(f, []byte("first certificate"), 0o600))
	fi, err := os.Stat(f)
	require.NoError(t, err)
	before, err := webhook.FileStamp(f)
	require.NoError(t, err)

	// As rsync -t or an installer does: a new file of the same size,
	// given the old one's time, renamed into place. (Overwritten in place
	// with its time set back, as cp -p does, it keeps its inode and the
	// inode's change time moves on: not testable here without waiting for
	// the file system's clock to tick.)
	tmp := f + ".new"
	require.NoError(t, os.WriteFile(tmp, []byte("other certificate"), 0o600)) // same size
	require.NoError(t, os.Chtimes(tmp, fi.ModTime(), fi.ModTime()))
	require.NoError(t, os.Rename(tmp, f))
	after, err := webhook.FileStamp(f)
	require.NoError(t, err)
	require.NotEqual(t, before, after)

	again, err := webhook.FileStamp(f)
	require.NoError(t, err)
	require.Equal(t, after, again, "an unchanged file keeps its stamp")
}
