package main_test

// Integrity proofs of issue 10 through the real binary (PRODUCT.md §1, §3
// rules 1 and 7, §4, §6): an id names one alert forever, only Herald's
// publishers reach partners, a 410 never un-suspends a partner, topics
// keep their records long enough, and a partner holding an alert learns
// of its cancel even when it cannot read it.
//
// Each test starts `herald serve` on the embedded broker (or on a kfake
// cluster in this process) with deliver workers sending to an SMTP sink
// (STARTTLS and AUTH) and to HTTPS webhook receivers under a throw-away CA.
// What arrived is checked byte for byte, and every signature with GnuPG
// and Sequoia.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net/http"
	netmail "net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/herald-alerts/herald/internal/testkit/apitest"
	"github.com/herald-alerts/herald/internal/testkit/logtest"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/herald-alerts/herald/internal/testkit/webhooktest"
	"github.com/herald-alerts/herald/subscribers"
)

// intEnv is a `herald serve` on the embedded broker that delivers: the
// agency fixture key signs, email goes to an SMTP sink over STARTTLS with
// AUTH, webhooks go to HTTPS receivers whose certificates a throw-away CA
// (webhooks.ca_file) issued, on loopback (webhooks.allow_cidrs).
type intEnv struct {
	s         *server
	dir       string
	sink      *smtptest.Server
	ca        *webhooktest.CA
	caFile    string
	agencyPub string
	partners  map[string]*intPartner
}

// newIntEnv starts the sinks and serve.
func newIntEnv(t *testing.T) *intEnv {
	t.Helper()
	e := &intEnv{dir: t.TempDir(), ca: webhooktest.NewCA(t), partners: map[string]*intPartner{}}
	e.sink = smtptest.New(t, smtptest.Options{StartTLS: true, Username: "herald", Password: "relay-pw"})
	pub, sec := pgptest.Key(t, pgptest.Agency)
	e.agencyPub = pub
	e.caFile = e.write("webhook-ca.pem", string(e.ca.PEM()))
	extra := fmt.Sprintf(`signing: {key_file: %q}
smtp: {host: %q, port: %d, tls: starttls, username: herald, password_file: %q, from: alerts@agency.example, ca_file: %q}
webhooks: {timeout: 5s, ca_file: %q, allow_cidrs: ["127.0.0.0/8"]}
delivery: {retry_schedule: [200ms, 500ms, 1s]}
email: {issuer_name: "National Crime Agency (test)"}
`, e.write("agency.sec.asc", sec), e.sink.Host, e.sink.Port, e.write("smtp.pw", "relay-pw\n"),
		e.write("relay-ca.pem", string(e.sink.CertPEM)), e.caFile)
	e.s = startServeKafka(t, fastConsumer, extra)
	return e
}

// write writes a file in the environment's folder and returns its path.
func (e *intEnv) write(name, data string) string {
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		panic(err)
	}
	return p
}

// intPartner is a partner organisation of these tests: at most one email
// address (with the public half of a fixture key, or none) and at most
// one webhook, served by its own HTTPS receiver.
type intPartner struct {
	ID        string
	Clearance string
	Sensitive bool
	Sectors   []string
	Email     string // address, "" for none
	Key       string // pgptest fixture name of the address's key, "" for none
	Hook      bool

	secret string
	rc     *webhooktest.Receiver
}

// url is the partner's webhook URL.
func (p *intPartner) url() string { return p.rc.URL("/hooks/" + p.ID) }

// record is the partner's subscriber record, with status.
func (p *intPartner) record(t *testing.T, status string) map[string]any {
	t.Helper()
	r := map[string]any{"id": p.ID, "name": "Partner " + p.ID, "kind": "business", "sectors": p.Sectors,
		"clearance": p.Clearance, "sensitive": p.Sensitive, "status": status}
	if p.Email != "" {
		addr := map[string]any{"address": p.Email}
		if p.Key != "" {
			pub, _ := pgptest.RecipientKey(t, p.Key)
			addr["pgp_key"] = pub
		}
		r["email"] = []any{addr}
	}
	if p.Hook {
		r["webhooks"] = []any{map[string]any{"url": p.url(), "secrets": []string{p.secret}}}
	}
	return r
}

// addPartners starts a receiver for every partner with a webhook and
// registers them all with `herald subscribers import`.
func (e *intEnv) addPartners(t *testing.T, ps ...*intPartner) {
	t.Helper()
	var recs []any
	for _, p := range ps {
		if p.Hook {
			secret, err := whsig.NewSecret()
			require.NoError(t, err)
			p.secret = secret
			p.rc = webhooktest.New(t, webhooktest.TLS(e.ca))
		}
		e.partners[p.ID] = p
		recs = append(recs, p.record(t, "active"))
	}
	out := e.s.must(t, "subscribers", "import", e.writeJSON(t, "partners.json", recs))
	require.Equal(t, len(ps), strings.Count(out, "put "), out)
}

// writeJSON writes v as a JSON file and returns its path.
func (e *intEnv) writeJSON(t *testing.T, name string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return e.write(name, string(b))
}

// intAlert returns an alert as an analyst writes it: GREEN, OFFICIAL,
// severe, for sectors; mut changes it.
func intAlert(id, title string, sectors []string, mut func(map[string]any)) map[string]any {
	a := map[string]any{"title": title, "severity": "severe", "marking": "OFFICIAL", "tlp": "GREEN",
		"handling": map[string]any{"code": "P"}, "audience": map[string]any{"sectors": sectors}}
	if id != "" {
		a["id"] = id
	}
	if mut != nil {
		mut(a)
	}
	return a
}

// publish publishes a with the CLI and returns its id; an alert that
// needs a second analyst is approved by bob through the API.
func (e *intEnv) publish(t *testing.T, a map[string]any) string {
	t.Helper()
	out := e.s.must(t, "publish", e.writeJSON(t, "alert.json", a))
	id, rest, _ := strings.Cut(strings.TrimSpace(out), "\t")
	if strings.HasPrefix(rest, "awaiting approval") {
		e.s.approve(t, id, bobToken)
	}
	return id
}

// call sends a request to serve's API with token and returns the status
// and body.
func (s *server) call(t *testing.T, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+s.api+path, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	status, b := apitest.Do(t, req)
	return status, b
}

// waitDelivered waits until `herald status id` shows exactly the targets
// of want ("subscriber target" → mode) delivered, and every other row of
// the alert withheld.
func (e *intEnv) waitDelivered(t *testing.T, id string, want map[string]string) map[string]row {
	t.Helper()
	var rows map[string]row
	var last string
	ok := assertEventually(60*time.Second, func() bool {
		code, out, errOut := e.s.run(t, "", "status", id, "--output", "json")
		if code != 0 {
			last = errOut
			return false
		}
		last = out
		if !fannedOut(out) {
			return false
		}
		rows = rowsOf(t, out)
		for k, mode := range want {
			if r, ok := rows[k]; !ok || r.State != "delivered" || r.Mode != mode {
				return false
			}
		}
		for k, r := range rows {
			if _, ok := want[k]; !ok && r.Decision != "withhold" {
				return false
			}
		}
		return true
	})
	require.True(t, ok, "alert %s: want %v delivered, status says:\n%s", id, want, last)
	return rows
}

