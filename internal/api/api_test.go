package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// errorResponse is the JSON shape of every error.
type errorResponse struct {
	Error  string              `json:"error"`
	Errors []alerts.FieldError `json:"errors"`
}

func decodeError(t *testing.T, body []byte) errorResponse {
	t.Helper()
	var er errorResponse
	require.NoError(t, json.Unmarshal(body, &er), "body: %s", body)
	require.NotEmpty(t, er.Error)
	return er
}

func fields(er errorResponse) []string {
	out := make([]string, len(er.Errors))
	for i, f := range er.Errors {
		out[i] = f.Field
	}
	return out
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	e.fannedOut("a1", alerts.TLPGreen, alerts.MarkingOfficial)
	tests := []struct {
		name       string
		req        request
		authHeader string // overrides the token when set
		want       int
		challenge  string // expected WWW-Authenticate, if any
	}{
		{"no token", request{method: "GET", path: "/v1/alerts/a1"}, "", http.StatusUnauthorized, `Bearer realm="herald"`},
		{"unknown token", request{method: "GET", path: "/v1/alerts/a1", token: "hrld_guess"}, "", http.StatusUnauthorized, `Bearer realm="herald", error="invalid_token"`},
		{"basic scheme", request{method: "GET", path: "/v1/alerts/a1"}, "Basic YWxpY2U6eA==", http.StatusUnauthorized, `Bearer realm="herald"`},
		{"empty bearer", request{method: "GET", path: "/v1/alerts/a1"}, "Bearer ", http.StatusUnauthorized, `Bearer realm="herald"`},
		{"scheme is case-insensitive", request{method: "GET", path: "/v1/alerts/a1"}, "bearer " + analystToken, http.StatusOK, ""},
		{"analyst reads status", request{method: "GET", path: "/v1/alerts/a1", token: analystToken}, "", http.StatusOK, ""},
		{"admin reads status", request{method: "GET", path: "/v1/alerts/a1", token: adminToken}, "", http.StatusOK, ""},
		{"analyst may not list subscribers", request{method: "GET", path: "/v1/subscribers", token: analystToken}, "", http.StatusForbidden, `Bearer realm="herald", error="insufficient_scope"`},
		{"analyst may not delete subscribers", request{method: "DELETE", path: "/v1/subscribers/acme", token: analystToken}, "", http.StatusForbidden, `Bearer realm="herald", error="insufficient_scope"`},
		{"admin lists subscribers", request{method: "GET", path: "/v1/subscribers", token: adminToken}, "", http.StatusOK, ""},
		{"admin may not publish", request{method: "POST", path: "/v1/alerts", token: adminToken, body: validAlert}, "", http.StatusForbidden, `Bearer realm="herald", error="insufficient_scope"`},
		{"unknown token may not publish", request{method: "POST", path: "/v1/alerts", token: "nope", body: validAlert}, "", http.StatusUnauthorized, `Bearer realm="herald", error="invalid_token"`},
		{"analyst publishes", request{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert}, "", http.StatusAccepted, ""},
		{"whoami", request{method: "GET", path: "/v1/whoami", token: adminToken}, "", http.StatusOK, ""},
		{"signing key is public", request{method: "GET", path: "/v1/signing-key"}, "", http.StatusOK, ""},
		{"healthz is public", request{method: "GET", path: "/healthz"}, "", http.StatusOK, ""},
		{"metrics are public", request{method: "GET", path: "/metrics"}, "", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := http.NewRequestWithContext(t.Context(), tt.req.method, e.srv.URL+tt.req.path, strings.NewReader(tt.req.body))
			require.NoError(t, err)
			if tt.req.body != "" {
				r.Header.Set("Content-Type", "application/json")
			}
			switch {
			case tt.authHeader != "":
				r.Header.Set("Authorization", tt.authHeader)
			case tt.req.token != "":
				r.Header.Set("Authorization", "Bearer "+tt.req.token)
			}
			resp, err := http.DefaultClient.Do(r)
			require.NoError(t, err)
			resp.Body.Close()
			if tt.req.path == "/v1/signing-key" {
				// No key configured in this server: public, but unavailable.
				assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
				return
			}
			assert.Equal(t, tt.want, resp.StatusCode)
			assert.Equal(t, tt.challenge, resp.Header.Get("WWW-Authenticate"))
		})
	}
	logs := e.logs.String()
	assert.NotContains(t, logs, analystToken, "tokens are never logged")
	assert.NotContains(t, logs, adminToken, "tokens are never logged")
	assert.Contains(t, logs, `route="GET /v1/alerts/{id}"`)
	assert.Contains(t, logs, "token=alice")
	assert.Contains(t, logs, "token=ops")
}

