// Package subscribers defines Herald's partner organisations (PRODUCT.md §2):
// the Subscriber record and its validation, and the Registry that holds the
// current set in memory, materialised from the compacted subscribers topic,
// with an index by sector so that matching an alert costs O(matches).
package subscribers

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/herald-alerts/herald/alerts"
	"go.yaml.in/yaml/v3"
	"golang.org/x/net/idna"
)

// Kinds of partner organisation.
const (
	KindBusiness   = "business"
	KindNGO        = "ngo"
	KindPublicBody = "public-body"
)

// Statuses of a subscriber.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
)

// MaxName is the longest name, in characters: a name follows the title's
// rules (PRODUCT.md §2).
const MaxName = alerts.MaxTitle

var slugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Subscriber is one partner organisation.
type Subscriber struct {
	ID          string          `json:"id" yaml:"id"`
	Name        string          `json:"name" yaml:"name"`
	Kind        string          `json:"kind" yaml:"kind"`
	Sectors     []string        `json:"sectors,omitempty" yaml:"sectors,omitempty"`
	Regions     []string        `json:"regions,omitempty" yaml:"regions,omitempty"`
	MinSeverity alerts.Severity `json:"min_severity,omitempty" yaml:"min_severity,omitempty"`
	Clearance   alerts.TLP      `json:"clearance" yaml:"clearance"`
	Sensitive   bool            `json:"sensitive" yaml:"sensitive"`
	AcceptsTest bool            `json:"accepts_test" yaml:"accepts_test"`
	Status      string          `json:"status,omitempty" yaml:"status,omitempty"`
	Email       []Email         `json:"email,omitempty" yaml:"email,omitempty"`
	Webhooks    []Webhook       `json:"webhooks,omitempty" yaml:"webhooks,omitempty"`
	// Pull, when set, lets the partner pull the alerts the policy lets it
	// receive by the pull channel: a TAXII 2.1 collection and a MISP feed
	// (PRODUCT.md §11), read with a partner token.
	Pull *Pull `json:"pull,omitempty" yaml:"pull,omitempty"`
	// Incarnation is Herald's: it names the partner's record from its
	// creation until its deletion, and a record created again under the
	// same id gets a new one (SubscriberStore.Put in internal/app sets it;
	// a value supplied with a record is replaced). A partner's own key or
	// secrets (KeyOverlay, SecretsOverlay) apply only to the incarnation
	// they were made against, so a partner registered under an old id
	// never inherits a key or secret its predecessor uploaded, even one
	// written after the re-creation by a process that had not yet seen
	// the deletion. Records written before it existed have none, and
	// their overlays none either.
	Incarnation string `json:"incarnation,omitempty" yaml:"incarnation,omitempty"`
}

// Pull is a partner's pull channel.
type Pull struct {
	// MaxTLP is the highest TLP the partner may pull. It defaults to the
	// partner's clearance, capped at AMBER+STRICT, and may exceed neither:
	// TLP:RED is never served by pull.
	MaxTLP alerts.TLP `json:"max_tlp,omitempty" yaml:"max_tlp,omitempty"`
}

// Webhook payload formats (PRODUCT.md §2 webhooks[].format, §11). The
// renderers live in internal/formats, whose Formats must list the same
// names.
const (
	FormatHerald = "herald" // Herald's JSON envelope (PRODUCT.md §5), the default
	FormatSTIX   = "stix"   // a STIX 2.1 bundle
	FormatMISP   = "misp"   // a MISP event
	FormatCAP    = "cap"    // an OASIS CAP 1.2 message
)

// WebhookFormats lists the payload formats a webhook may choose, the
// default first.
var WebhookFormats = []string{FormatHerald, FormatSTIX, FormatMISP, FormatCAP}

// Email is one address of a partner and its OpenPGP public key, if any.
type Email struct {
	Address string `json:"address" yaml:"address"`
	PGPKey  string `json:"pgp_key,omitempty" yaml:"pgp_key,omitempty"`
}

