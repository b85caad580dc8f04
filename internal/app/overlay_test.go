package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/subscribers"
)

// Tokens of the two API processes' callers.
const (
	overlayAdminToken   = "hrld_admin_overlay_5b2e"
	overlayPartnerToken = "hrld_partner_acme_overlay_a41c"
)

// Acme's targets.
const (
	overlayMail   = "soc@acme.example"
	overlayHook   = "https://hooks.acme.example/herald?token=s3cret"
	overlaySecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
)

// overlayNow is a moment at which the test keys are valid.
var overlayNow = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// apiProcess is one Herald api process's worth of state: its own bus
// client, its own registry kept by its own registry follower, and its own
// API server. Its follower can be held back: held, the follower stops and
// the process's catch-up (Partner.Sync) answers at once, as when the
// process caught up a moment before another process wrote. A held process
// that writes a partner's change resumes reading once it has written
// (heldOverlays): the catch-up that reads the change back, after the
// write, reads what the other process wrote before it, as a real one's
// does.
type apiProcess struct {
	t    *testing.T
	reg  *subscribers.Registry
	srv  *httptest.Server
	f    *registryFollower
	stop func()
	held atomic.Bool
	// stuck keeps a held process held when it writes: its catch-up
	// answers without reading its own change.
	stuck bool
	c     *kafkatest.Cluster
}

// startAPIProcess starts one api process on the cluster.
func startAPIProcess(t *testing.T, c *kafkatest.Cluster, name string) *apiProcess {
	t.Helper()
	b := c.Open(t, c.Config())
	p := &apiProcess{t: t, reg: subscribers.NewRegistry(), c: c}
	now := func() time.Time { return overlayNow }
	store := SubscriberStore{Bus: b, Audit: AuditLog(b, now), Overlays: p.reg}
	srv := &api.Server{
		Audit:     AuditLog(b, now),
		Directory: p.reg,
		Registry:  p.reg,
		Writer:    store,
		Endpoints: store,
		Overlays:  heldOverlays{store, p},
		Tokens: []config.Token{
			{Name: "ops", Role: config.RoleAdmin, SHA256: config.HashToken(overlayAdminToken)},
			{Name: "acme-soc", Role: config.RolePartner, Subscriber: "acme", SHA256: config.HashToken(overlayPartnerToken)},
		},
		Partner: api.Partners{Sync: func(ctx context.Context) error {
			if p.held.Load() {
				return nil
			}
			return p.f.Sync(ctx)
		}},
		Now: now,
		Log: kafkatest.Logger(t, slog.LevelWarn).With("process", name),
	}
	p.follow(b)
	p.srv = httptest.NewServer(srv.Handler())
	t.Cleanup(p.srv.Close)
	t.Cleanup(func() { p.stop() })
	return p
}

// follow starts a registry follower on b over the process's registry and
// waits until it has read the topic. A new follower reads the topic from
// the start, so the registry ends as the topic is.
func (p *apiProcess) follow(b *bus.Bus) {
	p.t.Helper()
	p.f = newRegistryFollower(b, p.reg, kafkatest.Logger(p.t, slog.LevelWarn))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	caughtUp := make(chan struct{})
	f := p.f
	go func() { done <- f.run(ctx, func() { close(caughtUp) }) }()
	select {
	case <-caughtUp:
	case err := <-done:
		p.t.Fatalf("registry follower stopped: %v", err)
	}
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.NoError(p.t, <-done)
	}
}

// hold stops the process's follower: its registry keeps what it has read
// until release.
func (p *apiProcess) hold() {
	p.held.Store(true)
	p.stop()
}

// release starts a follower again, if the process is still held, and
// waits until the registry has read every record written before.
func (p *apiProcess) release() {
	p.t.Helper()
	p.resume()
	require.NoError(p.t, p.f.Sync(p.t.Context()))
}

