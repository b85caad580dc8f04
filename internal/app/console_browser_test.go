package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/logtest"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
)

// Tokens of the console test: two analysts, an administrator and a partner.
const (
	aliceToken = "hrld_browser_alice_5b1e9c"
	bobToken   = "hrld_browser_bob_0d7a44"
	opsToken   = "hrld_browser_ops_c3f812"
	// greencoToken is the partner greenco's own token.
	greencoToken = "hrld_browser_greenco_5e91b0"
)

// chromiumFlags are the flags Chromium runs with here and in CI: headless,
// no sandbox (CI runs as root), and nothing that reaches for the network.
var chromiumFlags = []chromedp.ExecAllocatorOption{
	chromedp.Flag("headless", true),
	chromedp.Flag("hide-scrollbars", true), // screenshots of the whole layout width
	chromedp.NoSandbox,
	chromedp.DisableGPU,
	chromedp.Flag("disable-quic", true),
	chromedp.NoFirstRun,
	chromedp.Flag("no-default-browser-check", true),
	chromedp.Flag("disable-background-networking", true),
	chromedp.Flag("disable-component-update", true),
	chromedp.Flag("disable-sync", true),
	chromedp.Flag("disable-dev-shm-usage", true),
}

// TestConsoleInABrowser drives the analyst's desk in Debian's Chromium
// against a whole Herald: an analyst composes an AMBER alert and publishes
// it (pending), cannot approve it herself, a second analyst approves it
// from the desk, the webhook delivery shows on the status page (also 400
// px wide, without horizontal scrolling), and an administrator suspends a
// partner and finds it in the audit trail. Each step leaves a screenshot.
func TestConsoleInABrowser(t *testing.T) {
	chromium := findChromium(t)
	shots := screenshotDir(t)
	start := time.Now()
	h := startHerald(t)
	t.Logf("herald ready in %.1fs", time.Since(start).Seconds())
	// Partners outside the alert's audience (agriculture, not car washes),
	// more than the preview shows without a click: it has a row for each.
	const farms = 12
	h.putFarms(t, 1, farms)
	b := newBrowser(t, chromium, shots, h.url)

	// --- alice composes, previews and publishes an AMBER alert.
	b.signIn("/compose", aliceToken, "alice")
	b.do(chromedp.WaitVisible(chromedp.CSS(`#sector-checks input[value="car-washes"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#partner-checks input[value="acme"]`)))
	assert.Contains(t, b.text("#sector-checks"), seasonal.Name, "the picker offers the sector taxonomy.sectors adds")
	b.do(
		chromedp.SetValue(chromedp.ID("f-severity"), "severe"),
		chromedp.SetValue(chromedp.ID("f-tlp"), "AMBER"),
		chromedp.SetValue(chromedp.ID("f-marking"), "OFFICIAL"),
		chromedp.SetValue(chromedp.ID("f-handling"), "P"),
		chromedp.SetValue(chromedp.ID("f-grading-source"), "2"),
		chromedp.SetValue(chromedp.ID("f-grading-intel"), "B"),
		chromedp.Click(chromedp.CSS(`#sector-checks input[value="car-washes"]`)),
		chromedp.SendKeys(chromedp.ID("partner-filter"), "acme"),
		chromedp.Click(chromedp.CSS(`#partner-checks input[value="acme"]`)),
		chromedp.SendKeys(chromedp.ID("f-summary"), "Workers at a hand car wash paid in cash and housed on site."),
	)
	assert.Contains(t, b.text("#partner-chosen"), "Acme Car Wash Group (acme)", "the picker names the partner")
	// Without a title the API refuses, naming the field; the form marks it.
	b.do(chromedp.Click(chromedp.ID("preview-btn")), chromedp.WaitVisible(chromedp.ID("errors")))
	assert.Contains(t, b.text("#error-list"), "title")
	b.poll(`document.getElementById('f-title').getAttribute('aria-invalid') === 'true'`)
	b.shot("01-compose-error-names-the-field")

	// In JSON mode the body goes as written: a second "tlp" (which the
	// browser's JSON.parse, like Go's decoder, would take silently, the
	// last winning) is refused by the API, naming the field.
	b.do(chromedp.Click(chromedp.CSS(`input[name=mode][value=json]`)), chromedp.WaitVisible(chromedp.ID("alert-json")))
	b.eval(`(() => { const box = document.getElementById('alert-json'); const o = JSON.parse(box.value);
		o.title = 'Car wash in Leeds recruiting via social media';
		box.value = JSON.stringify(o).replace('{', '{"tlp": "CLEAR", '); return 'ok'; })()`)
	b.do(chromedp.Click(chromedp.ID("preview-btn")), chromedp.WaitVisible(chromedp.ID("errors")))
	assert.Contains(t, b.text("#error-list"), "tlp")
	assert.Contains(t, b.text("#error-list"), "more than once")
	b.shot("01b-compose-json-key-twice")
	b.do(chromedp.Click(chromedp.CSS(`input[name=mode][value=form]`)), chromedp.WaitVisible(chromedp.ID("f-title")))

	b.do(chromedp.SendKeys(chromedp.ID("f-title"), "Car wash in Leeds recruiting via social media"),
		chromedp.Click(chromedp.ID("preview-btn")), chromedp.WaitVisible(chromedp.ID("preview")))
	preview := b.text("#preview")
	assert.Contains(t, preview, "needs a second analyst")
	assert.Contains(t, preview, "Acme Car Wash Group", "partner names beside ids")
	assert.Contains(t, preview, "Green Grocers Ltd", "the withheld partner and why")
	// Every partner has its row: acme gets it, greenco is not cleared, and
	// each farm shares no sector with the alert. So many withheld rows are
	// folded under their count per rule; the counts and tables agree.
	withheld := `#preview table[data-decision="withhold"] tbody tr`
	assert.Equal(t, "1 13", b.eval(`document.querySelectorAll('#preview table[data-decision="deliver"] tbody tr').length + ' ' +
		document.querySelectorAll('`+withheld+`').length`))
	assert.Contains(t, b.text("#preview .counts"), "13 withheld")
	assert.Contains(t, b.text("#preview details.decisions-fold summary"), "Will not get it (13)")
	assert.Contains(t, b.text("#preview details.decisions-fold summary"), "12 audience.sector, 1 clearance.tlp")
	assert.Equal(t, "false", b.eval(`String(document.querySelector('#preview details.decisions-fold').open)`), "folded")
	assert.Contains(t, b.text(`#preview tr[data-subscriber="farm-07"]`), "Harvest Farm 07")
	assert.Contains(t, b.text(`#preview tr[data-subscriber="farm-07"]`), "audience.sector")
	assert.Contains(t, b.text(`#preview tr[data-subscriber="greenco"]`), "clearance.tlp")
	b.shot("02-compose-preview")
	b.do(chromedp.Click(chromedp.CSS(`#preview details.decisions-fold summary`)))
	b.poll(`document.querySelector('#preview details.decisions-fold').open && ` +
		`document.querySelector('#preview tr[data-subscriber="farm-12"]').getBoundingClientRect().height > 0`)
	b.shot("02b-compose-preview-withheld-unfolded")
	b.do(chromedp.EmulateViewport(400, 900))
	b.noHorizontalOverflow()
	b.shot("02c-compose-preview-400px")
	b.do(chromedp.EmulateViewport(1280, 900))

	b.do(chromedp.Click(chromedp.ID("publish-btn")), chromedp.WaitVisible(chromedp.ID("confirm")),
		chromedp.Click(chromedp.ID("confirm-btn")),
		chromedp.WaitVisible(chromedp.CSS(`#published[data-state="pending"]`)))
	id := b.eval(`document.getElementById('published').dataset.alertId`)
	require.NotEmpty(t, id)
	assert.Contains(t, b.text("#published"), "Pending approval")
	b.shot("03-published-pending-approval")

	// --- alice's desk: her alert waits for someone else; no approve button.
	b.navigate("/")
	card := fmt.Sprintf(`#mine-list article[data-alert-id=%q]`, id)
	b.do(chromedp.WaitVisible(chromedp.CSS(card)))
	assert.Equal(t, "0", b.eval(fmt.Sprintf(`String(document.querySelectorAll('#awaiting-list article, %s button[data-action="approve"]').length)`, card)),
		"the author is offered no approval")
	b.poll(`document.querySelector('[data-count="pending"]').textContent === '1'`)
	b.shot("04-alice-desk-own-alert-waiting")
	status, body := call(t, "POST", h.url+"/v1/alerts/"+id+"/approve", aliceToken, "")
	assert.Equal(t, http.StatusForbidden, status, "the API refuses the author too: %s", body)

	// --- its status page, while it waits, shows the review once and then
	// asks only where the alert stands: the review decides for every
	// partner of the registry, every poll would make it again.
	b.navigate("/status/" + id)
	b.poll(`document.getElementById('status').dataset.state === 'pending'`)
	assert.Contains(t, b.text("#release-preview"), "Acme Car Wash Group")
	b.eval(`(function () {
		window.heraldCalls = { deliveries: 0, review: 0, other: 0 };
		const f = window.fetch;
		window.fetch = function (u, o) {
			const p = String(u);
			if (p.endsWith('/deliveries')) window.heraldCalls.deliveries++;
			else if (p.endsWith('/review')) window.heraldCalls.review++;
			else if (p.includes('/v1/alerts/')) window.heraldCalls.other++;
			return f.call(this, u, o);
		};
		return '';
	})()`)
	b.poll(`window.heraldCalls.deliveries >= 2`, chromedp.WithPollingTimeout(20*time.Second))
	assert.Equal(t, "0", b.eval(`String(window.heraldCalls.review)`), "the review is not made again while nothing changed")
	assert.Equal(t, "0", b.eval(`String(window.heraldCalls.other)`), "one request a poll: the deliveries' answer carries the state")
	assert.Equal(t, "pending", b.eval(`document.getElementById('status').dataset.state`))

	// --- bob approves from his desk, reading what alice previewed.
	b.signOut()
	b.signIn("/", bobToken, "bob")
	card = fmt.Sprintf(`#awaiting-list article[data-alert-id=%q]`, id)
	b.do(chromedp.WaitVisible(chromedp.CSS(card)))
	review := b.text(card)
	assert.Contains(t, review, "Car wash in Leeds recruiting via social media")
	assert.Contains(t, review, "issued by api:alice")
	assert.Contains(t, review, "Acme Car Wash Group", "the audience preview the author saw")
	assert.Contains(t, review, "Harvest Farm 12", "every partner, as the author saw")
	assert.Contains(t, b.text(card+` button[data-action="approve"]`), "release to 1 target(s)", "only the targets that get it")
	assert.Contains(t, review, "2/B", "the grading")
	b.shot("05-bob-desk-awaiting-approval")
	// By keyboard: the button takes the focus and Enter presses it.
	b.do(chromedp.SendKeys(chromedp.CSS(card+` button[data-action="approve"]`), kb.Enter))
	b.poll(fmt.Sprintf(`(document.querySelector('%s') || {textContent: ''}).textContent.includes('Approved by you')`, card))
	b.shot("06-bob-approved")
	// The tiles follow: nothing awaits approval, one alert went out today.
	b.poll(`document.querySelector('[data-count="pending"]').textContent === '0' && document.querySelector('[data-count="published-today"]').textContent === '1'`)

	// --- the status page shows the delivery, names, and who released it.
	b.navigate("/status/" + id)
	b.poll(`document.querySelector('#deliveries tr[data-subscriber="acme"][data-state="delivered"]') !== null`)
	b.poll(`document.getElementById('status').dataset.state === 'done'`)
	page := b.text("#status")
	assert.Contains(t, page, "api:alice")
	assert.Contains(t, page, "api:bob")
	assert.Contains(t, page, "Acme Car Wash Group")
	assert.Contains(t, b.text(`#org-table tr[data-subscriber="acme"]`), "Acme Car Wash Group")
	assert.GreaterOrEqual(t, h.hooks.Load(), int64(1), "the partner's webhook received the alert")
	assert.Zero(t, h.greenco.Load(), "greenco, cleared for GREEN only, received nothing of the AMBER alert")
	b.shot("07-status-delivered")

	// --- 400 px wide: the tables stack, nothing scrolls sideways.
	b.do(chromedp.EmulateViewport(400, 900))
	b.navigate("/status/" + id)
	b.poll(`document.getElementById('status').dataset.state === 'done'`)
	b.noHorizontalOverflow()
	b.shot("08-status-400px")
	b.navigate("/")
	b.poll(`!document.getElementById('alert-list').hidden`)
	b.noHorizontalOverflow()
	b.shot("09-desk-400px")
	b.do(chromedp.EmulateViewport(1280, 900))

	// --- an id nobody used says so instead of waiting forever.
	b.navigate("/status/no-such-alert-7")
	b.poll(`document.getElementById('status').dataset.state === 'not-found'`, chromedp.WithPollingTimeout(20*time.Second))
	assert.Contains(t, b.text("#status-msg"), "Not found")
	b.shot("10-status-not-found")

	// --- the administrator suspends a partner, with a reason, and finds it
	// in the audit trail.
	b.signOut()
	b.signIn("/partners", opsToken, "ops")
	b.do(chromedp.WaitVisible(chromedp.CSS(`#partners tr[data-partner-id="acme"]`)),
		chromedp.SendKeys(chromedp.ID("partner-q"), "green"))
	b.poll(`document.querySelector('#partners tr[data-partner-id="acme"]').hidden`)
	b.shot("11-partner-directory-search")
	b.do(chromedp.Click(chromedp.CSS(`#partners tr[data-partner-id="greenco"] a`)),
		chromedp.WaitVisible(chromedp.ID("status-box")))
	b.do(chromedp.Click(chromedp.ID("status-btn")))
	b.poll(`document.getElementById('status-reason').getAttribute('aria-invalid') === 'true'`)
	assert.Contains(t, b.text("#status-form-msg"), "reason", "a missing reason is named")
	b.do(chromedp.SendKeys(chromedp.ID("status-reason"), "contract ended pending review"),
		chromedp.Click(chromedp.ID("status-btn")))
	b.poll(`document.getElementById('partner-status').textContent === 'suspended'`)
	assert.Contains(t, b.text("#partner-webhooks"), "enabled", "endpoint state shown")
	assert.Contains(t, b.text("#partner-webhooks"), "2 (redacted:", "the partner's two secrets, redacted")
	assert.Contains(t, b.text("#partner-webhooks"), "the partner's own (by partner:greenco-soc", "secrets the partner rotated itself, and by whom")
	assert.NotContains(t, b.text("#partner-webhooks"), "whsec_", "never a secret itself")
	b.shot("12-partner-suspended")

	b.navigate("/audit?object=subscriber:greenco")
	b.poll(`[...document.querySelectorAll('#audit tr[data-action="subscriber.put"]')].some(r => r.textContent.includes('contract ended pending review'))`)
	assert.Contains(t, b.text("#audit"), "api:ops")
	b.shot("13-audit-suspension")
	b.navigate("/audit?object=alert:" + id)
	b.poll(`document.querySelectorAll('#audit tr[data-action="alert.approve"]').length > 0`)
	trail := b.text("#audit")
	for _, want := range []string{"alert.submit", "api:alice", "alert.approve", "api:bob", "refused"} {
		assert.Contains(t, trail, want)
	}
	for _, tok := range []string{aliceToken, bobToken, opsToken} {
		assert.NotContains(t, trail, tok, "no token in the audit trail")
	}
	b.shot("14-audit-alert")

	// --- a registry too large to list everyone: beyond api.OthersListed
	// rows of partners outside the audience, the preview lists the
	// audience's rows and says how many others are withheld, and why.
	h.putFarms(t, farms+1, farms+api.OthersListed)
	b.signOut()
	b.signIn("/compose", aliceToken, "alice")
	b.do(chromedp.WaitVisible(chromedp.CSS(`#sector-checks input[value="car-washes"]`)),
		chromedp.SetValue(chromedp.ID("f-severity"), "severe"),
		chromedp.SetValue(chromedp.ID("f-tlp"), "GREEN"),
		chromedp.SetValue(chromedp.ID("f-marking"), "OFFICIAL"),
		chromedp.SetValue(chromedp.ID("f-handling"), "P"),
		chromedp.Click(chromedp.CSS(`#sector-checks input[value="car-washes"]`)),
		chromedp.SendKeys(chromedp.ID("f-title"), "Second car wash site in Leeds"),
		chromedp.Click(chromedp.ID("preview-btn")), chromedp.WaitVisible(chromedp.CSS("#preview p.others")))
	others := b.text("#preview p.others")
	assert.Regexp(t, `^\d+ more targets of partners outside the audience are withheld and not listed \(\d+ audience.sector`, others)
	assert.Contains(t, others, "herald publish --dry-run")
	assert.Equal(t, "true", b.eval(`String(document.querySelectorAll('#preview tbody tr').length < 100)`), "the others' rows are not in the page")
	b.shot("15-compose-preview-large-registry")

	b.noPageErrors()
}

