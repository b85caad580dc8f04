package sink_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net/http"
	"net/smtp"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/sink"
)

// TestReceiverRawAndDiscard covers what only the demo and the benchmark
// use: requests kept as HTTP/1.1 text over HTTPS with the CA's
// certificate, and requests counted without being kept.
func TestReceiverRawAndDiscard(t *testing.T) {
	ca, err := sink.NewCA("sink test CA")
	require.NoError(t, err)
	rc, err := sink.StartReceiver(sink.ReceiverOptions{TLS: ca.ServerTLS(), Raw: true})
	require.NoError(t, err)
	defer rc.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}}
	resp, err := client.Post(rc.URL("/hooks/acme"), "application/json", strings.NewReader(`{"n":1}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, "HTTP/1.1", resp.Proto, "HTTP/2 only when asked for")
	reqs := rc.Requests()
	require.Len(t, reqs, 1)
	require.True(t, reqs[0].TLS)
	require.Equal(t, `{"n":1}`, string(reqs[0].Body))
	raw, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(reqs[0].Raw)))
	require.NoError(t, err)
	require.Equal(t, "/hooks/acme", raw.URL.Path)

	counted, err := sink.StartReceiver(sink.ReceiverOptions{Discard: true})
	require.NoError(t, err)
	defer counted.Close()
	for range 3 {
		resp, err := http.Post(counted.URL("/x"), "text/plain", strings.NewReader("x"))
		require.NoError(t, err)
		resp.Body.Close()
	}
	require.Equal(t, 3, counted.Count())
	require.Empty(t, counted.Requests())
}

// TestSMTPRequiresStartTLS: with StartTLS, nothing is accepted before
// STARTTLS; after it, the Data hook sees the message.
func TestSMTPRequiresStartTLS(t *testing.T) {
	ca, err := sink.NewCA("sink test CA")
	require.NoError(t, err)
	var seen []string
	s, err := sink.StartSMTP(sink.SMTPOptions{TLS: ca.ServerTLS(), StartTLS: true, Discard: true,
		Data: func(to []string, _ []byte) *gosmtp.SMTPError { seen = append(seen, to...); return nil }})
	require.NoError(t, err)
	defer s.Close()

	c, err := smtp.Dial(s.Addr)
	require.NoError(t, err)
	require.ErrorContains(t, c.Mail("alerts@herald.example"), "STARTTLS")
	require.NoError(t, c.StartTLS(&tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}))
	require.NoError(t, c.Mail("alerts@herald.example"))
	require.NoError(t, c.Rcpt("ops@acme.example"))
	w, err := c.Data()
	require.NoError(t, err)
	_, err = w.Write([]byte("Subject: x\r\n\r\nbody\r\n"))
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, c.Quit())
	require.Equal(t, 1, s.Count())
	require.Empty(t, s.Messages(), "Discard keeps nothing")
	require.Equal(t, []string{"ops@acme.example"}, seen)

	_, err = sink.StartSMTP(sink.SMTPOptions{StartTLS: true})
	require.Error(t, err, "STARTTLS without a certificate")
}
