package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/testkit/logtest"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

// heraldBin is the binary built once for every test in this package.
var heraldBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-e2e")
	if err != nil {
		panic(err)
	}
	heraldBin = filepath.Join(dir, "herald")
	build := exec.Command("go", "build", "-race", "-o", heraldBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build herald:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback address nobody listened on a moment ago, for
// a subprocess that must bind it itself (the embedded broker of `herald
// serve`, whose address the CLI reads from the same configuration).
//
// Closing a port and handing it to another process is racy: anything on
// the machine may take it in between. Herald has no way to inherit a
// listening socket, so the window cannot be closed; instead it is kept
// short (the port is reserved until just before the subprocess starts)
// and startServe starts serve again on fresh ports when it reports
// "address already in use". Listeners a test can avoid naming are not
// reserved this way: serve's API listens on 127.0.0.1:0 and startServe
// reads the address it got from serve's log; in-process listeners
// (webhooktest, smtptest, kfake) listen on :0 themselves.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// addrInUse reports whether a subprocess's log says it could not bind an
// address because another process holds it.
func addrInUse(log string) bool {
	return strings.Contains(log, "address already in use")
}

// Tokens every e2e server accepts: two analysts (for release by a second
// analyst) and an administrator.
const (
	aliceToken = "hrld_e2e_analyst_alice"
	bobToken   = "hrld_e2e_analyst_bob"
	opsToken   = "hrld_e2e_admin_ops"
)

var e2eTokens = fmt.Sprintf("    - {name: alice, role: analyst, sha256: %s}\n    - {name: bob, role: analyst, sha256: %s}\n    - {name: ops, role: admin, sha256: %s}\n",
	config.HashToken(aliceToken), config.HashToken(bobToken), config.HashToken(opsToken))

// server is a running `herald serve` subprocess.
type server struct {
	cmd    *exec.Cmd
	log    *logtest.Buffer
	config string
	broker string
	api    string
	env    []string      // the environment of serve and of every CLI call
	cache  string        // XDG_CACHE_HOME of serve and the CLI
	done   chan error    // serve's exit status, once
	exited chan struct{} // closed when serve has exited
}

// fastConsumer is the kafka.consumer section that makes consumer-group
// joins and rebalances on the embedded broker take ~100 ms (FIELD-NOTES:
// kafka-go against kfake), for tests that publish right after start.
const fastConsumer = `  consumer: {max_wait: 100ms, heartbeat_interval: 100ms, session_timeout: 1s, rebalance_timeout: 1s,
    join_group_backoff: 100ms, retry_backoff_min: 50ms, retry_backoff_max: 500ms, drain_timeout: 5s}
`

// startServe writes a configuration with the given extra YAML and starts
// `herald serve` with it, waiting until it says it is running.
func startServe(t *testing.T, extra string, args ...string) *server {
	t.Helper()
	return startServeKafka(t, "", extra, args...)
}

// startServeKafka is startServe with extra lines (indented by two spaces)
// for the kafka section. serve and the CLI calls made through the server
// get a cache folder of their own, so the publishing key serve makes for
// its embedded broker is this test's alone, and GORACE without the race
// detector's one-second pause at exit. The embedded broker binds a port
// freePort reserved; if another process took it meanwhile, serve is
// started again on fresh ports.
func startServeKafka(t *testing.T, kafkaExtra, extra string, args ...string) *server {
	t.Helper()
	cache := t.TempDir()
	env := append(relEnviron(), "XDG_CACHE_HOME="+cache)
	for attempt := 1; ; attempt++ {
		s := &server{log: &logtest.Buffer{}, env: env, cache: cache, done: make(chan error, 1), exited: make(chan struct{})}
		s.broker = freePort(t)
		s.config = filepath.Join(t.TempDir(), "herald.yaml")
		y := fmt.Sprintf("kafka:\n  embedded: {listen: %q}\n  partitions: 3\n%sapi:\n  listen: \"127.0.0.1:0\"\n  tokens:\n%s%s",
			s.broker, kafkaExtra, e2eTokens, extra)
		require.NoError(t, os.WriteFile(s.config, []byte(y), 0o600))
		s.cmd = exec.Command(heraldBin, append([]string{"serve", "--config", s.config}, args...)...)
		s.cmd.Env = env
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		require.NoError(t, s.cmd.Start())
		go func() {
			err := s.cmd.Wait()
			close(s.exited)
			s.done <- err
		}()
		require.Eventually(t, func() bool {
			select {
			case <-s.exited:
				return true
			default:
				return strings.Contains(s.log.String(), "herald running")
			}
		}, 60*time.Second, 20*time.Millisecond, "serve did not start:\n%s", s.log)
		select {
		case <-s.exited:
			if addrInUse(s.log.String()) && attempt < 5 {
				t.Logf("serve could not bind its ports (attempt %d), starting it again: %s", attempt, lastLine(s.log.String()))
				continue
			}
			t.Fatalf("serve exited at start:\n%s", s.log)
		default:
		}
		t.Cleanup(func() {
			select {
			case <-s.exited:
			default:
				_ = s.cmd.Process.Signal(os.Interrupt)
				select {
				case <-s.exited:
				case <-time.After(20 * time.Second):
					_ = s.cmd.Process.Kill()
					<-s.exited
				}
			}
			if strings.Contains(s.log.String(), "WARNING: DATA RACE") {
				t.Errorf("herald serve reported a data race:\n%s", s.log)
			} else if t.Failed() {
				t.Logf("herald serve log:\n%s", s.log.String())
			}
		})
		m := apiAddrRE.FindStringSubmatch(s.log.String())
		require.NotNil(t, m, "serve did not say where its API listens:\n%s", s.log)
		s.api = m[1]
		return s
	}
}

// apiAddrRE finds the address serve's API listens on in its log.
var apiAddrRE = regexp.MustCompile(`key=api\.listen addr=(\S+)`)

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// run runs a herald command against the server and returns its exit
// status, stdout and stderr.
func (s *server) run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(heraldBin, append(args, "--config", s.config)...)
	cmd.Env = s.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return code, out.String(), errb.String()
}

