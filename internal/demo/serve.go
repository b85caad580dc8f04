package demo

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-smtp"
	"github.com/herald-alerts/herald/internal/config"
)

// DefaultListen is where the sandbox's API and console listen unless told
// otherwise: a free port on the loopback interface.
const DefaultListen = "127.0.0.1:0"

// ServeOptions make Run keep the demo's whole stack running as a sandbox
// once every check has held: the embedded broker, the partners' mail
// server and webhook receivers, the sample partners and keys, and Herald's
// api, fanout and deliver roles, with the API and console on Listen.
type ServeOptions struct {
	// Listen is the address of the API and console; "" is DefaultListen,
	// and port 0 picks a free port.
	Listen string
	// Ready is called once the sandbox serves, with the demo's result and
	// what a newcomer needs to use the sandbox. Run then returns when its
	// context ends (Ctrl-C), after stopping everything.
	Ready func(*Result, *Sandbox)
}

// Token is a bearer token the sandbox accepts.
type Token struct {
	Name string // the token's name: issued_by and approved_by show "api:" + Name
	Role string // analyst, admin or partner
	// Subscriber is the partner a partner token acts for.
	Subscriber string
	Token      string
	// What says what the token is for, in a few words.
	What string
}

// Sandbox is what a running `herald demo --serve` offers.
type Sandbox struct {
	// Console is the web console's URL; the API is under it (/v1/…).
	Console string
	// Tokens are the sandbox's API tokens: two analysts (for release by a
	// second analyst), an administrator and one partner.
	Tokens []Token
	// Brokers is the embedded broker's address; PublishingKeyFile the key
	// that authenticates what is written to it. Env is the shell line that
	// points the herald command line at both.
	Brokers           []string
	PublishingKeyFile string
	Env               string
	// EmailDir and WebhookDir receive, as they arrive, the emails and
	// webhook requests the partners get while the sandbox runs.
	EmailDir, WebhookDir string
	// AgencyKey is the agency's public signing key; PartnersFile the
	// partner records with their webhook secrets; KeysDir the partners'
	// mailbox keys (secret keys included, to decrypt).
	AgencyKey, PartnersFile, KeysDir string
}

// TokenFor returns the sandbox's token with the given name, or "".
func (s *Sandbox) TokenFor(name string) string {
	for _, t := range s.Tokens {
		if t.Name == name {
			return t.Token
		}
	}
	return ""
}

// Names of the sandbox's tokens.
const (
	TokenAnalyst       = "analyst"
	TokenSecondAnalyst = "second-analyst"
	TokenAdmin         = "admin"
)

// sandboxTokens makes one token per role the console serves: two
// analysts, so that an alert one publishes at TLP:AMBER can be approved by
// the other (PRODUCT.md §10), an administrator, and the bank's partner
// token.
func sandboxTokens() ([]Token, error) {
	ts := []Token{
		{Name: TokenAnalyst, Role: config.RoleAnalyst, What: "compose, preview and publish"},
		{Name: TokenSecondAnalyst, Role: config.RoleAnalyst, What: "approve or reject what the first analyst publishes at TLP:AMBER and above"},
		{Name: TokenAdmin, Role: config.RoleAdmin, What: "partners, their endpoints, the audit trail"},
		{Name: bank, Role: config.RolePartner, Subscriber: bank, What: "only this partner's own data (the partner API, its TAXII collection and MISP feed)"},
	}
	for i := range ts {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("sandbox token: %w", err)
		}
		ts[i].Token = "hrld_" + base64.RawURLEncoding.EncodeToString(b)
	}
	return ts, nil
}

// listenAPI binds the sandbox's API and console address ("" is
// DefaultListen; port 0 takes a free port), so that the console's URL can
// be printed before the API starts and names a port nothing else can take.
func listenAPI(addr string) (net.Listener, error) {
	if addr == "" {
		addr = DefaultListen
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("--listen %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", addr, err)
	}
	return ln, nil
}

