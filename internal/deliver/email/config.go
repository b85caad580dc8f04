package email

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/delivery"
)

// TLS modes.
const (
	TLSStartTLS = "starttls" // STARTTLS is required (no downgrade to plain text)
	TLSImplicit = "implicit" // TLS from the first byte, usually port 465
	TLSNone     = "none"     // plain text: only for a relay on the same host
)

// Config configures the SMTP submission of the email channel.
type Config struct {
	Host string
	Port int
	// TLS is "starttls" (default), "implicit" or "none".
	TLS string
	// Username and Password enable AUTH PLAIN when Username is set.
	Username, Password string
	// From is the sender address, optionally with a display name.
	From string
	// Pool is the number of SMTP connections kept and used at once
	// (default 4).
	Pool int
	// Timeout bounds each step: dial, TLS handshake, each command and
	// the message data (default 30s).
	Timeout time.Duration
	// RootCAs verifies the relay's certificate; nil means the system
	// pool.
	RootCAs *x509.CertPool
	// InsecureSkipVerify disables certificate verification. Tests only.
	InsecureSkipVerify bool
	// LocalName is the host name sent in EHLO (default "localhost").
	LocalName string

	// IssuerName is the agency as partners see it: the text of every
	// alert says "Issued <time> by <IssuerName>" (config key
	// email.issuer_name). Empty means the name in the signing key's user
	// id. Partner-facing text never names the analyst who issued or
	// approved an alert.
	IssuerName string
	// AckURL, when set, returns the link at which the recipient of job
	// confirms receipt (PRODUCT.md §12); the text of content messages and
	// of notices about alerts the target holds then carries it in a short
	// paragraph. An empty result, or a nil AckURL, leaves the paragraph
	// out. Key notices never carry one. It is called once per message and
	// must be safe for concurrent use.
	AckURL func(job *delivery.Job) string
	// Keys, if set, is the cache of verdicts on partners' keys to judge
	// a key with before it is parsed (pgp.RecipientCache), shared with
	// the policy's key checks in the same process; nil means one of the
	// notifier's own. The notifier keeps the keys it encrypts to parsed
	// in a small cache of its own (pgp.ParsedKeys).
	Keys *pgp.RecipientCache
}

// withDefaults fills defaults and checks the configuration, naming the bad
// field.
func (c Config) withDefaults() (Config, *mail.Address, error) {
	if c.TLS == "" {
		c.TLS = TLSStartTLS
	}
	if c.Pool <= 0 {
		c.Pool = 4
	}
	if c.Keys == nil {
		c.Keys = &pgp.RecipientCache{}
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Port == 0 {
		c.Port = 25
		if c.TLS == TLSImplicit {
			c.Port = 465
		}
	}
	if c.Host == "" {
		return c, nil, errors.New("smtp.host is required")
	}
	if c.Port < 1 || c.Port > 65535 {
		return c, nil, fmt.Errorf("smtp.port %d is out of range", c.Port)
	}
	switch c.TLS {
	case TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return c, nil, fmt.Errorf("smtp.tls must be starttls, implicit or none, not %q", c.TLS)
	}
	if strings.ContainsAny(c.From, "\r\n") {
		return c, nil, errors.New("smtp.from must be one line")
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return c, nil, fmt.Errorf("smtp.from %q is not an email address: %w", c.From, err)
	}
	if at := strings.LastIndexByte(from.Address, '@'); at < 1 || at == len(from.Address)-1 {
		return c, nil, fmt.Errorf("smtp.from %q has no domain", c.From)
	}
	if strings.ContainsAny(c.LocalName, "\r\n ") {
		return c, nil, errors.New("smtp.local_name must be a host name")
	}
	if c.IssuerName != oneLine(c.IssuerName) {
		return c, nil, errors.New("email.issuer_name must be one line without control characters")
	}
	c.IssuerName = strings.TrimSpace(c.IssuerName)
	return c, from, nil
}
