package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/subscribers"
)

// cacheSize is how many alerts' signed (and sealed) entities are kept:
// deliveries of one alert arrive close together, so a few suffice.
const cacheSize = 64

// Notifier sends alerts by email. It is safe for concurrent use.
type Notifier struct {
	cfg    Config
	from   *mail.Address
	domain string
	signer *pgp.Signer
	log    *slog.Logger
	pool   *pool
	cache  *artefacts
	keys   *recipients
	now    func() time.Time
}

var _ interface {
	Notify(context.Context, *delivery.Job, *subscribers.Subscriber) error
} = (*Notifier)(nil)

// New returns a Notifier that signs with signer and submits to the relay
// in cfg. It does not connect until the first message.
func New(cfg Config, signer *pgp.Signer, log *slog.Logger) (*Notifier, error) {
	if signer == nil {
		return nil, errors.New("email: a signing key is required: Herald never sends unsigned mail")
	}
	cfg, from, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{
		cfg:    cfg,
		from:   from,
		domain: from.Address[strings.LastIndexByte(from.Address, '@')+1:],
		signer: signer,
		log:    log,
		pool:   newPool(cfg),
		cache:  newArtefacts(cacheSize),
		keys:   &recipients{m: map[[32]byte]*pgp.Recipient{}},
		now:    time.Now,
	}, nil
}

// Close closes the pooled connections; a send still in flight finishes
// and then closes its connection. Notify must not be called after Close.
func (n *Notifier) Close() error {
	n.pool.close()
	return nil
}

// Notify sends job's message to job.Target. It returns nil once the relay
// accepted the message, or a *delivery.Failure: SMTP 4xx, connection
// errors and timeouts are temporary; SMTP 5xx, and any failure to sign or
// encrypt, are permanent. Content is never sent unencrypted when the
// alert requires encryption.
func (n *Notifier) Notify(ctx context.Context, job *delivery.Job, sub *subscribers.Subscriber) error {
	if job == nil || job.Alert == nil || sub == nil {
		return delivery.Permanent(delivery.ReasonInvalid, errors.New("email: job without alert or subscriber"))
	}
	a := job.Alert
	if err := subscribers.CheckAddress(job.Target); err != nil {
		return delivery.Permanent(delivery.ReasonInvalid, fmt.Errorf("email: target: %w", err))
	}
	if !alerts.ValidID(a.ID) || !a.TLP.Valid() || !a.Marking.Valid() {
		return delivery.Permanent(delivery.ReasonInvalid, fmt.Errorf("email: alert %q lacks a valid id, TLP or marking", a.ID))
	}

	var (
		render func(*alerts.Alert, string) string
		subj   string
	)
	switch job.Mode {
	case delivery.ModeSigned:
		if restricted(a) {
			// Fail closed: the policy must have asked for encryption.
			return delivery.Permanent(delivery.ReasonEncrypt,
				fmt.Errorf("email: %s %s alert %s must be encrypted; refusing to send it signed only", a.TLP.Label(), a.Marking, a.ID))
		}
		render, subj = renderText, subject(a)
	case delivery.ModeEncrypted:
		render, subj = renderText, subject(a)
	case delivery.ModeKeyNotice:
		render, subj = renderKeyNotice, keyNoticeSubject(a)
	case delivery.ModeCancelNotice:
		render, subj = renderCancelNotice, cancelNoticeSubject(a)
	default:
		return delivery.Permanent(delivery.ReasonInvalid, fmt.Errorf("email: unknown mode %q", job.Mode))
	}
	format := job.Mode
	if format == delivery.ModeEncrypted {
		format = delivery.ModeSigned // the same signed entity, then encrypted
	}
	art, err := n.cache.get(ctx, a.ID+"\x00"+format, func() ([]byte, error) {
		return signedEntity(render(a, n.signer.Fingerprint()), n.signer)
	})
	if err != nil {
		if ctx.Err() != nil {
			return delivery.Temporary(delivery.ReasonTimeout, fmt.Errorf("email: waiting for the signature: %w", err))
		}
		return delivery.Permanent(delivery.ReasonSign, fmt.Errorf("email: sign alert %s: %w", a.ID, err))
	}
	entity := art.entity
	if job.Mode == delivery.ModeEncrypted {
		if entity, err = n.encrypt(art, job, sub); err != nil {
			return delivery.Permanent(delivery.ReasonEncrypt, err)
		}
	}

	h := header{From: n.from, To: job.Target, Subject: subj, Date: n.now(), MessageID: n.messageID(job.ID)}
	if a.Type == alerts.TypeUpdate || a.Type == alerts.TypeCancel || job.Mode == delivery.ModeCancelNotice {
		for _, ref := range a.References {
			h.References = append(h.References, n.messageID(delivery.ID(ref, sub.ID, job.Target)))
		}
	}
	if err := n.pool.send(ctx, n.from.Address, job.Target, message(h, entity)); err != nil {
		f := classify(err)
		n.log.Debug("email not sent", "alert", a.ID, "subscriber", sub.ID, "delivery", job.ID, "reason", f.Reason, "temporary", f.Temporary, "error", err)
		return f
	}
	n.log.Debug("email sent", "alert", a.ID, "subscriber", sub.ID, "delivery", job.ID, "mode", job.Mode)
	return nil
}

// messageID returns the Message-ID (without brackets) of a delivery.
func (n *Notifier) messageID(deliveryID string) string { return deliveryID + "@" + n.domain }

// encrypt re-checks the target's key now and returns the multipart/encrypted
// entity for it, sharing the alert's encrypted data.
func (n *Notifier) encrypt(art *artefact, job *delivery.Job, sub *subscribers.Subscriber) ([]byte, error) {
	var key string
	found := false
	for _, e := range sub.Email {
		if strings.EqualFold(e.Address, job.Target) {
			key, found = e.PGPKey, true
			break
		}
	}
	switch {
	case !found:
		return nil, fmt.Errorf("email: %s is not an address of %s", job.Target, sub.ID)
	case strings.TrimSpace(key) == "":
		return nil, fmt.Errorf("email: no OpenPGP key for %s", job.Target)
	}
	r, err := n.keys.recipient(key, n.now())
	if err != nil {
		return nil, fmt.Errorf("email: key for %s unusable: %w", job.Target, err)
	}
	sealed, err := art.seal()
	if err != nil {
		return nil, fmt.Errorf("email: encrypt alert %s: %w", job.Alert.ID, err)
	}
	armored, err := sealed.For(r)
	if err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	return encryptedEntity(armored), nil
}

// classify maps a send error onto a delivery failure, in one place.
func classify(err error) *delivery.Failure {
	var smtpErr *smtp.SMTPError
	var ae *authError
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.As(err, &ae):
		// The relay refused our credentials: fix the configuration,
		// then the retries go through.
		return delivery.Temporary(delivery.ReasonConfig, err)
	case errors.As(err, &smtpErr):
		if smtpErr.Code >= 500 {
			return delivery.Permanent(delivery.ReasonSMTP5xx, err)
		}
		return delivery.Temporary(delivery.ReasonSMTP4xx, err)
	case errors.As(err, &certErr), errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &recordErr):
		return delivery.Temporary(delivery.ReasonTLS, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return delivery.Temporary(delivery.ReasonTimeout, err)
	case strings.Contains(err.Error(), "tls:"), strings.Contains(err.Error(), "STARTTLS"):
		return delivery.Temporary(delivery.ReasonTLS, err)
	}
	return delivery.Temporary(delivery.ReasonConnect, err)
}
