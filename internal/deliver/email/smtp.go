package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// idleTimeout is how long a pooled connection may sit unused before it is
// closed instead of reused: relays drop idle sessions after a few minutes.
const idleTimeout = 30 * time.Second

// conn is one SMTP session.
type conn struct {
	c    *smtp.Client
	raw  net.Conn // the TCP connection, for deadlines
	used time.Time
}

func (c *conn) close() { c.c.Close() }

// pool holds up to cfg.Pool SMTP sessions and lends them one at a time.
type pool struct {
	cfg   Config
	addr  string
	tls   *tls.Config
	slots chan struct{}
	idle  chan *conn

	mu     sync.Mutex
	closed bool
}

func newPool(cfg Config) *pool {
	p := &pool{
		cfg:   cfg,
		addr:  net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)),
		slots: make(chan struct{}, cfg.Pool),
		idle:  make(chan *conn, cfg.Pool),
	}
	if cfg.TLS != TLSNone {
		p.tls = &tls.Config{ServerName: cfg.Host, RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12,
			InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // tests only, documented on Config
	}
	return p
}

// stage says how far a send got, to decide whether a failure on a reused
// connection may be retried on a fresh one.
type stage int

const (
	stageMail stage = iota // nothing accepted yet
	stageRcpt
	stageData
)

// sendError is a failed send with the stage it failed in.
type sendError struct {
	stage stage
	err   error
}

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// send submits msg from → to over a pooled connection.
func (p *pool) send(ctx context.Context, from, to string, msg []byte) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() { <-p.slots }()

	c, reused := p.take()
	for {
		if c == nil {
			var err error
			if c, err = p.dial(ctx); err != nil {
				return err
			}
			reused = false
		}
		err := p.transact(ctx, c, from, to, msg)
		if err == nil {
			p.put(c)
			return nil
		}
		var se *sendError
		errors.As(err, &se)
		var smtpErr *smtp.SMTPError
		if errors.As(err, &smtpErr) {
			// The relay answered: the session is fine. Abort the
			// transaction and keep the connection.
			if c.raw.SetDeadline(time.Now().Add(p.cfg.Timeout)) == nil && c.c.Reset() == nil {
				p.put(c)
			} else {
				c.close()
			}
			return err
		}
		c.close()
		// A pooled session the relay closed while idle fails at MAIL;
		// nothing was accepted, so try once more on a new connection.
		if reused && se != nil && se.stage == stageMail && ctx.Err() == nil {
			c = nil
			continue
		}
		return err
	}
}

// take returns an idle connection that is fresh enough, or nil.
func (p *pool) take() (*conn, bool) {
	for {
		select {
		case c := <-p.idle:
			if time.Since(c.used) > idleTimeout {
				c.close()
				continue
			}
			return c, true
		default:
			return nil, false
		}
	}
}

func (p *pool) put(c *conn) {
	c.used = time.Now()
	p.mu.Lock()
	kept := false
	if !p.closed {
		select {
		case p.idle <- c:
			kept = true
		default:
		}
	}
	p.mu.Unlock()
	if !kept {
		c.raw.SetDeadline(time.Now().Add(time.Second))
		c.c.Quit()
		c.close()
	}
}

// close closes every idle connection, and every connection returned
// later.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		select {
		case c := <-p.idle:
			c.raw.SetDeadline(time.Now().Add(time.Second))
			c.c.Quit()
			c.close()
		default:
			return
		}
	}
}

// dial opens, secures and authenticates a session.
func (p *pool) dial(ctx context.Context) (*conn, error) {
	d := net.Dialer{Timeout: p.cfg.Timeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", p.addr, err)
	}
	// Until the session is set up, the whole of it is bounded by one
	// step's timeout, and by ctx.
	raw.SetDeadline(time.Now().Add(p.cfg.Timeout))
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var c *smtp.Client
	switch p.cfg.TLS {
	case TLSImplicit:
		tc := tls.Client(raw, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", p.addr, err)
		}
		c = smtp.NewClient(tc)
	case TLSStartTLS:
		c, err = smtp.NewClientStartTLS(raw, p.tls)
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("starttls with %s: %w", p.addr, err)
		}
	default:
		c = smtp.NewClient(raw)
	}
	c.CommandTimeout = p.cfg.Timeout
	c.SubmissionTimeout = p.cfg.Timeout
	if p.cfg.LocalName != "" {
		if err := c.Hello(p.cfg.LocalName); err != nil {
			c.Close()
			return nil, fmt.Errorf("ehlo to %s: %w", p.addr, err)
		}
	}
	if p.cfg.Username != "" {
		if !c.SupportsAuth(sasl.Plain) {
			c.Close()
			return nil, &authError{fmt.Errorf("%s does not offer AUTH PLAIN", p.addr)}
		}
		if err := c.Auth(sasl.NewPlainClient("", p.cfg.Username, p.cfg.Password)); err != nil {
			c.Close()
			return nil, &authError{fmt.Errorf("auth as %s at %s: %w", p.cfg.Username, p.addr, err)}
		}
	}
	raw.SetDeadline(time.Time{})
	if err := ctx.Err(); err != nil {
		c.Close()
		return nil, context.Cause(ctx)
	}
	return &conn{c: c, raw: raw}, nil
}

// authError marks a failure to authenticate to the relay: the relay's
// configuration, not the recipient, is at fault.
type authError struct{ err error }

func (e *authError) Error() string { return e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// transact runs MAIL, RCPT and DATA for one message, each command bounded
// by the step timeout (the client sets a deadline per command), the data
// by one step timeout too, and all of it by ctx.
func (p *pool) transact(ctx context.Context, c *conn, from, to string, msg []byte) error {
	stop := context.AfterFunc(ctx, func() { c.raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := c.c.Mail(from, &smtp.MailOptions{Size: int64(len(msg))}); err != nil {
		return &sendError{stageMail, fmt.Errorf("mail from: %w", err)}
	}
	if err := c.c.Rcpt(to, nil); err != nil {
		return &sendError{stageRcpt, fmt.Errorf("rcpt to: %w", err)}
	}
	w, err := c.c.Data()
	if err != nil {
		return &sendError{stageData, fmt.Errorf("data: %w", err)}
	}
	c.raw.SetWriteDeadline(time.Now().Add(p.cfg.Timeout))
	if _, err := w.Write(msg); err != nil {
		return &sendError{stageData, fmt.Errorf("data: %w", err)}
	}
	// Once the relay accepted the data the message is sent, whatever
	// ctx says now.
	if err := w.Close(); err != nil {
		return &sendError{stageData, fmt.Errorf("data: %w", err)}
	}
	return nil
}