// Webhook is one HTTPS endpoint of a partner.
type Webhook struct {
	URL     string     `json:"url" yaml:"url"`
	Secrets []string   `json:"secrets" yaml:"secrets"`
	MaxTLP  alerts.TLP `json:"max_tlp,omitempty" yaml:"max_tlp,omitempty"`
	// Format is the payload format, one of WebhookFormats; empty means
	// FormatHerald.
	Format string `json:"format,omitempty" yaml:"format,omitempty"`
	// ClientCert and ClientKey name PEM files for mutual TLS, if the
	// partner requires it.
	ClientCert string `json:"client_cert,omitempty" yaml:"client_cert,omitempty"`
	ClientKey  string `json:"client_key,omitempty" yaml:"client_key,omitempty"`
	// Disabled marks an endpoint Herald must not call. An administrator
	// may set it in the record; Herald itself never writes the record: an
	// endpoint that answered 410 Gone gets an endpoint state
	// (EndpointState) that the Registry applies on top, so the
	// Registry's effective records have it set while that state says so.
	Disabled bool `json:"disabled,omitempty" yaml:"disabled,omitempty"`
}

// Active reports whether the subscriber may receive anything.
func (s *Subscriber) Active() bool { return s.Status == StatusActive }

// Normalize fills defaults: status active, min_severity minor, webhook
// max_tlp the partner's clearance, webhook format herald, pull max_tlp the
// partner's clearance capped at AMBER+STRICT; and canonicalises TLP
// labels and format names.
func (s *Subscriber) Normalize() {
	if s.Status == "" {
		s.Status = StatusActive
	}
	if s.MinSeverity == "" {
		s.MinSeverity = alerts.SeverityMinor
	}
	s.MinSeverity = alerts.Severity(strings.ToLower(string(s.MinSeverity)))
	s.Clearance = alerts.NormalizeTLP(string(s.Clearance))
	for i := range s.Webhooks {
		w := &s.Webhooks[i]
		if w.MaxTLP == "" {
			w.MaxTLP = s.Clearance
		}
		w.MaxTLP = alerts.NormalizeTLP(string(w.MaxTLP))
		w.Format = strings.ToLower(strings.TrimSpace(w.Format))
		if w.Format == "" {
			w.Format = FormatHerald
		}
	}
	if p := s.Pull; p != nil {
		if p.MaxTLP == "" {
			p.MaxTLP = s.Clearance
			if p.MaxTLP == alerts.TLPRed {
				p.MaxTLP = alerts.TLPAmberStrict
			}
		}
		p.MaxTLP = alerts.NormalizeTLP(string(p.MaxTLP))
	}
	for i := range s.Email {
		s.Email[i].Address = strings.TrimSpace(s.Email[i].Address)
	}
}

// KeyCheck parses an armoured OpenPGP public key and reports why it cannot
// be used for encryption, if it cannot. The crypto/pgp package provides it;
// validation takes it as a function to keep this package free of crypto.
type KeyCheck func(armored string) error