// findChromium returns Chromium's path; a missing browser fails the test
// (.ci/run installs it).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("HERALD_CHROMIUM"), "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Fatal("chromium is required for the console's browser test and was not found at /usr/bin/chromium " +
		"or on PATH: install Debian's chromium package (.ci/run does), or set HERALD_CHROMIUM")
	return ""
}

// screenshotDir returns the folder the screenshots go to:
// $HERALD_TEST_OUTPUT/console, or test-output/console at the repository
// root.
func screenshotDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("HERALD_TEST_OUTPUT")
	if base == "" {
		dir, err := os.Getwd()
		require.NoError(t, err)
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(dir)
			require.NotEqual(t, dir, parent, "no go.mod above the test")
			dir = parent
		}
		base = filepath.Join(dir, "test-output")
	}
	out := filepath.Join(base, "console")
	require.NoError(t, os.MkdirAll(out, 0o755))
	old, _ := filepath.Glob(filepath.Join(out, "*.png"))
	for _, f := range old {
		_ = os.Remove(f)
	}
	return out
}

// herald is a whole Herald running in the test process.
type herald struct {
	url     string
	hooks   atomic.Int64 // webhook deliveries acme's endpoint (/herald) received
	greenco atomic.Int64 // webhook deliveries greenco's endpoint (/green) received
}

