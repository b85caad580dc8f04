package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/subscribers"
)

// Fences of the runnable examples in the partner guides: a shell block
// marked "partner-api" is run with sh, against a real server, with
// HERALD_URL and HERALD_TOKEN set as the guides tell partners to set them;
// a "partner-api-output" JSON block right after it is what it must print.
const (
	fenceRun    = "```sh partner-api"
	fenceOutput = "```json partner-api-output"
)

// example is one runnable example of a guide.
type example struct {
	line   int    // of its fence, for messages
	script string // the shell block
	want   string // the JSON it prints, or ""
}

// examples extracts the runnable examples of a Markdown file. Fences may be
// indented (inside a list item); the indent is removed from their lines.
func examples(t *testing.T, path string) []example {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []example
	var cur *strings.Builder
	var kind, indent string
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case cur == nil && (trimmed == fenceRun || trimmed == fenceOutput):
			kind, indent, start = trimmed, line[:len(line)-len(trimmed)], n
			cur = &strings.Builder{}
			if kind == fenceOutput {
				require.NotEmpty(t, out, "%s:%d: an output block with no example before it", path, n)
				require.Empty(t, out[len(out)-1].want, "%s:%d: two output blocks for one example", path, n)
			}
		case cur != nil && trimmed == "```":
			if kind == fenceRun {
				out = append(out, example{line: start, script: cur.String()})
			} else {
				out[len(out)-1].want = cur.String()
			}
			cur = nil
		case cur != nil:
			cur.WriteString(strings.TrimPrefix(line, indent) + "\n")
		case cur == nil && strings.HasPrefix(trimmed, "```") && out != nil && out[len(out)-1].want == "" && strings.Contains(trimmed, "output"):
			t.Fatalf("%s:%d: an output block must be marked %q", path, n, fenceOutput)
		}
	}
	require.NoError(t, sc.Err())
	require.Nil(t, cur, "%s: a block is not closed", path)
	return out
}

// matchJSON reports where got differs from want: every field want has,
// got has, with the same value; arrays have want's length; a string of
// want with "…" in it stands for any string with the text around the "…".
func matchJSON(path string, want, got any) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object, got %v", path, got)
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s.%s: missing from the answer", path, k)
			}
			if err := matchJSON(path+"."+k, wv, gv); err != nil {
				return err
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: want %d elements, got %v", path, len(w), got)
		}
		for i := range w {
			if err := matchJSON(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); err != nil {
				return err
			}
		}
	case string:
		g, ok := got.(string)
		before, after, elided := strings.Cut(w, "…")
		switch {
		case !ok:
			return fmt.Errorf("%s: want a string, got %v", path, got)
		case elided && (!strings.HasPrefix(g, before) || !strings.HasSuffix(g, after) || len(g) < len(before)+len(after)):
			return fmt.Errorf("%s: want %q, got %q", path, w, g)
		case !elided && g != w:
			return fmt.Errorf("%s: want %q, got %q", path, w, g)
		}
	default:
		if fmt.Sprint(want) != fmt.Sprint(got) {
			return fmt.Errorf("%s: want %v, got %v", path, want, got)
		}
	}
	return nil
}

// Ids of the guides' examples.
const (
	docMailAlert = "01JDK2X8Q4M7N9P3R5T6V8W0YZ"
	docHookAlert = "01JDK3Y2B7C9D1E3F5G7H9J1K3"
	docMail      = "alerts@acme.example"
	docHook      = "https://hooks.acme.example/herald"
)

