package bus_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
)

// TestRejectionDropsTheRefusedRecordsOwnMetadata: a record refused as
// Herald did not write it cannot name its own refusal, nor have Herald
// vouch for any header of its choosing: the copy carries only the
// refusal's reason, error and source, which herald-auth-headers then
// covers. The refused record's own headers stay where its source names.
func TestRejectionDropsTheRefusedRecordsOwnMetadata(t *testing.T) {
	m := kafka.Message{Topic: "herald.alerts", Partition: 1, Offset: 9, Key: []byte("a1"), Value: []byte("v"), Time: time.Now(),
		Headers: []kafka.Header{
			{Key: bus.HeaderSource, Value: []byte("herald.alerts/0/3")},
			{Key: "trace", Value: []byte("x")},
			{Key: bus.HeaderReason, Value: []byte("forged")},
			{Key: bus.HeaderError, Value: []byte("forged")},
			{Key: busauth.Header, Value: []byte("v1=x:y")},
			{Key: busauth.HeadersHeader, Value: []byte("v1=x:y")},
		}}
	r := bus.Rejection(m, "unissued", errors.New("no herald-auth header"))
	assert.Equal(t, []string{"reason", "error", "source"}, names(r), "no header of the refused record's choosing")
	assert.Equal(t, "herald.alerts/1/9", bus.Header(r, bus.HeaderSource))
	assert.Equal(t, "unissued", bus.Header(r, bus.HeaderReason))
	assert.True(t, slices.Equal([]byte("v"), r.Value))
}