// putFarms registers partners farm-<from> to farm-<to> (agriculture, one
// email address each, outside a car-wash alert's audience) as the
// administrator, and waits until the analysts' directory lists the last.
func (h *herald) putFarms(t *testing.T, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		rec := fmt.Sprintf(`{"name": "Harvest Farm %02d", "kind": "business", "sectors": ["agriculture"], "clearance": "GREEN",
			"email": [{"address": "office@farm-%02d.example"}]}`, i, i)
		status, body := call(t, "PUT", h.url+fmt.Sprintf("/v1/subscribers/farm-%02d", i), opsToken, rec)
		require.Equal(t, http.StatusOK, status, "put farm-%02d: %s", i, body)
	}
	last := fmt.Sprintf(`"farm-%02d"`, to)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, body := call(c, "GET", h.url+"/v1/partners", aliceToken, "")
		assert.Contains(c, body, last)
	}, 30*time.Second, 50*time.Millisecond, "the registry has the farms")
}

// startHerald runs every role of Herald on the embedded broker, with a
// partner whose webhook (plain HTTP on loopback) really receives alerts,
// and a second partner cleared for GREEN only.
func startHerald(t *testing.T) *herald {
	t.Helper()
	h := &herald{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/green" {
			h.greenco.Add(1)
		} else {
			h.hooks.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	dir := t.TempDir()
	_, priv := pgptest.Key(t, pgptest.Agency)
	keyFile := filepath.Join(dir, "signing.asc")
	require.NoError(t, os.WriteFile(keyFile, []byte(priv), 0o600))

	cfg := config.Default()
	cfg.Kafka.Brokers = nil
	cfg.Kafka.Embedded = config.Embedded{Listen: "127.0.0.1:0"}
	cfg.Kafka.CreateTopics = true
	cfg.Kafka.Partitions = 1
	cfg.Kafka.Consumer = kafkatest.FastConsumer()
	cfg.Signing = config.Signing{KeyFile: keyFile}
	cfg.Publishing.KeyFile = kafkatest.KeyFile(t)
	cfg.View.Dir = filepath.Join(dir, "view")
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.Tokens = []config.Token{
		{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(aliceToken)},
		{Name: "bob", Role: config.RoleAnalyst, SHA256: config.HashToken(bobToken)},
		{Name: "ops", Role: config.RoleAdmin, SHA256: config.HashToken(opsToken)},
		{Name: "greenco-soc", Role: config.RolePartner, Subscriber: "greenco", SHA256: config.HashToken(greencoToken)},
	}
	cfg.Webhooks.AllowInsecureLoopback = true
	cfg.Webhooks.AllowCIDRs = []string{"127.0.0.0/8"}
	cfg.Webhooks.Timeout = 5 * time.Second
	cfg.Delivery.RetrySchedule = []time.Duration{time.Second, 2 * time.Second}
	cfg.Taxonomy.Sectors = append(taxonomy.DefaultSectors(), seasonal)
	require.NoError(t, cfg.Validate())

	e := &serveEnv{cfg: cfg, logs: &logtest.Buffer{}} // the embedded broker, no kfake cluster or SMTP sink
	a, _, err := e.serve(t, app.Options{})
	require.NoError(t, err, "herald did not start:\n%s", e.logs)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("herald's log:\n%s", e.logs)
		}
	})
	h.url = "http://" + a.APIAddr() // the port the api role bound
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body := call(c, "GET", h.url+"/readyz", "", "")
		assert.Equal(c, http.StatusOK, code, body)
	}, 20*time.Second, 50*time.Millisecond, "the api becomes ready")

	// The partners, registered by the administrator through the API.
	for id, rec := range map[string]string{
		"acme": `{"name": "Acme Car Wash Group", "kind": "business", "sectors": ["car-washes"], "clearance": "AMBER",
			"webhooks": [{"url": "` + hook.URL + `/herald", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}]}`,
		"greenco": `{"name": "Green Grocers Ltd", "kind": "business", "sectors": ["car-washes"], "clearance": "GREEN",
			"webhooks": [{"url": "` + hook.URL + `/green", "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}]}`,
	} {
		status, body := call(t, "PUT", h.url+"/v1/subscribers/"+id, opsToken, rec)
		require.Equal(t, http.StatusOK, status, "put %s: %s", id, body)
	}
	// greenco rotates its webhook's secret itself: its own record, beside
	// the one the administrator wrote.
	status, body := call(t, "POST", h.url+"/v1/partner/webhooks/0/secrets", greencoToken, "")
	require.Equal(t, http.StatusCreated, status, "partner secret: %s", body)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, body := call(c, "GET", h.url+"/v1/partners", aliceToken, "")
		assert.Contains(c, body, `"acme"`)
		assert.Contains(c, body, `"greenco"`)
	}, 10*time.Second, 50*time.Millisecond, "the registry has the partners")
	return h
}

