package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPartnerRecordRefusesAKeyTwiceAndBytesNotUTF8: a partner record put
// through the admin API whose key is given twice (also in another case)
// or whose text is not UTF-8 is refused naming the field, where
// encoding/json kept the last "clearance" (who gets alerts changed
// unseen) and made the bytes U+FFFD.
func TestPartnerRecordRefusesAKeyTwiceAndBytesNotUTF8(t *testing.T) {
	const rec = `{"name": "Acme", "kind": "business", "sectors": ["car-washes"], "clearance": "GREEN",
		"email": [{"address": "a@acme.example"}, {"address": "b@acme.example"}]}`
	tests := []struct{ name, body, field string }{
		{"a key twice", strings.Replace(rec, `"kind"`, `"clearance": "RED", "kind"`, 1), "clearance"},
		{"in another case", strings.Replace(rec, `"kind"`, `"Sectors": ["care"], "kind"`, 1), "sectors"},
		{"nested", strings.Replace(rec, `{"address": "b@acme.example"}`, `{"address": "b@acme.example", "Address": "x@evil.example"}`, 1), "email[1].Address"},
		{"not UTF-8", strings.Replace(rec, `"Acme"`, "\"Acme \xffLtd\"", 1), "name"},
		{"an array", "[" + rec + "]", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			resp, body := e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken, body: tt.body})
			er := decodeError(t, body)
			if tt.field == "" {
				require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", body)
				assert.Equal(t, "the subscriber must be a JSON object, not an array", er.Error)
			} else {
				require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
				assert.Equal(t, "invalid subscriber", er.Error)
				assert.Equal(t, []string{tt.field}, fields(er))
			}
			assert.Nil(t, e.reg.Get("acme"), "nothing is written")
		})
	}
}

// TestRequestBodiesRefuseAKeyTwiceAndBytesNotUTF8: the other bodies a
// person writes (an administrator's reason, a partner's acknowledgement)
// are screened alike.
func TestRequestBodiesRefuseAKeyTwiceAndBytesNotUTF8(t *testing.T) {
	e := newEnv(t)
	for name, c := range map[string]struct{ path, token, body, field string }{
		"reason twice":          {"/v1/subscribers/acme/suspend", adminToken, `{"reason": "vetting lapsed", "Reason": "x"}`, "Reason"},
		"reason not UTF-8":      {"/v1/subscribers/acme/suspend", adminToken, "{\"reason\": \"vetting \xfflapsed\"}", "reason"},
		"ack note twice":        {"/v1/partner/alerts/op-1/ack", partnerToken, `{"note": "seen", "note": "not seen"}`, "note"},
		"ack note not UTF-8":    {"/v1/partner/alerts/op-1/ack", partnerToken, "{\"note\": \"se\xffen\"}", "note"},
		"replay ids twice":      {"/v1/partner/dead/replay", partnerToken, `{"ids": ["a"], "IDS": ["b"]}`, "IDS"},
		"approval digest twice": {"/v1/alerts/op-1/approve", analystToken, `{"digest": "sha256:00", "digest": "sha256:01"}`, "digest"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := e.do(request{method: "POST", path: c.path, token: c.token, body: c.body})
			require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
			er := decodeError(t, body)
			assert.Equal(t, "invalid request", er.Error)
			assert.Equal(t, []string{c.field}, fields(er))
		})
	}
	resp, body := e.do(request{method: "POST", path: "/v1/partner/alerts/op-1/ack", token: partnerToken, body: `["seen"]`})
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", body)
	assert.Equal(t, "the request must be a JSON object, not an array", decodeError(t, body).Error)
}
