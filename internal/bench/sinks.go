package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/herald-alerts/herald/internal/sink"
)

// tracker counts the deliveries a phase expects, by delivery id, and
// records when each first arrived. Anything it does not expect (a raw
// baseline request, a duplicate, a straggler of an earlier phase) is only
// counted.
type tracker struct {
	mu      sync.Mutex
	want    map[string]struct{}
	arrived map[string]time.Time
	done    chan struct{}
	dups    int
	sample  *captured // set once per expect when the phase asks for one
	sampled bool

	other atomic.Int64 // requests without an expected id
}

// captured is one delivery as received, for the raw baseline to repeat.
type captured struct {
	header http.Header // webhook requests only
	body   []byte
}

// replayedHeaders are the headers of a captured webhook request that the
// raw passes send again with its body.
var replayedHeaders = []string{"Content-Type", "User-Agent", "webhook-id", "webhook-timestamp", "webhook-signature", "herald-pgp-signature"}

// eachHeader calls set with each of replayedHeaders the request carried,
// and its value.
func (s *captured) eachHeader(set func(name, value string)) {
	for _, h := range replayedHeaders {
		if v := s.header.Get(h); v != "" {
			set(h, v)
		}
	}
}

// expect starts a phase that waits for ids; the channel closes when every
// one has arrived. With sample, the first expected arrival is kept.
func (t *tracker) expect(ids []string, sample bool) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.want = make(map[string]struct{}, len(ids))
	for _, id := range ids {
		t.want[id] = struct{}{}
	}
	t.arrived = make(map[string]time.Time, len(ids))
	t.done = make(chan struct{})
	t.dups = 0
	t.sample, t.sampled = nil, !sample
	if len(ids) == 0 {
		close(t.done)
	}
	return t.done
}

// wantsSample reports whether the next expected arrival should be kept.
func (t *tracker) wantsSample() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.sampled
}

// record notes that id arrived at; c, if not nil, is kept as the sample.
func (t *tracker) record(id string, at time.Time, c *captured) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.want[id]; !ok {
		if _, seen := t.arrived[id]; seen {
			t.dups++
		} else {
			t.other.Add(1)
		}
		return
	}
	delete(t.want, id)
	t.arrived[id] = at
	if c != nil && !t.sampled {
		t.sample, t.sampled = c, true
	}
	if len(t.want) == 0 {
		close(t.done)
	}
}

// missing returns how many expected ids have not arrived.
func (t *tracker) missing() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.want)
}

// arrival returns when id arrived, if it did.
func (t *tracker) arrival(id string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.arrived[id]
	return at, ok
}

// captured returns the sample of the current phase, or nil.
func (t *tracker) captured() *captured {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sample
}

// receivers are loopback HTTP receivers (internal/sink) standing in for
// partners' webhook endpoints. Each answers 204 to every POST after reading
// the body, and reports the webhook-id to the tracker; requests without one
// (the raw baseline) are only counted.
type receivers struct {
	tr   *tracker
	rcs  []*sink.Receiver
	urls []string // base URLs, http://127.0.0.1:port
}

// startReceivers starts n receivers on 127.0.0.1:0.
func startReceivers(n int, tr *tracker) (*receivers, error) {
	rs := &receivers{tr: tr}
	for range n {
		rc, err := sink.StartReceiver(sink.ReceiverOptions{Discard: true})
		if err != nil {
			rs.close()
			return nil, err
		}
		rc.Script(rs.answer)
		rs.rcs, rs.urls = append(rs.rcs, rc), append(rs.urls, rc.URL(""))
	}
	return rs, nil
}

// answer is every receiver's one step.
func (rs *receivers) answer(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
	id := r.Header.Get("webhook-id")
	if id == "" || !rs.tr.wantsSample() {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
		if id == "" {
			rs.tr.other.Add(1)
		} else {
			rs.tr.record(id, time.Now(), nil)
		}
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
	rs.tr.record(id, time.Now(), &captured{header: r.Header.Clone(), body: body})
}

// close stops the receivers.
func (rs *receivers) close() {
	for _, rc := range rs.rcs {
		rc.Close()
	}
}

// startSink starts the SMTP sink (internal/sink) standing in for the mail
// relay on 127.0.0.1:0. It reports each message's delivery id (the local
// part of its Message-ID) to the tracker; messages whose id it does not
// expect are only counted.
func startSink(tr *tracker) (*sink.SMTP, error) {
	return sink.StartSMTP(sink.SMTPOptions{Discard: true, Data: func(_ []string, data []byte) *smtp.SMTPError {
		id, ok := messageID(data)
		if !ok {
			tr.other.Add(1)
			return nil
		}
		var c *captured
		if tr.wantsSample() {
			c = &captured{body: data}
		}
		tr.record(id, time.Now(), c)
		return nil
	}})
}

// messageID returns the local part of the message's Message-ID header,
// which Herald sets to the delivery id.
func messageID(data []byte) (string, bool) {
	hdr := data
	if i := bytes.Index(data, []byte("\r\n\r\n")); i >= 0 {
		hdr = data[:i+2]
	}
	for len(hdr) > 0 {
		line := hdr
		if i := bytes.Index(hdr, []byte("\r\n")); i >= 0 {
			line, hdr = hdr[:i], hdr[i+2:]
		} else {
			hdr = nil
		}
		name, value, ok := strings.Cut(string(line), ":")
		if !ok || !strings.EqualFold(name, "Message-ID") {
			continue
		}
		value = strings.Trim(strings.TrimSpace(value), "<>")
		local, _, ok := strings.Cut(value, "@")
		if !ok || local == "" {
			return "", false
		}
		return local, true
	}
	return "", false
}

// waitDone waits for done, ctx or timeout, naming what is missing.
func waitDone(ctx context.Context, done <-chan struct{}, timeout time.Duration, tr *tracker, what string) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w (%d deliveries missing)", what, context.Cause(ctx), tr.missing())
	case <-t.C:
		return fmt.Errorf("%s: %d deliveries had not arrived after %s", what, tr.missing(), timeout)
	}
}