// TestRefusalsAreLogged: a request the API refuses is recorded in its
// log line with what the caller was told and which fields were wrong, by
// name, never their values.
func TestRefusalsAreLogged(t *testing.T) {
	e := newEnv(t)
	bad := strings.Replace(validAlert, `"tlp": "TLP:AMBER"`, `"tlp": "MAUVE-SECRET-VALUE"`, 1)
	require.NotEqual(t, validAlert, bad)
	resp, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: bad})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	var line string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, `route="POST /v1/alerts"`) && strings.Contains(l, "status=422") {
			line = l
		}
	}
	require.NotEmpty(t, line, "the refused request is logged:\n%s", e.logs.String())
	assert.Contains(t, line, `refused="invalid alert"`)
	assert.Contains(t, line, "fields=[tlp]")
	assert.NotContains(t, line, "MAUVE-SECRET-VALUE", "field names, not values")
}

func TestPublish(t *testing.T) {
	e := newEnv(t)
	resp, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)

	var pr api.PublishResponse
	require.NoError(t, json.Unmarshal(body, &pr))
	require.True(t, alerts.ValidID(pr.ID), "assigned id %q", pr.ID)
	assert.Equal(t, "/v1/alerts/"+pr.ID, pr.StatusURL)
	assert.Equal(t, pr.StatusURL, resp.Header.Get("Location"))

	got := e.published()
	require.Len(t, got, 1)
	a := got[0]
	assert.Equal(t, pr.ID, a.ID)
	assert.Equal(t, "api:alice", a.IssuedBy)
	require.NotNil(t, a.IssuedAt)
	assert.True(t, a.IssuedAt.Equal(testNow))
	assert.Equal(t, "Car wash in Leeds recruiting via social media", a.Title)
	assert.Equal(t, alerts.TLPAmber, a.TLP, "the TLP: prefix is normalised away")
	assert.Equal(t, alerts.TypeAlert, a.Type)
	assert.Equal(t, alerts.StatusActual, a.Status)
	assert.Equal(t, []string{"car-washes"}, a.Audience.Sectors)
}

func TestPublishIgnoresSuppliedIssuerAndKeepsID(t *testing.T) {
	e := newEnv(t)
	body := strings.Replace(validAlert, `"title"`, `"id": "NCA-2026-0042", "issued_by": "api:mallory", "issued_at": "2020-01-01T00:00:00Z", "title"`, 1)
	resp, out := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: body})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", out)
	got := e.published()
	require.Len(t, got, 1)
	assert.Equal(t, "NCA-2026-0042", got[0].ID)
	assert.Equal(t, "api:alice", got[0].IssuedBy)
	assert.True(t, got[0].IssuedAt.Equal(testNow))
}

func TestPublishRejects(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		contentType string
		want        int
		fields      []string // all must be named
		message     string   // the error, if given
	}{
		{
			name: "every bad field is named",
			body: `{"title": "", "severity": "apocalyptic", "tlp": "PURPLE", "marking": "SECRET",
				"handling": {"code": "X"}, "audience": {"regions": ["MARS"]}, "indicators": [{"type": "shoe", "value": "x"}],
				"expires_at": "2020-01-01T00:00:00Z"}`,
			want: http.StatusUnprocessableEntity,
			fields: []string{"title", "severity", "tlp", "marking", "handling.code", "audience",
				"audience.regions[0]", "indicators[0].type", "expires_at"},
		},
		{name: "unknown field", body: strings.Replace(validAlert, `"title"`, `"colour": "red", "title"`, 1), want: http.StatusUnprocessableEntity, fields: []string{"colour"}},
		{name: "wrong type", body: strings.Replace(validAlert, `"title": "Car wash in Leeds recruiting via social media"`, `"title": 42`, 1), want: http.StatusUnprocessableEntity, fields: []string{"title"}},
		{name: "bad time", body: strings.Replace(validAlert, `"title"`, `"expires_at": "tomorrow", "not_before": "2030-13-01", "title"`, 1), want: http.StatusUnprocessableEntity, fields: []string{"expires_at", "not_before"}},
		// JSON keeps the last of a key given twice: a second tlp or
		// audience would change who gets the alert, unseen.
		{name: "a key twice", body: strings.Replace(validAlert, `"title"`, `"tlp": "RED", "audience": {"subscribers": ["acme"]}, "title"`, 1), want: http.StatusUnprocessableEntity, fields: []string{"tlp", "audience"}},
		// … ignoring case, as encoding/json matches keys to fields.
		{name: "a key twice in another case", body: strings.Replace(validAlert, `"title"`, `"TLP": "RED", "title"`, 1), want: http.StatusUnprocessableEntity, fields: []string{"tlp"}},
		{name: "a nested key twice", body: strings.Replace(validAlert, `"regions": ["TLE"]`, `"regions": ["TLE"], "sectors": ["care"]`, 1), want: http.StatusUnprocessableEntity, fields: []string{"audience.sectors"}},
		// Bytes that are not UTF-8 would reach partners as U+FFFD.
		{name: "not UTF-8", body: strings.Replace(validAlert, `via social media`, "via social \xff media", 1), want: http.StatusUnprocessableEntity, fields: []string{"title"}},
		{name: "references on a plain alert", body: strings.Replace(validAlert, `"title"`, `"references": ["a1"], "title"`, 1), want: http.StatusUnprocessableEntity, fields: []string{"references"}},
		{name: "not JSON", body: `{"title": `, want: http.StatusBadRequest},
		{name: "an array", body: `[` + validAlert + `]`, want: http.StatusBadRequest, message: "the alert must be a JSON object, not an array"},
		{name: "trailing data", body: validAlert + ` {}`, want: http.StatusBadRequest},
		{name: "form content type", body: validAlert, contentType: "application/x-www-form-urlencoded", want: http.StatusUnsupportedMediaType},
		{name: "text content type", body: validAlert, contentType: "text/plain", want: http.StatusUnsupportedMediaType},
		{name: "other charset", body: validAlert, contentType: "application/json; charset=latin1", want: http.StatusUnsupportedMediaType},
		{name: "too large", body: strings.Replace(validAlert, `"title"`, `"body": "`+strings.Repeat("a", api.MaxAlertBytes)+`", "title"`, 1), want: http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			resp, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: tt.body, contentType: tt.contentType})
			require.Equal(t, tt.want, resp.StatusCode, "%s", body)
			er := decodeError(t, body)
			assert.Subset(t, fields(er), tt.fields, "%s", body)
			if tt.message != "" {
				assert.Equal(t, tt.message, er.Error)
			}
			assert.Empty(t, e.published(), "nothing is published")
			// Every refusal is in the audit trail, naming the fields and
			// never their values, also of a body refused before it was
			// read or before it was an alert.
			var refused []record.Audit
			for _, au := range e.audited() {
				if au.Action == record.ActionPublish {
					refused = append(refused, au)
				}
			}
			require.Len(t, refused, 1, "%+v", refused)
			assert.Equal(t, record.OutcomeRefused, refused[0].Outcome)
			assert.Equal(t, "api:alice", refused[0].Actor)
			assert.NotEmpty(t, refused[0].Reason)
			for _, f := range tt.fields {
				assert.Contains(t, refused[0].Reason, f)
			}
			for _, value := range []string{"RED", "tomorrow", "\xff", "\ufffd", "colour\": ", "apocalyptic", "aaaa"} {
				assert.NotContains(t, refused[0].Reason, value)
			}
			// The same checks guard the preview.
			resp, body = e.do(request{method: "POST", path: "/v1/alerts/preview", token: analystToken, body: tt.body, contentType: tt.contentType})
			require.Equal(t, tt.want, resp.StatusCode, "preview: %s", body)
		})
	}
}