// resume starts a follower again if the process is held.
func (p *apiProcess) resume() {
	p.t.Helper()
	if p.held.Load() && !p.stuck {
		p.follow(p.c.Open(p.t, p.c.Config()))
		p.held.Store(false)
	}
}

// heldOverlays is the process's store of a partner's own changes: a held
// process resumes reading once it has written one.
type heldOverlays struct {
	SubscriberStore
	p *apiProcess
}

func (h heldOverlays) SetKey(ctx context.Context, actor string, rec *subscribers.Subscriber, address, written, pgpKey string, now time.Time) error {
	defer h.p.resume()
	return h.SubscriberStore.SetKey(ctx, actor, rec, address, written, pgpKey, now)
}

func (h heldOverlays) SetSecrets(ctx context.Context, actor string, rec *subscribers.Subscriber, url string, written, secrets []string, now time.Time) error {
	defer h.p.resume()
	return h.SubscriberStore.SetSecrets(ctx, actor, rec, url, written, secrets, now)
}

func (h heldOverlays) RewriteKey(ctx context.Context, rec *subscribers.Subscriber, o subscribers.KeyOverlay) error {
	defer h.p.resume()
	return h.SubscriberStore.RewriteKey(ctx, rec, o)
}

func (h heldOverlays) RewriteSecrets(ctx context.Context, rec *subscribers.Subscriber, o subscribers.SecretsOverlay) error {
	defer h.p.resume()
	return h.SubscriberStore.RewriteSecrets(ctx, rec, o)
}

// call makes one request of the process's API.
func (p *apiProcess) call(method, path, token, ctype, body string) (int, string) {
	p.t.Helper()
	resp, out := p.do(method, path, token, ctype, body)
	return resp.StatusCode, out
}

