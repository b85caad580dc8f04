package main_test

// What a newcomer reads, run as written: the sandbox `herald demo --serve`
// prints, the README's by-hand commands (taken from README.md itself), and
// the partner docs' example programs and scripts (docs/examples), each
// against a real delivery.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/testkit/apitest"
	"github.com/herald-alerts/herald/internal/testkit/logtest"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/subscribers"
)

// repoRoot is the repository's root, from this package's folder.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"))
	return root
}

// freshEnv is the environment of a newcomer's shell on a fresh machine:
// this one without any HERALD_ setting, with HOME and the XDG folders in
// dir (so no publishing key, cached view or gpg keyring is found from an
// earlier run), and Go's own caches where they are (a fresh machine would
// download and compile the same things, only slower).
func freshEnv(t *testing.T, dir string, extra ...string) []string {
	t.Helper()
	goEnv := map[string]string{}
	out, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE", "GOPATH").Output()
	require.NoError(t, err)
	for i, v := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		goEnv[[]string{"GOCACHE", "GOMODCACHE", "GOPATH"}[i]] = v
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "HERALD_"), strings.HasPrefix(k, "XDG_"), strings.HasPrefix(k, "GO"),
			k == "HOME", k == "GNUPGHOME", k == "LISTEN", k == "WEBHOOK_SECRETS", k == "SAVE_DIR":
			continue
		}
		env = append(env, kv)
	}
	for _, d := range []string{"home", "cache", "config"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o700))
	}
	env = append(env, "HOME="+filepath.Join(dir, "home"), "XDG_CACHE_HOME="+filepath.Join(dir, "cache"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"GOCACHE="+goEnv["GOCACHE"], "GOMODCACHE="+goEnv["GOMODCACHE"], "GOPATH="+goEnv["GOPATH"],
		"GOPROXY=off", "GOTOOLCHAIN=local", "GOFLAGS=-mod=readonly")
	return append(env, extra...)
}

// background is a long-running process of a test, in its own process
// group, with its output collected.
type background struct {
	name string
	cmd  *exec.Cmd
	out  *logtest.Buffer
	done chan struct{}
	err  error
}

// startBackground starts cmd and stops it (SIGINT to its process group)
// when the test ends.
func startBackground(t *testing.T, name string, cmd *exec.Cmd) *background {
	t.Helper()
	b := &background{name: name, cmd: cmd, out: &logtest.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = b.out, b.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start(), name)
	go func() { b.err = cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		b.stop(t)
		if t.Failed() {
			t.Logf("%s:\n%s", name, b.out.String())
		}
	})
	return b
}

// waitFor waits until the output holds s.
func (b *background) waitFor(t *testing.T, s string, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		select {
		case <-b.done:
			return true
		default:
		}
		return strings.Contains(b.out.String(), s)
	}, within, 50*time.Millisecond)
	require.Contains(t, b.out.String(), s, "%s stopped or never said %q:\n%s", b.name, s, b.out)
}

// stop interrupts the process group, as Ctrl-C in its terminal would, and
// returns the exit status (-1 when it had to be killed).
func (b *background) stop(t *testing.T) int {
	select {
	case <-b.done:
	default:
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-b.done:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			<-b.done
			return -1
		}
	}
	return b.cmd.ProcessState.ExitCode()
}

// sandbox is a running `herald demo --serve`, with what it printed.
type sandbox struct {
	*background
	console, emailDir, webhookDir, outDir string
	tokens                                map[string]string
	env                                   []string // the "cli:" line's variables
}

// startSandbox runs `herald demo --serve` and reads what it prints.
func startSandbox(t *testing.T) *sandbox {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(heraldBin, "demo", "--serve", "--out", filepath.Join(dir, "out"))
	cmd.Dir = dir
	cmd.Env = freshEnv(t, dir)
	s := &sandbox{background: startBackground(t, "herald demo --serve", cmd), outDir: filepath.Join(dir, "out"), tokens: map[string]string{}}
	s.waitFor(t, "received webhooks: ", 2*time.Minute)
	out := s.out.String()
	field := func(label string) string {
		m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(label) + `: (\S.*)$`).FindStringSubmatch(out)
		require.NotNil(t, m, "no %q line in:\n%s", label, out)
		return m[1]
	}
	s.console = field("console")
	for _, name := range []string{"analyst", "second-analyst", "admin", "northbank"} {
		s.tokens[name] = field("token " + name)
		require.True(t, strings.HasPrefix(s.tokens[name], "hrld_"), s.tokens[name])
	}
	s.emailDir, s.webhookDir = field("received email"), field("received webhooks")
	cli, ok := strings.CutPrefix(field("cli"), "export ")
	require.True(t, ok, "the cli line is an export: %s", cli)
	s.env = freshEnv(t, t.TempDir(), strings.Fields(cli)...)
	return s
}