// TestARefusalOfManyFieldsIsAuditedSmall: an alert with thousands of bad
// keys is answered naming them all, and audited in a bounded entry.
func TestARefusalOfManyFieldsIsAuditedSmall(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	for range 3000 {
		b.WriteString(`"summary": "again", `)
	}
	resp, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken,
		body: strings.Replace(validAlert, `"title"`, b.String()+`"title"`, 1)})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%.200s", body)
	var refused []record.Audit
	for _, au := range e.audited() {
		if au.Action == record.ActionPublish {
			refused = append(refused, au)
		}
	}
	require.Len(t, refused, 1)
	assert.LessOrEqual(t, len(refused[0].Reason), 1024+len("…"))
	assert.True(t, strings.HasPrefix(refused[0].Reason, "invalid alert: "), refused[0].Reason)
}

func TestPublishMissingContentType(t *testing.T) {
	e := newEnv(t)
	r, err := http.NewRequestWithContext(t.Context(), "POST", e.srv.URL+"/v1/alerts", strings.NewReader(validAlert))
	require.NoError(t, err)
	r.Header.Set("Authorization", "Bearer "+analystToken)
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
}

func TestPublishFailure(t *testing.T) {
	e := newEnv(t, withKafkaDown)
	resp, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert})
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.NotContains(t, string(body), "127.0.0.1", "internal addresses stay in the log")
	assert.Contains(t, e.logs.String(), "connection refused")
}

func update(typ, ref, tlp, marking string) string {
	return fmt.Sprintf(`{"type": %q, "references": [%q], "title": "Correction: new address",
		"severity": "severe", "tlp": %q, "marking": %q, "handling": {"code": "P"},
		"audience": {"sectors": ["car-washes"]}}`, typ, ref, tlp, marking)
}

func TestUpdatesAndCancels(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		want   int
		fields []string
	}{
		{"same labels", update("update", "orig-1", "AMBER", "OFFICIAL-SENSITIVE"), http.StatusAccepted, nil},
		{"raised TLP", update("cancel", "orig-1", "RED", "OFFICIAL-SENSITIVE"), http.StatusAccepted, nil},
		{"lowered TLP", update("update", "orig-1", "GREEN", "OFFICIAL-SENSITIVE"), http.StatusUnprocessableEntity, []string{"tlp"}},
		{"lowered marking", update("cancel", "orig-1", "AMBER", "OFFICIAL"), http.StatusUnprocessableEntity, []string{"marking"}},
		{"lowered both", update("update", "orig-1", "CLEAR", "OFFICIAL"), http.StatusUnprocessableEntity, []string{"tlp", "marking"}},
		{"unknown reference", update("update", "never-sent", "AMBER", "OFFICIAL-SENSITIVE"), http.StatusUnprocessableEntity, []string{"references[0]"}},
		{"not yet fanned out", update("update", "half-1", "AMBER", "OFFICIAL-SENSITIVE"), http.StatusUnprocessableEntity, []string{"references[0]"}},
		{"no references", strings.Replace(update("update", "x", "AMBER", "OFFICIAL"), `"references": ["x"], `, "", 1), http.StatusUnprocessableEntity, []string{"references"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.publishAs("orig-1")
			e.fannedOut("orig-1", alerts.TLPAmber, alerts.MarkingOfficialSensitive)
			// half-1 has a decision receipt but no alert receipt.
			e.receipts(delivery.Receipt{Kind: delivery.KindDecision, AlertID: "half-1", Subscriber: "acme", Target: "a@acme.example", Decision: delivery.Deliver, At: testNow})
			resp, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: tt.body})
			require.Equal(t, tt.want, resp.StatusCode, "%s", body)
			// orig-1's record is on the alerts topic, as the fan-out read it.
			if tt.want != http.StatusAccepted {
				assert.ElementsMatch(t, tt.fields, fields(decodeError(t, body)), "%s", body)
				assert.Len(t, e.published(), 1)
				return
			}
			require.Len(t, e.published(), 2)
		})
	}
}

