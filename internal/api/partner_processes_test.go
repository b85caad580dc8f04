package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/subscribers"
)

// process is one Herald api process's worth of state on a shared broker:
// its own bus client; its own registry, fed only by its own follower of
// the subscribers topic, as the api role's is; and its own API server
// over the real subscriber store, whose Partner.Sync waits for that
// follower. Its follower can be paused: the process then reads nothing
// of what others write until it is resumed.
type process struct {
	t     *testing.T
	bus   *bus.Bus
	reg   *subscribers.Registry
	store *interleaved
	srv   *httptest.Server

	gate sync.Mutex // held while paused
	// beforeSync, if set, runs once when the API next calls Partner.Sync.
	beforeSync func()
	mu         sync.Mutex
	next       map[int]int64 // partition → offset after the last record read
}

// startProcess starts one api process on c and waits until its registry
// has read the subscribers topic.
func startProcess(t *testing.T, c *kafkatest.Cluster, name string) *process {
	t.Helper()
	b := c.Open(t, c.Config())
	p := &process{t: t, bus: b, reg: subscribers.NewRegistry(), next: map[int]int64{}}
	now := func() time.Time { return testNow }
	p.store = &interleaved{SubscriberStore: app.SubscriberStore{Bus: b, Audit: app.AuditLog(b, now), Overlays: p.reg}}
	ctx, cancel := context.WithCancel(context.Background())
	done, caughtUp := make(chan error, 1), make(chan struct{})
	go func() {
		done <- b.Follow(ctx, bus.TopicSubscribers, func(m kafka.Message) error {
			p.gate.Lock()
			defer p.gate.Unlock()
			if b.Authentic(m) {
				if err := p.reg.Apply(m.Key, m.Value); err != nil {
					t.Errorf("process %s: apply %s: %v", name, m.Key, err)
				}
			}
			p.mu.Lock()
			p.next[m.Partition] = m.Offset + 1
			p.mu.Unlock()
			return nil
		}, func() { close(caughtUp) })
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	<-caughtUp
	srv := &api.Server{
		Audit:     app.AuditLog(b, now),
		Registry:  p.reg,
		Directory: p.reg,
		Writer:    p.store,
		Endpoints: p.store,
		Overlays:  p.store,
		Taxonomy:  testTaxonomy,
		Tokens: []config.Token{
			{Name: "acme-soc-" + name, Role: config.RolePartner, Subscriber: "acme", SHA256: config.HashToken(partnerToken)},
			{Name: "ops-" + name, Role: config.RoleAdmin, SHA256: config.HashToken(adminToken)},
		},
		Partner: api.Partners{Sync: func(ctx context.Context) error {
			p.mu.Lock()
			f := p.beforeSync
			p.beforeSync = nil
			p.mu.Unlock()
			if f != nil {
				f()
			}
			return p.sync(ctx)
		}},
		Now: now,
		Log: kafkatest.Logger(t, slog.LevelWarn).With("process", name),
	}
	p.srv = httptest.NewServer(srv.Handler())
	t.Cleanup(p.srv.Close)
	return p
}

// sync waits until the process's registry has read every record written
// to the subscribers topic before the call.
func (p *process) sync(ctx context.Context) error {
	offs, err := p.bus.Offsets(ctx, bus.TopicSubscribers)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		p.mu.Lock()
		behind := false
		for _, po := range offs[bus.TopicSubscribers] {
			behind = behind || p.next[po.Partition] < po.End
		}
		p.mu.Unlock()
		if !behind {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// synced is sync, failing the test on an error.
func (p *process) synced() {
	p.t.Helper()
	require.NoError(p.t, p.sync(p.t.Context()))
}

// pause stops the process's follower: its registry keeps what it has read
// until resume.
func (p *process) pause()  { p.gate.Lock() }
func (p *process) resume() { p.gate.Unlock() }

// call makes one request of the process's API with the partner token.
func (p *process) call(method, path, ctype, body string) (int, string) {
	p.t.Helper()
	req, err := http.NewRequestWithContext(p.t.Context(), method, p.srv.URL+path, strings.NewReader(body))
	require.NoError(p.t, err)
	req.Header.Set("Authorization", "Bearer "+partnerToken)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(p.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(p.t, err)
	return resp.StatusCode, string(out)
}

// webhooks is the partner's GET /v1/partner/webhooks through p: webhook
// 0's secrets as listed.
func (p *process) webhooks() []string {
	p.t.Helper()
	code, out := p.call("GET", "/v1/partner/webhooks", "", "")
	require.Equal(p.t, http.StatusOK, code, out)
	var l api.PartnerWebhookList
	require.NoError(p.t, json.Unmarshal([]byte(out), &l))
	require.Len(p.t, l.Webhooks, 1)
	return l.Webhooks[0].Secrets
}

// interleaved is a process's real subscriber store. Given meanwhile, it
// runs it once around the next partner's change written through it: after
// the change was made from the partner's record as read, before (or
// instead of) writing it.
type interleaved struct {
	app.SubscriberStore
	mu        sync.Mutex
	meanwhile func(write func() error) error
}

func (s *interleaved) around(write func() error) error {
	s.mu.Lock()
	f := s.meanwhile
	s.meanwhile = nil
	s.mu.Unlock()
	if f == nil {
		return write()
	}
	return f(write)
}

func (s *interleaved) SetKey(ctx context.Context, actor string, rec *subscribers.Subscriber, address, written, pgpKey string, now time.Time) error {
	return s.around(func() error { return s.SubscriberStore.SetKey(ctx, actor, rec, address, written, pgpKey, now) })
}

func (s *interleaved) SetSecrets(ctx context.Context, actor string, rec *subscribers.Subscriber, url string, written, secrets []string, now time.Time) error {
	return s.around(func() error { return s.SubscriberStore.SetSecrets(ctx, actor, rec, url, written, secrets, now) })
}

func (s *interleaved) RewriteKey(ctx context.Context, rec *subscribers.Subscriber, o subscribers.KeyOverlay) error {
	return s.around(func() error { return s.SubscriberStore.RewriteKey(ctx, rec, o) })
}

func (s *interleaved) RewriteSecrets(ctx context.Context, rec *subscribers.Subscriber, o subscribers.SecretsOverlay) error {
	return s.around(func() error { return s.SubscriberStore.RewriteSecrets(ctx, rec, o) })
}

// twoAPIProcesses starts api processes a and b on one broker, stores
// acme's record and waits until both have read it.
func twoAPIProcesses(t *testing.T) (a, b *process) {
	t.Helper()
	c := kafkatest.Start(t)
	a, b = startProcess(t, c, "a"), startProcess(t, c, "b")
	acme := &subscribers.Subscriber{ID: "acme", Name: "Acme Car Wash", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Email: []subscribers.Email{{Address: acmeMail}},
		Webhooks: []subscribers.Webhook{{URL: acmeHook, Secrets: []string{testSecret}}}}
	acme.Normalize()
	require.NoError(t, a.store.Put(t.Context(), "api:ops", "", []*subscribers.Subscriber{acme}, nil))
	a.synced()
	b.synced()
	require.NotNil(t, b.reg.Get("acme"))
	return a, b
}

// interleaving is whether process b's registry had read a's change when
// b wrote its own: meanwhile runs a's request through a, between b's read
// and b's write, and says whether b then writes (its record reaches the
// topic).
type interleaving struct {
	meanwhile func(b *process, request func()) func(write func() error) error
	bWrites   bool
}

var interleavings = map[string]interleaving{
	// b's registry has not read a's change: b writes its own, made from
	// the list before a's, and learns once it reads both back.
	"b had not read a's change": {func(b *process, request func()) func(func() error) error {
		return func(write func() error) error {
			b.pause()
			defer b.resume()
			request()
			return write()
		}
	}, true},
	// b's registry read a's change after b read the record: b writes
	// nothing.
	"b had read a's change": {func(b *process, request func()) func(func() error) error {
		return func(write func() error) error {
			request()
			b.synced()
			return write()
		}
	}, false},
}

// writtenBy returns how many records under key the subscribers topic
// holds that actor wrote.
func writtenBy(t *testing.T, p *process, key, actor string) int {
	t.Helper()
	n := 0
	require.NoError(t, p.bus.ReadAll(t.Context(), bus.TopicSubscribers, func(m kafka.Message) error {
		var o struct{ By string }
		if string(m.Key) == key && json.Unmarshal(m.Value, &o) == nil && o.By == actor {
			n++
		}
		return nil
	}))
	return n
}

// compacted returns a registry that read only the latest record of each
// key of the subscribers topic, in the topic's order: a process started
// once compaction has left nothing else.
func compacted(t *testing.T, p *process) *subscribers.Registry {
	t.Helper()
	var msgs []kafka.Message
	latest := map[string]int{}
	require.NoError(t, p.bus.ReadAll(t.Context(), bus.TopicSubscribers, func(m kafka.Message) error {
		latest[string(m.Key)] = len(msgs)
		msgs = append(msgs, m)
		return nil
	}))
	reg := subscribers.NewRegistry()
	for i, m := range msgs {
		if latest[string(m.Key)] == i && p.bus.Authentic(m) {
			require.NoError(t, reg.Apply(m.Key, m.Value))
		}
	}
	return reg
}

// refusals returns the partner's changes audited as refused, as
// "action reason".
func refusals(t *testing.T, p *process) []string {
	t.Helper()
	var out []string
	require.NoError(t, p.bus.ReadAll(t.Context(), bus.TopicAudit, func(m kafka.Message) error {
		var a record.Audit
		require.NoError(t, json.Unmarshal(m.Value, &a))
		if strings.HasPrefix(a.Actor, "partner:") && a.Outcome == record.OutcomeRefused {
			out = append(out, a.Action+" "+a.Reason)
		}
		return nil
	}))
	return out
}

// TestSecretRotationsAtOnceThroughTwoProcesses: a partner adds a secret
// through api process b while another request adds one through process a,
// both from the same list. a's comes first and stands; b's is answered
// 409, never with its secret, and every process, and the partner's list,
// holds exactly a's.
func TestSecretRotationsAtOnceThroughTwoProcesses(t *testing.T) {
	for name, c := range interleavings {
		t.Run(name, func(t *testing.T) {
			a, b := twoAPIProcesses(t)
			var theirs api.SecretResponse
			b.store.meanwhile = c.meanwhile(b, func() {
				code, out := a.call("POST", "/v1/partner/webhooks/0/secrets", "", "")
				require.Equal(t, http.StatusCreated, code, out)
				require.NoError(t, json.Unmarshal([]byte(out), &theirs))
			})
			code, out := b.call("POST", "/v1/partner/webhooks/0/secrets", "", "")
			require.Equal(t, http.StatusConflict, code, out)
			assert.Contains(t, out, "your webhook 0's secrets changed while this change was made (another request?); list them with GET /v1/partner/webhooks and try again")
			assert.NotContains(t, out, "whsec_", "no secret that is not in force")

			want := []string{testSecret, theirs.Secret}
			for _, p := range []*process{a, b} {
				p.synced()
				assert.Equal(t, want, p.reg.Get("acme").Webhooks[0].Secrets)
				assert.Equal(t, []string{subscribers.RedactSecret(testSecret), theirs.Added}, p.webhooks(), "exactly the secrets in force")
			}
			assert.Equal(t, want, compacted(t, a).Get("acme").Webhooks[0].Secrets, "and in a process started after compaction")
			for _, reg := range []*subscribers.Registry{a.reg, b.reg, compacted(t, a)} {
				held := reg.SecretsOverlays("acme")
				require.Len(t, held, 1)
				assert.Equal(t, "partner:acme-soc-a", held[0].By, "the secrets in force are a's change, whoever wrote them again")
			}
			assert.Equal(t, []string{record.ActionPartnerSecret + " the webhook's secrets changed while the change was made"}, refusals(t, b))
			assert.Equal(t, c.bWrites, writtenBy(t, b, subscribers.SecretsOverlayKey("acme", acmeHook), "partner:acme-soc-b") > 0)
		})
	}
}

// TestRetiredSecretStaysRetiredAcrossProcesses: a partner retires a
// leaked secret through process a while another request, through process
// b, adds a secret to the list as it was before the retirement. The
// retirement stands: the addition is answered 409 and never brings the
// leaked secret back.
func TestRetiredSecretStaysRetiredAcrossProcesses(t *testing.T) {
	for name, c := range interleavings {
		t.Run(name, func(t *testing.T) {
			a, b := twoAPIProcesses(t)
			code, out := a.call("POST", "/v1/partner/webhooks/0/secrets", "", "")
			require.Equal(t, http.StatusCreated, code, out)
			var leaked api.SecretResponse
			require.NoError(t, json.Unmarshal([]byte(out), &leaked))
			b.synced()

			b.store.meanwhile = c.meanwhile(b, func() {
				code, out := a.call("DELETE", "/v1/partner/webhooks/0/secrets/"+leaked.Added, "", "")
				require.Equal(t, http.StatusOK, code, out)
			})
			code, out = b.call("POST", "/v1/partner/webhooks/0/secrets", "", "")
			require.Equal(t, http.StatusConflict, code, out)
			assert.NotContains(t, out, "whsec_")
			assert.Equal(t, c.bWrites, writtenBy(t, b, subscribers.SecretsOverlayKey("acme", acmeHook), "partner:acme-soc-b") > 0)

			for _, p := range []*process{a, b} {
				p.synced()
				assert.Equal(t, []string{testSecret}, p.reg.Get("acme").Webhooks[0].Secrets, "the leaked secret stays retired")
				assert.Equal(t, []string{subscribers.RedactSecret(testSecret)}, p.webhooks())
			}
			assert.Equal(t, []string{testSecret}, compacted(t, a).Get("acme").Webhooks[0].Secrets, "and in a process started after compaction")
		})
	}
}

// TestKeyUploadsAtOnceThroughTwoProcesses: two uploads of a partner's key
// for one address, through two processes, from the same key: the first
// stands, the second is answered 409.
func TestKeyUploadsAtOnceThroughTwoProcesses(t *testing.T) {
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	bob, _ := pgptest.RecipientKey(t, pgptest.Bob)
	for name, c := range interleavings {
		t.Run(name, func(t *testing.T) {
			a, b := twoAPIProcesses(t)
			b.store.meanwhile = c.meanwhile(b, func() {
				code, out := a.call("PUT", "/v1/partner/email/"+acmeMail+"/key", "application/pgp-keys", bob)
				require.Equal(t, http.StatusOK, code, out)
			})
			code, out := b.call("PUT", "/v1/partner/email/"+acmeMail+"/key", "application/pgp-keys", alice)
			require.Equal(t, http.StatusConflict, code, out)
			assert.Contains(t, out, "the key of "+acmeMail+" changed while this change was made")

			for _, p := range []*process{a, b} {
				p.synced()
				assert.Equal(t, strings.TrimSpace(bob), strings.TrimSpace(p.reg.Get("acme").Email[0].PGPKey))
			}
			assert.Equal(t, strings.TrimSpace(bob), strings.TrimSpace(compacted(t, a).Get("acme").Email[0].PGPKey),
				"and in a process started after compaction")
			for _, reg := range []*subscribers.Registry{a.reg, b.reg, compacted(t, a)} {
				held := reg.KeyOverlays("acme")
				require.Len(t, held, 1)
				assert.Equal(t, "partner:acme-soc-a", held[0].By, "the key in force is a's upload, whoever wrote it again")
			}
			assert.Equal(t, []string{record.ActionPartnerKey + " the key changed while the change was made"}, refusals(t, b))
			assert.Equal(t, c.bWrites, writtenBy(t, b, subscribers.KeyOverlayKey("acme", acmeMail), "partner:acme-soc-b") > 0)
		})
	}
}

// replaceKey is an administrator's replacement, through a, of the key
// acme's record as written holds for acmeMail (the partner's key was
// compromised): the partner's own key for the address is cleared.
func replaceKey(t *testing.T, a *process, key string) {
	t.Helper()
	rec := *a.reg.Record("acme")
	rec.Email = slices.Clone(rec.Email)
	rec.Email[0].PGPKey = key
	require.NoError(t, a.store.Put(t.Context(), "api:ops", "the partner's key was compromised", []*subscribers.Subscriber{&rec}, a.reg.Record))
	a.synced()
}

// TestAdminKeyReplacementStandsAgainstAnUpload: an administrator replaces
// the key of acme's address through process a while the partner uploads
// its own through process b, made from b's copy of the record before the
// replacement. The upload lands after the replacement cleared the
// partner's key, yet it was made over the key the replacement took away:
// the administrator's key stays in force in every process, and the
// partner is answered 409.
func TestAdminKeyReplacementStandsAgainstAnUpload(t *testing.T) {
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	bob, _ := pgptest.RecipientKey(t, pgptest.Bob)
	for name, c := range interleavings {
		t.Run(name, func(t *testing.T) {
			a, b := twoAPIProcesses(t)
			b.store.meanwhile = c.meanwhile(b, func() { replaceKey(t, a, bob) })
			code, out := b.call("PUT", "/v1/partner/email/"+acmeMail+"/key", "application/pgp-keys", alice)
			require.Equal(t, http.StatusConflict, code, out)
			a.synced()
			b.synced()
			for _, reg := range []*subscribers.Registry{a.reg, b.reg, compacted(t, a)} {
				assert.Equal(t, strings.TrimSpace(bob), strings.TrimSpace(reg.Get("acme").Email[0].PGPKey),
					"the administrator's key stands")
			}
		})
	}
}

// TestAdminKeyReplacementStandsAgainstASettle: the partner's upload
// through b is ignored (a's came first), so b writes the key in force,
// a's, again (settle); meanwhile an administrator replaces the key
// through a, which b's registry has not read. b's copy of the key in
// force lands after the replacement, and must not bring the replaced key
// back.
func TestAdminKeyReplacementStandsAgainstASettle(t *testing.T) {
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	bob, _ := pgptest.RecipientKey(t, pgptest.Bob)
	admin, _ := pgptest.RecipientKey(t, pgptest.V6)
	a, b := twoAPIProcesses(t)
	b.store.meanwhile = func(write func() error) error {
		b.pause()
		code, out := a.call("PUT", "/v1/partner/email/"+acmeMail+"/key", "application/pgp-keys", bob)
		require.Equal(t, http.StatusOK, code, out)
		b.resume()
		// The next write through b is settle's: the key in force again.
		b.store.mu.Lock()
		b.store.meanwhile = func(write func() error) error {
			b.pause()
			defer b.resume()
			replaceKey(t, a, admin)
			return write()
		}
		b.store.mu.Unlock()
		return write()
	}
	code, out := b.call("PUT", "/v1/partner/email/"+acmeMail+"/key", "application/pgp-keys", alice)
	require.Equal(t, http.StatusConflict, code, out)
	require.Equal(t, 1, writtenBy(t, b, subscribers.KeyOverlayKey("acme", acmeMail), "partner:acme-soc-a")-1,
		"b wrote a's key again")
	b.synced()
	a.synced()
	for name, reg := range map[string]*subscribers.Registry{"a": a.reg, "b": b.reg, "compacted": compacted(t, a)} {
		assert.Equal(t, strings.TrimSpace(admin), strings.TrimSpace(reg.Get("acme").Email[0].PGPKey),
			"%s: the administrator's key stands, not the replaced key written again", name)
	}
}

// TestAdminUpdateThroughALaggingProcessKeepsTheIncarnation: an
// administrator creates initech through process a; process b has not yet
// read it when it is asked to update it (its follower is paused until b
// catches up before the write). b's update keeps the incarnation a gave
// the record: an update never mints a new one, which would hide the
// record's delivery history and withhold its queued jobs.
func TestAdminUpdateThroughALaggingProcessKeepsTheIncarnation(t *testing.T) {
	a, b := twoAPIProcesses(t)
	b.pause()
	b.mu.Lock()
	b.beforeSync = b.resume
	b.mu.Unlock()
	t.Cleanup(func() { // b never caught up: let its follower stop
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.beforeSync != nil {
			b.resume()
		}
	})
	initech := &subscribers.Subscriber{ID: "initech", Name: "Initech", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Email: []subscribers.Email{{Address: "soc@initech.example"}}}
	initech.Normalize()
	require.NoError(t, a.store.Put(t.Context(), "api:ops", "", []*subscribers.Subscriber{initech}, nil))
	require.NotEmpty(t, initech.Incarnation)
	require.Nil(t, b.reg.Record("initech"), "b has not read it")

	req, err := http.NewRequestWithContext(t.Context(), "PUT", b.srv.URL+"/v1/subscribers/initech", strings.NewReader(
		`{"id": "initech", "name": "Initech Ltd", "kind": "business", "sectors": ["car-washes"], "clearance": "TLP:AMBER",
		  "email": [{"address": "soc@initech.example"}]}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)

	a.synced()
	got := a.reg.Record("initech")
	require.Equal(t, "Initech Ltd", got.Name)
	require.Equal(t, initech.Incarnation, got.Incarnation, "an update keeps the record's incarnation")
}