// api calls the sandbox's API with token and decodes the JSON answer into
// v (if not nil); it returns the status code.
func (s *sandbox) api(t *testing.T, method, path, token string, body []byte, v any) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, strings.TrimSuffix(s.console, "/")+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	status, data := apitest.Do(t, req)
	if v != nil && status < 300 {
		require.NoError(t, json.Unmarshal(data, v), "%s %s: %s", method, path, data)
	}
	return status
}

// cli runs a herald command with the sandbox's environment line.
func (s *sandbox) cli(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(heraldBin, args...)
	cmd.Dir = repoRoot(t)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	return exitCode(err), string(out)
}

// deliveries is GET /v1/alerts/{id}/deliveries.
type deliveries struct {
	Done       bool           `json:"done"`
	Counts     map[string]int `json:"counts"`
	Deliveries []struct {
		Subscriber string `json:"subscriber"`
		Target     string `json:"target"`
		Channel    string `json:"channel"`
		Decision   string `json:"decision"`
		Mode       string `json:"mode"`
		State      string `json:"state"`
	} `json:"deliveries"`
}

// settled waits until every delivery of alert id is final and returns
// them.
func (s *sandbox) settled(t *testing.T, id string) deliveries {
	t.Helper()
	var d deliveries
	poll(t, time.Minute, func() bool {
		d = deliveries{}
		return s.api(t, "GET", "/v1/alerts/"+id+"/deliveries", s.tokens["analyst"], nil, &d) == http.StatusOK && d.Done
	}, "alert %s never settled", id)
	for _, e := range d.Deliveries {
		switch {
		case e.Decision == "withhold":
		case e.Channel == "pull": // in the partner's collection until it pulls
			require.Equal(t, "available", e.State, "%+v", e)
		default:
			require.Equal(t, "delivered", e.State, "%+v", e)
		}
	}
	return d
}

// poll checks cond in the test's goroutine until it holds, failing the
// test after within.
func poll(t *testing.T, within time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: "+msg, append([]any{within}, args...)...)
		}
	}
}

// received returns the files of dir whose name or content holds s.
func received(t *testing.T, dir, s string) []string {
	t.Helper()
	var out []string
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		if strings.Contains(e.Name(), s) || bytes.Contains(data, []byte(s)) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// alertJSON reads an example alert (YAML) as the JSON the API takes.
func alertJSON(t *testing.T, file string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), file))
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &v))
	j, err := json.Marshal(v)
	require.NoError(t, err)
	return j
}

