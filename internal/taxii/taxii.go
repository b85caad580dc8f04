package taxii

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/herald-alerts/herald/internal/formats"
	"github.com/herald-alerts/herald/subscribers"
)

// Page sizes of the objects, manifest and versions endpoints.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// timeFormat is how the server writes date_added and reads the
// timestamps of requests: RFC 3339 in UTC to the microsecond.
const timeFormat = "2006-01-02T15:04:05.000000Z"

// discovery answers GET /taxii2/.
func (s *Server) discovery(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber) {
	root := s.base(r) + PathTAXII + APIRoot + "/"
	writeTAXII(w, http.StatusOK, map[string]any{
		"title":       "Herald",
		"description": "Alerts of " + s.agency() + " that " + sub.Name + " may pull",
		"default":     root,
		"api_roots":   []string{root},
	})
}

// apiRoot answers GET /taxii2/{root}/.
func (s *Server) apiRoot(w http.ResponseWriter, r *http.Request, _ *subscribers.Subscriber) {
	if !knownRoot(w, r) {
		return
	}
	writeTAXII(w, http.StatusOK, map[string]any{
		"title":       "Herald alerts",
		"description": "One read-only collection per partner: the alerts the dissemination policy lets it pull",
		"versions":    []string{MediaTAXII},
		// Nothing can be written: no request body is accepted.
		"max_content_length": 0,
	})
}

// collectionResource describes sub's collection.
func (s *Server) collectionResource(sub *subscribers.Subscriber) map[string]any {
	return map[string]any{
		"id":          CollectionID(sub.ID),
		"title":       "Herald alerts for " + sub.Name,
		"description": "The alerts of " + s.agency() + " that " + sub.Name + " may pull, up to " + sub.Pull.MaxTLP.Label(),
		"can_read":    true,
		"can_write":   false,
		"media_types": []string{MediaSTIX},
	}
}

// collections answers GET /taxii2/{root}/collections/: the partner's own
// collection, if it has a pull channel.
func (s *Server) collections(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber) {
	if !knownRoot(w, r) {
		return
	}
	res := map[string]any{}
	if sub.Pull != nil {
		res["collections"] = []any{s.collectionResource(sub)}
	}
	writeTAXII(w, http.StatusOK, res)
}

// collection answers GET /taxii2/{root}/collections/{id}/.
func (s *Server) collection(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber) {
	if !s.own(w, r, sub) {
		return
	}
	writeTAXII(w, http.StatusOK, s.collectionResource(sub))
}

// objects answers GET …/objects/: an envelope of the collection's
// objects, filtered and paged.
func (s *Server) objects(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber) {
	s.envelope(w, r, sub, "")
}

// object answers GET …/objects/{object}/: the versions of one object.
func (s *Server) object(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber) {
	s.envelope(w, r, sub, r.PathValue("object"))
}

func (s *Server) envelope(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber, object string) {
	all, q, ok := s.query(w, r, sub, object, true)
	if !ok {
		return
	}
	page, more, next := q.page(all)
	objects := make([]json.RawMessage, len(page))
	var pulled []*item
	for i, e := range page {
		objects[i] = e.raw
		if !e.shared && !slices.Contains(pulled, e.it) {
			pulled = append(pulled, e.it)
		}
	}
	if err := s.recordPulls(r.Context(), sub, pulled, "taxii"); err != nil {
		unavailable(w, taxiiErrors{}, err)
		return
	}
	addedHeaders(w, page)
	res := envelope(more, next)
	if len(objects) > 0 {
		res["objects"] = objects
	}
	writeTAXII(w, http.StatusOK, res)
}

// versions answers GET …/objects/{object}/versions/.
func (s *Server) versions(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber) {
	all, q, ok := s.query(w, r, sub, r.PathValue("object"), false)
	if !ok {
		return
	}
	page, more, next := q.page(all)
	vs := make([]string, len(page))
	for i, e := range page {
		vs[i] = e.version
	}
	addedHeaders(w, page)
	res := envelope(more, next)
	if len(vs) > 0 {
		res["versions"] = vs
	}
	writeTAXII(w, http.StatusOK, res)
}

// manifest answers GET …/manifest/.
func (s *Server) manifest(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber) {
	all, q, ok := s.query(w, r, sub, "", true)
	if !ok {
		return
	}
	page, more, next := q.page(all)
	type record struct {
		ID        string `json:"id"`
		DateAdded string `json:"date_added"`
		Version   string `json:"version"`
		MediaType string `json:"media_type"`
	}
	records := make([]record, len(page))
	for i, e := range page {
		records[i] = record{ID: e.id, DateAdded: e.added().Format(timeFormat), Version: e.version, MediaType: MediaSTIX}
	}
	addedHeaders(w, page)
	res := envelope(more, next)
	if len(records) > 0 {
		res["objects"] = records
	}
	writeTAXII(w, http.StatusOK, res)
}