// assertEventually polls cond every 100 ms until it holds or within has
// passed, and says which.
func assertEventually(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond) // polling a subprocess
	}
}

// publishingKeys returns the publishing keyring `herald serve` made for
// its embedded broker in the server's cache folder.
func (s *server) publishingKeys(t *testing.T) *busauth.Keyring {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.cache, "herald", "embedded-*", "publishing.key"))
	require.NoError(t, err)
	require.Len(t, files, 1, "serve makes one publishing key for its embedded broker")
	k, err := busauth.Load(files[0])
	require.NoError(t, err)
	return k
}

// openBus opens a bus on the server's embedded broker that authenticates
// with keys, for reading Herald's topics as a Herald process would.
func (s *server) openBus(t *testing.T, keys *busauth.Keyring) *bus.Bus {
	t.Helper()
	cfg := config.Default().Kafka
	cfg.Brokers = []string{s.broker}
	cfg.CreateTopics = false
	cfg.Consumer = kafkatest.FastConsumer()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, cfg, bus.Options{Keyring: keys, Log: kafkatest.Logger(t, slog.LevelError)})
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	return b
}

// quarantine is one record of the quarantine topic.
type quarantine struct {
	Key, Reason, Error string
	Authentic          bool
}

// quarantined reads the quarantine topic.
func quarantined(t *testing.T, b *bus.Bus) []quarantine {
	t.Helper()
	var out []quarantine
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, b.ReadAll(ctx, bus.TopicQuarantine, func(m kafka.Message) error {
		out = append(out, quarantine{Key: string(m.Key), Reason: bus.Header(m, bus.HeaderReason),
			Error: bus.Header(m, bus.HeaderError), Authentic: b.Authenticate(m) == nil})
		return nil
	}))
	return out
}

// waitQuarantined waits until the quarantine topic holds a record for key
// and returns every record for it.
func waitQuarantined(t *testing.T, b *bus.Bus, key string, n int) []quarantine {
	t.Helper()
	var got []quarantine
	require.Eventually(t, func() bool {
		got = nil
		for _, q := range quarantined(t, b) {
			if q.Key == key {
				got = append(got, q)
			}
		}
		return len(got) >= n
	}, 30*time.Second, 100*time.Millisecond, "no quarantine record for %s", key)
	return got
}

// arrivals counts what the sink and every partner's receiver got.
func (e *intEnv) arrivals() int {
	n := e.sink.Count()
	for _, p := range e.partners {
		if p.rc != nil {
			n += p.rc.Count()
		}
	}
	return n
}

// noMore checks that nothing more arrives at any sink for a while: a
// second copy of anything would be a defect.
func (e *intEnv) noMore(t *testing.T, want int, within time.Duration) {
	t.Helper()
	require.Never(t, func() bool { return e.arrivals() > want }, within, 25*time.Millisecond,
		"more than %d messages and webhook requests arrived", want)
	require.Equal(t, want, e.arrivals())
}

// pgpMIME is an RFC 3156 message taken apart with plain byte operations,
// independent of the code under test: the signed entity and its signature
// (multipart/signed), or the armoured encrypted message
// (multipart/encrypted).
type pgpMIME struct {
	signed, signature []byte
	encrypted         []byte
}

var boundaryRE = regexp.MustCompile(`boundary="?([^";\r\n]+)"?`)

// splitPGPMIME takes apart a message or entity: the first boundary
// parameter names the outermost multipart.
func splitPGPMIME(t *testing.T, entity []byte) pgpMIME {
	t.Helper()
	hdrEnd := bytes.Index(entity, []byte("\r\n\r\n"))
	require.Greater(t, hdrEnd, 0)
	m := boundaryRE.FindSubmatch(entity[:hdrEnd])
	require.NotNil(t, m, "no boundary in %q", entity[:hdrEnd])
	open := []byte("--" + string(m[1]) + "\r\n")
	delim := []byte("\r\n--" + string(m[1]))
	first := bytes.Index(entity, open)
	require.GreaterOrEqual(t, first, 0)
	rest := entity[first+len(open):]
	i := bytes.Index(rest, delim)
	require.GreaterOrEqual(t, i, 0)
	part1, rest := rest[:i], rest[i+len(delim)+2:]
	j := bytes.Index(rest, append(delim, '-', '-'))
	require.GreaterOrEqual(t, j, 0)
	part2 := rest[:j]
	body2 := part2[bytes.Index(part2, []byte("\r\n\r\n"))+4:]
	head := string(entity[:hdrEnd])
	if strings.Contains(head, "multipart/encrypted") {
		return pgpMIME{encrypted: body2}
	}
	require.Contains(t, head, "multipart/signed")
	require.Contains(t, head, `protocol="application/pgp-signature"`)
	return pgpMIME{signed: part1, signature: body2}
}

// partText decodes the quoted-printable body of a signed text/plain part.
func partText(t *testing.T, part []byte) string {
	t.Helper()
	i := bytes.Index(part, []byte("\r\n\r\n"))
	require.GreaterOrEqual(t, i, 0)
	require.Contains(t, string(part[:i]), "quoted-printable")
	b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(part[i+4:])))
	require.NoError(t, err)
	return string(b)
}

// pgpTools are GnuPG and Sequoia, with the agency key and the partners'
// secret keys at hand.
type pgpTools struct {
	gpg, sq   *pgptest.Tool
	agencyPub string
	imported  map[string]bool
}

func newPGPTools(t *testing.T, agencyPub string) *pgpTools {
	tl := &pgpTools{gpg: pgptest.GPG(t), sq: pgptest.SQ(t), agencyPub: agencyPub, imported: map[string]bool{}}
	tl.gpg.Import(agencyPub)
	return tl
}

// verify checks a detached signature of data by the agency key with both
// tools.
func (tl *pgpTools) verify(t *testing.T, what string, data, sig []byte) {
	t.Helper()
	require.NoError(t, tl.gpg.VerifyDetached("", data, sig), "gpg: %s", what)
	require.NoError(t, tl.sq.VerifyDetached(tl.agencyPub, data, sig), "sq: %s", what)
}

// decrypt decrypts an OpenPGP message to the fixture key with both tools,
// which must agree.
func (tl *pgpTools) decrypt(t *testing.T, what, key string, msg []byte) []byte {
	t.Helper()
	_, sec := pgptest.RecipientKey(t, key)
	if !tl.imported[key] {
		tl.gpg.Import(sec)
		tl.imported[key] = true
	}
	a, err := tl.gpg.Decrypt(sec, msg)
	require.NoError(t, err, "gpg: %s", what)
	b, err := tl.sq.Decrypt(sec, msg)
	require.NoError(t, err, "sq: %s", what)
	require.Equal(t, string(a), string(b), "gpg and sq decrypt %s alike", what)
	return a
}

// mail is one message the sink got, opened and verified.
type mail struct {
	to      string
	subject string // the outer Subject, decoded
	outer   string // as received
	// raw is what a search for words looks at: outer with
	// quoted-printable soft breaks removed, the decoded subject, and the
	// decrypted entity of an encrypted message.
	raw       string
	text      string // the signed text, decoded
	encrypted bool
}

