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
// Herald did not write it cannot name its own refusal: headers of it
// named reason, error or source, and its authenticators, are dropped from
// the copy, whose first (and only) reason, error and source are the
// refusal's; its other headers are kept.
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
	assert.Equal(t, []string{"trace", "reason", "error", "source"}, names(r))
	assert.Equal(t, "herald.alerts/1/9", bus.Header(r, bus.HeaderSource))
	assert.Equal(t, "unissued", bus.Header(r, bus.HeaderReason))
	assert.True(t, slices.Equal([]byte("v"), r.Value))
}
