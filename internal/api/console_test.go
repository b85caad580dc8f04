package api_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestConsolePages: every page of the console is served, says which page
// it is, and carries what its script needs, under the strict CSP.
func TestConsolePages(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		path, page string
		status     int
		want       []string
	}{
		{"/", "desk", http.StatusOK, []string{
			`id="tiles"`, `data-state="pending"`, `data-count="published-today"`, `data-count="rejected"`, `data-count="expired"`,
			`id="awaiting-list"`, `id="mine-list"`, `id="alert-list"`, `href="/compose"`,
		}},
		{"/compose", "compose", http.StatusOK, []string{
			`id="alert-form"`, `id="preview-btn"`, `id="publish-btn" type="button" disabled`, `id="alert-json"`,
			`id="sector-checks"`, `id="region-checks"`, `id="partner-checks"`, `id="partner-filter" type="search"`,
			`name="grading_source" data-field="grading.source"`, `name="grading_intelligence" data-field="grading.intelligence"`,
			`data-field="audience.subscribers"`, `role="alertdialog"`, `id="published"`,
		}},
		{"/status/NCA-2026-0042", "status", http.StatusOK, []string{
			`data-alert-id="NCA-2026-0042"`, `id="deliveries"`, `id="org-table"`, `id="acks"`, `id="status-retry"`,
		}},
		{"/status", "status", http.StatusOK, nil},
		{"/partners", "partners", http.StatusOK, []string{`id="partner-q" type="search"`, `id="partners"`}},
		{"/partners/acme", "partner", http.StatusOK, []string{
			`data-partner-id="acme"`, `id="status-form"`, `id="status-reason"`, `id="partner-webhooks"`,
		}},
		{"/audit", "audit", http.StatusOK, []string{
			`id="audit-filters"`, `name="actor"`, `name="object"`, `name="since"`, `name="until"`, `<option>subscriber.put</option>`,
		}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := e.do(request{method: "GET", path: tc.path})
			require.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
			assertStrictHeaders(t, resp)
			page := string(body)
			assert.Contains(t, page, `data-page="`+tc.page+`"`)
			assert.Contains(t, page, `<script src="/static/console.js" defer></script>`)
			assert.Contains(t, page, `<link rel="stylesheet" href="/static/console.css">`)
			assert.Contains(t, page, `id="token" type="password"`)
			for _, want := range tc.want {
				assert.Contains(t, page, want)
			}
			assertNoInlineScript(t, page)
		})
	}

	_, body := e.do(request{method: "GET", path: "/status"})
	assert.NotContains(t, string(body), `id="deliveries"`, "no alert yet")
	_, body = e.do(request{method: "GET", path: "/audit?action=alert.approve"})
	assert.Contains(t, string(body), `<option selected>alert.approve</option>`, "the filter shows what was asked")

	resp, _ := e.do(request{method: "GET", path: "/status?id=NCA-2026-0042"})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/status/NCA-2026-0042", resp.Header.Get("Location"))
	resp, _ = e.do(request{method: "GET", path: "/nothing-here"})
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// TestConsoleEscapesUserInput: ids and filters from the address bar are
// shown escaped and never handed to the script as something to fetch.
func TestConsoleEscapesUserInput(t *testing.T) {
	e := newEnv(t)
	const xss = `"><script>alert(1)</script><img src=x onerror=alert(2)>`
	for _, tc := range []struct {
		path, attr string
	}{
		{"/status/" + url.PathEscape(xss), "data-alert-id"},
		{"/status?id=" + url.QueryEscape(xss), "data-alert-id"},
		{"/partners/" + url.PathEscape(xss), "data-partner-id"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := e.do(request{method: "GET", path: tc.path})
			require.Equal(t, http.StatusNotFound, resp.StatusCode, "an id like that is no id")
			page := string(body)
			assertNotInjected(t, page)
			assert.Contains(t, page, "not an id")
			assert.NotContains(t, page, tc.attr, "the script is given no id to fetch")
			assertStrictHeaders(t, resp)
		})
	}
	t.Run("audit filters", func(t *testing.T) {
		q := url.Values{"actor": {xss}, "object": {xss}, "since": {xss}, "action": {xss}}
		resp, body := e.do(request{method: "GET", path: "/audit?" + q.Encode()})
		require.Equal(t, http.StatusOK, resp.StatusCode)
		page := string(body)
		assertNotInjected(t, page)
		assert.Contains(t, page, `value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;`, "shown in the field, escaped")
		assert.NotContains(t, page, "<option selected>", "an unknown action selects nothing")
	})
}

func assertNotInjected(t *testing.T, page string) {
	t.Helper()
	assert.NotContains(t, page, "<script>alert(1)")
	assert.NotContains(t, page, "<img src=x")
	assert.NotContains(t, page, `"><script`, "the value never closes its attribute")
}

