package api_test

import (
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConsolePages(t *testing.T) {
	e := newEnv(t)
	resp, body := e.do(request{method: "GET", path: "/"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	page := string(body)
	for _, want := range []string{
		`<script src="/static/console.js" defer></script>`,
		`<link rel="stylesheet" href="/static/console.css">`,
		`id="alert-form"`, `id="preview-btn"`, `id="publish-btn" type="button" disabled`,
		`id="alert-json"`, `id="token" type="password"`, `data-page="compose"`,
	} {
		assert.Contains(t, page, want)
	}
	assertNoInlineScript(t, page)

	resp, body = e.do(request{method: "GET", path: "/status/NCA-2026-0042"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), `data-alert-id="NCA-2026-0042"`)
	assert.Contains(t, string(body), `id="deliveries"`)
	assertNoInlineScript(t, string(body))

	resp, body = e.do(request{method: "GET", path: "/status"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotContains(t, string(body), `id="deliveries"`, "no alert yet")

	resp, _ = e.do(request{method: "GET", path: "/status?id=NCA-2026-0042"})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/status/NCA-2026-0042", resp.Header.Get("Location"))
}

func TestConsoleEscapesUserInput(t *testing.T) {
	e := newEnv(t)
	const xss = `"><script>alert(1)</script><img src=x onerror=alert(2)>`
	for _, path := range []string{
		"/status/" + url.PathEscape(xss),
		"/status?id=" + url.QueryEscape(xss),
	} {
		t.Run(path, func(t *testing.T) {
			resp, body := e.do(request{method: "GET", path: path})
			require.Equal(t, http.StatusNotFound, resp.StatusCode, "an id like that is no alert id")
			page := string(body)
			assert.NotContains(t, page, "<script>alert(1)")
			assert.NotContains(t, page, "<img src=x")
			assert.NotContains(t, page, `"><`)
			assert.Contains(t, page, "&lt;script&gt;alert(1)&lt;/script&gt;", "shown, escaped")
			assert.NotContains(t, page, "data-alert-id", "the script is given no id to fetch")
			assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
		})
	}
}

// assertNoInlineScript checks that the page works under the CSP, which
// allows no inline script or event-handler attribute.
func assertNoInlineScript(t *testing.T, page string) {
	t.Helper()
	assert.NotRegexp(t, regexp.MustCompile(`<script(\s[^>]*)?>[^<]`), page, "inline script")
	assert.NotRegexp(t, regexp.MustCompile(`(?i)\son[a-z]+=`), page, "event-handler attribute")
	assert.NotContains(t, page, "javascript:")
	assert.NotContains(t, page, "http://", "no external asset")
	assert.NotContains(t, page, "https://", "no external asset")
}

func TestConsoleStatic(t *testing.T) {
	e := newEnv(t)
	resp, body := e.do(request{method: "GET", path: "/static/console.js"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "javascript")
	assert.Contains(t, string(body), "/v1/alerts/preview")

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
		"localStorage", "document.cookie",
	} {
		assert.NotContains(t, code, sink)
	}
	assert.NotRegexp(t, regexp.MustCompile(`setTimeout\(\s*['"]`), code, "string timers evaluate code")
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