// browser is one Chromium tab on the console.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string
	shots string

	start    time.Time // for the log of steps
	mu       sync.Mutex
	problems []string // exceptions and console errors other than failed requests
}

func newBrowser(t *testing.T, chromium, shots, base string) *browser {
	t.Helper()
	opts := append([]chromedp.ExecAllocatorOption{chromedp.ExecPath(chromium), chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900)}, chromiumFlags...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// Start the browser on the context with no deadline (a deadline on the
	// first call would end the browser with it); each step has its own.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium %s: %v", chromium, err)
	}
	b := &browser{t: t, ctx: ctx, base: base, shots: shots, start: time.Now()}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// A refused request (a 404 the status page expects, a 403 it
			// shows) is reported by the browser as an error of source
			// network; everything else that is an error is the console's.
			if m.IsException() || (m.Type == chromedp.ConsoleError && m.Source != "network") {
				b.mu.Lock()
				b.problems = append(b.problems, m.String()+" at "+m.URL)
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// stepTimeout bounds every browser step.
const stepTimeout = 20 * time.Second

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed")
		b.t.Fatalf("browser: %v (page says: %s)", err, b.bodyText())
	}
}

func (b *browser) bodyText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
	return s
}

func (b *browser) navigate(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("body")))
}

// eval evaluates a JavaScript expression that returns a string.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	require.NoError(b.t, err, "evaluate %s", expr)
	return s
}