// TestDemoServeSandbox runs `herald demo --serve` as a newcomer would: it
// reads the console URL and the tokens it prints, publishes through the
// API (a TLP:AMBER alert released by the second analyst) and through the
// command line with the printed environment line, sees every alert reach
// the partners' folders, and stops it with Ctrl-C.
func TestDemoServeSandbox(t *testing.T) {
	s := startSandbox(t)
	require.Regexp(t, `^http://127\.0\.0\.1:\d+/$`, s.console)
	page := httpGet(t, s.console, http.StatusOK)
	require.Contains(t, page, "API token")

	// A TLP:GREEN alert through the API goes out at once.
	var pub struct{ ID, State string }
	require.Equal(t, http.StatusAccepted, s.api(t, "POST", "/v1/alerts", s.tokens["analyst"], alertJSON(t, "examples/alert-green.yaml"), &pub))
	require.Equal(t, "published", pub.State)
	d := s.settled(t, pub.ID)
	require.Equal(t, 7, d.Counts["delivered"], "%+v", d.Counts)
	poll(t, 30*time.Second, func() bool { return len(received(t, s.webhookDir, pub.ID)) == 3 },
		"the three partners' webhooks received alert %s", pub.ID)
	for _, p := range []string{"northbank", "staffright", "grandstay", "freedom-trust"} {
		require.NotEmpty(t, received(t, s.emailDir, p), "%s's mailbox", p)
	}
	// What arrived verifies as a partner would check it.
	var partners []subscribers.Subscriber
	raw, err := os.ReadFile(filepath.Join(s.outDir, "partners.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &partners))
	capture := received(t, s.webhookDir, "northbank-"+pub.ID)
	require.Len(t, capture, 1)
	code, out := s.cli(t, "verify", "webhook", capture[0], "--secret", partners[0].Webhooks[0].Secrets[0], "--key", filepath.Join(s.outDir, "agency.asc"))
	require.Equal(t, 0, code, out)

	// A TLP:AMBER alert waits for the second analyst; its author cannot
	// release it.
	require.Equal(t, http.StatusAccepted, s.api(t, "POST", "/v1/alerts", s.tokens["analyst"], alertJSON(t, "examples/alert-amber-sensitive.yaml"), &pub))
	require.Equal(t, "pending", pub.State)
	require.Equal(t, http.StatusForbidden, s.api(t, "POST", "/v1/alerts/"+pub.ID+"/approve", s.tokens["analyst"], nil, nil))
	require.Equal(t, http.StatusOK, s.api(t, "POST", "/v1/alerts/"+pub.ID+"/approve", s.tokens["second-analyst"], nil, nil))
	d = s.settled(t, pub.ID)
	modes := map[string]string{}
	for _, e := range d.Deliveries {
		if e.State == "delivered" {
			modes[e.Subscriber+" "+e.Channel] = e.Mode
		}
	}
	require.Equal(t, "encrypted", modes["northbank email"], "%+v", d.Deliveries)
	require.Len(t, received(t, s.webhookDir, "northbank-"+pub.ID), 1)

	// The command line, pointed at the sandbox by the printed line.
	code, out = s.cli(t, "publish", "examples/alert-green.yaml")
	require.Equal(t, 0, code, out)
	id := strings.TrimSpace(out)
	require.Regexp(t, `^[0-9a-z]{26}$`, id)
	s.settled(t, id)
	code, out = s.cli(t, "status", id)
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "issued by cli:")
	require.Contains(t, out, "7 delivered, 1 available, 3 withheld")
	require.Len(t, received(t, s.webhookDir, id), 3)
	code, out = s.cli(t, "alerts", "list")
	require.Equal(t, 0, code, out)
	require.Contains(t, out, "api:second-analyst")

	// Ctrl-C stops everything, cleanly.
	require.Equal(t, 0, s.stop(t), s.out.String())
	require.Contains(t, s.out.String(), "Herald sandbox stopped.")
}

// byHandStep is one code block of the README's by-hand section.
type byHandStep struct {
	background bool
	ready      string // what a background step prints once it is ready
	script     string
}

// byHandSteps reads the README's "Trying it by hand" section: every sh
// block in it must carry a by-hand marker, so that none escapes this test.
func byHandSteps(t *testing.T, readme string) []byHandStep {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## Trying it by hand\n")
	require.True(t, ok, "README.md has no \"Trying it by hand\" section")
	section, _, _ = strings.Cut(section, "\n## ")
	re := regexp.MustCompile("(?s)<!-- by-hand: (run|start, ready at \"([^\"]+)\") -->\n```sh\n(.*?)```")
	var steps []byHandStep
	for _, m := range re.FindAllStringSubmatch(section, -1) {
		steps = append(steps, byHandStep{background: m[1] != "run", ready: m[2], script: m[3]})
	}
	require.Equal(t, strings.Count(section, "```sh"), len(steps), "every sh block of the by-hand section needs a <!-- by-hand: … --> marker")
	require.NotEmpty(t, steps)
	return steps
}

// copyRepo copies the repository's files to dir, as a fresh clone would
// have them: no build output, no data or keys of an earlier run.
func copyRepo(t *testing.T, dir string) {
	t.Helper()
	root := repoRoot(t)
	skip := map[string]bool{".git": true, "node_modules": true, "demo-output": true, "test-output": true, "herald-data": true}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if skip[d.Name()] {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o755)
		}
		if !d.Type().IsRegular() || rel == "herald" || strings.HasSuffix(rel, ".key") || strings.HasSuffix(rel, ".key.pub") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), data, info.Mode().Perm())
	})
	require.NoError(t, err)
}