// Validate checks the record and names every bad field. tax may be nil to
// skip taxonomy checks; keys may be nil to skip parsing PGP keys.
func (s *Subscriber) Validate(tax alerts.Taxonomy, keys KeyCheck) error {
	v := &alerts.ValidationError{What: "invalid subscriber"}
	if !slugPattern.MatchString(s.ID) {
		v.Add("id", "must be a slug (lower-case letters, digits, '.', '_', '-'; at most 64), not %q", s.ID)
	}
	alerts.CheckLine(v, "name", s.Name, 1, MaxName)
	switch s.Kind {
	case KindBusiness, KindNGO, KindPublicBody:
	default:
		v.Add("kind", "must be business, ngo or public-body, not %q", s.Kind)
	}
	for i, sec := range s.Sectors {
		if tax != nil && !tax.HasSector(sec) {
			v.Add(fmt.Sprintf("sectors[%d]", i), "unknown sector %q", sec)
		}
	}
	for i, r := range s.Regions {
		if tax != nil && !tax.HasRegion(r) {
			v.Add(fmt.Sprintf("regions[%d]", i), "unknown region %q", r)
		}
	}
	if !s.MinSeverity.Valid() {
		v.Add("min_severity", "must be minor, moderate, severe or extreme, not %q", s.MinSeverity)
	}
	if !s.Clearance.Valid() {
		v.Add("clearance", "must be CLEAR, GREEN, AMBER, AMBER+STRICT or RED, not %q", s.Clearance)
	}
	switch s.Status {
	case StatusActive, StatusSuspended:
	default:
		v.Add("status", "must be active or suspended, not %q", s.Status)
	}
	seen := map[string]bool{}
	for i, e := range s.Email {
		f := fmt.Sprintf("email[%d]", i)
		if err := CheckAddress(e.Address); err != nil {
			v.Add(f+".address", "%v", err)
		} else if seen[strings.ToLower(e.Address)] {
			v.Add(f+".address", "%s is listed twice", e.Address)
		}
		seen[strings.ToLower(e.Address)] = true
		if e.PGPKey != "" && keys != nil {
			if err := keys(e.PGPKey); err != nil {
				v.Add(f+".pgp_key", "%v", err)
			}
		}
	}
	for i, w := range s.Webhooks {
		f := fmt.Sprintf("webhooks[%d]", i)
		if _, _, err := WebhookURL(w.URL, true); err != nil {
			v.Add(f+".url", "%v", err)
		} else if seen[w.URL] {
			v.Add(f+".url", "listed twice")
		}
		seen[w.URL] = true
		if len(w.Secrets) == 0 {
			v.Add(f+".secrets", "at least one whsec_ secret is required")
		}
		for j, sec := range w.Secrets {
			if err := CheckSecret(sec); err != nil {
				v.Add(fmt.Sprintf("%s.secrets[%d]", f, j), "%v", err)
			}
		}
		if !w.MaxTLP.Valid() {
			v.Add(f+".max_tlp", "must be CLEAR, GREEN, AMBER, AMBER+STRICT or RED, not %q", w.MaxTLP)
		} else if s.Clearance.Valid() && w.MaxTLP.Exceeds(s.Clearance) {
			v.Add(f+".max_tlp", "%s exceeds the partner's clearance %s", w.MaxTLP, s.Clearance)
		}
		if w.Format != "" && !slices.Contains(WebhookFormats, w.Format) {
			v.Add(f+".format", "must be %s, not %q", strings.Join(WebhookFormats, ", "), w.Format)
		}
		if (w.ClientCert == "") != (w.ClientKey == "") {
			v.Add(f+".client_cert", "client_cert and client_key go together")
		}
	}
	if p := s.Pull; p != nil {
		switch {
		case !p.MaxTLP.Valid():
			v.Add("pull.max_tlp", "must be CLEAR, GREEN, AMBER or AMBER+STRICT, not %q", p.MaxTLP)
		case p.MaxTLP == alerts.TLPRed:
			v.Add("pull.max_tlp", "TLP:RED is never served by pull; at most AMBER+STRICT")
		case s.Clearance.Valid() && p.MaxTLP.Exceeds(s.Clearance):
			v.Add("pull.max_tlp", "%s exceeds the partner's clearance %s", p.MaxTLP, s.Clearance)
		}
	}
	return v.Err()
}