// text returns the text of the first element matching a CSS selector.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		b.shot("failed")
		b.t.Fatalf("browser: text of %s: %v (page says: %s)", sel, err, b.bodyText())
	}
	return s
}

// poll waits until a JavaScript predicate holds.
func (b *browser) poll(predicate string, opts ...chromedp.PollOption) {
	b.t.Helper()
	opts = append([]chromedp.PollOption{chromedp.WithPollingInterval(50 * time.Millisecond),
		chromedp.WithPollingTimeout(stepTimeout)}, opts...)
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout+10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](predicate, opts...)); err != nil {
		b.shot("failed")
		b.t.Fatalf("browser: waiting for %s: %v (page says: %s)", predicate, err, b.bodyText())
	}
}

// reloadingClick clicks the button with id and waits for the page it
// reloads.
func (b *browser) reloadingClick(id string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.ID(id)))); err != nil {
		b.shot("failed")
		b.t.Fatalf("browser: click #%s and wait for the page to reload: %v (page says: %s)", id, err, b.bodyText())
	}
}

func (b *browser) signIn(path, token, name string) {
	b.t.Helper()
	b.navigate(path)
	b.do(chromedp.WaitVisible(chromedp.ID("token")), chromedp.SendKeys(chromedp.ID("token"), token))
	b.reloadingClick("signin-btn") // a good token is kept and the page reloaded for it
	b.poll(fmt.Sprintf(`document.getElementById('whoami').textContent.includes('Signed in as %s ')`, name))
}

