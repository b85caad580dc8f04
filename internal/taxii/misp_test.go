package taxii_test

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/formats"
	"github.com/herald-alerts/herald/subscribers"
)

// feed requests a file of the MISP feed as MISP does: with the partner
// token in a custom Authorization header, no Accept.
func (e *env) feed(file, token string) response {
	e.t.Helper()
	return e.do("/misp/feed/"+file, func(h http.Header) {
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
	})
}

type feedEvent struct {
	Event struct {
		UUID          string            `json:"uuid"`
		Info          string            `json:"info"`
		Date          string            `json:"date"`
		Analysis      string            `json:"analysis"`
		ThreatLevelID string            `json:"threat_level_id"`
		Timestamp     string            `json:"timestamp"`
		Orgc          map[string]any    `json:"Orgc"`
		Tag           []map[string]any  `json:"Tag"`
		Attribute     []json.RawMessage `json:"Attribute"`
	} `json:"Event"`
}

// TestMISPFeed: the feed holds one event per chain the partner may pull,
// the latest version; manifest.json describes each event as its file
// does; hashes.csv lists the MD5 of every live attribute value with its
// event's uuid; the policy decides as for TAXII; fetching an event records
// the pull.
func TestMISPFeed(t *testing.T) {
	e := newEnv(t)
	issued := time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Second)
	e.publish(alert("mf-001", func(a *alerts.Alert) { a.IssuedAt = &issued }))
	e.publish(alert("mf-002", nil))
	e.publish(alert("mf-003", func(a *alerts.Alert) { a.TLP = alerts.TLPAmber }))
	e.publish(alert("mf-004", func(a *alerts.Alert) {
		later := issued.Add(10 * time.Minute)
		a.Type, a.References, a.IssuedAt = alerts.TypeUpdate, []string{"mf-001"}, &later
		a.Indicators = append(a.Indicators[:1], alerts.Indicator{Type: "iban", Value: "GB33BUKB20201555555555"})
	}))

	r := e.feed("manifest.json", bankToken)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	var manifest map[string]map[string]any
	require.NoError(t, json.Unmarshal(r.body, &manifest))
	require.Len(t, manifest, 2, "mf-001 and its update are one event; AMBER mf-003 is not the bank's")

	hashes := e.feed("hashes.csv", bankToken)
	require.Equal(t, http.StatusOK, hashes.status)
	require.True(t, strings.HasPrefix(hashes.header.Get("Content-Type"), "text/csv"))
	var wantHashes []string
	infos := map[string]string{}
	for id, m := range manifest {
		ev := e.feed(id+".json", bankToken)
		require.Equal(t, http.StatusOK, ev.status, "%s", ev.body)
		require.Equal(t, formats.ContentTypeMISP, ev.header.Get("Content-Type"))
		var doc feedEvent
		require.NoError(t, json.Unmarshal(ev.body, &doc))
		require.Equal(t, id, doc.Event.UUID)
		require.Equal(t, m["info"], doc.Event.Info)
		require.Equal(t, m["date"], doc.Event.Date)
		require.Equal(t, m["timestamp"], doc.Event.Timestamp)
		require.Equal(t, m["analysis"], doc.Event.Analysis)
		require.Equal(t, m["threat_level_id"], doc.Event.ThreatLevelID)
		require.Equal(t, m["Orgc"], doc.Event.Orgc)
		require.Len(t, m["Tag"], len(doc.Event.Tag))
		require.Equal(t, agency, doc.Event.Orgc["name"])
		infos[id] = doc.Event.Info
		for _, raw := range doc.Event.Attribute {
			var a struct {
				Value   string `json:"value"`
				Deleted bool   `json:"deleted"`
			}
			require.NoError(t, json.Unmarshal(raw, &a))
			if !a.Deleted {
				sum := md5.Sum([]byte(a.Value))
				wantHashes = append(wantHashes, hex.EncodeToString(sum[:])+","+id)
			}
		}
	}
	got := strings.Split(strings.TrimSuffix(string(hashes.body), "\n"), "\n")
	slices.Sort(got)
	slices.Sort(wantHashes)
	require.Equal(t, wantHashes, got, "hashes.csv matches the events' live attributes")
	require.Len(t, got, 2+2, "mf-004: email and IBAN (the phone is deleted); mf-002: email and phone")
	var titles []string
	for _, info := range infos {
		titles = append(titles, info)
	}
	slices.Sort(titles)
	require.Equal(t, []string{"Forced labour indicators mf-002", "Forced labour indicators mf-004"}, titles,
		"an update's event replaces its original's")
	e.synced()
	require.Equal(t, map[string]int{"mf-002/bank": 1, "mf-004/bank": 1}, pulls(t, e), "fetching an event records its pull")

	// The charity may have AMBER: three events. The ngo's sector: none.
	var charity map[string]any
	require.NoError(t, json.Unmarshal(e.feed("manifest.json", charityToken).body, &charity))
	require.Len(t, charity, 3)
	require.Equal(t, "{}\n", string(e.feed("manifest.json", ngoToken).body))
	require.Empty(t, string(e.feed("hashes.csv", ngoToken).body))

	// Another partner's event, or an unknown file, is not found.
	for id := range charity {
		if _, mine := manifest[id]; !mine {
			require.Equal(t, http.StatusNotFound, e.feed(id+".json", bankToken).status)
		}
	}
	require.Equal(t, http.StatusNotFound, e.feed("../manifest.json", bankToken).status)
	require.Equal(t, http.StatusNotFound, e.feed("events.json", bankToken).status)

	// Authentication and access, as for TAXII.
	require.Equal(t, http.StatusUnauthorized, e.feed("manifest.json", "").status)
	require.Equal(t, http.StatusUnauthorized, e.feed("manifest.json", "nope").status)
	require.Equal(t, http.StatusForbidden, e.feed("manifest.json", analystToken).status)
	require.Equal(t, http.StatusForbidden, e.feed("manifest.json", hotelToken).status, "no pull channel")
	basicAuth := e.do("/misp/feed/manifest.json", func(h http.Header) { h.Set("Authorization", basic(bankToken)) })
	require.Equal(t, http.StatusOK, basicAuth.status)
	e.put("bank", func(s *subscribers.Subscriber) { s.Status = subscribers.StatusSuspended })
	require.Equal(t, http.StatusForbidden, e.feed("manifest.json", bankToken).status, "suspension revokes access at once")
	e.put("bank", func(s *subscribers.Subscriber) { s.Status = subscribers.StatusActive; s.Pull.MaxTLP = alerts.TLPClear })
	require.Equal(t, "{}\n", string(e.feed("manifest.json", bankToken).body), "a lower max_tlp takes the GREEN alerts away")
}