// addedHeaders sets X-TAXII-Date-Added-First and -Last from a page.
func addedHeaders(w http.ResponseWriter, page []*entry) {
	if len(page) == 0 {
		return
	}
	// Written as the specification spells them (header names are
	// case-insensitive; some clients compare them exactly).
	w.Header()["X-TAXII-Date-Added-First"] = []string{page[0].added().Format(timeFormat)}
	w.Header()["X-TAXII-Date-Added-Last"] = []string{page[len(page)-1].added().Format(timeFormat)}
}

// query checks the request is for sub's own collection, reads its
// parameters and returns the collection's entries they select (before
// paging). object, when set, keeps that object's versions only (404 when
// the collection does not hold it); versioned applies match[version]
// (default last).
func (s *Server) query(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber, object string, versioned bool) ([]*entry, *query, bool) {
	if !s.own(w, r, sub) {
		return nil, nil, false
	}
	q, err := parseQuery(r.URL.Query(), versioned)
	if err != nil {
		taxiiErrors{}.write(w, http.StatusBadRequest, "Bad request", err.Error())
		return nil, nil, false
	}
	c, entries, err := s.entries(r.Context(), sub)
	if err != nil {
		unavailable(w, taxiiErrors{}, err)
		return nil, nil, false
	}
	if object != "" {
		if !slices.ContainsFunc(entries, func(e *entry) bool { return e.id == object }) {
			taxiiErrors{}.write(w, http.StatusNotFound, "Not found", "the collection holds no object "+object)
			return nil, nil, false
		}
		q.ids = map[string]bool{object: true}
	}
	return c.selectEntries(q, entries), q, true
}

// own checks that the request names the API root and sub's own
// collection, and that sub may pull: 404 for another collection (whether
// or not it exists), 403 without a pull channel, 503 without the agency's
// name.
func (s *Server) own(w http.ResponseWriter, r *http.Request, sub *subscribers.Subscriber) bool {
	if !knownRoot(w, r) {
		return false
	}
	if r.PathValue("id") != CollectionID(sub.ID) {
		taxiiErrors{}.write(w, http.StatusNotFound, "Not found", "no such collection")
		return false
	}
	if sub.Pull == nil {
		taxiiErrors{}.write(w, http.StatusForbidden, "Forbidden", "the partner has no pull channel")
		return false
	}
	if strings.TrimSpace(s.Agency) == "" {
		unavailable(w, taxiiErrors{}, errNoAgency)
		return false
	}
	return true
}

func knownRoot(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("root") != APIRoot {
		taxiiErrors{}.write(w, http.StatusNotFound, "Not found", "no such API root; the API root is "+APIRoot)
		return false
	}
	return true
}

// unavailable answers 503 for a failure to read the view, render or
// record.
func unavailable(w http.ResponseWriter, ew errorWriter, err error) {
	w.Header().Set("Retry-After", "5")
	ew.write(w, http.StatusServiceUnavailable, "Service unavailable", err.Error())
}

func (s *Server) agency() string {
	if a := strings.TrimSpace(s.Agency); a != "" {
		return a
	}
	return "the agency"
}