func (b *browser) signOut() {
	b.t.Helper()
	b.reloadingClick("signout-btn")
	b.poll(`document.getElementById('whoami').textContent === 'Not signed in'`)
}

// shot writes a full-page screenshot.
func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644); err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
	}
	b.t.Logf("%5.1fs %s", time.Since(b.start).Seconds(), name)
}

// noHorizontalOverflow checks that the page fits the window's width: it
// scrolls only vertically, and nothing sticks out of its layout width
// (the window less any vertical scrollbar).
func (b *browser) noHorizontalOverflow() {
	b.t.Helper()
	got := b.eval(`(() => { const s = document.scrollingElement; return s.scrollWidth + ' ' + s.clientWidth + ' ' + window.innerWidth; })()`)
	var scroll, client, inner int
	_, err := fmt.Sscanf(got, "%d %d %d", &scroll, &client, &inner)
	require.NoError(b.t, err)
	assert.LessOrEqual(b.t, scroll, inner, "document.scrollingElement.scrollWidth <= innerWidth")
	if scroll > client {
		wide := b.eval(`[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > document.scrollingElement.clientWidth + 0.5)
			.slice(0, 8).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)).join(', ')`)
		b.t.Errorf("the page is %d px wide in a %d px layout (window %d px); sticking out: %s", scroll, client, inner, wide)
	}
}

// noPageErrors checks that no script failed and the CSP refused nothing.
func (b *browser) noPageErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	assert.Empty(b.t, b.problems, "errors in the page's console")
}
