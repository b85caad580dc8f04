package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/subscribers"
)

// TestSettleRewritesTheHeldKeyAsItIs: the partner's upload is read back
// after the registry took an overlay that is not in force (made for an
// earlier incarnation of the record) and then ignored another at the
// same seq; the administrator's key is in force. settle writes again
// the overlay the registry holds, exactly as it is — never the
// administrator's key as the partner's own, credited to this request.
func TestSettleRewritesTheHeldKeyAsItIs(t *testing.T) {
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	bob, _ := pgptest.RecipientKey(t, pgptest.Bob)
	admin, _ := pgptest.RecipientKey(t, pgptest.V6)
	held := subscribers.KeyOverlay{Subscriber: "acme", Address: acmeMail, PGPKey: bob, By: "partner:acme-before",
		At: testNow.Add(-48 * time.Hour).UTC(), Incarnation: "an-earlier-incarnation", Seq: 5}
	ignored := held
	ignored.PGPKey, ignored.By = alice, "partner:another-process"
	var (
		e    *env
		once sync.Once
	)
	e = newEnv(t, withPartners, func(s *api.Server) {
		s.Partner.Sync = func(context.Context) error {
			// Once the partner's change is written (the read back, not
			// the catch-up before it).
			for _, o := range e.reg.KeyOverlays("acme") {
				if o.By == "partner:acme-soc" {
					once.Do(func() {
						require.True(t, e.reg.PutKeyOverlay(held))
						require.False(t, e.reg.PutKeyOverlay(ignored))
					})
				}
			}
			return nil
		}
	})
	rec := *e.reg.Record("acme")
	rec.Email = append([]subscribers.Email(nil), rec.Email...)
	rec.Email[0].PGPKey = admin
	require.NoError(t, e.wr.Put(t.Context(), "api:ops", "", []*subscribers.Subscriber{&rec}, nil))

	resp, body := e.do(request{method: "PUT", path: "/v1/partner/email/" + acmeMail + "/key", token: partnerToken,
		contentType: "application/pgp-keys", body: alice})
	require.Equal(t, http.StatusConflict, resp.StatusCode, "%s", body)

	var last subscribers.KeyOverlay
	key := subscribers.KeyOverlayKey("acme", acmeMail)
	require.NoError(t, e.bus.ReadAll(t.Context(), bus.TopicSubscribers, func(m kafka.Message) error {
		if string(m.Key) == key {
			last = subscribers.KeyOverlay{}
			if len(m.Value) == 0 {
				return nil // a tombstone
			}
			return json.Unmarshal(m.Value, &last)
		}
		return nil
	}))
	require.Equal(t, held.By, last.By, "the overlay held, written again: not credited to this request")
	require.True(t, held.At.Equal(last.At))
	require.True(t, subscribers.SameKey(held.PGPKey, last.PGPKey), "the partner's key held, not the administrator's")
	require.Equal(t, held.Incarnation, last.Incarnation)
	require.Equal(t, held.Over, last.Over)
	require.Greater(t, last.Seq, held.Seq, "placed after the last read")
}