// base returns the scheme and host partners reach the server at.
func (s *Server) base(r *http.Request) string {
	if s.BaseURL != "" {
		return strings.TrimRight(s.BaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// entry is one version of one STIX object in a partner's collection.
type entry struct {
	id, typ, spec, version string
	at                     time.Time // the version as a time
	raw                    json.RawMessage
	// it is the alert whose bundle added this version first; index is
	// its place in that bundle.
	it    *item
	index int
	// shared marks the agency's identity and the standard TLP marking
	// definitions, which say nothing of any alert.
	shared bool
}

func (e *entry) added() time.Time { return e.it.added }

// stixObject is what the server reads of an object.
type stixObject struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Spec     string `json:"spec_version"`
	Created  string `json:"created"`
	Modified string `json:"modified"`
}

// parsedObject is one object of an alert's bundle.
type parsedObject struct {
	stixObject
	at  time.Time
	raw json.RawMessage
}

// entries returns sub's collection and every object version of it, in
// the order their alerts were added, made once per collection.
func (s *Server) entries(ctx context.Context, sub *subscribers.Subscriber) (*collection, []*entry, error) {
	c, err := s.collectionAt(ctx, sub, s.Now())
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		if c.entries, err = s.makeEntries(c.items); err != nil {
			return nil, nil, err
		}
	}
	return c, c.entries, nil
}

// selectEntries is q.selectEntries(entries) for entries, c's: what a
// query without match[id], match[type], match[spec_version] or a
// match[version] timestamp selects (a sync, page after page) is selected
// once per collection, and added_after then cuts it where it begins.
func (c *collection) selectEntries(q *query, entries []*entry) []*entry {
	if q.ids != nil || q.types != nil || q.specs != nil || len(q.at) != 0 {
		return q.selectEntries(entries)
	}
	k := selectKey{q.versioned, q.all, q.first, q.last}
	c.mu.Lock()
	sel, ok := c.selected[k]
	if !ok {
		all := *q
		all.addedAfter = time.Time{}
		sel = all.selectEntries(entries)
		if c.selected == nil {
			c.selected = map[selectKey][]*entry{}
		}
		c.selected[k] = sel
	}
	c.mu.Unlock()
	if !q.addedAfter.IsZero() {
		// In collection order, added first: those added after are the
		// end of it.
		sel = sel[sort.Search(len(sel), func(i int) bool { return sel[i].added().After(q.addedAfter) }):]
	}
	return sel
}

// selectKey is what a query selects by when it selects whole versions
// (collection.selectEntries).
type selectKey struct{ versioned, all, first, last bool }

// makeEntries returns every object version of the STIX bundles of its, in
// its order and each bundle's, each version once.
func (s *Server) makeEntries(its []*item) ([]*entry, error) {
	tlp := map[string]bool{}
	for _, id := range formats.TLPMarkingIDs {
		tlp[id] = true
	}
	var out []*entry
	seen := map[string]bool{}
	for _, it := range its {
		objs, err := s.stixObjects(it)
		if err != nil {
			return nil, err
		}
		for i, o := range objs {
			key := o.ID + "\x00" + o.at.Format(time.RFC3339Nano)
			if seen[key] {
				continue
			}
			seen[key] = true
			version := o.Modified
			if version == "" {
				version = o.Created
			}
			out = append(out, &entry{id: o.ID, typ: o.Type, spec: o.Spec, version: version, at: o.at, raw: o.raw,
				it: it, index: i, shared: o.Type == "identity" || tlp[o.ID]})
		}
	}
	return out, nil
}

// stixObjects returns the objects of the alert's STIX bundle, parsed once
// per rendering.
func (s *Server) stixObjects(it *item) ([]parsedObject, error) {
	k := renderKey{"stix-objects", it.raw, it.lineage.Digest(), s.Agency}
	if v, ok := s.renders.Get(k); ok {
		return v.([]parsedObject), nil
	}
	b, err := s.render(it, formats.FormatSTIX)
	if err != nil {
		return nil, err
	}
	var bundle struct {
		Objects []json.RawMessage `json:"objects"`
	}
	if err := json.Unmarshal(b, &bundle); err != nil {
		return nil, fmt.Errorf("read the STIX bundle of %s: %w", it.alert.ID, err)
	}
	objs := make([]parsedObject, len(bundle.Objects))
	for i, raw := range bundle.Objects {
		o := parsedObject{raw: compact(raw)}
		if err := json.Unmarshal(raw, &o.stixObject); err != nil {
			return nil, fmt.Errorf("read the STIX bundle of %s: %w", it.alert.ID, err)
		}
		v := o.Modified
		if v == "" {
			v = o.Created
		}
		if o.at, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return nil, fmt.Errorf("read the STIX bundle of %s: %s: version %q: %w", it.alert.ID, o.ID, v, err)
		}
		objs[i] = o
	}
	s.renders.Add(k, objs)
	return objs, nil
}

// compact returns raw without insignificant white space.
func compact(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// query is a request's filters and paging.
type query struct {
	addedAfter        time.Time // zero: none
	limit             int
	after             *position
	ids, types, specs map[string]bool // nil: any
	versioned         bool
	all, first, last  bool
	at                []time.Time
}

// position is an entry's place in the collection's order, which next
// continues from.
type position struct {
	added time.Time
	alert string
	index int
}

func (e *entry) position() position { return position{e.added(), e.it.alert.ID, e.index} }

func (p position) less(o position) bool {
	if c := p.added.Compare(o.added); c != 0 {
		return c < 0
	}
	if p.alert != o.alert {
		return p.alert < o.alert
	}
	return p.index < o.index
}

// encode makes the opaque next cursor of a position.
func (p position) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(p.added.UnixMicro(), 10) + "." +
		strconv.Itoa(p.index) + "." + p.alert))
}