// openMail verifies a message with gpg and sq (decrypting it first with
// key if it is encrypted) and returns its text.
func (tl *pgpTools) openMail(t *testing.T, m smtptest.Message, key string) mail {
	t.Helper()
	require.True(t, m.TLS, "sent over STARTTLS")
	require.Len(t, m.To, 1, "one message per recipient address")
	msg, err := netmail.ReadMessage(bytes.NewReader(m.Data))
	require.NoError(t, err)
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	require.NoError(t, err)
	out := mail{to: m.To[0], subject: subject, outer: string(m.Data)}
	out.raw = strings.ReplaceAll(out.outer, "=\r\n", "") + "\n" + subject
	p := splitPGPMIME(t, m.Data)
	if p.encrypted != nil {
		require.NotEmpty(t, key, "an encrypted message to %s, which has no key", m.To[0])
		out.encrypted = true
		p = splitPGPMIME(t, tl.decrypt(t, "message to "+m.To[0], key, p.encrypted))
		out.raw += "\n" + strings.ReplaceAll(string(p.signed), "=\r\n", "")
		// The real subject, protected inside (RFC 9788).
		if hdr, err := netmail.ReadMessage(bytes.NewReader(p.signed)); err == nil {
			if s, err := new(mime.WordDecoder).DecodeHeader(hdr.Header.Get("Subject")); err == nil {
				out.raw += "\n" + s
			}
		}
	}
	tl.verify(t, "message to "+m.To[0], p.signed, p.signature)
	out.text = partText(t, p.signed)
	return out
}

// hook is one webhook request a partner's receiver got, verified.
type hook struct {
	partner string
	id      string // webhook-id
	body    string
	alertID string
	title   string
}