// withDocPartners holds what the guides' examples expect: acme, with one
// address holding an older key and one webhook; alert docMailAlert
// delivered to the address; alert docHookAlert dead at the webhook.
func withDocPartners(e *env) {
	withPartners(e)
	bob, _ := pgptest.RecipientKey(e.t, pgptest.Bob)
	acme := &subscribers.Subscriber{ID: "acme", Name: "Acme Car Wash", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Email: []subscribers.Email{{Address: docMail, PGPKey: bob}},
		Webhooks: []subscribers.Webhook{{URL: docHook, Secrets: []string{testSecret}}}}
	acme.Normalize()
	require.NoError(e.t, e.wr.Put(context.Background(), "api:ops", "", []*subscribers.Subscriber{acme}, nil))
	e.decided(docMailAlert, [4]string{"acme", docMail, delivery.Deliver, delivery.StateDelivered})
	e.publishAs(docHookAlert)
	e.fannedOut(docHookAlert, alerts.TLPGreen, alerts.MarkingOfficial)
	did := delivery.ID(docHookAlert, "acme", docHook)
	const failure = "permanent failure (http-4xx): the endpoint answered 403 Forbidden"
	e.receipts(
		delivery.Receipt{Kind: delivery.KindDecision, AlertID: docHookAlert, DeliveryID: did, Subscriber: "acme", Channel: delivery.ChannelWebhook,
			Target: docHook, Decision: delivery.Deliver, Mode: delivery.ModeSigned, Rule: "test", At: testNow.Add(-30 * time.Minute)},
		delivery.Receipt{Kind: delivery.KindOutcome, AlertID: docHookAlert, DeliveryID: did, Subscriber: "acme", Channel: delivery.ChannelWebhook,
			Target: docHook, State: delivery.StateDead, Reason: delivery.ReasonHTTP4xx, Error: failure, Attempt: 1, At: testNow.Add(-29 * time.Minute)})
	e.deadLetter(&delivery.Job{ID: did, Alert: testAlertWith(docHookAlert, nil), Subscriber: "acme", Channel: delivery.ChannelWebhook,
		Target: docHook, Mode: delivery.ModeSigned, Attempt: 1, History: []delivery.Attempt{{At: testNow.Add(-29 * time.Minute),
			Reason: delivery.ReasonHTTP4xx, Error: failure}}})
	e.synced()
}

// TestPartnerGuides runs the partner API examples of docs/partner-email.md
// and docs/partner-webhooks.md, in order, with sh and curl, against a real
// server, and checks what each prints against the guide: the guides cannot
// drift from the API.
func TestPartnerGuides(t *testing.T) {
	for _, tool := range []string{"sh", "curl"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "the guides' examples need %s", tool)
	}
	for _, guide := range []string{"partner-email.md", "partner-webhooks.md"} {
		t.Run(guide, func(t *testing.T) {
			path := filepath.Join("..", "..", "docs", guide)
			exs := examples(t, path)
			require.GreaterOrEqual(t, len(exs), 5, "%s has its examples", guide)
			e := newEnv(t, withDocPartners)
			dir := t.TempDir()
			alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "alerts-acme.pub.asc"), []byte(alice), 0o600))
			for _, ex := range exs {
				require.Contains(t, ex.script, "$HERALD_URL", "%s:%d: an example reaches the server the guide names", guide, ex.line)
				cmd := exec.CommandContext(t.Context(), "sh", "-eu", "-c", ex.script)
				cmd.Dir = dir
				cmd.Env = append(os.Environ(), "HERALD_URL="+e.srv.URL, "HERALD_TOKEN="+partnerToken)
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				require.NoError(t, err, "%s:%d:\n%s\nstdout: %s\nstderr: %s", guide, ex.line, ex.script, stdout.String(), stderr.String())
				if ex.want == "" {
					continue
				}
				var want, got any
				require.NoError(t, json.Unmarshal([]byte(ex.want), &want), "%s:%d: the guide's output is not JSON", guide, ex.line)
				require.NoError(t, json.Unmarshal(stdout.Bytes(), &got), "%s:%d: the example printed %s", guide, ex.line, stdout.String())
				require.NoError(t, matchJSON("answer", want, got), "%s:%d: the guide says\n%s\nthe server answered\n%s", guide, ex.line, ex.want, stdout.String())
			}
		})
	}
}