// The preview of an update gets what the ledger knows of the alert it
// references, so that it shows rule 7's notices exactly as the fan-out
// will decide them.
func TestPreviewOfAnUpdateGetsTheReferencedAlert(t *testing.T) {
	e := newEnv(t)
	e.addPartner("acme", alerts.TLPGreen)
	e.publishAs("orig-1")
	e.fannedOut("orig-1", alerts.TLPGreen, alerts.MarkingOfficial)
	e.receipts(delivery.Receipt{Kind: delivery.KindDecision, AlertID: "orig-1", Subscriber: "acme", Channel: delivery.ChannelEmail,
		Target: "alerts@acme.example", Decision: delivery.Deliver, Mode: delivery.ModeSigned, At: testNow})
	resp, body := e.do(request{method: "POST", path: "/v1/alerts/preview", token: analystToken, body: update("cancel", "orig-1", "AMBER", "OFFICIAL")})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var pr api.PreviewResponse
	require.NoError(t, json.Unmarshal(body, &pr))
	require.Len(t, pr.Decisions, 1)
	d := pr.Decisions[0]
	assert.Equal(t, "acme", d.Subscriber)
	assert.Equal(t, delivery.ModeCancelNotice, d.Mode, "acme had the GREEN original and is not cleared for the AMBER cancel: %+v", d)
	assert.Equal(t, policy.RuleNoLongerEligible, d.Rule)
	assert.Len(t, e.published(), 1, "a preview publishes nothing: only orig-1 is on the alerts topic")
}

func TestUpdateWithLedgerDown(t *testing.T) {
	e := newEnv(t, withKafkaDown)
	resp, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: update("update", "orig-1", "AMBER", "OFFICIAL")})
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
	assert.Empty(t, e.published())
}

func TestPreview(t *testing.T) {
	e := newEnv(t)
	e.addPartner("acme", alerts.TLPAmber)
	e.addPartner("bravo", alerts.TLPGreen)
	e.addPartner("charlie", alerts.TLPRed)
	for _, token := range []string{analystToken, adminToken} {
		resp, body := e.do(request{method: "POST", path: "/v1/alerts/preview", token: token, body: validAlert})
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		var pr api.PreviewResponse
		require.NoError(t, json.Unmarshal(body, &pr))
		// The partners have no OpenPGP keys: AMBER content goes to none of
		// them, the two cleared for it get a key notice.
		assert.Equal(t, map[string]int{"deliver": 0, "notice": 2, "withhold": 1}, pr.Counts)
		require.Len(t, pr.Decisions, 3)
		assert.Equal(t, policy.Decision{
			Subscriber: "bravo", Channel: "email", Target: "alerts@bravo.example", Decision: "withhold",
			Rule: policy.RuleClearance, Reason: "TLP:AMBER exceeds the partner's clearance TLP:GREEN",
		}, pr.Decisions[1])
		assert.Equal(t, policy.RuleNoUsableKey, pr.Decisions[0].Rule)
		require.NotNil(t, pr.Alert)
		assert.Equal(t, alerts.TLPAmber, pr.Alert.TLP, "the alert comes back normalised")
		assert.True(t, alerts.ValidID(pr.Alert.ID), "an id is assigned so that publishing keeps it")
		assert.Equal(t, pr.Alert.Digest(), pr.Digest, "the digest an approval is bound to")
		want := map[string]string{analystToken: "api:alice", adminToken: "api:ops"}[token]
		assert.Equal(t, want, pr.Alert.IssuedBy, "the policy sees the alert as it would be published")
	}
	assert.Empty(t, e.published(), "a preview publishes nothing")
}