// openHook verifies a webhook request: its Standard Webhooks signature
// with the partner's secret, and its herald-pgp-signature with gpg and sq.
func (tl *pgpTools) openHook(t *testing.T, p *intPartner, r webhooktest.Request) hook {
	t.Helper()
	require.NoError(t, whsig.VerifySignature(r.Header, r.Body, []string{p.secret}), "webhook to %s", p.ID)
	sig, err := base64.StdEncoding.DecodeString(r.Header.Get(whsig.HeaderPGPSignature))
	require.NoError(t, err)
	tl.verify(t, "webhook to "+p.ID, r.Body, sig)
	var body struct {
		Alert struct {
			ID    string `json:"id"`
			Title string `json:"title"`
		} `json:"alert"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &body))
	return hook{partner: p.ID, id: r.Header.Get(whsig.HeaderID), body: string(r.Body), alertID: body.Alert.ID, title: body.Alert.Title}
}

// flat joins the words of s with single spaces, so that phrases can be
// found across wrapped lines.
func flat(s string) string { return strings.Join(strings.Fields(s), " ") }

// requireNoneOf fails if s contains any of the words.
func requireNoneOf(t *testing.T, s string, words []string, what string) {
	t.Helper()
	for _, w := range words {
		require.NotContains(t, s, w, "%s carries %q", what, w)
	}
}

// requireLinesWithin fails if a line of text is wider than cols.
func requireLinesWithin(t *testing.T, text string, cols int, what string) {
	t.Helper()
	for i, l := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		require.LessOrEqual(t, utf8.RuneCountInString(l), cols, "%s: line %d is wider than %d columns: %q", what, i+1, cols, l)
	}
}

// topicRetention reads retention.ms of topics through the admin API of
// the brokers at addrs.
func topicRetention(t *testing.T, addrs []string, topics ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(addrs...), Timeout: 10 * time.Second}
	req := &kafka.DescribeConfigsRequest{}
	for _, tp := range topics {
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: tp, ConfigNames: []string{"retention.ms", "cleanup.policy"}})
	}
	res, err := c.DescribeConfigs(ctx, req)
	require.NoError(t, err)
	out := map[string]string{}
	for _, r := range res.Resources {
		require.NoError(t, r.Error, r.ResourceName)
		for _, e := range r.ConfigEntries {
			out[r.ResourceName+" "+e.ConfigName] = e.ConfigValue
		}
	}
	return out
}

// days400 is 400 days in milliseconds, as retention.ms says it.
const days400 = "34560000000"

// Words of the AMBER alert of TestAnIDIsOneAlertForever that no GREEN
// recipient may ever see.
var amberWords = []string{"AMBERONLY", "Nightjar", "Lodestar Staffing", "GB29NWBK60161331926819"}

// TestAnIDIsOneAlertForever is issue 10's duplicate-id scenario through the
// real binary: an AMBER alert op-reuse-7, approved by a second analyst, goes
// out; a GREEN alert under the same id is then refused by the CLI and the
// API, and, written straight to the alerts topic by a writer holding the
// publishing key (another publisher, or a race), quarantined as
// duplicate-id. Two publishers racing with different alerts under one new
// id end with one alert delivered. No GREEN recipient (GREEN-cleared
// webhooks, signed-only emails) ever gets AMBER text, and every message
// and webhook verifies with gpg and sq.
func TestAnIDIsOneAlertForever(t *testing.T) {
	e := newIntEnv(t)
	hosp := []string{"hospitality"}
	e.addPartners(t,
		&intPartner{ID: "gh-1", Clearance: "GREEN", Sectors: hosp, Email: "alerts@gh-1.example", Hook: true},
		&intPartner{ID: "gh-2", Clearance: "GREEN", Sectors: hosp, Email: "alerts@gh-2.example", Hook: true},
		&intPartner{ID: "gm", Clearance: "GREEN", Sectors: hosp, Email: "desk@gm.example"},
		&intPartner{ID: "ab", Clearance: "AMBER", Sectors: hosp, Email: "fc@ab.example", Key: pgptest.Alice, Hook: true},
		&intPartner{ID: "ab2", Clearance: "AMBER", Sectors: hosp, Email: "sec@ab2.example", Key: pgptest.Bob},
	)
	green := map[string]bool{"gh-1": true, "gh-2": true, "gm": true}

	amber := intAlert("op-reuse-7", "AMBERONLY Operation Nightjar: front company named", hosp, func(a map[string]any) {
		a["tlp"] = "AMBER"
		a["summary"] = "AMBERONLY Lodestar Staffing supplies workers to three hotel groups."
		a["body"] = "AMBERONLY The director of Lodestar Staffing controls the workers' wages."
		a["indicators"] = []any{map[string]any{"type": "iban", "value": "GB29NWBK60161331926819", "context": "AMBERONLY wages account"}}
		a["handling"] = map[string]any{"code": "C", "conditions": "AMBERONLY: financial crime team only"}
	})
	out := e.s.must(t, "publish", e.writeJSON(t, "amber.json", amber))
	require.True(t, strings.HasPrefix(out, "op-reuse-7\tawaiting approval"), out)
	require.Zero(t, e.arrivals(), "nothing goes before a second analyst approves")
	e.s.approve(t, "op-reuse-7", bobToken)
	e.waitDelivered(t, "op-reuse-7", map[string]string{
		"ab fc@ab.example":             "encrypted",
		"ab " + e.partners["ab"].url(): "signed",
		"ab2 sec@ab2.example":          "encrypted",
	})
	require.Eventually(t, func() bool { return e.arrivals() == 3 }, 10*time.Second, 25*time.Millisecond)

	// (a) The same id, GREEN content: the CLI refuses it (exit 2, naming
	// id), and so does the API (409, field id).
	greenReuse := intAlert("op-reuse-7", "GREENREUSE general warning about hotel staffing", hosp, func(a map[string]any) {
		a["body"] = "GREENREUSE body: check agency workers' documents."
	})
	code, stdout, stderr := e.s.run(t, "", "publish", e.writeJSON(t, "green-reuse.json", greenReuse))
	require.Equal(t, 2, code, "stdout %s stderr %s", stdout, stderr)
	require.Contains(t, stderr, `id: "op-reuse-7" already names another alert`)
	require.Empty(t, strings.TrimSpace(stdout))
	status, body := e.s.call(t, "POST", "/v1/alerts", aliceToken, greenReuse)
	require.Equal(t, http.StatusConflict, status, "%s", body)
	var conflict struct {
		Errors []struct{ Field, Message string } `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(body, &conflict), "%s", body)
	require.Len(t, conflict.Errors, 1, "%s", body)
	require.Equal(t, "id", conflict.Errors[0].Field)
	// The identical AMBER alert again is a no-op answering the same id.
	status, body = e.s.call(t, "POST", "/v1/alerts", aliceToken, amber)
	require.Equal(t, http.StatusAccepted, status, "%s", body)
	var res struct {
		ID, State string
		Unchanged bool
	}
	require.NoError(t, json.Unmarshal(body, &res))
	require.Equal(t, "op-reuse-7", res.ID)
	require.Equal(t, "published", res.State)
	require.True(t, res.Unchanged, "%s", body)

	// (b) The GREEN alert written straight to the alerts topic, complete and
	// authenticated with the publishing key serve made: as another
	// publisher, or the loser of a race, would.
	keys := e.s.publishingKeys(t)
	b := e.s.openBus(t, keys)
	now := time.Now().UTC().Truncate(time.Millisecond)
	raw := map[string]any{"id": "op-reuse-7", "issued_by": "api:alice", "issued_at": now}
	for k, v := range greenReuse {
		raw[k] = v
	}
	value, err := json.Marshal(raw)
	require.NoError(t, err)
	w := &kafka.Writer{Addr: kafka.TCP(e.s.broker), Topic: "herald.alerts", Balancer: &kafka.Murmur2Balancer{},
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.WriteMessages(ctx, kafka.Message{Key: []byte("op-reuse-7"), Value: value,
		Headers: []kafka.Header{{Key: busauth.Header, Value: []byte(keys.Sign(bus.TopicAlerts, []byte("op-reuse-7"), value))}}}))
	q := waitQuarantined(t, b, "op-reuse-7", 1)
	require.Len(t, q, 1)
	require.Equal(t, "duplicate-id", q[0].Reason, "%+v", q[0])
	require.Contains(t, q[0].Error, "already fanned out with other content")
	require.True(t, q[0].Authentic, "the quarantine record is Herald's own")

	// (c) Two publishers race with different alerts under one new id: the
	// CLI and the API, then the API twice (two analysts at once). Exactly
	// one is told published and delivered; the other is refused (409 /
	// exit 2) — before its write, or after it, when the topic's order made
	// it the loser, and then the fan-out quarantines it as duplicate-id.
	everyone := map[string]string{
		"gh-1 alerts@gh-1.example": "signed", "gh-1 " + e.partners["gh-1"].url(): "signed",
		"gh-2 alerts@gh-2.example": "signed", "gh-2 " + e.partners["gh-2"].url(): "signed",
		"gm desk@gm.example": "signed", "ab fc@ab.example": "signed", "ab " + e.partners["ab"].url(): "signed",
		"ab2 sec@ab2.example": "signed",
	}
	raceIDs := []string{"op-race-1", "op-race-2", "op-race-3"}
	accepted := 0
	for i, id := range raceIDs {
		raceA := intAlert(id, "Race A: recruiter moving workers between hotels", hosp, nil)
		raceB := intAlert(id, "Race B: landlord housing hotel workers", hosp, nil)
		var wg sync.WaitGroup
		okA, okB := false, false
		if i == 0 {
			fileA := e.writeJSON(t, "race-a.json", raceA)
			wg.Go(func() {
				cmd := exec.Command(heraldBin, "publish", fileA, "--config", e.s.config)
				cmd.Env = e.s.env
				code := exitCode(cmd.Run())
				require.Contains(t, []int{0, 2}, code)
				okA = code == 0
			})
		} else {
			wg.Go(func() {
				status, body := e.s.call(t, "POST", "/v1/alerts", aliceToken, raceA)
				require.Contains(t, []int{http.StatusAccepted, http.StatusConflict}, status, "%s", body)
				okA = status == http.StatusAccepted
			})
		}
		wg.Go(func() {
			status, body := e.s.call(t, "POST", "/v1/alerts", bobToken, raceB)
			require.Contains(t, []int{http.StatusAccepted, http.StatusConflict}, status, "%s", body)
			okB = status == http.StatusAccepted
		})
		wg.Wait()
		require.True(t, okA != okB, "%s: exactly one of the two publishers is told published (A %v, B %v)", id, okA, okB)
		e.waitDelivered(t, id, everyone)
		if q := quarantinedNow(t, b, id); len(q) > 0 {
			accepted++ // both wrote: the loser learnt it from the read-back
			require.Len(t, q, 1)
			require.Equal(t, "duplicate-id", q[0].Reason)
		}
	}
	t.Logf("%d of %d races: both publishers wrote, the loser was told 409 and the fan-out quarantined its alert", accepted, len(raceIDs))

	// A GREEN alert under a fresh id reaches every GREEN recipient: they
	// are reachable, and what they get is GREEN text.
	e.publish(t, intAlert("op-reuse-8", "GREENCONTROL hotel staffing warning", hosp, nil))
	e.waitDelivered(t, "op-reuse-8", map[string]string{
		"gh-1 alerts@gh-1.example": "signed", "gh-1 " + e.partners["gh-1"].url(): "signed",
		"gh-2 alerts@gh-2.example": "signed", "gh-2 " + e.partners["gh-2"].url(): "signed",
		"gm desk@gm.example": "signed", "ab fc@ab.example": "signed", "ab " + e.partners["ab"].url(): "signed",
		"ab2 sec@ab2.example": "signed",
	})
	// 3 AMBER deliveries, 8 of each race, 8 of op-reuse-8; nothing else.
	e.noMore(t, 3+8*len(raceIDs)+8, time.Second)

	// The ledger of op-reuse-7 still holds the AMBER alert alone.
	rows := rowsOf(t, e.s.must(t, "status", "op-reuse-7", "--output", "json"))
	for k, r := range rows {
		if green[strings.Fields(k)[0]] {
			require.Equal(t, "withhold", r.Decision, k)
			require.Equal(t, "clearance.tlp", r.Rule, k)
		}
	}
	status, body = e.s.call(t, "GET", "/v1/alerts/op-reuse-7", aliceToken, nil)
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Contains(t, string(body), "AMBERONLY Operation Nightjar")
	require.NotContains(t, string(body), "GREENREUSE")

	// Everything that arrived, opened as its recipient would.
	tl := newPGPTools(t, e.agencyPub)
	byAddr := map[string]*intPartner{}
	for _, p := range e.partners {
		byAddr[p.Email] = p
	}
	raceTitle := map[string]string{} // race id → the alert that went out
	for _, m := range e.sink.Messages() {
		p := byAddr[m.To[0]]
		require.NotNil(t, p, "a message to %s, who is no partner", m.To)
		got := tl.openMail(t, m, p.Key)
		requireNoneOf(t, got.raw+got.text, []string{"GREENREUSE"}, "message to "+got.to)
		switch {
		case strings.Contains(got.raw, relDeliveryID("op-reuse-7", p.ID, p.Email)):
			require.False(t, green[p.ID], "%s got the AMBER alert", p.ID)
			require.True(t, got.encrypted, "the AMBER alert goes encrypted")
			requireNoneOf(t, strings.ReplaceAll(got.outer, "=\r\n", "")+got.subject, amberWords, "the outside of the encrypted message to "+got.to)
			require.Equal(t, "[TLP:AMBER] OFFICIAL op-reuse-7", got.subject, "an AMBER subject carries only label, marking and id")
			require.Contains(t, flat(got.text), "AMBERONLY The director of Lodestar Staffing")
		case strings.Contains(got.raw, relDeliveryID("op-reuse-8", p.ID, p.Email)):
			require.False(t, got.encrypted)
			require.Contains(t, got.text, "GREENCONTROL hotel staffing warning")
			requireNoneOf(t, got.raw+got.text, amberWords, "GREEN alert to "+got.to)
		case raceOf(got.raw, p, raceIDs) != "":
			id := raceOf(got.raw, p, raceIDs)
			require.False(t, got.encrypted)
			requireNoneOf(t, got.raw+got.text, amberWords, "GREEN alert to "+got.to)
			title := "Race A"
			if strings.Contains(got.text, "Race B") {
				title = "Race B"
			}
			require.True(t, raceTitle[id] == "" || raceTitle[id] == title, "%s went out as both alerts", id)
			raceTitle[id] = title
		default:
			t.Fatalf("a message to %s of no alert this test published:\n%s", got.to, got.raw)
		}
		if green[p.ID] {
			requireNoneOf(t, got.raw+got.text, amberWords, "message to GREEN partner "+p.ID)
		}
	}
	for _, p := range e.partners {
		if p.rc == nil {
			continue
		}
		for _, r := range p.rc.Requests() {
			h := tl.openHook(t, p, r)
			requireNoneOf(t, h.body, []string{"GREENREUSE"}, "webhook to "+p.ID)
			require.Equal(t, relDeliveryID(h.alertID, p.ID, p.url()), h.id)
			switch h.alertID {
			case "op-reuse-7":
				require.False(t, green[p.ID], "%s got the AMBER alert", p.ID)
				require.Equal(t, "AMBERONLY Operation Nightjar: front company named", h.title)
			case "op-reuse-8":
				require.Equal(t, "GREENCONTROL hotel staffing warning", h.title)
				requireNoneOf(t, h.body, amberWords, "GREEN webhook to "+p.ID)
			case "op-race-1", "op-race-2", "op-race-3":
				require.True(t, strings.HasPrefix(h.title, raceTitle[h.alertID]), "%s went out as %q and %q", h.alertID, raceTitle[h.alertID], h.title)
				requireNoneOf(t, h.body, amberWords, "GREEN webhook to "+p.ID)
			default:
				t.Fatalf("webhook to %s of alert %s", p.ID, h.alertID)
			}
			if green[p.ID] {
				requireNoneOf(t, h.body, amberWords, "webhook body to GREEN partner "+p.ID)
			}
		}
	}
}

