package taxii

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/herald-alerts/herald/internal/formats"
	"github.com/herald-alerts/herald/subscribers"
)

// feedEvent is one event of a partner's MISP feed: the latest alert of a
// chain the partner may pull, rendered as a MISP event.
type feedEvent struct {
	it   *item
	body []byte
	meta mispEvent
}

// mispEvent is what the feed reads of a rendered event.
type mispEvent struct {
	UUID          string          `json:"uuid"`
	Info          string          `json:"info"`
	Date          string          `json:"date"`
	Analysis      string          `json:"analysis"`
	ThreatLevelID string          `json:"threat_level_id"`
	Timestamp     string          `json:"timestamp"`
	Orgc          json.RawMessage `json:"Orgc"`
	Tag           json.RawMessage `json:"Tag"`
	Attribute     []struct {
		Value   string `json:"value"`
		Deleted bool   `json:"deleted"`
	} `json:"Attribute"`
}

// feed returns sub's MISP feed: an event per chain, by uuid. An update
// renders a new version of its chain's event, so the latest alert of each
// chain (by issued_at, then by when it was added) is the event.
func (s *Server) feed(ctx context.Context, w http.ResponseWriter, sub *subscribers.Subscriber) (map[string]*feedEvent, bool) {
	if sub.Pull == nil {
		feedErrors{}.write(w, http.StatusForbidden, "Forbidden", "the partner has no pull channel")
		return nil, false
	}
	if strings.TrimSpace(s.Agency) == "" {
		unavailable(w, feedErrors{}, errNoAgency)
		return nil, false
	}
	c, err := s.collectionAt(ctx, sub, s.Now())
	if err != nil {
		unavailable(w, feedErrors{}, err)
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.events == nil {
		if c.events, err = s.makeEvents(c.items); err != nil {
			unavailable(w, feedErrors{}, err)
			return nil, false
		}
	}
	return c.events, true
}

// makeEvents renders its as MISP events and keeps the latest alert of
// each chain.
func (s *Server) makeEvents(its []*item) (map[string]*feedEvent, error) {
	events := map[string]*feedEvent{}
	for _, it := range its {
		body, err := s.render(it, formats.FormatMISP)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Event mispEvent `json:"Event"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, fmt.Errorf("read the MISP event of %s: %w", it.alert.ID, err)
		}
		ev := &feedEvent{it: it, body: body, meta: doc.Event}
		if prev := events[ev.meta.UUID]; prev == nil || later(it, prev.it) {
			events[ev.meta.UUID] = ev
		}
	}
	return events, nil
}

// later reports whether a is a later alert of a chain than b.
func later(a, b *item) bool {
	if c := a.alert.IssuedAt.Compare(*b.alert.IssuedAt); c != 0 {
		return c > 0
	}
	return b.added.Before(a.added)
}

// feedManifest answers GET /misp/feed/manifest.json: for each event, what
// MISP shows before it fetches the event (PyMISP's MISPEvent.manifest).
func (s *Server) feedManifest(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber) {
	events, ok := s.feed(r.Context(), w, sub)
	if !ok {
		return
	}
	type entry struct {
		Orgc          json.RawMessage `json:"Orgc"`
		Tag           json.RawMessage `json:"Tag"`
		Info          string          `json:"info"`
		Date          string          `json:"date"`
		Analysis      string          `json:"analysis"`
		ThreatLevelID string          `json:"threat_level_id"`
		Timestamp     string          `json:"timestamp"`
	}
	manifest := make(map[string]entry, len(events))
	for id, ev := range events {
		m := ev.meta
		manifest[id] = entry{Orgc: m.Orgc, Tag: m.Tag, Info: m.Info, Date: m.Date, Analysis: m.Analysis,
			ThreatLevelID: m.ThreatLevelID, Timestamp: m.Timestamp}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(manifest)
}

// feedHashes answers GET /misp/feed/hashes.csv: "md5(value),event uuid"
// for each attribute of each event that is not deleted, events in uuid
// order, attributes in event order.
func (s *Server) feedHashes(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber) {
	events, ok := s.feed(r.Context(), w, sub)
	if !ok {
		return
	}
	ids := make([]string, 0, len(events))
	for id := range events {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	for _, id := range ids {
		for _, a := range events[id].meta.Attribute {
			if a.Deleted {
				continue
			}
			sum := md5.Sum([]byte(a.Value)) // MISP's feed hashes are MD5 by its format, not for security
			b.WriteString(hex.EncodeToString(sum[:]) + "," + id + "\n")
		}
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

// feedEvent answers GET /misp/feed/{uuid}.json: one event, and records
// the pull of its alert.
func (s *Server) feedEvent(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".json")
	if _, err := uuid.Parse(name); !ok || err != nil {
		feedErrors{}.write(w, http.StatusNotFound, "Not found", "the feed serves manifest.json, hashes.csv and <uuid>.json")
		return
	}
	events, ok := s.feed(r.Context(), w, sub)
	if !ok {
		return
	}
	ev := events[strings.ToLower(name)]
	if ev == nil {
		feedErrors{}.write(w, http.StatusNotFound, "Not found", "the feed holds no event "+name)
		return
	}
	if err := s.recordPulls(r.Context(), sub, []*item{ev.it}, "misp-feed"); err != nil {
		unavailable(w, feedErrors{}, err)
		return
	}
	w.Header().Set("Content-Type", formats.ContentTypeMISP)
	_, _ = w.Write(ev.body)
}
