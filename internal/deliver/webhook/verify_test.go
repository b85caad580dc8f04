package webhook_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/testkit/webhooktest"
	"github.com/stretchr/testify/require"
)

// captureRaw listens on 127.0.0.1 like `nc -l` and returns the raw bytes
// of the one request Herald sends there.
func captureRaw(t *testing.T, send func(url string)) []byte {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var raw bytes.Buffer
		br := bufio.NewReader(io.TeeReader(c, &raw))
		req, err := http.ReadRequest(br)
		if err == nil {
			_, _ = io.Copy(io.Discard, req.Body)
		}
		_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
		got <- raw.Bytes()[:raw.Len()-br.Buffered()]
	}()
	send("http://" + ln.Addr().String() + "/capture")
	raw := <-got
	require.NotEmpty(t, raw)
	return raw
}

func TestVerifyRequest(t *testing.T) {
	signer := webhooktest.NewSigner(t)
	n := newNotifier(t, webhook.Config{AllowInsecureLoopback: true, Timeout: 5 * time.Second}, signer)
	secret := testSecret(t)
	a := testAlert("a-verify")
	var jobID string
	raw := captureRaw(t, func(url string) {
		sub := testSub(url)
		sub.Webhooks[0].Secrets = []string{secret}
		job := testJob(a, sub, url)
		jobID = job.ID
		require.NoError(t, n.Notify(context.Background(), job, sub))
	})
	pub := signer.PublicArmored(t)
	now := time.Now()

	t.Run("raw capture", func(t *testing.T) {
		rep, err := webhook.VerifyRequest(bytes.NewReader(raw), []string{secret}, pub, now, 0)
		require.NoError(t, err)
		require.True(t, rep.OK(), rep.String())
		require.True(t, rep.PGPChecked)
		require.Equal(t, jobID, rep.ID)
		require.Equal(t, "alert.published", rep.Event)
		require.Equal(t, a.ID, rep.AlertID)
		require.Len(t, rep.PGPSigner, 40)
		require.Contains(t, rep.String(), "pgp signature:     valid")
	})
	t.Run("LF line endings in the head", func(t *testing.T) {
		head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
		require.True(t, ok)
		lf := append(bytes.ReplaceAll(head, []byte("\r\n"), []byte("\n")), "\n\n"...)
		rep, err := webhook.VerifyRequest(bytes.NewReader(append(lf, body...)), []string{secret}, pub, now, 0)
		require.NoError(t, err)
		require.True(t, rep.OK(), rep.String())
	})
	t.Run("without key", func(t *testing.T) {
		rep, err := webhook.VerifyRequest(bytes.NewReader(raw), []string{secret}, nil, now, 0)
		require.NoError(t, err)
		require.True(t, rep.OK())
		require.False(t, rep.PGPChecked)
	})
	t.Run("tampered body", func(t *testing.T) {
		bad := bytes.Replace(raw, []byte("car washes"), []byte("car wishes"), 1)
		require.NotEqual(t, raw, bad)
		rep, err := webhook.VerifyRequest(bytes.NewReader(bad), []string{secret}, pub, now, 0)
		require.NoError(t, err)
		require.False(t, rep.OK())
		require.ErrorIs(t, rep.SignatureErr, whsig.ErrNoMatch)
		require.Error(t, rep.PGPErr)
	})
	t.Run("wrong secret", func(t *testing.T) {
		rep, err := webhook.VerifyRequest(bytes.NewReader(raw), []string{testSecret(t)}, pub, now, 0)
		require.NoError(t, err)
		require.False(t, rep.OK())
		require.ErrorIs(t, rep.SignatureErr, whsig.ErrNoMatch)
		require.NoError(t, rep.PGPErr)
	})
	t.Run("stale", func(t *testing.T) {
		rep, err := webhook.VerifyRequest(bytes.NewReader(raw), []string{secret}, pub, now.Add(time.Hour), 5*time.Minute)
		require.NoError(t, err)
		require.False(t, rep.OK())
		require.NoError(t, rep.SignatureErr)
		require.ErrorIs(t, rep.TimestampErr, whsig.ErrTooOld)
	})
	t.Run("JSON capture", func(t *testing.T) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		require.NoError(t, err)
		body, err := io.ReadAll(req.Body)
		require.NoError(t, err)
		headers := map[string]any{}
		for k, v := range req.Header {
			if len(v) == 1 {
				headers[strings.ToLower(k)] = v[0]
			} else {
				headers[k] = v
			}
		}
		capture, err := json.Marshal(map[string]any{"headers": headers, "body": string(body)})
		require.NoError(t, err)
		rep, err := webhook.VerifyRequest(bytes.NewReader(capture), []string{secret}, pub, now, 0)
		require.NoError(t, err)
		require.True(t, rep.OK(), rep.String())
	})
	t.Run("not a request", func(t *testing.T) {
		_, err := webhook.VerifyRequest(strings.NewReader("hello"), []string{secret}, nil, now, 0)
		require.Error(t, err)
		_, err = webhook.VerifyRequest(bytes.NewReader(raw), []string{secret}, []byte("not a key"), now, 0)
		require.Error(t, err)
	})
	t.Run("no length given", func(t *testing.T) {
		head, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
		var kept [][]byte
		for _, line := range bytes.Split(head, []byte("\r\n")) {
			if !bytes.HasPrefix(bytes.ToLower(line), []byte("content-length:")) {
				kept = append(kept, line)
			}
		}
		noLen := append(append(bytes.Join(kept, []byte("\r\n")), "\r\n\r\n"...), body...)
		rep, err := webhook.VerifyRequest(bytes.NewReader(noLen), []string{secret}, pub, now, 0)
		require.NoError(t, err)
		require.True(t, rep.OK(), rep.String()+" len "+strconv.Itoa(len(body)))
	})
}
