package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/testkit/apitest"
	"github.com/stretchr/testify/require"
)

// TestServeKeepsTheStackRunning runs the sandbox in process: once the
// checks hold it serves the API with the printed tokens, an alert
// published through it reaches the partners' folders as it arrives, and
// cancelling the context stops everything without an error.
func TestServeKeepsTheStackRunning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "out")
	var sb *Sandbox
	var checked *Result
	var printed bytes.Buffer
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{OutDir: out, Log: testLog(t), Serve: &ServeOptions{Ready: func(res *Result, s *Sandbox) {
			checked, sb = res, s
			s.Print(&printed)
			close(ready)
		}}})
		done <- err
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned before serving: %v", err)
	}
	require.True(t, checked.OK(), checked.Failures)
	for _, want := range []string{"console: " + sb.Console, "token analyst: ", "token second-analyst: ", "token admin: ",
		"cli: export HERALD_KAFKA_BROKERS=" + sb.Brokers[0] + " HERALD_PUBLISHING_KEY_FILE=", "received email: " + sb.EmailDir} {
		require.Contains(t, printed.String(), want)
	}
	require.FileExists(t, sb.PublishingKeyFile)
	readme, err := os.ReadFile(filepath.Join(out, "README.txt"))
	require.NoError(t, err)
	require.Contains(t, string(readme), "sandbox/webhook/")

	body := `{"title": "Sandbox check", "severity": "severe", "marking": "OFFICIAL", "tlp": "GREEN", "handling": {"code": "P"},
		"audience": {"sectors": ["financial-services"]}}`
	req, err := http.NewRequestWithContext(ctx, "POST", sb.Console+"v1/alerts", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+sb.TokenFor(TokenAnalyst))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Eventually(t, func() bool {
		hooks, _ := filepath.Glob(filepath.Join(sb.WebhookDir, "*-northbank-*.http"))
		mails, _ := filepath.Glob(filepath.Join(sb.EmailDir, "*-northbank.eml"))
		return len(hooks) == 1 && len(mails) == 1
	}, time.Minute, 50*time.Millisecond, "the bank's webhook and mailbox received the alert")

	// The bank's partner token reads its pull collection, as
	// docs/partner-formats.md's "Trying it with curl" does: the TAXII
	// collection holds the demo's alerts, and the MISP feed answers.
	get := func(path string, basic bool) (int, []byte) {
		req, err := http.NewRequestWithContext(ctx, "GET", sb.Console+path, nil)
		require.NoError(t, err)
		if basic {
			req.SetBasicAuth("partner", sb.TokenFor(bank))
		} else {
			req.Header.Set("Authorization", "Bearer "+sb.TokenFor(bank))
			req.Header.Set("Accept", "application/taxii+json;version=2.1")
		}
		status, b := apitest.Do(t, req)
		return status, b
	}
	var cols struct {
		Collections []struct{ ID string } `json:"collections"`
	}
	code, b := get("taxii2/herald/collections/", false)
	require.Equal(t, http.StatusOK, code, string(b))
	require.NoError(t, json.Unmarshal(b, &cols))
	require.Len(t, cols.Collections, 1, string(b))
	require.Eventually(t, func() bool {
		code, b := get("taxii2/herald/collections/"+cols.Collections[0].ID+"/objects/", false)
		return code == http.StatusOK && bytes.Contains(b, []byte(checked.Alerts[1].ID))
	}, 30*time.Second, 100*time.Millisecond, "the bank's collection holds the demo's TLP:AMBER alert")
	code, b = get("misp/feed/manifest.json", true)
	require.Equal(t, http.StatusOK, code, string(b))
	require.NotEqual(t, "{}", strings.TrimSpace(string(b)), "the bank's MISP feed has events")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("the sandbox did not stop")
	}
}

func TestSandboxHelpers(t *testing.T) {
	require.Equal(t, "/tmp/herald-demo-1/publishing.key", shellQuote("/tmp/herald-demo-1/publishing.key"))
	require.Equal(t, `'/tmp/my keys/it'\''s.key'`, shellQuote("/tmp/my keys/it's.key"))
	require.Equal(t, "http://127.0.0.1:8080/", consoleURL("0.0.0.0:8080"))
	require.Equal(t, "http://[::1]:8080/", consoleURL("[::1]:8080"))
	require.Equal(t, "fincrime@northbank.example", fileName("fincrime@northbank.example"))
	require.Equal(t, "a_b_c", fileName("a/b\\c"))
	ln, err := listenAPI("")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.True(t, strings.HasPrefix(addr, "127.0.0.1:") && addr != "127.0.0.1:0", addr)
	_, err = listenAPI(addr)
	require.Error(t, err, "the port is held from the moment it is chosen")
	require.NoError(t, ln.Close())
	_, err = listenAPI("nonsense")
	require.Error(t, err)
}