// shell is an interactive bash a test types commands into, keeping its
// variables and folder between commands as a terminal does.
type shell struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startShell(t *testing.T, dir string, env []string) *shell {
	t.Helper()
	cmd := exec.Command("bash", "--noprofile", "--norc")
	cmd.Dir, cmd.Env = dir, env
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	require.NoError(t, cmd.Start())
	sh := &shell{cmd: cmd, in: in, lines: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			sh.lines <- sc.Text()
		}
		close(sh.lines)
	}()
	go func() { cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { in.Close(); _ = cmd.Process.Kill() })
	return sh
}

var doneLine = regexp.MustCompile(`^__herald_done_(\d+)__$`)

// run types one command line and returns its exit status and output.
func (sh *shell) run(t *testing.T, line string, within time.Duration) (int, string) {
	t.Helper()
	_, err := fmt.Fprintf(sh.in, "%s\necho __herald_done_$?__\n", line)
	require.NoError(t, err)
	var out strings.Builder
	deadline := time.After(within)
	for {
		select {
		case l, ok := <-sh.lines:
			require.True(t, ok, "the shell ended during %q:\n%s", line, out.String())
			if m := doneLine.FindStringSubmatch(l); m != nil {
				var code int
				fmt.Sscan(m[1], &code)
				return code, out.String()
			}
			out.WriteString(l + "\n")
		case <-deadline:
			t.Fatalf("%q did not finish within %s:\n%s", line, within, out.String())
		}
	}
}