// must runs a command that must succeed and returns its stdout.
func (s *server) must(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := s.run(t, "", args...)
	require.Equal(t, 0, code, "herald %s failed:\n%s%s", strings.Join(args, " "), out, errOut)
	return out
}

// approve approves a pending alert through the API as the analyst whose
// token is given.
func (s *server) approve(t *testing.T, id, token string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+s.api+"/v1/alerts/"+id+"/approve", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "approve %s: %s", id, body)
}

type row struct {
	Subscriber string `json:"subscriber"`
	Target     string `json:"target"`
	Decision   string `json:"decision"`
	Rule       string `json:"rule"`
	Mode       string `json:"mode"`
	State      string `json:"state"`
}

// fannedOut reports whether out, the JSON output of `herald status`, lists
// the ledger's rows: until the fan-out has recorded an alert, status
// shows what publishing recorded of it (an object, not a list).
func fannedOut(out string) bool {
	var rows []json.RawMessage
	return json.Unmarshal([]byte(out), &rows) == nil
}

func rowsOf(t *testing.T, out string) map[string]row {
	t.Helper()
	var rows []row
	require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
	m := map[string]row{}
	for _, r := range rows {
		k := r.Subscriber + " " + r.Target
		require.NotContains(t, m, k, "duplicate row")
		m[k] = r
	}
	return m
}

// greenDecisions is exactly who gets examples/alert-green.yaml and why.
var greenDecisions = map[string][3]string{ // subscriber target → decision, mode, rule
	"northbank fincrime@northbank.example":                        {"deliver", "signed", "email.signed"},
	"northbank https://hooks.northbank.example/herald":            {"deliver", "signed", "webhook.signed"},
	"staffright compliance@staffright.example":                    {"deliver", "signed", "email.signed"},
	"grandstay security@grandstay.example":                        {"deliver", "signed", "email.signed"},
	"freedom-trust alerts@freedomtrust.example":                   {"deliver", "signed", "email.signed"},
	"freedom-trust https://api.freedomtrust.example/hooks/herald": {"deliver", "signed", "webhook.signed"},
	"sparkle-cleaning ops@sparkle.example":                        {"withhold", "", "audience.severity"},
}