// TestPreviewDecidesForEveryPartner: the preview's table has rows for
// every registered partner (PRODUCT.md §8), candidates first as the
// fan-out decides them, then the others by id, each withheld with the rule
// that withheld it; the counts include them.
func TestPreviewDecidesForEveryPartner(t *testing.T) {
	e := newEnv(t)
	e.addPartner("acme", alerts.TLPAmber)
	for _, s := range []*subscribers.Subscriber{
		{ID: "farm", Name: "Farm Ltd", Kind: subscribers.KindBusiness, Sectors: []string{"agriculture"}, Clearance: alerts.TLPRed,
			Email: []subscribers.Email{{Address: "a@farm.example"}}},
		{ID: "closed", Name: "Closed Ltd", Kind: subscribers.KindBusiness, Sectors: []string{"nail-bars"}, Clearance: alerts.TLPRed,
			Status: subscribers.StatusSuspended, Webhooks: []subscribers.Webhook{{URL: "https://hooks.closed.example/h?token=s3cret",
				Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}}},
		{ID: "bare", Name: "Bare Ltd", Kind: subscribers.KindBusiness, Sectors: []string{"nail-bars"}, Clearance: alerts.TLPRed},
	} {
		s.Normalize()
		e.reg.Put(s)
	}
	resp, body := e.do(request{method: "POST", path: "/v1/alerts/preview", token: analystToken, body: validAlert})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var pr api.PreviewResponse
	require.NoError(t, json.Unmarshal(body, &pr))
	type row struct{ subscriber, target, decision, rule string }
	var got []row
	for _, d := range pr.Decisions {
		got = append(got, row{d.Subscriber, d.Target, d.Decision, d.Rule})
	}
	require.Equal(t, []row{
		{"acme", "alerts@acme.example", delivery.Notice, policy.RuleNoUsableKey},
		{"bare", "", delivery.Withhold, policy.RuleSector},
		{"closed", "https://hooks.closed.example/h", delivery.Withhold, policy.RuleSuspended},
		{"farm", "a@farm.example", delivery.Withhold, policy.RuleSector},
	}, got, "webhook URLs without their query, as analysts see them")
	assert.Equal(t, map[string]int{"deliver": 0, "notice": 1, "withhold": 3}, pr.Counts)
	assert.Equal(t, "the partner shares no sector with the alert", pr.Decisions[3].Reason)
	assert.NotContains(t, string(body), "s3cret")
	assert.Empty(t, e.published(), "a preview publishes nothing")
}

// TestPreviewSummarisesAManyPartnersOutsideTheAudience: beyond
// api.OthersListed rows of partners outside the audience, a preview lists
// the audience's rows and summarises the others per rule (the counts
// still count them); ?all=true lists every row.
func TestPreviewSummarisesManyPartnersOutsideTheAudience(t *testing.T) {
	e := newEnv(t)
	e.addPartner("acme", alerts.TLPAmber)
	n := api.OthersListed + 1
	for i := range n {
		s := &subscribers.Subscriber{ID: fmt.Sprintf("farm-%04d", i), Name: "Farm", Kind: subscribers.KindBusiness,
			Sectors: []string{"agriculture"}, Clearance: alerts.TLPRed, Email: []subscribers.Email{{Address: fmt.Sprintf("a@farm-%04d.example", i)}}}
		if i == 0 {
			s.Status = subscribers.StatusSuspended
		}
		s.Normalize()
		e.reg.Put(s)
	}
	resp, body := e.do(request{method: "POST", path: "/v1/alerts/preview", token: analystToken, body: validAlert})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var pr api.PreviewResponse
	require.NoError(t, json.Unmarshal(body, &pr))
	require.Len(t, pr.Decisions, 1, "the audience's rows only")
	assert.Equal(t, "acme", pr.Decisions[0].Subscriber)
	assert.Equal(t, &api.Others{LeftOut: n, Rules: map[string]int{policy.RuleSector: n - 1, policy.RuleSuspended: 1}}, pr.Others)
	assert.Equal(t, map[string]int{"deliver": 0, "notice": 1, "withhold": n}, pr.Counts)

	resp, body = e.do(request{method: "POST", path: "/v1/alerts/preview?all=true", token: analystToken, body: validAlert})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	pr = api.PreviewResponse{}
	require.NoError(t, json.Unmarshal(body, &pr))
	require.Len(t, pr.Decisions, 1+n, "every partner's row")
	assert.Nil(t, pr.Others)
	assert.Equal(t, "farm-0000", pr.Decisions[1].Subscriber)
	assert.Equal(t, policy.RuleSuspended, pr.Decisions[1].Rule)
}

// TestPreviewSummarisesOnlyWithholds: a row after the audience's that is
// not a withhold (a partner that became a candidate while the preview was
// decided) is listed, never counted among the withheld others.
func TestPreviewSummarisesOnlyWithholds(t *testing.T) {
	n := api.OthersListed + 1
	e := newEnv(t, func(s *api.Server) {
		s.Decide = func(*alerts.Alert, map[string]*ledger.Alert, time.Time) ([]policy.Decision, int) {
			ds := []policy.Decision{{Subscriber: "acme", Channel: delivery.ChannelEmail, Target: "a@acme.example", Decision: delivery.Deliver, Rule: policy.RuleEmailSigned}}
			for i := range n {
				ds = append(ds, policy.Decision{Subscriber: fmt.Sprintf("farm-%04d", i), Decision: delivery.Withhold, Rule: policy.RuleSector})
			}
			return append(ds, policy.Decision{Subscriber: "late", Channel: delivery.ChannelEmail, Target: "a@late.example", Decision: delivery.Deliver, Rule: policy.RuleEmailSigned}), 1
		}
	})
	resp, body := e.do(request{method: "POST", path: "/v1/alerts/preview", token: analystToken, body: validAlert})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var pr api.PreviewResponse
	require.NoError(t, json.Unmarshal(body, &pr))
	var listed []string
	for _, d := range pr.Decisions {
		listed = append(listed, d.Subscriber)
	}
	assert.Equal(t, []string{"acme", "late"}, listed)
	assert.Equal(t, &api.Others{LeftOut: n, Rules: map[string]int{policy.RuleSector: n}}, pr.Others)
	assert.Equal(t, map[string]int{"deliver": 2, "notice": 0, "withhold": n}, pr.Counts)
}

