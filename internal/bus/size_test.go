package bus

import (
	"bytes"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/crypto/busauth"
)

// TestMessageSizeAsWritten: messageSize estimates a record the same
// before Write signs it (the size check) and after (the request split), and
// counts herald-auth-headers only for a record with other headers: a
// delivery job or receipt, which gets herald-auth alone, is not sized as
// if it carried two authenticators.
func TestMessageSizeAsWritten(t *testing.T) {
	keys, err := busauth.New(bytes.Repeat([]byte{1}, busauth.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]kafka.Message{
		"job":         {Key: []byte("acme"), Value: []byte(`{"id":"d1"}`)},
		"dead letter": {Key: []byte("acme"), Value: []byte(`{"id":"d1"}`), Headers: []kafka.Header{{Key: "reason", Value: []byte("exhausted")}}},
	} {
		signed := m
		signed.Headers = sign(keys, TopicDead, &m)
		before, after := messageSize(&m), messageSize(&signed)
		if before != after {
			t.Errorf("%s: %d bytes before signing, %d after", name, before, after)
		}
		actual := len(m.Key) + len(m.Value)
		for _, h := range signed.Headers {
			actual += len(h.Key) + len(h.Value)
		}
		if after < actual || after > actual+128 {
			t.Errorf("%s: estimated %d bytes for %d of key, value and headers", name, after, actual)
		}
	}
}