func TestServeImportPublishStatus(t *testing.T) {
	s := startServe(t, "")
	require.Contains(t, s.log.String(), "embedded", "serve must say it started the embedded broker")

	out := s.must(t, "subscribers", "import", "../../examples/partners.yaml")
	require.Equal(t, 6, strings.Count(out, "put "))

	// Dry run: the rows the fan-out will record, then every other
	// partner, withheld with its rule; nothing published.
	out = s.must(t, "publish", "--dry-run", "--output", "json", "../../examples/alert-green.yaml")
	dry := rowsOf(t, out)
	for k, want := range greenDecisions {
		require.Contains(t, dry, k)
		require.Equal(t, want, [3]string{dry[k].Decision, dry[k].Mode, dry[k].Rule}, k)
	}
	const farm = "harvest-farms office@harvestfarms.example"
	require.Equal(t, [3]string{"withhold", "", "subscriber.suspended"}, [3]string{dry[farm].Decision, dry[farm].Mode, dry[farm].Rule},
		"a partner sharing no sector (the suspended farm) is shown too")
	require.Len(t, dry, len(greenDecisions)+1)

	id := strings.TrimSpace(s.must(t, "publish", "../../examples/alert-green.yaml"))
	require.NotEmpty(t, id)

	// The ledger: every candidate's decision, recorded by the fan-out.
	var got map[string]row
	require.Eventually(t, func() bool {
		code, out, _ := s.run(t, "", "status", id, "--output", "json")
		if code != 0 {
			return false
		}
		if !fannedOut(out) {
			return false
		}
		got = rowsOf(t, out)
		return len(got) == len(greenDecisions)
	}, 30*time.Second, 100*time.Millisecond)
	for k, want := range greenDecisions {
		require.Equal(t, want[0], got[k].Decision, k)
		require.Equal(t, want[2], got[k].Rule, k)
		if want[0] == "withhold" {
			require.Equal(t, "withheld", got[k].State, k)
		}
	}
	// The suspended partner shares no sector with the alert: it is never a
	// candidate of the fan-out, so it has no receipt at all.
	require.NotContains(t, got, farm)

	// A cancel that narrows the audience to financial services: partners that
	// had the original get a content-free cancel notice (rule 7), in the dry
	// run and in the fan-out alike.
	cancel := filepath.Join(t.TempDir(), "cancel.json")
	require.NoError(t, os.WriteFile(cancel, []byte(`{"type":"cancel","references":["`+id+`"],"title":"Withdrawn","severity":"severe",
		"marking":"OFFICIAL","tlp":"GREEN","handling":{"code":"P"},"audience":{"sectors":["financial-services"]}}`), 0o600))
	wantCancel := map[string][3]string{
		"northbank fincrime@northbank.example":                        {"deliver", "signed", "email.signed"},
		"grandstay security@grandstay.example":                        {"notice", "cancel-notice", "update.no-longer-eligible"},
		"freedom-trust https://api.freedomtrust.example/hooks/herald": {"notice", "cancel-notice", "update.no-longer-eligible"},
		"sparkle-cleaning ops@sparkle.example":                        {"withhold", "", "audience.sector"},
	}
	dry = rowsOf(t, s.must(t, "publish", "--dry-run", "--output", "json", cancel))
	for k, want := range wantCancel {
		// A withheld partner is outside the cancel's audience and never had
		// the original: the dry run shows it, the fan-out records nothing.
		require.Equal(t, want, [3]string{dry[k].Decision, dry[k].Mode, dry[k].Rule}, k)
	}
	cancelID := strings.TrimSpace(s.must(t, "publish", cancel))
	require.Eventually(t, func() bool {
		code, out, _ := s.run(t, "", "status", cancelID, "--output", "json")
		if code != 0 {
			return false
		}
		if !fannedOut(out) {
			return false
		}
		got = rowsOf(t, out)
		return len(got) == 6 // northbank ×2, and the four other targets that had the original
	}, 30*time.Second, 100*time.Millisecond)
	for k, want := range wantCancel {
		if want[0] == "withhold" {
			require.NotContains(t, got, k, "not a candidate of the cancel and never had the original")
			continue
		}
		require.Equal(t, [3]string{want[0], want[2]}, [3]string{got[k].Decision, got[k].Rule}, k)
	}
	// A cancel may not lower the TLP: exit 2, field named.
	lower := filepath.Join(t.TempDir(), "lower.json")
	require.NoError(t, os.WriteFile(lower, []byte(strings.Replace(`{"type":"cancel","references":["ID"],"title":"x","severity":"severe",
		"marking":"OFFICIAL","tlp":"CLEAR","handling":{"code":"P"},"audience":{"sectors":["care"]}}`, "ID", id, 1)), 0o600))
	code, _, errOut := s.run(t, "", "publish", lower)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "tlp:")

	// Subscriber management round trip.
	require.Contains(t, s.must(t, "subscribers", "get", "northbank"), `"name": "Northbank plc (financial crime unit)"`)
	var listed []map[string]any
	require.NoError(t, json.Unmarshal([]byte(s.must(t, "subscribers", "list", "--output", "json")), &listed))
	require.Len(t, listed, 6)
	s.must(t, "subscribers", "delete", "harvest-farms")
	require.NoError(t, json.Unmarshal([]byte(s.must(t, "subscribers", "list", "--output", "json")), &listed))
	require.Len(t, listed, 5, "a tombstone deletes")
	code, _, _ = s.run(t, "", "subscribers", "get", "harvest-farms")
	require.Equal(t, 1, code)

	// The api role of the same process.
	body := httpGet(t, "http://"+s.api+"/healthz", 200)
	require.Contains(t, body, "ok")
	metrics := httpGet(t, "http://"+s.api+"/metrics", 200)
	require.Contains(t, metrics, "herald_fanout_alerts_total 2")
	require.Contains(t, metrics, "herald_fanout_jobs_total 12")
	httpGet(t, "http://"+s.api+"/v1/alerts/"+id, 401) // analysts only
	require.Contains(t, s.log.String(), "deliver role not started", "without a signing key nothing is sent, and serve says so")

	// SIGTERM drains and exits 0.
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-s.done:
		require.NoError(t, err, "serve exits 0 on SIGTERM")
	case <-time.After(40 * time.Second):
		t.Fatal("serve did not stop within 40s of SIGTERM")
	}
	require.Contains(t, s.log.String(), "shutting down: draining in-flight work")
}