func TestPreviewThenPublishTheSameAlert(t *testing.T) {
	e := newEnv(t)
	e.addPartner("acme", alerts.TLPAmber)
	resp, body := e.do(request{method: "POST", path: "/v1/alerts/preview", token: analystToken, body: validAlert})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var pr api.PreviewResponse
	require.NoError(t, json.Unmarshal(body, &pr))
	// The console sends back the previewed alert (issued_* are ignored).
	again, err := json.Marshal(pr.Alert)
	require.NoError(t, err)
	resp, body = e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: string(again)})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)
	got := e.published()
	require.Len(t, got, 1)
	assert.Equal(t, pr.Alert.ID, got[0].ID)
}

func TestPreviewEscapesHTMLInJSON(t *testing.T) {
	e := newEnv(t)
	xss := strings.Replace(validAlert, "Car wash in Leeds recruiting via social media", `<script>alert(1)</script>`, 1)
	resp, body := e.do(request{method: "POST", path: "/v1/alerts/preview", token: analystToken, body: xss})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	assert.NotContains(t, string(body), "<script>")
	assert.Contains(t, string(body), `\u003cscript\u003e`)
}

func ledgerWithDeliveries(e *env) {
	at := testNow.Add(-time.Minute)
	e.receipts(
		delivery.Receipt{Kind: delivery.KindAlert, AlertID: "a1", Type: alerts.TypeAlert, TLP: alerts.TLPAmber, Marking: alerts.MarkingOfficial, IssuedBy: "api:alice", At: at},
		delivery.Receipt{Kind: delivery.KindDecision, AlertID: "a1", Subscriber: "acme", Channel: delivery.ChannelEmail, Target: "alerts@acme.example",
			Decision: delivery.Deliver, Mode: delivery.ModeEncrypted, Rule: policy.RuleEmailCrypt, Reason: "encrypted", At: at},
		delivery.Receipt{Kind: delivery.KindDecision, AlertID: "a1", Subscriber: "bravo", Channel: delivery.ChannelEmail, Target: "alerts@bravo.example",
			Decision: delivery.Withhold, Rule: policy.RuleClearance, Reason: "TLP:AMBER exceeds clearance GREEN", At: at},
		delivery.Receipt{Kind: delivery.KindDecision, AlertID: "a1", Subscriber: "charlie", Channel: delivery.ChannelWebhook, Target: "https://charlie.example/hook",
			Decision: delivery.Deliver, Mode: delivery.ModeSigned, Rule: policy.RuleWebhookSign, Reason: "signed", At: at},
		delivery.Receipt{Kind: delivery.KindOutcome, AlertID: "a1", Subscriber: "acme", Target: "alerts@acme.example", State: delivery.StateDelivered, Attempt: 1, At: testNow},
		delivery.Receipt{Kind: delivery.KindOutcome, AlertID: "a1", Subscriber: "charlie", Target: "https://charlie.example/hook", State: delivery.StateRetrying,
			Attempt: 1, Error: "HTTP 503", RetryAt: testNow.Add(time.Minute), At: testNow},
	)
}