// pollShell runs line until done holds for its status and output, as
// someone re-running a command would, and returns the last output.
func pollShell(t *testing.T, sh *shell, line string, within time.Duration, done func(int, string) bool) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, out := sh.run(t, line, within)
		if done(code, out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q never gave what was expected within %s; last (exit %d):\n%s", line, within, code, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// commandLines splits a block into command lines, joining continuations.
func commandLines(script string) []string {
	var out []string
	cur := ""
	for _, l := range strings.Split(script, "\n") {
		if c, ok := strings.CutSuffix(l, "\\"); ok {
			cur += c
			continue
		}
		if l = cur + l; strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
		cur = ""
	}
	return out
}

// TestReadmeByHand runs the commands of README.md's "Trying it by hand" in
// order, as a newcomer pasting them on a fresh machine would: in a copy of
// the repository, with HOME and the XDG folders empty, the blocks marked
// "start" in terminals of their own. It must end with a delivered row in
// `herald status`. The ports are moved with the variables the README
// names (another test may hold 9092 or 8080), and the partner's URL with
// the receiver's.
func TestReadmeByHand(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	require.NoError(t, err)
	steps := byHandSteps(t, string(readme))

	tmp := t.TempDir()
	work := filepath.Join(tmp, "herald")
	copyRepo(t, work)
	receiver := freePort(t)
	partner := filepath.Join(work, "examples", "local-partner.yaml")
	p, err := os.ReadFile(partner)
	require.NoError(t, err)
	require.Contains(t, string(p), "http://127.0.0.1:8000/herald")
	require.NoError(t, os.WriteFile(partner, bytes.ReplaceAll(p, []byte("127.0.0.1:8000"), []byte(receiver)), 0o644))
	api := freePort(t)
	env := freshEnv(t, tmp, "HERALD_KAFKA_EMBEDDED_LISTEN="+freePort(t), "HERALD_API_LISTEN="+api, "LISTEN="+receiver)

	sh := startShell(t, work, env)
	var last string
	var serve, recv *background
	for i, st := range steps {
		if st.background {
			cmd := exec.Command("bash", "--noprofile", "--norc", "-c", st.script)
			cmd.Dir, cmd.Env = work, env
			b := startBackground(t, fmt.Sprintf("README step %d (%s)", i+1, strings.TrimSpace(st.script)), cmd)
			b.waitFor(t, st.ready, 5*time.Minute)
			switch {
			case strings.HasPrefix(st.script, "./herald serve"):
				serve = b
			case strings.Contains(st.script, "docs/examples/go"):
				recv = b
			}
			continue
		}
		for _, line := range commandLines(st.script) {
			code, out := sh.run(t, line, 5*time.Minute)
			require.Equal(t, 0, code, "README step %d: %s\n%s", i+1, line, out)
			last = line
		}
	}
	require.NotNil(t, serve, "the README starts herald serve")
	require.NotNil(t, recv, "the README starts the example receiver")
	require.Contains(t, last, "status", "the by-hand section ends with herald status")

	// A newcomer runs status again until the delivery is done.
	delivered := regexp.MustCompile(`(?m)^local-partner\s+http://\S+/herald\s+deliver\s+webhook\.signed\s+delivered\s`)
	out := pollShell(t, sh, last, time.Minute, func(code int, out string) bool { return code == 0 && delivered.MatchString(out) })
	require.Contains(t, out, "NEXT ATTEMPT")
	require.Contains(t, recv.out.String(), "verified msg_")
	require.Contains(t, recv.out.String(), "alert.published")

	// An id that names nothing: exit 1, saying so.
	code, msg := sh.run(t, "./herald --config examples/by-hand.yaml status no-such-alert", time.Minute)
	require.Equal(t, 1, code, msg)
	require.Contains(t, msg, "no alert no-such-alert")

	// The console named in the README answers, and its tokens sign in.
	require.Contains(t, string(readme), "hrld_local_alice")
	req, err := http.NewRequestWithContext(t.Context(), "GET", "http://"+api+"/v1/whoami", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer hrld_local_alice")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Contains(t, httpGet(t, "http://"+api+"/", http.StatusOK), "API token")

	// Ctrl-C in serve's terminal stops it cleanly; a second serve finds
	// everything kept in herald-data.
	require.Equal(t, 0, serve.stop(t), serve.out.String())
	require.NotContains(t, serve.out.String(), "level=ERROR")
	again := exec.Command("bash", "--noprofile", "--norc", "-c", steps[1].script)
	again.Dir, again.Env = work, env
	b := startBackground(t, "serve again", again)
	b.waitFor(t, "herald running", 2*time.Minute)
	require.Contains(t, b.out.String(), "subscribers=1")
	code, out = sh.run(t, last, time.Minute)
	require.Equal(t, 0, code, out)
	require.Regexp(t, delivered, out)
}

// TestStatusShowsRetries checks `herald status` in text: a delivery that
// failed shows its next attempt and its last error.
func TestStatusShowsRetries(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "agency.key")
	out, err := exec.Command(heraldBin, "keys", "generate", "--name", "Agency", "--email", "alerts@agency.example", "--out", key).CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := startServe(t, fmt.Sprintf("signing: {key_file: %q}\nwebhooks: {allow_insecure_loopback: true}\n", key))
	closed := freePort(t) // nobody listens there
	sub := fmt.Sprintf(`{"id": "nobody-home", "name": "Nobody Home Ltd", "kind": "business", "sectors": ["hospitality"], "clearance": "GREEN",
		"webhooks": [{"url": "http://%s/herald", "secrets": ["whsec_dvNX+5Mxi8cb8zQ08Fi6gK8M5PdqDhfq17o97a091+s="]}]}`, closed)
	code, o, e := s.run(t, sub, "subscribers", "put", "-")
	require.Equal(t, 0, code, o+e)
	id := strings.TrimSpace(s.must(t, "publish", filepath.Join(repoRoot(t), "examples", "alert-green.yaml")))
	row := regexp.MustCompile(`(?m)^nobody-home\s+http://\S+\s+deliver\s+webhook\.signed\s+retrying\s+\d+\s+(\S+)\s+(.*connection refused.*)$`)
	var text string
	for deadline := time.Now().Add(time.Minute); !row.MatchString(text); time.Sleep(200 * time.Millisecond) {
		require.False(t, time.Now().After(deadline), "no retrying row:\n%s", text)
		text = s.must(t, "status", id)
	}
	m := row.FindStringSubmatch(text)
	next, err := time.Parse(time.RFC3339, m[1])
	require.NoError(t, err, "NEXT ATTEMPT %q", m[1])
	require.WithinDuration(t, time.Now(), next, 20*time.Second)
	require.Contains(t, text, "LAST ERROR")

	code, o, e = s.run(t, "", "status", "01jzzzzzzzzzzzzzzzzzzzzzzz")
	require.Equal(t, 1, code, o)
	require.Contains(t, e, "no alert 01jzzzzzzzzzzzzzzzzzzzzzzz")
}

// includeMarker precedes a code block that shows a file of docs/examples
// verbatim.
var includeMarker = regexp.MustCompile("(?s)<!-- include: (\\S+) -->\n```[a-z]*\n(.*?)```")

// TestDocsShowExamplesVerbatim checks that every file of docs/examples
// that a partner reads is shown in a doc, exactly as it is.
func TestDocsShowExamplesVerbatim(t *testing.T) {
	root := repoRoot(t)
	shown := map[string]bool{}
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	for _, doc := range append(docs, filepath.Join(root, "README.md")) {
		text, err := os.ReadFile(doc)
		require.NoError(t, err)
		for _, m := range includeMarker.FindAllStringSubmatch(string(text), -1) {
			file, err := os.ReadFile(filepath.Join(root, m[1]))
			require.NoError(t, err, "%s includes %s", doc, m[1])
			if string(file) != m[2] {
				t.Errorf("%s shows %s differently from the file (%s): copy the file into the doc", filepath.Base(doc), m[1], firstDifference(string(file), m[2]))
			}
			shown[m[1]] = true
		}
	}
	for _, f := range exampleSources {
		require.True(t, shown[f], "%s is shown in no doc (<!-- include: %s --> before its code block)", f, f)
	}
}

// firstDifference says where two texts first differ, by line.
func firstDifference(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range min(len(w), len(g)) {
		if w[i] != g[i] {
			return fmt.Sprintf("line %d: file %q, doc %q", i+1, w[i], g[i])
		}
	}
	return fmt.Sprintf("the file has %d lines, the doc %d", len(w), len(g))
}

// exampleSources are the partner docs' examples.
var exampleSources = []string{
	"docs/examples/go/main.go",
	"docs/examples/node/receiver.js",
	"docs/examples/gpg/verify-email.sh",
	"docs/examples/gpg/verify-webhook-signature.sh",
}

// TestDocsWebhookReceivers runs the partner docs' Go and Node receivers as
// a partner would, with Herald delivering to them for real: each verifies
// Herald's Standard Webhooks signature (two secrets on one endpoint,
// rotation), sees the User-Agent the doc shows, keeps what it received,
// and the doc's gpg/sq script verifies the agency's signature of it. An
// old capture fails the five-minute timestamp check in both receivers and
// in `herald verify webhook`, which passes it with --tolerance.
func TestDocsWebhookReceivers(t *testing.T) {
	root := repoRoot(t)
	node, err := exec.LookPath("node")
	require.NoError(t, err, "node is required (./scripts/test installs it)")
	require.DirExists(t, filepath.Join(root, "docs", "examples", "node", "node_modules", "standardwebhooks"),
		"the Node example's packages are missing: run ./scripts/test, or npm ci in docs/examples/node")
	for _, tool := range []string{"gpg", "sq", "bash"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is required (./scripts/test installs it)", tool)
	}
	tmp := t.TempDir()
	goRecv := filepath.Join(tmp, "go-receiver")
	build := exec.Command("go", "build", "-o", goRecv, "./docs/examples/go")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	secretOld, err := whsig.NewSecret()
	require.NoError(t, err)
	secretNew, err := whsig.NewSecret()
	require.NoError(t, err)
	type receiver struct {
		name, addr, save string
		secrets          []string
		b                *background
	}
	recvs := []*receiver{
		{name: "go", secrets: []string{secretOld, secretNew}},
		{name: "node", secrets: []string{secretNew}},
	}
	for _, r := range recvs {
		r.addr, r.save = freePort(t), filepath.Join(tmp, r.name)
		require.NoError(t, os.Mkdir(r.save, 0o755))
		cmd := exec.Command(goRecv)
		if r.name == "node" {
			cmd = exec.Command(node, "receiver.js")
			cmd.Dir = filepath.Join(root, "docs", "examples", "node")
		}
		// The Go endpoint is in the middle of a rotation: Herald signs
		// with both secrets, and the receiver already holds only the new
		// one.
		secrets := r.secrets
		if r.name == "go" {
			secrets = secrets[1:]
		}
		cmd.Env = freshEnv(t, tmp, "LISTEN="+r.addr, "WEBHOOK_SECRETS="+strings.Join(secrets, " "), "SAVE_DIR="+r.save)
		r.b = startBackground(t, r.name+" receiver", cmd)
		r.b.waitFor(t, "listening on "+r.addr, time.Minute)
	}

	key := filepath.Join(tmp, "agency.key")
	out, err = exec.Command(heraldBin, "keys", "generate", "--name", "Agency alerts", "--email", "alerts@agency.example", "--out", key).CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := startServe(t, fmt.Sprintf("signing: {key_file: %q}\nwebhooks: {allow_insecure_loopback: true}\n", key))
	agency := filepath.Join(tmp, "agency.asc")
	require.NoError(t, os.WriteFile(agency, []byte(s.must(t, "keys", "export")), 0o644))
	sub := subscribers.Subscriber{ID: "acme", Name: "Acme Safeguarding", Kind: subscribers.KindBusiness,
		Sectors: []string{"hospitality"}, Clearance: "GREEN"}
	for _, r := range recvs {
		sub.Webhooks = append(sub.Webhooks, subscribers.Webhook{URL: "http://" + r.addr + "/herald", Secrets: r.secrets})
	}
	j, err := json.Marshal(sub)
	require.NoError(t, err)
	code, o, e := s.run(t, string(j), "subscribers", "put", "-")
	require.Equal(t, 0, code, o+e)
	id := strings.TrimSpace(s.must(t, "publish", filepath.Join(root, "examples", "alert-green.yaml")))
	for _, r := range recvs {
		r.b.waitFor(t, "verified msg_", time.Minute)
		require.Contains(t, r.b.out.String(), "alert.published: alert "+id)
	}
	status := rowsOf(t, s.must(t, "status", id, "--output", "json"))
	require.Len(t, status, 2)
	for k, r := range status {
		require.Equal(t, "delivered", r.State, k)
	}

	// The User-Agent the doc shows is the one Herald sent.
	doc, err := os.ReadFile(filepath.Join(root, "docs", "partner-webhooks.md"))
	require.NoError(t, err)
	ua := regexp.MustCompile(`\((Herald/[^)]*\))\)`).FindStringSubmatch(recvs[0].b.out.String())
	require.NotNil(t, ua, recvs[0].b.out.String())
	require.Contains(t, string(doc), "\nUser-Agent: "+ua[1]+"\n")

	// The agency's OpenPGP signature of what each receiver kept, checked
	// with the doc's script.
	script := filepath.Join(root, "docs", "examples", "gpg", "verify-webhook-signature.sh")
	var body, sigHeader string
	for _, r := range recvs {
		bodies, err := filepath.Glob(filepath.Join(r.save, "msg_*.json"))
		require.NoError(t, err)
		require.Len(t, bodies, 1, r.name)
		body, sigHeader = bodies[0], strings.TrimSuffix(bodies[0], ".json")+".pgp-signature"
		cmd := exec.Command("sh", script, body, sigHeader, agency)
		cmd.Env = freshEnv(t, t.TempDir())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "Good signature")
		require.Contains(t, string(out), "1 good signature")
		// A body changed by one byte does not verify.
		raw, err := os.ReadFile(body)
		require.NoError(t, err)
		bad := filepath.Join(t.TempDir(), "bad.json")
		require.NoError(t, os.WriteFile(bad, bytes.Replace(raw, []byte(`"severe"`), []byte(`"minor"`), 1), 0o644))
		cmd = exec.Command("sh", script, bad, sigHeader, agency)
		cmd.Env = freshEnv(t, t.TempDir())
		out, err = cmd.CombinedOutput()
		require.Error(t, err, "%s", out)
		require.Contains(t, string(out), "BAD signature")
	}

	// An hour-old capture of the same request: refused by both receivers
	// and by `herald verify webhook`, which accepts it with --tolerance.
	raw, err := os.ReadFile(body)
	require.NoError(t, err)
	sig, err := os.ReadFile(sigHeader)
	require.NoError(t, err)
	msgID := strings.TrimSuffix(filepath.Base(body), ".json")
	old := time.Now().Add(-time.Hour)
	signature, err := whsig.Sign(msgID, old, raw, []string{secretNew})
	require.NoError(t, err)
	for _, r := range recvs {
		req, err := http.NewRequestWithContext(t.Context(), "POST", "http://"+r.addr+"/herald", bytes.NewReader(raw))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("webhook-id", msgID+"x")
		req.Header.Set("webhook-timestamp", fmt.Sprint(old.Unix()))
		req.Header.Set("webhook-signature", signature)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, r.name)
	}
	capture := filepath.Join(tmp, "request.http")
	require.NoError(t, os.WriteFile(capture, fmt.Appendf(nil,
		"POST /herald HTTP/1.1\r\nContent-Type: application/json\r\nwebhook-id: %s\r\nwebhook-timestamp: %d\r\nwebhook-signature: %s\r\nherald-pgp-signature: %s\r\nContent-Length: %d\r\n\r\n%s",
		msgID, old.Unix(), signature, sig, len(raw), raw), 0o644))
	code, o, _ = s.run(t, "", "verify", "webhook", "--secret", secretNew, "--key", agency, capture)
	require.Equal(t, 1, code, o)
	require.Contains(t, o, "timestamp")
	code, o, e = s.run(t, "", "verify", "webhook", "--secret", secretNew, "--key", agency, "--tolerance", "2h", capture)
	require.Equal(t, 0, code, o+e)
}