// CheckAddress accepts a bare RFC 5322 addr-spec: no display name, no
// line breaks, ASCII only.
func CheckAddress(addr string) error {
	if addr == "" {
		return errors.New("is required")
	}
	if strings.ContainsAny(addr, "\r\n<>\", ") {
		return fmt.Errorf("%q is not a bare address", addr)
	}
	for _, r := range addr {
		if r > 127 {
			return fmt.Errorf("%q has non-ASCII characters", addr)
		}
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Address != addr || a.Name != "" {
		return fmt.Errorf("%q is not a valid email address", addr)
	}
	if at := strings.LastIndexByte(addr, '@'); at < 1 || !strings.Contains(addr[at:], ".") {
		return fmt.Errorf("%q has no domain", addr)
	}
	return nil
}

// WebhookURL is the webhook URL rule, the one place it is written: an
// absolute URL with a host, without credentials (they would travel in
// every log line and header) or a fragment, that uses https; or plain http
// to a loopback host (localhost or a loopback address literal) when
// allowInsecureLoopback is set (webhooks.allow_insecure_loopback, for
// development); its host, if internationalised, a name IDNA takes. The URL
// returned has its host in ASCII (punycode) form, as DNS, TLS and the
// Host header carry it. plainLoopback reports that the URL is such a
// plain-http loopback URL.
//
// Validate applies it with allowInsecureLoopback set, so that a record
// naming a plain-http loopback endpoint can be registered and the
// operator's setting decides where it matters: when the API or CLI checks
// the record against the configuration, in the policy's decision, and in
// the webhook transport. Where the host's addresses may lead is not this
// rule: the transport checks every address at connection time.
func WebhookURL(raw string, allowInsecureLoopback bool) (u *url.URL, plainLoopback bool, err error) {
	u, err = url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL, credentials and all
		}
		return nil, false, fmt.Errorf("not a URL: %v", err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, false, fmt.Errorf("scheme must be https, not %q", u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return nil, false, errors.New("has no host")
	case u.User != nil:
		return nil, false, errors.New("must not carry credentials")
	case u.Fragment != "":
		return nil, false, errors.New("must not have a fragment")
	case u.Scheme != "https" && (!allowInsecureLoopback || !loopbackHost(u.Hostname())):
		return nil, false, errors.New("must use https (plain http is allowed only to loopback, localhost or a loopback address, when webhooks.allow_insecure_loopback is on)")
	}
	if u, err = asciiHost(u); err != nil {
		return nil, false, err
	}
	return u, u.Scheme == "http", nil
}

// asciiHost returns u with an internationalised host name in its ASCII
// (punycode) form, which is what DNS, the TLS server name and the Host
// header carry (RFC 5890; net/http's client does the same), and u itself
// when its host is ASCII already.
func asciiHost(u *url.URL) (*url.URL, error) {
	name := u.Hostname()
	if isASCII(name) {
		return u, nil // IP literals included, which IDNA would refuse
	}
	ascii, err := idna.Lookup.ToASCII(name)
	if err != nil {
		return nil, fmt.Errorf("host %q is not an internationalised domain name: %w", name, err)
	}
	a := *u
	a.Host = ascii
	if port := u.Port(); port != "" {
		a.Host = net.JoinHostPort(ascii, port)
	}
	return &a, nil
}

func isASCII(s string) bool {
	for i := range len(s) {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// loopbackHost reports whether a URL's host is localhost or a loopback
// address literal (IPv4-mapped included). A name other than localhost is
// not: what it resolves to can change after it is checked.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// CheckSecret accepts a Standard Webhooks secret: "whsec_" followed by
// base64 of 24 to 64 bytes.
func CheckSecret(sec string) error {
	b64, ok := strings.CutPrefix(sec, "whsec_")
	if !ok {
		return errors.New("must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return errors.New("is not whsec_ followed by base64")
	}
	if len(key) < 24 || len(key) > 64 {
		return fmt.Errorf("key is %d bytes; want 24 to 64", len(key))
	}
	return nil
}

// Decode reads one subscriber from JSON as a person wrote it (the admin
// API), rejecting unknown fields after alerts.ScreenJSON: a key given
// twice (also in another case), bytes that are not UTF-8 and anything but
// an object are refused naming the field.
func Decode(data []byte) (*Subscriber, error) {
	if err := alerts.ScreenJSON(data, "subscriber"); err != nil {
		return nil, err
	}
	return decode(data)
}

// decode reads one subscriber from JSON, rejecting unknown fields: a
// record of the subscribers topic, which Herald wrote (json.Marshal: each
// key once, UTF-8) and the caller authenticated, read without the screen
// of Decode, which would triple the time a registry of 100,000 partners
// takes to load.
func decode(data []byte) (*Subscriber, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var s Subscriber
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("decode subscriber: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("decode subscriber: trailing data after the object")
	}
	return &s, nil
}

// DecodeList reads a YAML or JSON list of subscribers, or a single one,
// rejecting unknown fields after alerts.ScreenYAML (a key given twice,
// bytes that are not UTF-8).
func DecodeList(data []byte) ([]*Subscriber, error) {
	if err := alerts.ScreenYAML(data, "subscriber"); err != nil {
		return nil, err
	}
	var node yaml.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		return nil, fmt.Errorf("decode subscribers: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if len(node.Content) > 0 && node.Content[0].Kind == yaml.MappingNode {
		var s Subscriber
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("decode subscriber: %w", err)
		}
		if err := onlyDocument(dec); err != nil {
			return nil, err
		}
		return []*Subscriber{&s}, nil
	}
	var list []*Subscriber
	if err := dec.Decode(&list); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode subscribers: %w", err)
	}
	if err := onlyDocument(dec); err != nil {
		return nil, err
	}
	for i, s := range list {
		if s == nil {
			return nil, fmt.Errorf("decode subscribers: entry %d is empty", i)
		}
	}
	return list, nil
}

// onlyDocument fails if dec holds a further, non-empty YAML document:
// records after a "---" would otherwise be dropped without a word.
func onlyDocument(dec *yaml.Decoder) error {
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("decode subscribers: %w", err)
		case len(next.Content) > 0 && next.Content[0].Tag != "!!null":
			return errors.New("decode subscribers: more than one YAML document; put the records in one list")
		}
	}
}