func TestAlertStatusAndDeliveries(t *testing.T) {
	e := newEnv(t)
	ledgerWithDeliveries(e)

	resp, body := e.do(request{method: "GET", path: "/v1/alerts/a1", token: analystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var st api.AlertStatus
	require.NoError(t, json.Unmarshal(body, &st))
	assert.Equal(t, api.AlertStatus{
		ID: "a1", State: record.StatePublished, Type: alerts.TypeAlert, TLP: alerts.TLPAmber, Marking: alerts.MarkingOfficial,
		Provenance: view.Provenance{IssuedBy: "api:alice"}, FannedOut: testNow.Add(-time.Minute), Counts: map[string]int{"delivered": 1, "withheld": 1, "retrying": 1}, Done: false,
	}, st)

	resp, body = e.do(request{method: "GET", path: "/v1/alerts/a1/deliveries", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var ds api.Deliveries
	require.NoError(t, json.Unmarshal(body, &ds))
	assert.Equal(t, "a1", ds.ID)
	assert.False(t, ds.Done)
	require.Len(t, ds.Deliveries, 3)
	byPartner := map[string]ledger.Entry{}
	for _, d := range ds.Deliveries {
		byPartner[d.Subscriber] = d
	}
	assert.Equal(t, delivery.StateDelivered, byPartner["acme"].State)
	assert.Equal(t, delivery.StateWithheld, byPartner["bravo"].State)
	assert.Equal(t, policy.RuleClearance, byPartner["bravo"].Rule, "who did not get it, and why")
	assert.Equal(t, "TLP:AMBER exceeds clearance GREEN", byPartner["bravo"].Reason)
	assert.Equal(t, delivery.StateRetrying, byPartner["charlie"].State)
	assert.Equal(t, "HTTP 503", byPartner["charlie"].LastError)

	// The last outcome settles it.
	e.receipts(delivery.Receipt{Kind: delivery.KindOutcome, AlertID: "a1", Subscriber: "charlie", Target: "https://charlie.example/hook", State: delivery.StateDelivered, Attempt: 2, At: testNow})
	_, body = e.do(request{method: "GET", path: "/v1/alerts/a1", token: analystToken})
	require.NoError(t, json.Unmarshal(body, &st))
	assert.True(t, st.Done)

	for _, path := range []string{"/v1/alerts/unknown", "/v1/alerts/unknown/deliveries", "/v1/alerts/..%2Fetc/deliveries", "/v1/alerts/-bad"} {
		resp, body = e.do(request{method: "GET", path: path, token: analystToken})
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", path, body)
		decodeError(t, body)
	}

	down := newEnv(t, withKafkaDown)
	resp, _ = down.do(request{method: "GET", path: "/v1/alerts/a1/deliveries", token: analystToken})
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestSubscribers(t *testing.T) {
	e := newEnv(t)
	record := `{"name": "Acme Car Wash", "kind": "business", "sectors": ["car-washes"], "clearance": "tlp:amber",
		"email": [{"address": "alerts@acme.example"}],
		"webhooks": [{"url": "https://acme.example/herald", "secrets": ["` + testSecret + `"]}]}`

	resp, body := e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken, body: record})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Len(t, e.wr.stored(), 1)
	stored := e.wr.stored()[0]
	assert.Equal(t, "acme", stored.ID, "the id comes from the path")
	assert.Equal(t, alerts.TLPAmber, stored.Clearance, "normalised before storing")
	assert.Equal(t, subscribers.StatusActive, stored.Status)
	assert.Equal(t, []string{testSecret}, stored.Webhooks[0].Secrets)
	assert.NotContains(t, string(body), testSecret, "secrets are not returned")

	resp, body = e.do(request{method: "GET", path: "/v1/subscribers/acme", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.NotContains(t, string(body), testSecret)
	var got subscribers.Subscriber
	require.NoError(t, json.Unmarshal(body, &got))
	assert.Equal(t, "Acme Car Wash", got.Name)
	require.Len(t, got.Webhooks, 1)
	require.Len(t, got.Webhooks[0].Secrets, 1)
	assert.True(t, strings.HasPrefix(got.Webhooks[0].Secrets[0], "redacted:"), got.Webhooks[0].Secrets[0])
	assert.Equal(t, testSecret, e.reg.Get("acme").Webhooks[0].Secrets[0], "redaction never touches the registry")

	// A fetched record can be edited and put back: redacted secrets stand
	// for the stored ones.
	got.Name = "Acme Car Wash Group"
	edited, err := json.Marshal(got)
	require.NoError(t, err)
	resp, body = e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken, body: string(edited)})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Len(t, e.wr.stored(), 2)
	assert.Equal(t, "Acme Car Wash Group", e.wr.stored()[1].Name)
	assert.Equal(t, []string{testSecret}, e.wr.stored()[1].Webhooks[0].Secrets)

	resp, body = e.do(request{method: "GET", path: "/v1/subscribers", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var list api.SubscriberList
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Subscribers, 1)
	assert.NotContains(t, string(body), testSecret)

	resp, _ = e.do(request{method: "DELETE", path: "/v1/subscribers/acme", token: adminToken})
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, []string{"acme"}, e.wr.deleted())
	resp, body = e.do(request{method: "GET", path: "/v1/subscribers/acme", token: adminToken})
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s", body)
}

func TestSubscriberRejects(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		body   string
		fields []string
	}{
		{"id differs from path", "/v1/subscribers/acme", `{"id": "other", "name": "X", "kind": "ngo", "clearance": "GREEN"}`, []string{"id"}},
		{"every bad field", "/v1/subscribers/acme", `{"name": "", "kind": "shop", "clearance": "BLUE", "sectors": ["bakeries"],
			"email": [{"address": "Acme <a@acme.example>"}], "webhooks": [{"url": "ftp://acme.example", "secrets": ["hunter2"]}]}`,
			[]string{"name", "kind", "clearance", "sectors[0]", "email[0].address", "webhooks[0].url", "webhooks[0].secrets[0]"}},
		{"bad id in path", "/v1/subscribers/Not%20A%20Slug", `{"name": "X", "kind": "ngo", "clearance": "GREEN"}`, []string{"id"}},
		{"unknown field", "/v1/subscribers/acme", `{"name": "X", "kind": "ngo", "clearance": "GREEN", "colour": "red"}`, []string{"colour"}},
		{"redacted secret that matches nothing", "/v1/subscribers/acme", `{"name": "X", "kind": "ngo", "clearance": "GREEN",
			"webhooks": [{"url": "https://acme.example/h", "secrets": ["redacted:0011223344556677"]}]}`, []string{"webhooks[0].secrets[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			resp, body := e.do(request{method: "PUT", path: tt.path, token: adminToken, body: tt.body})
			require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
			assert.Subset(t, fields(decodeError(t, body)), tt.fields, "%s", body)
			assert.Empty(t, e.wr.stored())
		})
	}
}

func TestCheckSubscriberIsUsed(t *testing.T) {
	var (
		mu      sync.Mutex
		checked []string
	)
	e := newEnv(t, func(s *api.Server) {
		s.CheckSubscriber = func(sub *subscribers.Subscriber) error {
			mu.Lock()
			defer mu.Unlock()
			checked = append(checked, sub.ID)
			v := &alerts.ValidationError{What: "invalid subscriber"}
			v.Add("email[0].pgp_key", "the key has expired")
			return v
		}
	})
	resp, body := e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken,
		body: `{"name": "X", "kind": "ngo", "clearance": "GREEN", "email": [{"address": "a@acme.example", "pgp_key": "x"}]}`})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	er := decodeError(t, body)
	assert.Equal(t, "invalid subscriber", er.Error)
	assert.Equal(t, []alerts.FieldError{{Field: "email[0].pgp_key", Message: "the key has expired"}}, er.Errors)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"acme"}, checked)
}