func assertStrictHeaders(t *testing.T, resp *http.Response) {
	t.Helper()
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		assert.Contains(t, csp, want)
	}
	assert.NotContains(t, csp, "unsafe-inline")
	assert.NotContains(t, csp, "unsafe-eval")
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
}

// assertNoInlineScript checks that the page works under the CSP, which
// allows no inline script, event-handler attribute or inline style.
func assertNoInlineScript(t *testing.T, page string) {
	t.Helper()
	assert.NotRegexp(t, regexp.MustCompile(`<script(\s[^>]*)?>[^<]`), page, "inline script")
	assert.NotRegexp(t, regexp.MustCompile(`(?i)\son[a-z]+=`), page, "event-handler attribute")
	assert.NotRegexp(t, regexp.MustCompile(`(?i)\sstyle=`), page, "inline style (style-src 'self')")
	assert.NotContains(t, page, "<style")
	assert.NotContains(t, page, "javascript:")
	assert.NotContains(t, page, "http://", "no external asset")
	assert.NotContains(t, page, "https://", "no external asset")
}

// TestConsoleControlsAreLabelled: every form control of every template is
// inside a label or named by one, so screen readers announce it.
func TestConsoleControlsAreLabelled(t *testing.T) {
	files, err := filepath.Glob("web/*.html")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	control := regexp.MustCompile(`<(input|select|textarea)\b[^>]*>`)
	idAttr := regexp.MustCompile(`\sid="([^"]+)"`)
	for _, f := range files {
		src, err := os.ReadFile(f)
		require.NoError(t, err)
		page := string(src)
		for _, loc := range control.FindAllStringIndex(page, -1) {
			tag := page[loc[0]:loc[1]]
			before := page[:loc[0]]
			inside := strings.LastIndex(before, "<label") > strings.LastIndex(before, "</label>")
			named := false
			if m := idAttr.FindStringSubmatch(tag); m != nil {
				named = strings.Contains(page, `for="`+m[1]+`"`)
			}
			assert.True(t, inside || named, "%s: %s has no label", f, tag)
		}
	}
}

func TestConsoleStatic(t *testing.T) {
	e := newEnv(t)
	resp, body := e.do(request{method: "GET", path: "/static/console.js"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "javascript")
	for _, call := range []string{"/v1/alerts/preview", "/review", "/approve", "/reject", "/v1/taxonomy", "/v1/partners", "/v1/audit?", "/endpoints", "/partner-managed"} {
		assert.Contains(t, string(body), call)
	}

	resp, _ = e.do(request{method: "GET", path: "/static/console.css"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/css")

	for _, path := range []string{"/static/", "/static/../layout.html", "/static/nothing.js"} {
		resp, body = e.do(request{method: "GET", path: path})
		assert.NotEqual(t, http.StatusOK, resp.StatusCode, "%s: %s", path, body)
	}
}

// TestConsoleScriptBuildsNoHTML keeps the console's script to DOM calls
// that cannot interpret markup: values from the API or the analyst are
// only ever text.
func TestConsoleScriptBuildsNoHTML(t *testing.T) {
	src, err := os.ReadFile("web/static/console.js")
	require.NoError(t, err)
	code := stripComments(string(src))
	for _, sink := range []string{
		"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
		"setAttribute('on", `setAttribute("on`, "srcdoc", "createContextualFragment", "DOMParser",
		"localStorage", "document.cookie", "setAttribute('style", ".style.",
	} {
		assert.NotContains(t, code, sink)
	}
	assert.NotRegexp(t, regexp.MustCompile(`setTimeout\(\s*['"]`), code, "string timers evaluate code")
	// Links point into the console: a path or fragment of its own, never a
	// URL from the API (which could be javascript:).
	for _, m := range regexp.MustCompile(`(function )?\blink\(([^,)]*)`).FindAllStringSubmatch(code, -1) {
		if m[1] == "" {
			assert.Regexp(t, `^'[/#]`, m[2], "link(%s", m[2])
		}
	}
	for _, m := range regexp.MustCompile(`\.href\s*=\s*([^;]*)`).FindAllStringSubmatch(code, -1) {
		assert.Regexp(t, `^(href$|'/)`, m[1], ".href = %s", m[1])
	}
	assert.Contains(t, code, "sessionStorage", "the token is kept per tab")
	assert.Contains(t, code, "credentials: 'omit'")
}

func stripComments(js string) string {
	var out []string
	for _, line := range strings.Split(js, "\n") {
		if i := strings.Index(line, "// "); i >= 0 && !strings.Contains(line[:i], "'") {
			line = line[:i]
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}