// raceOf returns which of the race alerts a message to p is, or "".
func raceOf(raw string, p *intPartner, ids []string) string {
	for _, id := range ids {
		if strings.Contains(raw, relDeliveryID(id, p.ID, p.Email)) {
			return id
		}
	}
	return ""
}

// TestKcatAlertIsUnattributed writes complete, attributed alerts (issued_by,
// issued_at, approved_by, approved_at set; valid JSON) to the alerts topic
// with kcat, one without an authenticator and one with a forged one naming
// serve's key: both are quarantined as unattributed, have no receipts and
// reach nobody. The id they used is not taken: Herald's publisher can then
// publish under it, and only that alert is delivered.
func TestKcatAlertIsUnattributed(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	require.NoError(t, err, "kcat is required (apt-get install kcat)")
	e := newIntEnv(t)
	e.addPartners(t, &intPartner{ID: "care-home", Clearance: "AMBER", Sectors: []string{"care"},
		Email: "safeguarding@care-home.example", Key: pgptest.Alice, Hook: true})
	keys := e.s.publishingKeys(t)
	b := e.s.openBus(t, keys)

	now := time.Now().UTC().Truncate(time.Second)
	forged := func(id string) []byte {
		v, err := json.Marshal(intAlert(id, "KCATFORGED close the care home's accounts", []string{"care"}, func(a map[string]any) {
			a["tlp"] = "AMBER"
			a["body"] = "KCATFORGED words put in an analyst's mouth"
			a["issued_by"], a["issued_at"] = "api:alice", now
			a["approved_by"], a["approved_at"] = "api:bob", now.Add(time.Minute)
		}))
		require.NoError(t, err)
		require.True(t, json.Valid(v))
		return v
	}
	// A forged authenticator: serve's key id, a MAC made with another key.
	other, err := busauth.New(bytes.Repeat([]byte{0x5a}, busauth.KeySize))
	require.NoError(t, err)
	forgedMAC := other.Sign(bus.TopicAlerts, []byte("kcat-2"), forged("kcat-2"))
	forgedMAC = "v1=" + keys.IDs()[0] + ":" + forgedMAC[strings.Index(forgedMAC, ":")+1:]
	for _, m := range []struct {
		id   string
		args []string
	}{
		{"kcat-1", nil},
		{"kcat-2", []string{"-H", busauth.Header + "=" + forgedMAC}},
	} {
		args := append([]string{"-P", "-b", e.s.broker, "-t", "herald.alerts", "-k", m.id}, m.args...)
		cmd := exec.Command(kcat, args...)
		cmd.Stdin = bytes.NewReader(append(forged(m.id), '\n'))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "kcat: %s", out)
	}
	for _, id := range []string{"kcat-1", "kcat-2"} {
		q := waitQuarantined(t, b, id, 1)
		require.Len(t, q, 1)
		require.Equal(t, "unattributed", q[0].Reason, "%+v", q[0])
		require.Contains(t, q[0].Error, "not published by Herald")
		code, _, errOut := e.s.run(t, "", "status", id)
		require.Equal(t, 1, code, "a quarantined alert has no receipts: %s", errOut)
	}
	require.Never(t, func() bool { return e.arrivals() > 0 }, 500*time.Millisecond, 25*time.Millisecond)

	// The id is not taken by what another client wrote: Herald's publisher
	// publishes under it, and that alert alone is delivered, once.
	id := e.publish(t, intAlert("kcat-1", "Care home staff paid below the minimum wage", []string{"care"}, func(a map[string]any) {
		a["tlp"] = "AMBER"
	}))
	require.Equal(t, "kcat-1", id)
	e.waitDelivered(t, "kcat-1", map[string]string{
		"care-home safeguarding@care-home.example":   "encrypted",
		"care-home " + e.partners["care-home"].url(): "signed",
	})
	e.noMore(t, 2, 500*time.Millisecond)
	tl := newPGPTools(t, e.agencyPub)
	got := tl.openMail(t, e.sink.Messages()[0], pgptest.Alice)
	require.Contains(t, got.text, "Care home staff paid below the minimum wage")
	requireNoneOf(t, got.raw+got.text, []string{"KCATFORGED"}, "message")
	h := tl.openHook(t, e.partners["care-home"], e.partners["care-home"].rc.Requests()[0])
	require.Equal(t, "kcat-1", h.alertID)
	requireNoneOf(t, h.body, []string{"KCATFORGED"}, "webhook")
}