func TestSigningKey(t *testing.T) {
	key := "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxjMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n"
	e := newEnv(t, func(s *api.Server) { s.SigningKey = []byte(key) })
	resp, body := e.do(request{method: "GET", path: "/v1/signing-key"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/pgp-keys", resp.Header.Get("Content-Type"))
	assert.Equal(t, key, string(body))

	e = newEnv(t)
	resp, body = e.do(request{method: "GET", path: "/v1/signing-key"})
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	decodeError(t, body)
}

func TestProbes(t *testing.T) {
	var ready atomic.Pointer[error]
	e := newEnv(t, func(s *api.Server) {
		s.Ready = func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return fmt.Errorf("readiness called without a deadline")
			}
			if err := ready.Load(); err != nil {
				return *err
			}
			return nil
		}
	})
	resp, body := e.do(request{method: "GET", path: "/healthz"})
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok\n", string(body))

	resp, _ = e.do(request{method: "GET", path: "/readyz"})
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	notReady := fmt.Errorf("subscriber registry not caught up")
	ready.Store(&notReady)
	resp, body = e.do(request{method: "GET", path: "/readyz"})
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Contains(t, string(body), "subscriber registry not caught up")

	resp, _ = e.do(request{method: "POST", path: "/healthz", body: "{}"})
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert})
	e.do(request{method: "GET", path: "/v1/alerts/some-id"})
	resp, body := e.do(request{method: "GET", path: "/metrics"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	text := string(body)
	assert.Contains(t, text, `herald_http_requests_total{code="202",route="POST /v1/alerts"} 1`)
	assert.Contains(t, text, `herald_http_requests_total{code="401",route="GET /v1/alerts/{id}"} 1`)
	assert.Contains(t, text, `herald_http_request_duration_seconds_count{route="POST /v1/alerts"} 1`)
	assert.NotContains(t, text, "some-id", "ids stay out of labels")
}

func TestMetricsDefaultGatherer(t *testing.T) {
	e := newEnv(t, func(s *api.Server) { s.Metrics = nil })
	e.do(request{method: "GET", path: "/healthz"})
	resp, body := e.do(request{method: "GET", path: "/metrics"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "go_goroutines", "the default gatherer's metrics")
	assert.Contains(t, string(body), `herald_http_requests_total{code="200",route="GET /healthz"} 1`)
	// A second handler on the default gatherer does not collide.
	newEnv(t, func(s *api.Server) { s.Metrics = nil })
}

func TestHandlerTwiceOnOneRegistry(t *testing.T) {
	e := newEnv(t)
	require.NotPanics(t, func() { e.server.Handler() })
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	for _, req := range []request{
		{method: "GET", path: "/"},
		{method: "GET", path: "/healthz"},
		{method: "GET", path: "/v1/alerts/x"},
		{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert},
		{method: "GET", path: "/nowhere"},
		{method: "GET", path: "/v1/nowhere", token: analystToken},
	} {
		resp, _ := e.do(req)
		h := resp.Header
		assert.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), req.path)
		assert.Contains(t, h.Get("Content-Security-Policy"), "default-src 'none'", req.path)
		assert.Contains(t, h.Get("Content-Security-Policy"), "frame-ancestors 'none'", req.path)
		assert.Equal(t, "DENY", h.Get("X-Frame-Options"), req.path)
		assert.Equal(t, "no-referrer", h.Get("Referrer-Policy"), req.path)
		assert.Equal(t, "no-store", h.Get("Cache-Control"), req.path)
	}
	resp, body := e.do(request{method: "GET", path: "/v1/nowhere", token: analystToken})
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	decodeError(t, body)
}
