package app_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/deliver/email"
)

// TestAckLinkFromEmail: the alert's email carries a link to the api role;
// opening it (as a mail scanner would) records nothing; pressing its
// button records the partner's acknowledgement, which the analysts see.
func TestAckLinkFromEmail(t *testing.T) {
	e := newServeEnv(t, nil)
	const analyst = "hrld_analyst_e2e_5b1f"
	e.cfg.API.Tokens = []config.Token{{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(analyst)}}
	b := e.cluster.Open(t, e.cfg.Kafka)
	register(t, b, acmeCarWash())
	// The roles in the reverse of their start order: the deliver role's
	// links must still name the port the api role binds.
	addr := e.start(t, app.RoleDeliver, app.RoleFanout, app.RoleAPI).APIAddr()

	a := carWashAlert("op-ack-1")
	publish(t, b, a)

	require.Eventually(t, func() bool { return e.sink.Count() >= 1 }, 60*time.Second, 50*time.Millisecond, "the alert's email")
	ver, err := email.Verify(e.sink.Messages()[0].Data, pgptestPublic(t), nil, nil)
	require.NoError(t, err)
	link := regexp.MustCompile(`http://` + regexp.QuoteMeta(addr) + `/ack/[A-Za-z0-9_-]+`).FindString(ver.Text)
	require.NotEmpty(t, link, "the signed text carries the link:\n%s", ver.Text)

	acks := func() int {
		code, body := call(t, "GET", "http://"+addr+"/v1/alerts/"+a.ID, analyst, "")
		require.Equal(t, http.StatusOK, code, body)
		var st api.AlertStatus
		require.NoError(t, json.Unmarshal([]byte(body), &st))
		assert.NotEmpty(t, st.IssuedBy)
		assert.False(t, st.IssuedAt.IsZero(), "a fanned-out alert's status says when it was issued, as the alert list does")
		for _, k := range st.Acks {
			assert.Equal(t, "acme", k.Subscriber)
			assert.Equal(t, "email link", k.By)
		}
		return len(st.Acks)
	}
	for range 2 {
		code, body := call(t, "GET", link, "", "")
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, "Confirm receipt")
	}
	assert.Zero(t, acks(), "opening the link records nothing")
	code, body := call(t, "POST", link, "", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "Receipt confirmed")
	assert.Equal(t, 1, acks())
	code, body = call(t, "POST", link, "", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "already acknowledged")
	assert.Equal(t, 1, acks())
}
