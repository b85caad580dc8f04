package app_test

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/deliver/email"
)

// TestShortAuditTopicStopsOnlyTheAPIRole: the audit topic exists with a
// stock cluster's 7 days. `herald serve` (every role) does not start the
// api role, which alone reads it, and says why at error level, naming
// the topic, its setting and both durations; the fan-out and deliver
// roles start, and an alert is delivered. herald_role_up on
// metrics.listen (there is no API listener) says which roles run.
func TestShortAuditTopicStopsOnlyTheAPIRole(t *testing.T) {
	e := newServeEnv(t, map[string][]kafka.ConfigEntry{"herald.audit": {{ConfigName: "retention.ms", ConfigValue: "604800000"}}})
	e.cfg.Metrics.Listen = "127.0.0.1:0"
	b := e.cluster.Open(t, e.cfg.Kafka)
	register(t, b, acmeCarWash())

	h, _, err := e.serve(t, app.Options{})
	require.NoError(t, err, "serve must start the roles that do not read the audit topic:\n%s", e.logs)
	const why = "herald.audit keeps records for 7d, kafka.retention.audit asks for 400d"
	assert.Empty(t, h.APIAddr(), "no API listener")
	logs := e.logs.String()
	assert.Regexp(t, `level=ERROR msg="role not started[^\n]*role=api[^\n]*`+regexp.QuoteMeta(why)+`[^\n]*kafka\.retention\.accept_shorter`, logs)
	assert.Regexp(t, `msg="herald running" roles=fanout,deliver [^\n]*stopped=api`, logs)

	publish(t, b, carWashAlert("op-audit-short-1"))
	require.Eventually(t, func() bool { return e.sink.Count() >= 1 }, 60*time.Second, 50*time.Millisecond,
		"the alert is fanned out and delivered:\n%s", e.logs)
	ver, err := email.Verify(e.sink.Messages()[0].Data, pgptestPublic(t), nil, nil)
	require.NoError(t, err)
	assert.Contains(t, ver.Text, "Car wash recruits through a fake agency")

	addr := regexp.MustCompile(`msg=listening key=metrics\.listen addr=(\S+)`).FindStringSubmatch(e.logs.String())
	require.NotNil(t, addr, "the metrics listener:\n%s", e.logs)
	code, body := call(t, "GET", "http://"+addr[1]+"/metrics", "", "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `herald_role_up{role="api"} 0`)
	assert.Contains(t, body, `herald_role_up{role="fanout"} 1`)
	assert.Contains(t, body, `herald_role_up{role="deliver"} 1`)
}

// TestShortDeliveriesTopicStopsItsWritersAndLeavesTheAPIReady: a deliveries
// topic that keeps records for 1 day stops the deliver role, which reads
// it, and the fan-out, which fills it: jobs written into a topic no one
// may read would be lost unread after a day, where alerts wait in the
// alerts topic (400 days). A role stopped by a topic's retention does not
// take the API out of service (its /readyz answers for the API's traffic);
// herald_role_up says which roles are stopped.
func TestShortDeliveriesTopicStopsItsWritersAndLeavesTheAPIReady(t *testing.T) {
	e := newServeEnv(t, map[string][]kafka.ConfigEntry{"herald.deliveries": {{ConfigName: "retention.ms", ConfigValue: "86400000"}}})
	h, _, err := e.serve(t, app.Options{})
	require.NoError(t, err, "%s", e.logs)
	require.NotEmpty(t, h.APIAddr())
	assert.Regexp(t, `msg="herald running" roles=api [^\n]*stopped=fanout,deliver\n`, e.logs.String())
	base := "http://" + h.APIAddr()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body := call(c, "GET", base+"/readyz", "", "")
		assert.Equal(c, http.StatusOK, code, body)
	}, 30*time.Second, 50*time.Millisecond, "the api role runs: the API is ready once its view caught up")
	code, body := call(t, "GET", base+"/metrics", "", "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `herald_role_up{role="api"} 1`)
	assert.Contains(t, body, `herald_role_up{role="fanout"} 0`)
	assert.Contains(t, body, `herald_role_up{role="deliver"} 0`)
	assert.Contains(t, e.logs.String(), "herald.deliveries keeps records for 1d, kafka.retention.deliveries asks for 7d")
}

// TestNoRoleCanStartFailsAsBefore: when every requested role reads a topic
// that keeps records for too short a time, Run fails with each role's
// error, as serve did before roles stopped alone: the subscribers topic,
// which every role reads, made by hand (not compacted); the audit topic
// short for the api role alone; or the alerts topic short (api and
// fanout) with no signing key for the deliver role.
func TestNoRoleCanStartFailsAsBefore(t *testing.T) {
	e := newServeEnv(t, map[string][]kafka.ConfigEntry{
		"herald.subscribers": nil,
		"audit7d.audit":      {{ConfigName: "retention.ms", ConfigValue: "604800000"}},
		"alerts7d.alerts":    {{ConfigName: "retention.ms", ConfigValue: "604800000"}},
	})
	signingKey := e.cfg.Signing.KeyFile
	h, _, err := e.serve(t, app.Options{})
	require.Error(t, err)
	require.Nil(t, h)
	var re *bus.RetentionError
	require.ErrorAs(t, err, &re)
	for _, r := range app.AllRoles {
		assert.Regexp(t, `(?m)^`+r+` role not started: kafka topics keep records for too short a time: herald\.subscribers is not compacted`, err.Error())
	}
	assert.ErrorContains(t, err, "kafka.retention.accept_shorter")
	assert.NotContains(t, e.logs.String(), "herald running")

	e.cfg.Kafka.TopicPrefix = "audit7d."
	h, _, err = e.serve(t, app.Options{Roles: []string{app.RoleAPI}, Explicit: true})
	require.Nil(t, h)
	assert.EqualError(t, err, "api role not started: kafka topics keep records for too short a time: audit7d.audit keeps records for 7d, kafka.retention.audit asks for 400d; raise its retention.ms (or set kafka.retention.accept_shorter: true to accept losing older records)")

	// The alerts topic short and no signing key: the roles the check
	// lets start come down to a deliver role that cannot sign.
	e.cfg.Kafka.TopicPrefix = "alerts7d."
	e.cfg.Signing.KeyFile = ""
	h, _, err = e.serve(t, app.Options{})
	require.Nil(t, h)
	require.Error(t, err)
	for _, r := range []string{app.RoleAPI, app.RoleFanout} {
		assert.Regexp(t, `(?m)^`+r+` role not started: kafka topics keep records for too short a time: alerts7d\.alerts keeps records for 7d`, err.Error())
	}
	assert.Regexp(t, `(?m)^deliver role not started: signing\.key_file is not set`, err.Error())
	assert.ErrorIs(t, err, app.ErrNoSigner)
	e.cfg.Signing.KeyFile = signingKey

	// The operator accepts the shorter retention: every role starts.
	e.cfg.Kafka.TopicPrefix = "audit7d."
	e.cfg.Kafka.Retention.AcceptShorter = true
	h, _, err = e.serve(t, app.Options{})
	require.NoError(t, err)
	require.NotNil(t, h)
	assert.Regexp(t, `msg="herald running" roles=api,fanout,deliver [^\n]*embedded=false\n`, e.logs.String())
	assert.Regexp(t, `level=WARN msg="kafka topic retention shorter than configured, accepted by kafka.retention.accept_shorter" problem="audit7d.audit keeps records for 7d`, e.logs.String())
}