// do makes one request of the process's API and returns the response,
// its body read.
func (p *apiProcess) do(method, path, token, ctype, body string) (*http.Response, string) {
	p.t.Helper()
	req, err := http.NewRequestWithContext(p.t.Context(), method, p.srv.URL+path, strings.NewReader(body))
	require.NoError(p.t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(p.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(p.t, err)
	return resp, string(out)
}

// twoProcesses starts two api processes on one broker, stores acme's
// record through a and waits until both have read it.
func twoProcesses(t *testing.T) (a, b *apiProcess) {
	t.Helper()
	c := kafkatest.Start(t, kafkatest.RetryTiers(1))
	a, b = startAPIProcess(t, c, "a"), startAPIProcess(t, c, "b")
	acme := &subscribers.Subscriber{ID: "acme", Name: "Acme Car Wash", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Email: []subscribers.Email{{Address: overlayMail}, {Address: "alerts@acme.example"}},
		Webhooks: []subscribers.Webhook{{URL: overlayHook, Secrets: []string{overlaySecret}}}}
	acme.Normalize()
	a.putRecord(acme)
	a.sync()
	b.sync()
	require.NotNil(t, b.reg.Get("acme"))
	return a, b
}

// putRecord is an administrator's PUT of rec through the process's API.
func (p *apiProcess) putRecord(rec any) {
	p.t.Helper()
	body, err := json.Marshal(rec)
	require.NoError(p.t, err)
	code, out := p.call("PUT", "/v1/subscribers/acme", overlayAdminToken, "application/json", string(body))
	require.Equal(p.t, http.StatusOK, code, out)
}

// getRecord is an administrator's GET of acme's record through p.
func (p *apiProcess) getRecord() subscribers.Subscriber {
	p.t.Helper()
	code, out := p.call("GET", "/v1/subscribers/acme", overlayAdminToken, "", "")
	require.Equal(p.t, http.StatusOK, code, out)
	var s subscribers.Subscriber
	require.NoError(p.t, json.Unmarshal([]byte(out), &s))
	return s
}

// sync waits until the process's registry has read every record written.
func (p *apiProcess) sync() {
	p.t.Helper()
	require.NoError(p.t, p.f.Sync(p.t.Context()))
}

// TestPartnerChangeInOneProcessKeepsAdminChangeInAnother: an
// administrator changes acme's record through api process A while the
// partner changes its own key or secrets through process B, whose
// registry has not yet read the administrator's change. Once both have
// caught up, both changes are in force in both: B never writes back its
// copy of the record over A's suspension, lowered clearance or deletion.
func TestPartnerChangeInOneProcessKeepsAdminChangeInAnother(t *testing.T) {
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	putKey := func(p *apiProcess) (int, string) {
		return p.call("PUT", "/v1/partner/email/"+overlayMail+"/key", overlayPartnerToken, "application/pgp-keys", alice)
	}
	addSecret := func(p *apiProcess) (int, string) {
		return p.call("POST", "/v1/partner/webhooks/0/secrets", overlayPartnerToken, "", "")
	}
	for name, c := range map[string]struct {
		admin   func(a *apiProcess)
		partner func(b *apiProcess) (int, string)
		// answer is what b answers the partner once it has read its
		// change back: made, or 409 when the administrator's change put
		// it out of force.
		answer int
		check  func(t *testing.T, p *apiProcess, partnerSaid string)
	}{
		"suspension and key upload": {
			admin: func(a *apiProcess) {
				code, out := a.call("POST", "/v1/subscribers/acme/suspend", overlayAdminToken, "application/json", `{"reason": "vetting lapsed"}`)
				require.Equal(t, http.StatusOK, code, out)
			},
			partner: putKey,
			answer:  http.StatusOK,
			check: func(t *testing.T, p *apiProcess, _ string) {
				got := p.reg.Get("acme")
				require.NotNil(t, got)
				assert.Equal(t, subscribers.StatusSuspended, got.Status, "the administrator's suspension stands")
				assert.False(t, got.Active())
				assert.Equal(t, strings.TrimSpace(alice), strings.TrimSpace(got.Email[0].PGPKey), "and so does the partner's key")
				assert.Equal(t, subscribers.StatusSuspended, p.reg.Record("acme").Status)
			},
		},
		"lowered clearance and secret rotation": {
			admin: func(a *apiProcess) {
				s := a.getRecord()
				s.Clearance, s.Webhooks[0].MaxTLP = alerts.TLPGreen, alerts.TLPGreen
				a.putRecord(s)
			},
			partner: addSecret,
			answer:  http.StatusCreated,
			check: func(t *testing.T, p *apiProcess, partnerSaid string) {
				var added api.SecretResponse
				require.NoError(t, json.Unmarshal([]byte(partnerSaid), &added))
				got := p.reg.Get("acme")
				require.NotNil(t, got)
				assert.Equal(t, alerts.TLPGreen, got.Clearance, "the administrator's clearance stands")
				assert.Equal(t, alerts.TLPGreen, got.Webhooks[0].MaxTLP, "and the endpoint's max_tlp")
				assert.Equal(t, []string{overlaySecret, added.Secret}, got.Webhooks[0].Secrets, "and so does the partner's new secret")
			},
		},
		// The partner's rotation is made from b's copy of the secrets the
		// administrator has just revoked: it must not bring them back.
		"revoked secret and secret rotation": {
			admin: func(a *apiProcess) {
				s := a.getRecord()
				s.Webhooks[0].Secrets = []string{newOwnersSecret}
				a.putRecord(s)
			},
			partner: addSecret,
			answer:  http.StatusConflict,
			check: func(t *testing.T, p *apiProcess, partnerSaid string) {
				assert.NotContains(t, partnerSaid, "whsec_", "a secret not in force is never shown")
				got := p.reg.Get("acme")
				require.NotNil(t, got)
				assert.Equal(t, []string{newOwnersSecret}, got.Webhooks[0].Secrets,
					"the administrator's revocation stands: the rotation made over the revoked secret is not in force")
			},
		},
		"deletion and key upload": {
			admin: func(a *apiProcess) {
				code, out := a.call("DELETE", "/v1/subscribers/acme", overlayAdminToken, "", "")
				require.Equal(t, http.StatusNoContent, code, out)
			},
			partner: putKey,
			answer:  http.StatusConflict,
			check: func(t *testing.T, p *apiProcess, _ string) {
				assert.Nil(t, p.reg.Get("acme"), "the deleted partner is not brought back")
				assert.Nil(t, p.reg.Record("acme"))
				assert.Zero(t, p.reg.Len())
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			a, b := twoProcesses(t)
			b.hold()
			c.admin(a)
			a.sync()
			require.NotEqual(t, a.reg.Get("acme"), b.reg.Get("acme"), "b has not read the administrator's change")
			code, said := c.partner(b)
			require.Equal(t, c.answer, code, "the partner's change, made from b's copy: %s", said)
			b.release()
			a.sync()
			for _, p := range []*apiProcess{a, b} {
				c.check(t, p, said)
			}
		})
	}
}

// TestAChangeNotReadBackIsNotClaimed: a process whose catch-up answers
// without having read the partner's change it has just written cannot
// tell whether the change is in force: it answers 503 and never shows the
// new secret, which Herald may not sign with. The change was written, and
// may be in force: the audit trail says so (PRODUCT.md §10).
func TestAChangeNotReadBackIsNotClaimed(t *testing.T) {
	_, b := twoProcesses(t)
	b.stuck = true
	b.hold()
	code, out := b.call("POST", "/v1/partner/webhooks/0/secrets", overlayPartnerToken, "", "")
	require.Equal(t, http.StatusServiceUnavailable, code, out)
	assert.Contains(t, out, "cannot tell now whether it is in force")
	assert.NotContains(t, out, "whsec_", "a secret not known to be in force is never shown")

	var audited []record.Audit
	require.NoError(t, b.c.Open(t, b.c.Config()).ReadAll(t.Context(), bus.TopicAudit, func(m kafka.Message) error {
		var a record.Audit
		require.NoError(t, json.Unmarshal(m.Value, &a))
		if a.Action == record.ActionPartnerSecret {
			audited = append(audited, a)
		}
		return nil
	}))
	require.Len(t, audited, 1, "the change written is audited")
	assert.Equal(t, "partner:acme-soc", audited[0].Actor)
	assert.Equal(t, "subscriber:acme", audited[0].Object)
	assert.Equal(t, record.OutcomeOK, audited[0].Outcome)
	assert.Contains(t, audited[0].Reason, "could not be read back")
	assert.Equal(t, float64(0), audited[0].Details["webhook"])
	assert.NotEmpty(t, audited[0].Details["added"], "the secret added, redacted")
}

// TestRecreatedPartnerDoesNotInheritKey: a partner deleted in process A
// while its key upload went through process B stays deleted; a record made
// again under the id does not get the old partner's key or secrets.
func TestRecreatedPartnerDoesNotInheritKey(t *testing.T) {
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	a, b := twoProcesses(t)
	code, out := b.call("POST", "/v1/partner/webhooks/0/secrets", overlayPartnerToken, "", "")
	require.Equal(t, http.StatusCreated, code, out)
	b.sync()
	b.hold()
	code, out = a.call("DELETE", "/v1/subscribers/acme", overlayAdminToken, "", "")
	require.Equal(t, http.StatusNoContent, code, out)
	code, out = b.call("PUT", "/v1/partner/email/"+overlayMail+"/key", overlayPartnerToken, "application/pgp-keys", alice)
	require.Equal(t, http.StatusConflict, code, "b reads its upload back after the deletion: not in force: %s", out)
	b.release()
	a.sync()
	require.Nil(t, a.reg.Get("acme"))
	require.Nil(t, b.reg.Get("acme"))

	recreateAcme(t, a)
	b.sync()
	for _, p := range []*apiProcess{a, b} {
		got := p.reg.Get("acme")
		require.NotNil(t, got)
		assert.Empty(t, got.Email[0].PGPKey, "no key of the old partner")
		assert.Equal(t, []string{newOwnersSecret}, got.Webhooks[0].Secrets, "no secret of the old partner")
		assert.Empty(t, p.reg.OverlayKeys("acme"), "every overlay of the id is cleared")
	}
}

// newOwnersSecret is the webhook secret of the partner recreateAcme
// registers.
const newOwnersSecret = "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7"

// recreateAcme registers a new partner under the deleted id acme through
// p, with the old partner's address (no key) and webhook (newOwnersSecret),
// and waits for p's registry to have it.
func recreateAcme(t *testing.T, p *apiProcess) {
	t.Helper()
	again := `{"name": "Acme Car Wash (new owners)", "kind": "business", "sectors": ["car-washes"], "clearance": "AMBER",
		"email": [{"address": "` + overlayMail + `"}],
		"webhooks": [{"url": "` + overlayHook + `", "secrets": ["` + newOwnersSecret + `"]}]}`
	code, out := p.call("PUT", "/v1/subscribers/acme", overlayAdminToken, "application/json", again)
	require.Equal(t, http.StatusOK, code, out)
	p.sync()
}

// TestUploadAfterRecreationIsNotInherited: the old partner's key upload
// and secret rotation, accepted by process B, which has not yet seen the
// partner's deletion and re-creation under the same id through process
// A, land after the re-creation. They were made against the old record's
// incarnation, so the new partner inherits neither, in either process,
// and administrators see them as not in force.
func TestUploadAfterRecreationIsNotInherited(t *testing.T) {
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	a, b := twoProcesses(t)
	// A third process, d, makes the rotation: b reads the re-creation as
	// it reads its own upload back, so its second change would be the
	// new partner's.
	d := startAPIProcess(t, a.c, "d")
	b.sync()
	d.sync()
	old := b.reg.Record("acme")
	require.NotNil(t, old)
	b.hold()
	d.hold()
	code, out := a.call("DELETE", "/v1/subscribers/acme", overlayAdminToken, "", "")
	require.Equal(t, http.StatusNoContent, code, out)
	recreateAcme(t, a)
	recreated := a.reg.Record("acme")
	require.NotNil(t, recreated)
	require.NotEqual(t, old.Incarnation, recreated.Incarnation, "a record created again starts a new incarnation")

	// B and d still hold the old partner's record: they take the old
	// partner's changes and write them after the re-creation; reading
	// them back, they find them out of force and say so.
	code, out = b.call("PUT", "/v1/partner/email/"+overlayMail+"/key", overlayPartnerToken, "application/pgp-keys", alice)
	require.Equal(t, http.StatusConflict, code, out)
	code, out = d.call("POST", "/v1/partner/webhooks/0/secrets", overlayPartnerToken, "", "")
	require.Equal(t, http.StatusConflict, code, out)
	assert.NotContains(t, out, "whsec_", "a secret not in force is never shown")
	b.release()
	d.release()
	a.sync()
	b.sync()
	for _, p := range []*apiProcess{a, b, d} {
		got := p.reg.Get("acme")
		require.NotNil(t, got)
		assert.Equal(t, "Acme Car Wash (new owners)", got.Name)
		assert.Empty(t, got.Email[0].PGPKey, "no key of the old partner")
		assert.Equal(t, []string{newOwnersSecret}, got.Webhooks[0].Secrets, "no secret of the old partner")
	}
	code, out = a.call("GET", "/v1/subscribers/acme/partner-managed", overlayAdminToken, "", "")
	require.Equal(t, http.StatusOK, code, out)
	var managed api.PartnerManaged
	require.NoError(t, json.Unmarshal([]byte(out), &managed))
	require.Len(t, managed.Keys, 1)
	require.Len(t, managed.Secrets, 1)
	assert.False(t, managed.Keys[0].InForce, "the old partner's key is shown, not in force")
	assert.False(t, managed.Secrets[0].InForce, "the old partner's secrets are shown, not in force")
}

// TestAdminPutFromOldGETKeepsPartnerKey: an administrator's record put
// back through process A from a GET made before the partner's key upload
// through process B leaves the partner's newer key in force; a record
// that changes the key replaces the partner's.
func TestAdminPutFromOldGETKeepsPartnerKey(t *testing.T) {
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	bob, _ := pgptest.RecipientKey(t, pgptest.Bob)
	a, b := twoProcesses(t)
	s := a.getRecord()

	code, out := b.call("PUT", "/v1/partner/email/"+overlayMail+"/key", overlayPartnerToken, "application/pgp-keys", alice)
	require.Equal(t, http.StatusOK, code, out)
	// put is the administrator's PUT of s through a, both processes caught
	// up after it.
	put := func() {
		t.Helper()
		a.putRecord(s)
		a.sync()
		b.sync()
	}
	s.Name = "Acme Car Wash Ltd"
	put()
	for _, p := range []*apiProcess{a, b} {
		got := p.reg.Get("acme")
		assert.Equal(t, "Acme Car Wash Ltd", got.Name)
		assert.Equal(t, strings.TrimSpace(alice), strings.TrimSpace(got.Email[0].PGPKey), "the partner's newer key stands")
	}

	s.Email[0].PGPKey = bob
	put()
	for _, p := range []*apiProcess{a, b} {
		got := p.reg.Get("acme")
		assert.Equal(t, strings.TrimSpace(bob), strings.TrimSpace(got.Email[0].PGPKey), "the administrator's explicit key")
		assert.Empty(t, p.reg.KeyOverlays("acme"))
	}
}

// TestIncarnationIsHeralds: a record's incarnation is Herald's: a new
// record starts one, an update keeps it whatever the administrator sends,
// and it is part of the record as read.
func TestIncarnationIsHeralds(t *testing.T) {
	a, _ := twoProcesses(t)
	a.sync()
	first := a.reg.Record("acme").Incarnation
	require.NotEmpty(t, first, "a record put through the store starts an incarnation")
	code, out := a.call("GET", "/v1/subscribers/acme", overlayAdminToken, "", "")
	require.Equal(t, http.StatusOK, code, out)
	var rec map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rec))
	assert.Equal(t, first, rec["incarnation"])
	rec["incarnation"], rec["name"] = "forged", "Acme Car Wash Ltd"
	a.putRecord(rec)
	a.sync()
	got := a.reg.Record("acme")
	assert.Equal(t, "Acme Car Wash Ltd", got.Name)
	assert.Equal(t, first, got.Incarnation, "an update keeps the incarnation, whatever was sent")
}

// TestPutETagIsTheNextGETs: the ETag a PUT answers is the one a GET gives
// next, in this process and in another that read the record back from
// the topic (packed, normalised, the incarnation Herald keeps set), so an
// administrator can make a further change with If-Match without reading
// again.
func TestPutETagIsTheNextGETs(t *testing.T) {
	a, b := twoProcesses(t)
	s := a.getRecord()
	s.Name = "Acme Car Wash Ltd"
	s.Pull = &subscribers.Pull{MaxTLP: alerts.TLPGreen}
	s.Incarnation = "" // a record written from a file names none
	body, err := json.Marshal(s)
	require.NoError(t, err)
	resp, out := a.do("PUT", "/v1/subscribers/acme", overlayAdminToken, "application/json", string(body))
	require.Equal(t, http.StatusOK, resp.StatusCode, out)
	stored := resp.Header.Get("ETag")
	require.NotEmpty(t, stored)
	a.sync()
	b.sync()
	for _, p := range []*apiProcess{a, b} {
		resp, out := p.do("GET", "/v1/subscribers/acme", overlayAdminToken, "", "")
		require.Equal(t, http.StatusOK, resp.StatusCode, out)
		assert.Equal(t, stored, resp.Header.Get("ETag"))
	}
}