// consoleURL is the URL a browser on this machine opens for addr.
func consoleURL(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// serveConfig adds the API to the demo's configuration: listen, tokens.
func serveConfig(cfg *config.Config, listen string, tokens []Token) error {
	cfg.API.Listen = listen
	cfg.API.PublicURL = strings.TrimSuffix(consoleURL(listen), "/")
	cfg.API.Tokens = nil
	for _, t := range tokens {
		cfg.API.Tokens = append(cfg.API.Tokens, config.Token{Name: t.Name, Role: t.Role, Subscriber: t.Subscriber,
			SHA256: config.HashToken(t.Token)})
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("sandbox configuration: %w", err)
	}
	return nil
}

// inbox writes what the partners receive while the sandbox runs, one file
// per email or webhook request, as it arrives. Until it is opened it
// writes nothing: what arrives during the demo's checks goes to the
// output folder with the outcome table.
type inbox struct {
	log      *slog.Logger
	open     atomic.Bool
	mu       sync.Mutex
	n        int
	mailDir  string
	hookDir  string
	partners map[string]string // email address → partner id
}

// start opens the inbox on dir/email and dir/webhook.
func (ib *inbox) start(dir string, partners []*partner) error {
	ib.mailDir, ib.hookDir = filepath.Join(dir, "email"), filepath.Join(dir, "webhook")
	for _, d := range []string{ib.mailDir, ib.hookDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("sandbox folder: %w", err)
		}
	}
	ib.partners = map[string]string{}
	for _, p := range partners {
		for _, e := range p.sub.Email {
			ib.partners[strings.ToLower(e.Address)] = p.sub.ID
		}
	}
	ib.open.Store(true)
	return nil
}

// write stores one arrival as NNNN-name.ext in dir.
func (ib *inbox) write(dir, name, ext string, data []byte) {
	ib.mu.Lock()
	ib.n++
	n := ib.n
	ib.mu.Unlock()
	path := filepath.Join(dir, fmt.Sprintf("%04d-%s.%s", n, fileName(name), ext))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		ib.log.Warn("sandbox: cannot keep what a partner received", "file", path, "error", err)
	}
}

// mail is the SMTP sink's Data hook: it accepts every message and keeps a
// copy once the inbox is open.
func (ib *inbox) mail(to []string, data []byte) *smtp.SMTPError {
	if !ib.open.Load() {
		return nil
	}
	name := "unknown"
	if len(to) > 0 {
		name = to[0]
		if id, ok := ib.partners[strings.ToLower(to[0])]; ok {
			name = id
		}
	}
	ib.write(ib.mailDir, name, "eml", bytes.Clone(data))
	return nil
}

// hook is the webhook receivers' answer: 204, keeping the raw request once
// the inbox is open.
func (ib *inbox) hook(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
	if ib.open.Load() {
		raw, err := httputil.DumpRequest(r, true)
		if err != nil {
			ib.log.Warn("sandbox: cannot read a webhook request", "error", err)
		} else {
			name := strings.TrimPrefix(r.URL.Path, "/hooks/")
			var env struct {
				Alert struct {
					ID string `json:"id"`
				} `json:"alert"`
			}
			if _, body, ok := bytes.Cut(raw, []byte("\r\n\r\n")); ok && json.Unmarshal(body, &env) == nil && env.Alert.ID != "" {
				name += "-" + env.Alert.ID
			}
			ib.write(ib.hookDir, name, "http", raw)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// fileName keeps the characters of s that are safe in a file name.
func fileName(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_', r == '@':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 80 {
			break
		}
	}
	return b.String()
}

// Print writes where the sandbox is and how to use it. Each line that a
// script may want starts with a fixed label: "console:", "token NAME:",
// "cli:", "received email:", "received webhooks:".
func (s *Sandbox) Print(w io.Writer) {
	fmt.Fprintf(w, "Herald sandbox running: the same broker, partners and keys, with the API and console. Ctrl-C stops it.\n\n")
	fmt.Fprintf(w, "  console: %s\n", s.Console)
	fmt.Fprintf(w, "    sign in by pasting a token into \"API token\" (top right); the API is under %sv1/ with the same tokens\n", s.Console)
	for _, t := range s.Tokens {
		role := t.Role
		if t.Subscriber != "" {
			role += " " + t.Subscriber
		}
		fmt.Fprintf(w, "  token %s: %s\n", t.Name, t.Token)
		fmt.Fprintf(w, "    %s: %s\n", role, t.What)
	}
	fmt.Fprintf(w, "  cli: %s\n", s.Env)
	fmt.Fprintf(w, "    then e.g. `herald publish examples/alert-green.yaml`, `herald status ID`, `herald alerts list`\n")
	fmt.Fprintf(w, "  received email: %s\n", s.EmailDir)
	fmt.Fprintf(w, "  received webhooks: %s\n", s.WebhookDir)
	fmt.Fprintf(w, "    one file per email or request, written as it arrives; check them with the agency key %s,\n", s.AgencyKey)
	fmt.Fprintf(w, "    the partners' secret keys in %s and their webhook secrets in %s\n", s.KeysDir, s.PartnersFile)
}