func httpGet(t *testing.T, url string, status int) string {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, status, res.StatusCode, "%s: %s", url, b)
	return string(b)
}

func TestBadInputExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"title":"a\r\nBcc: x@y","severity":"apocalyptic","marking":"SECRET","tlp":"PURPLE","audience":{"sectors":["piracy"]},"handling":{"code":"P"}}`), 0o600))
	cmd := exec.Command(heraldBin, "validate", bad)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	require.Error(t, err)
	require.Equal(t, 2, err.(*exec.ExitError).ExitCode())
	for _, f := range []string{"title", "severity", "marking", "tlp", "audience.sectors[0]"} {
		require.Contains(t, stderr.String(), "  "+f+":", "every bad field is named")
	}
	unknown := filepath.Join(dir, "unknown.json")
	require.NoError(t, os.WriteFile(unknown, []byte(`{"title":"x","colour":"red"}`), 0o600))
	cmd = exec.Command(heraldBin, "validate", unknown)
	cmd.Stderr = &stderr
	err = cmd.Run()
	require.Equal(t, 2, err.(*exec.ExitError).ExitCode())
	require.Contains(t, stderr.String(), "colour")

	cmd = exec.Command(heraldBin, "validate", "../../examples/alert-green.yaml")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))

	cmd = exec.Command(heraldBin, "no-such-command")
	require.Equal(t, 2, exitCode(cmd.Run()))
	cmd = exec.Command(heraldBin, "publish", "--no-such-flag", "x")
	require.Equal(t, 2, exitCode(cmd.Run()))
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func TestGarbageIsQuarantinedAndNextAlertProcessed(t *testing.T) {
	s := startServe(t, "")
	s.must(t, "subscribers", "import", "../../examples/partners.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Another Kafka client (no publishing key) writes garbage and a SECRET
	// alert to the alerts topic: both are quarantined as unattributed
	// before anything else is judged.
	w := &kafka.Writer{Addr: kafka.TCP(s.broker), Topic: "herald.alerts", BatchTimeout: time.Millisecond}
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx,
		kafka.Message{Key: []byte("junk"), Value: []byte("this is not json")},
		kafka.Message{Key: []byte("secret-1"), Value: []byte(`{"id":"secret-1","title":"t","severity":"minor","audience":{"sectors":["care"]},"marking":"SECRET","tlp":"GREEN","handling":{"code":"P"},"issued_by":"x","issued_at":"2026-01-01T00:00:00Z"}`)},
	))
	id := strings.TrimSpace(s.must(t, "publish", "../../examples/alert-green.yaml"))
	require.Eventually(t, func() bool {
		code, out, _ := s.run(t, "", "status", id, "--output", "json")
		return code == 0 && fannedOut(out) && len(rowsOf(t, out)) == len(greenDecisions)
	}, 30*time.Second, 100*time.Millisecond)

	reasons := map[string]string{}
	// The quarantine topic may have several partitions: read them all.
	conn, err := kafka.DialLeader(ctx, "tcp", s.broker, "herald.quarantine", 0)
	require.NoError(t, err)
	parts, err := conn.ReadPartitions("herald.quarantine")
	require.NoError(t, err)
	conn.Close()
	for _, p := range parts {
		pr := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{s.broker}, Topic: "herald.quarantine", Partition: p.ID, MaxWait: 100 * time.Millisecond})
		for {
			rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			m, err := pr.ReadMessage(rctx)
			rcancel()
			if err != nil {
				break
			}
			for _, h := range m.Headers {
				if h.Key == "reason" {
					reasons[string(m.Key)] = string(h.Value)
				}
			}
		}
		pr.Close()
	}
	require.Equal(t, map[string]string{"junk": "unattributed", "secret-1": "unattributed"}, reasons)
	code, _, _ := s.run(t, "", "status", "secret-1")
	require.Equal(t, 1, code, "a quarantined alert has no receipts")
}
