package fanout

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/stretchr/testify/require"
)

// TestJobWireMatchesJob keeps jobWire in step with delivery.Job: the same
// JSON for the same job, and no Job field forgotten.
func TestJobWireMatchesJob(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	a := &alerts.Alert{ID: "a1", Title: "t", Severity: "minor", TLP: "GREEN", Marking: "OFFICIAL", IssuedAt: &at}
	aj, err := json.Marshal(a)
	require.NoError(t, err)
	for _, nb := range []time.Time{{}, at} {
		job := delivery.Job{ID: "msg_x", Alert: a, Subscriber: "s", Channel: "email", Target: "x@y.example", Mode: "signed", NotBefore: nb}
		wire := jobWire{ID: "msg_x", Alert: aj, Subscriber: "s", Channel: "email", Target: "x@y.example", Mode: "signed", NotBefore: nb}
		want, err := json.Marshal(job)
		require.NoError(t, err)
		got, err := json.Marshal(wire)
		require.NoError(t, err)
		require.JSONEq(t, string(want), string(got))
	}
	// Every field of Job but History (empty in a new job) is in jobWire.
	jt, wt := reflect.TypeFor[delivery.Job](), reflect.TypeFor[jobWire]()
	for i := range jt.NumField() {
		f := jt.Field(i)
		if f.Name == "History" {
			continue
		}
		_, ok := wt.FieldByName(f.Name)
		require.True(t, ok, "jobWire lacks %s", f.Name)
	}
}