// TestIdenticalAlertPublishedTwiceIsOneDelivery publishes one alert three
// times, by the CLI twice and by the API: every time the answer is the
// same id, and each target gets exactly one delivery. A CLI and an API
// publishing the identical alert at the same moment also give one
// delivery per target. The topics serve made on its embedded broker keep
// alerts, receipts and audit records 400 days (read back through the admin
// API).
func TestIdenticalAlertPublishedTwiceIsOneDelivery(t *testing.T) {
	e := newIntEnv(t)
	retail := []string{"retail"}
	e.addPartners(t,
		&intPartner{ID: "shop", Clearance: "GREEN", Sectors: retail, Email: "loss@shop.example", Hook: true},
		&intPartner{ID: "mall", Clearance: "AMBER", Sectors: retail, Email: "security@mall.example", Key: pgptest.Alice},
	)
	targets := func() map[string]string {
		return map[string]string{"shop loss@shop.example": "signed", "shop " + e.partners["shop"].url(): "signed",
			"mall security@mall.example": "signed"}
	}
	a := intAlert("same-1", "Car wash workers sleeping on site", retail, func(a map[string]any) {
		a["body"] = "Workers at car washes near retail parks are housed on site."
	})
	file := e.writeJSON(t, "same-1.json", a)
	require.Equal(t, "same-1\n", e.s.must(t, "publish", file))
	code, out, errOut := e.s.run(t, "", "publish", file)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "same-1\n", out, "the identical alert again answers the same id")
	require.Contains(t, errOut, "the identical alert is already held (published): nothing was published again")
	e.waitDelivered(t, "same-1", targets())
	status, body := e.s.call(t, "POST", "/v1/alerts", bobToken, a)
	require.Equal(t, http.StatusAccepted, status, "%s", body)
	var res struct {
		ID, State string
		Unchanged bool
	}
	require.NoError(t, json.Unmarshal(body, &res))
	require.Equal(t, "same-1", res.ID)
	require.Equal(t, "published", res.State)
	require.True(t, res.Unchanged, "%s", body)
	code, out, errOut = e.s.run(t, "", "publish", file)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "same-1\n", out)
	e.noMore(t, 3, 1500*time.Millisecond)

	// Another alert under the id is refused by the API: 409 naming id.
	a["title"] = "Car wash workers sleeping on site (revised)"
	status, body = e.s.call(t, "POST", "/v1/alerts", aliceToken, a)
	require.Equal(t, http.StatusConflict, status, "%s", body)
	var conflict struct {
		Errors []struct{ Field string } `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(body, &conflict), "%s", body)
	require.Len(t, conflict.Errors, 1, "%s", body)
	require.Equal(t, "id", conflict.Errors[0].Field)

	// The CLI and the API publish the identical alert at the same moment.
	b := intAlert("same-2", "Nail bar workers paid in cash below the minimum wage", retail, nil)
	fileB := e.writeJSON(t, "same-2.json", b)
	var wg sync.WaitGroup
	var cliCode int
	var cliOut bytes.Buffer
	wg.Go(func() {
		cmd := exec.Command(heraldBin, "publish", fileB, "--config", e.s.config)
		cmd.Env, cmd.Stdout = e.s.env, &cliOut
		cliCode = exitCode(cmd.Run())
	})
	wg.Go(func() { status, body = e.s.call(t, "POST", "/v1/alerts", aliceToken, b) })
	wg.Wait()
	require.Equal(t, 0, cliCode)
	require.Equal(t, "same-2\n", cliOut.String())
	require.Equal(t, http.StatusAccepted, status, "%s", body)
	require.NoError(t, json.Unmarshal(body, &res))
	require.Equal(t, "same-2", res.ID)
	e.waitDelivered(t, "same-2", targets())
	e.noMore(t, 6, 1500*time.Millisecond)
	for _, p := range []*intPartner{e.partners["shop"]} {
		ids := map[string]int{}
		for _, r := range p.rc.Requests() {
			ids[r.Header.Get(whsig.HeaderID)]++
		}
		require.Equal(t, map[string]int{relDeliveryID("same-1", p.ID, p.url()): 1, relDeliveryID("same-2", p.ID, p.url()): 1}, ids)
	}

	// PRODUCT.md §6: the embedded broker's topics keep what status, updates,
	// cancels and the audit trail answer from for 400 days.
	got := topicRetention(t, []string{e.s.broker}, "herald.alerts", "herald.receipts", "herald.audit")
	for _, tp := range []string{"herald.alerts", "herald.receipts", "herald.audit"} {
		require.Equal(t, days400, got[tp+" retention.ms"], tp)
		require.Equal(t, "delete", got[tp+" cleanup.policy"], tp)
	}
}

// TestGoneRacingSuspensionEndsSuspended: a partner's webhook answers 410
// Gone while an administrator suspends the partner with `herald
// subscribers put`: the receiver holds the request until the put has
// been written, then answers 410. Whatever the order in which serve's
// delivery worker sees the two, the partner ends suspended and its
// endpoint disabled, and a later alert reaches neither the endpoint nor
// the partner's email. Four rounds order the two differently: the 410
// once the put is written (the brief's race: the worker may still hold
// the record from before the put), a little later, recorded before the
// put, and at the same moment.
func TestGoneRacingSuspensionEndsSuspended(t *testing.T) {
	e := newIntEnv(t)
	sectors := []string{"construction"}
	ctl := &intPartner{ID: "ctl", Clearance: "GREEN", Sectors: sectors, Hook: true}
	var gone []*intPartner
	for i := range 4 {
		gone = append(gone, &intPartner{ID: fmt.Sprintf("gone-%d", i), Clearance: "GREEN", Sectors: sectors,
			Email: fmt.Sprintf("site@gone-%d.example", i), Hook: true})
	}
	e.addPartners(t, append([]*intPartner{ctl}, gone...)...)

	// get reads the partner's record as `herald subscribers get` shows it:
	// the record as the administrator wrote it on stdout, and the
	// endpoints Herald disabled on stderr.
	get := func(p *intPartner) (status string, disabled bool) {
		code, out, errOut := e.s.run(t, "", "subscribers", "get", p.ID)
		var rec struct {
			Status   string
			Webhooks []struct{ Disabled bool }
		}
		if code != 0 || json.Unmarshal([]byte(out), &rec) != nil || len(rec.Webhooks) != 1 {
			return "", false
		}
		return rec.Status, strings.Contains(errOut, "webhook "+subscribers.RedactURL(p.url())+" is disabled (gone by herald:deliver")
	}
	// Each round orders the administrator's put and the 410 differently.
	rounds := []struct {
		name  string
		order func(put func(), answer func(), p *intPartner)
	}{
		{"410 once the put is written", func(put, answer func(), _ *intPartner) { put(); answer() }},
		{"410 30 ms after the put is written", func(put, answer func(), _ *intPartner) {
			put()
			time.Sleep(30 * time.Millisecond) // the delivery worker's registry has likely seen the put
			answer()
		}},
		{"410 recorded before the put", func(put, answer func(), p *intPartner) {
			answer()
			require.Eventually(t, func() bool { _, disabled := get(p); return disabled }, 30*time.Second, 100*time.Millisecond)
			put()
		}},
		{"410 while the put runs", func(put, answer func(), _ *intPartner) {
			var wg sync.WaitGroup
			wg.Go(answer)
			put()
			wg.Wait()
		}},
	}
	require.Len(t, gone, len(rounds))
	for i, p := range gone {
		round := rounds[i]
		arrived, answer := make(chan struct{}), make(chan struct{})
		var once sync.Once
		p.rc.Script(func(w http.ResponseWriter, r *http.Request, release <-chan struct{}) {
			once.Do(func() { close(arrived) })
			select {
			case <-answer:
			case <-release:
			case <-r.Context().Done():
			}
			w.WriteHeader(http.StatusGone)
		})
		id := e.publish(t, intAlert(fmt.Sprintf("gone-alert-%d", i), "Site workers without safety equipment", nil,
			func(a map[string]any) { a["audience"] = map[string]any{"subscribers": []string{p.ID}} }))
		select {
		case <-arrived:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: the webhook never arrived", id)
		}
		suspended := e.writeJSON(t, p.ID+".json", p.record(t, "suspended"))
		var putCode int
		var putErr string
		round.order(func() {
			cmd := exec.Command(heraldBin, "subscribers", "put", suspended, "--config", e.s.config)
			var errb bytes.Buffer
			cmd.Env, cmd.Stderr = e.s.env, &errb
			putCode, putErr = exitCode(cmd.Run()), errb.String()
		}, func() { close(answer) }, p)
		require.Equal(t, 0, putCode, "round %q: subscribers put: %s", round.name, putErr)
		var status string
		var disabled bool
		assertEventually(30*time.Second, func() bool {
			status, disabled = get(p)
			return status == "suspended" && disabled
		})
		require.Equal(t, "suspended", status, "round %q: an administrator's suspension stands", round.name)
		require.True(t, disabled, "round %q: the endpoint that answered 410 is disabled", round.name)
		require.Equal(t, 1, p.rc.Count(), "a 410 is not retried")
	}

	// A later alert for the sector: the control partner gets it, the
	// suspended partners nothing, by webhook or email.
	id := e.publish(t, intAlert("after-gone", "Construction site labour exploitation", sectors, nil))
	rows := e.waitDelivered(t, id, map[string]string{"ctl " + ctl.url(): "signed"})
	for _, p := range gone {
		for _, k := range []string{p.ID + " " + p.Email, p.ID + " " + p.url()} {
			r, ok := rows[k]
			require.True(t, ok, "the ledger records why %s got nothing", k)
			require.Equal(t, "withhold", r.Decision, "%s: %+v", k, r)
			require.Equal(t, "subscriber.suspended", r.Rule, "%s: %+v", k, r)
		}
	}
	require.Never(t, func() bool {
		for _, p := range gone {
			if p.rc.Count() > 1 {
				return true
			}
		}
		for _, m := range e.sink.Messages() {
			for _, p := range gone {
				if bytes.Contains(m.Data, []byte(relDeliveryID(id, p.ID, p.Email))) {
					return true
				}
			}
		}
		return false
	}, time.Second, 25*time.Millisecond, "a suspended partner got the later alert")
	for _, p := range gone {
		status, disabled := get(p)
		require.Equal(t, "suspended", status, p.ID)
		require.True(t, disabled, p.ID)
		require.Equal(t, 1, p.rc.Count(), p.ID)
		for _, m := range e.sink.Messages() {
			require.NotContains(t, string(m.Data), relDeliveryID(id, p.ID, p.Email), "%s got the later alert by email", p.ID)
		}
	}
}

// TestServeRefusesShortRetention points `herald serve` at a Kafka cluster
// (kfake, in this process) where the alerts topic exists with Kafka's
// stock 7-day retention: the roles that read it (api, fanout) are stopped
// with an error naming the topic and both durations, and the deliver role,
// which does not read it, starts; serve with only roles that read it
// stops with their errors (exit 1); with kafka.retention.accept_shorter
// serve starts every role. The topics serve created keep their records as
// configured (read back through the admin API).
func TestServeRefusesShortRetention(t *testing.T) {
	kc := kafkatest.Start(t, kafkatest.Partitions(3))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := &kafka.Client{Addr: kafka.TCP(kc.Addrs()...), Timeout: 10 * time.Second}
	res, err := admin.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: "herald.alerts", NumPartitions: 3, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "604800000"}},
	}}})
	require.NoError(t, err)
	require.NoError(t, res.Errors["herald.alerts"])
	require.Equal(t, "604800000", topicRetention(t, kc.Addrs(), "herald.alerts")["herald.alerts retention.ms"])

	dir := t.TempDir()
	_, sec := pgptest.Key(t, pgptest.Agency)
	signing := filepath.Join(dir, "agency.sec.asc")
	require.NoError(t, os.WriteFile(signing, []byte(sec), 0o600))
	brokers, err := json.Marshal(kc.Addrs())
	require.NoError(t, err)
	writeConfig := func(name, extra string) string {
		p := filepath.Join(dir, name)
		y := fmt.Sprintf("kafka:\n  brokers: %s\n  partitions: 3\n%s%spublishing: {key_file: %q}\nsigning: {key_file: %q}\napi: {listen: \"127.0.0.1:0\"}\n",
			brokers, fastConsumer, extra, kafkatest.KeyFile(t), signing)
		require.NoError(t, os.WriteFile(p, []byte(y), 0o600))
		return p
	}
	serve := func(cfg string, args ...string) (*exec.Cmd, *logtest.Buffer, chan error) {
		log := &logtest.Buffer{}
		cmd := exec.Command(heraldBin, append([]string{"serve", "--config", cfg}, args...)...)
		cmd.Env, cmd.Stdout, cmd.Stderr = relEnviron(), log, log
		require.NoError(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return cmd, log, done
	}
	// running waits until serve runs, then stops it; it must exit 0.
	running := func(what string, cmd *exec.Cmd, log *logtest.Buffer, done chan error) {
		t.Helper()
		require.Eventually(t, func() bool { return strings.Contains(log.String(), "herald running") },
			60*time.Second, 20*time.Millisecond, "%s did not start:\n%s", what, log)
		require.NoError(t, cmd.Process.Signal(os.Interrupt))
		select {
		case err := <-done:
			require.NoError(t, err, "%s:\n%s", what, log)
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%s did not stop:\n%s", what, log)
		}
		require.NotContains(t, log.String(), "WARNING: DATA RACE")
	}

	strict := writeConfig("strict.yaml", "")
	// Every role: the api and fanout roles read alerts and are stopped,
	// each with an error line; the deliver role runs (PRODUCT.md §6).
	cmd, log, done := serve(strict)
	running("serve with a 7-day alerts topic", cmd, log, done)
	for _, role := range []string{"api", "fanout"} {
		require.Regexp(t, `level=ERROR msg="role not started[^\n]*role=`+role+
			`[^\n]*herald\.alerts keeps records for 7d, kafka\.retention\.alerts asks for 400d[^\n]*kafka\.retention\.accept_shorter`, log.String())
	}
	require.Regexp(t, `msg="herald running" roles=deliver [^\n]*stopped=api,fanout`, log.String())

	// Only roles that read alerts: none can start, serve stops.
	_, log, done = serve(strict, "--roles", "api,fanout")
	select {
	case err := <-done:
		require.Error(t, err, "serve must refuse a 7-day alerts topic:\n%s", log)
		require.Equal(t, 1, exitCode(err), log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not stop:\n%s", log)
	}
	require.NotContains(t, log.String(), "herald running")
	for _, role := range []string{"api", "fanout"} {
		require.Regexp(t, role+` role not started: kafka topics keep records for too short a time: herald\.alerts keeps records for 7d, kafka\.retention\.alerts asks for 400d`, log.String())
	}
	require.Contains(t, log.String(), "kafka.retention.accept_shorter")

	// The deliver role reads no alerts: it starts.
	cmd, log, done = serve(strict, "--roles", "deliver")
	running("serve --roles deliver", cmd, log, done)

	// The operator accepts the shorter retention: serve starts, and says so.
	cmd, log, done = serve(writeConfig("accept.yaml", "  retention: {accept_shorter: true}\n"))
	running("serve with kafka.retention.accept_shorter", cmd, log, done)
	require.Regexp(t, `accepted by kafka\.retention\.accept_shorter.*herald\.alerts keeps records for 7d`, log.String())

	// What serve created, it created as configured; the alerts topic it
	// found, it left alone.
	got := topicRetention(t, kc.Addrs(), "herald.receipts", "herald.audit", "herald.alerts", "herald.subscribers")
	require.Equal(t, days400, got["herald.receipts retention.ms"])
	require.Equal(t, days400, got["herald.audit retention.ms"])
	require.Equal(t, "604800000", got["herald.alerts retention.ms"], "serve never changes a topic that exists")
	require.Equal(t, "compact", got["herald.subscribers cleanup.policy"])
}

// TestRule7CancelNoticeThroughSMTP is rule 7 end to end: a partner with no
// key receives GREEN alert 1 by email; an AMBER cancel of alert 1,
// approved by a second analyst, reaches it as one content-free notice
// that names alert 1 by id and by the title it received, says it was
// withdrawn and gives the key advice — not a bare key notice — signed so
// that gpg and sq verify it, wrapped at 72 columns, with nothing of the
// cancel's AMBER text. A partner with a key gets the cancel encrypted; one
// no longer cleared gets a cancel notice.
func TestRule7CancelNoticeThroughSMTP(t *testing.T) {
	e := newIntEnv(t)
	hosp := []string{"hospitality"}
	e.addPartners(t,
		&intPartner{ID: "inn", Clearance: "AMBER", Sectors: hosp, Email: "front-desk@inn.example"},
		&intPartner{ID: "bank", Clearance: "AMBER", Sectors: hosp, Email: "fc@bank.example", Key: pgptest.Alice},
		&intPartner{ID: "cafe", Clearance: "GREEN", Sectors: hosp, Email: "owner@cafe.example"},
	)
	// A long id and title: the notice must wrap after they are filled in.
	origID := "r7-hotel-staffing-warning-issued-to-the-hospitality-sector-2026"
	origTitle := "Hotel cleaning staff housed at one address with wages paid to one account"
	e.publish(t, intAlert(origID, origTitle, hosp, nil))
	e.waitDelivered(t, origID, map[string]string{"inn front-desk@inn.example": "signed",
		"bank fc@bank.example": "signed", "cafe owner@cafe.example": "signed"})

	cancelID := e.publish(t, intAlert("", "AMBERONLY withdrawn: the operation against Lodestar Staffing was compromised", hosp,
		func(a map[string]any) {
			a["type"], a["references"], a["tlp"] = "cancel", []string{origID}, "AMBER"
			a["body"] = "AMBERONLY Nightjar: the suspects were warned; stop all contact."
		}))
	rows := e.waitDelivered(t, cancelID, map[string]string{
		"inn front-desk@inn.example": "followup-key-notice",
		"bank fc@bank.example":       "encrypted",
		"cafe owner@cafe.example":    "cancel-notice",
	})
	require.Len(t, rows, 3)
	e.noMore(t, 6, 500*time.Millisecond)

	tl := newPGPTools(t, e.agencyPub)
	byTarget := map[string]mail{}
	for _, m := range e.sink.Messages() {
		for _, p := range e.partners {
			if p.Email != m.To[0] {
				continue
			}
			got := tl.openMail(t, m, p.Key)
			if strings.Contains(got.raw, relDeliveryID(cancelID, p.ID, p.Email)) {
				byTarget[got.to] = got
			}
		}
	}
	require.Len(t, byTarget, 3, "one message of the cancel per address")

	inn := byTarget["front-desk@inn.example"]
	require.False(t, inn.encrypted)
	text := flat(inn.text)
	require.Contains(t, text, "Alert "+origID+` ("`+origTitle+`")`, "names the alert it holds, with the title it received")
	require.Contains(t, text, "has been withdrawn; stop acting on it")
	require.Contains(t, text, "Please send a current OpenPGP public key for this address")
	require.Contains(t, text, "The withdrawal itself could not be sent to this address")
	require.NotContains(t, text, "Herald has an alert (", "not a bare key notice")
	require.Equal(t, "[TLP:AMBER] Herald: alert "+origID+" withdrawn — your OpenPGP key needs attention", inn.subject)
	requireNoneOf(t, inn.raw+inn.text, amberWords, "the notice to the inn")
	requireLinesWithin(t, inn.text, 72, "the notice to the inn")

	cafe := byTarget["owner@cafe.example"]
	require.False(t, cafe.encrypted)
	require.Contains(t, flat(cafe.text), "Alert "+origID+` ("`+origTitle+`")`)
	require.Contains(t, flat(cafe.text), "withdrawn")
	requireNoneOf(t, cafe.raw+cafe.text, amberWords, "the notice to the cafe")
	requireLinesWithin(t, cafe.text, 72, "the notice to the cafe")

	bank := byTarget["fc@bank.example"]
	require.True(t, bank.encrypted)
	requireNoneOf(t, bank.outer+bank.subject, amberWords, "the outside of the cancel to the bank")
	require.Equal(t, "[TLP:AMBER] OFFICIAL "+cancelID, bank.subject, "an AMBER subject carries only label, marking and id")
	require.Contains(t, flat(bank.text), "AMBERONLY Nightjar: the suspects were warned")
}

// quarantinedNow returns the quarantine records of key written so far.
func quarantinedNow(t *testing.T, b *bus.Bus, key string) []quarantine {
	t.Helper()
	var got []quarantine
	for _, q := range quarantined(t, b) {
		if q.Key == key {
			got = append(got, q)
		}
	}
	return got
}