// TestDocsEmailScript checks real emails, delivered by Herald over SMTP in
// `herald demo`, with the partner doc's gpg/sq script: a signed one, an
// encrypted one (decrypted with the partner's key), a notice, and a
// tampered copy that must fail.
func TestDocsEmailScript(t *testing.T) {
	root := repoRoot(t)
	for _, tool := range []string{"gpg", "sq", "gpgconf"} {
		_, err := exec.LookPath(tool)
		require.NoError(t, err, "%s is required (./scripts/test installs it)", tool)
	}
	tmp := t.TempDir()
	demoOut := filepath.Join(tmp, "demo-output")
	cmd := exec.Command(heraldBin, "demo", "--out", demoOut)
	cmd.Env = freshEnv(t, tmp)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	script := filepath.Join(root, "docs", "examples", "gpg", "verify-email.sh")
	agency := filepath.Join(demoOut, "agency.asc")
	check := func(eml string, args ...string) (string, string, error) {
		cmd := exec.Command("sh", append([]string{script, eml, agency}, args...)...)
		cmd.Env = freshEnv(t, t.TempDir())
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}

	signed := filepath.Join(demoOut, "email", "1-grandstay-signed.eml")
	text, log, err := check(signed)
	require.NoError(t, err, log)
	require.Contains(t, log, "1 good signature")
	require.Contains(t, log, "checked by gpg and by sq")
	require.Contains(t, text, "Subject: [TLP:GREEN] Labour exploitation")
	require.Contains(t, text, "14 Example Road, Luton")

	enc := filepath.Join(demoOut, "email", "2-northbank-encrypted.eml")
	text, log, err = check(enc, filepath.Join(demoOut, "keys", "northbank.secret.asc"))
	require.NoError(t, err, log)
	require.Contains(t, log, "decrypted with gpg and with sq")
	require.Contains(t, text, "Subject: [TLP:AMBER] Named recruitment front company")
	raw, err := os.ReadFile(enc)
	require.NoError(t, err)
	require.NotContains(t, string(raw), "Named recruitment front company")
	_, log, err = check(enc)
	require.Error(t, err, "an encrypted message without the secret key")
	require.Contains(t, log, "give your secret key")
	_, log, err = check(enc, filepath.Join(demoOut, "keys", "freedom-trust.secret.asc"))
	require.Error(t, err, "another partner's key cannot decrypt it:\n%s", log)

	notice := filepath.Join(demoOut, "email", "3-grandstay-followup-key-notice.eml")
	text, log, err = check(notice)
	require.NoError(t, err, log)
	require.Contains(t, text, "withdrawn")

	raw, err = os.ReadFile(signed)
	require.NoError(t, err)
	tampered := filepath.Join(tmp, "tampered.eml")
	require.NoError(t, os.WriteFile(tampered, bytes.Replace(raw, []byte("14 Example Road"), []byte("41 Example Road"), 1), 0o644))
	_, log, err = check(tampered)
	require.Error(t, err)
	require.Contains(t, log, "BAD signature")
}