// SharesSector reports whether the subscriber wants any of sectors.
func (s *Subscriber) SharesSector(sectors []string) bool {
	for _, sec := range sectors {
		if slices.Contains(s.Sectors, sec) {
			return true
		}
	}
	return false
}

// RedactURL returns a webhook URL as analysts see it (PRODUCT.md §4): its
// scheme, host and path, without credentials, query or fragment, which may
// carry a partner's token.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		// Not a URL Go can parse (a control character, say): cut the
		// query, fragment and credentials by hand.
		s, _, _ := strings.Cut(raw, "?")
		s, _, _ = strings.Cut(s, "#")
		if scheme, rest, ok := strings.Cut(s, "://"); ok {
			host, path, _ := strings.Cut(rest, "/")
			if at := strings.LastIndexByte(host, '@'); at >= 0 {
				host = host[at+1:]
			}
			s = scheme + "://" + host
			if path != "" || strings.Contains(rest, "/") {
				s += "/" + path
			}
		}
		return s
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// Version returns a strong HTTP entity tag (RFC 9110 §8.8.3) of the
// record as it is: the hex of the first 16 bytes of the SHA-256 of its
// JSON, quoted. Two records have one version exactly when they encode
// alike, so an administrator's change made from a copy read earlier can
// be refused when the record changed in between (If-Match).
func (s *Subscriber) Version() string {
	b, err := json.Marshal(s)
	if err != nil {
		// A record that cannot be encoded could not have been stored.
		return `"unencodable"`
	}
	sum := sha256.Sum256(b)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// RedactedSecretPrefix starts a webhook secret as Herald shows it. A
// Standard Webhooks secret lets whoever holds it sign webhooks that the
// partner will believe came from the agency, so Herald never shows one: it
// shows "redacted:" and the first 16 hex digits of the secret's SHA-256,
// which is enough to tell secrets apart during a rotation.
const RedactedSecretPrefix = "redacted:"

// RedactSecret returns the form of a webhook secret Herald shows.
func RedactSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return RedactedSecretPrefix + hex.EncodeToString(sum[:8])
}

// RedactTarget returns a delivery target as analysts see it: an email
// address as it is, a webhook URL through RedactURL.
func RedactTarget(target string) string {
	if strings.Contains(target, "://") {
		return RedactURL(target)
	}
	return target
}

// Changed names the fields (JSON names) in which next differs from prev,
// sorted, for the audit trail: names only, never values, which may be keys
// or secrets. A nil prev gives every field next sets.
func Changed(prev, next *Subscriber) []string {
	fields := func(s *Subscriber) map[string]json.RawMessage {
		m := map[string]json.RawMessage{}
		if s != nil {
			b, _ := json.Marshal(s) // a Subscriber always encodes
			_ = json.Unmarshal(b, &m)
		}
		return m
	}
	a, b := fields(prev), fields(next)
	var out []string
	for k, v := range b {
		if w, ok := a[k]; !ok || string(w) != string(v) {
			out = append(out, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