func decodePosition(s string) (*position, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("next: not a value from a previous response")
	}
	parts := strings.SplitN(string(b), ".", 3)
	if len(parts) != 3 {
		return nil, errors.New("next: not a value from a previous response")
	}
	us, err1 := strconv.ParseInt(parts[0], 10, 64)
	idx, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || parts[2] == "" {
		return nil, errors.New("next: not a value from a previous response")
	}
	return &position{added: time.UnixMicro(us).UTC(), alert: parts[2], index: idx}, nil
}

// parseQuery reads added_after, limit, next and the match[…] filters.
func parseQuery(v url.Values, versioned bool) (*query, error) {
	q := &query{limit: DefaultLimit, versioned: versioned}
	if s := v.Get("added_after"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, fmt.Errorf("added_after: %q is not an RFC 3339 timestamp", s)
		}
		q.addedAfter = t.UTC()
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("limit: %q is not a positive integer", s)
		}
		q.limit = min(n, MaxLimit)
	}
	if s := v.Get("next"); s != "" {
		p, err := decodePosition(s)
		if err != nil {
			return nil, err
		}
		q.after = p
	}
	set := func(name string) map[string]bool {
		s := v.Get(name)
		if s == "" {
			return nil
		}
		m := map[string]bool{}
		for _, x := range strings.Split(s, ",") {
			if x = strings.TrimSpace(x); x != "" {
				m[x] = true
			}
		}
		return m
	}
	q.ids, q.types, q.specs = set("match[id]"), set("match[type]"), set("match[spec_version]")
	if !versioned {
		return q, nil
	}
	vs := v.Get("match[version]")
	if vs == "" {
		vs = "last"
	}
	for _, x := range strings.Split(vs, ",") {
		switch x = strings.TrimSpace(x); x {
		case "all":
			q.all = true
		case "first":
			q.first = true
		case "last":
			q.last = true
		default:
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return nil, fmt.Errorf("match[version]: %q is not all, first, last or an RFC 3339 timestamp", x)
			}
			q.at = append(q.at, t)
		}
	}
	return q, nil
}

// selectEntries applies the filters, then match[version] to each object's
// versions, then added_after; the result is in collection order.
func (q *query) selectEntries(all []*entry) []*entry {
	var kept []*entry
	byID := map[string][]*entry{}
	for _, e := range all {
		if (q.ids != nil && !q.ids[e.id]) || (q.types != nil && !q.types[e.typ]) || (q.specs != nil && !q.specs[e.spec]) {
			continue
		}
		kept = append(kept, e)
		byID[e.id] = append(byID[e.id], e)
	}
	if q.versioned && !q.all {
		keep := map[*entry]bool{}
		for _, vs := range byID {
			first, last := vs[0], vs[0]
			for _, e := range vs {
				if e.at.Before(first.at) {
					first = e
				}
				if e.at.After(last.at) {
					last = e
				}
				for _, t := range q.at {
					if e.at.Equal(t) {
						keep[e] = true
					}
				}
			}
			if q.first {
				keep[first] = true
			}
			if q.last {
				keep[last] = true
			}
		}
		kept = slices.DeleteFunc(kept, func(e *entry) bool { return !keep[e] })
	}
	if !q.addedAfter.IsZero() {
		kept = slices.DeleteFunc(kept, func(e *entry) bool { return !e.added().After(q.addedAfter) })
	}
	slices.SortStableFunc(kept, func(a, b *entry) int {
		pa, pb := a.position(), b.position()
		switch {
		case pa.less(pb):
			return -1
		case pb.less(pa):
			return 1
		}
		return 0
	})
	return kept
}

// page returns the entries after q.after, at most q.limit of them,
// whether more follow, and the next cursor.
func (q *query) page(sel []*entry) (page []*entry, more bool, next string) {
	if q.after != nil {
		// sel is in collection order: the first entry after the cursor.
		i := sort.Search(len(sel), func(i int) bool { return q.after.less(sel[i].position()) })
		sel = sel[i:]
	}
	if len(sel) > q.limit {
		page = sel[:q.limit]
		return page, true, page[len(page)-1].position().encode()
	}
	return sel, false, ""
}

// envelope starts a TAXII envelope (or versions or manifest resource):
// more, and next when there is more.
func envelope(more bool, next string) map[string]any {
	res := map[string]any{"more": more}
	if more {
		res["next"] = next
	}
	return res
}
