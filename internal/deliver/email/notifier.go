package email

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"sync/atomic"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/subscribers"
)

// cacheSize is how many renderings are kept: deliveries of one alert
// arrive close together, so a few suffice.
const cacheSize = 64

// Notifier sends alerts by email. It is safe for concurrent use.
type Notifier struct {
	cfg     Config
	from    *mail.Address
	domain  string
	issuer  string
	signer  *pgp.Signer
	log     *slog.Logger
	pool    *pool
	cache   *renderings
	keys    *pgp.ParsedKeys // judged by cfg.Keys first
	now     func() time.Time
	renders atomic.Uint64 // renderings made, for tests
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
	issuer := cfg.IssuerName
	if issuer == "" {
		issuer = strings.TrimSpace(oneLine(signer.Name()))
	}
	if issuer == "" {
		return nil, fmt.Errorf("email: email.issuer_name is empty and the signing key %s has no name in its user id: partners must see who issued an alert", signer.Fingerprint())
	}
	return &Notifier{
		cfg:    cfg,
		from:   from,
		domain: from.Address[strings.LastIndexByte(from.Address, '@')+1:],
		issuer: issuer,
		signer: signer,
		log:    log,
		pool:   newPool(cfg),
		cache:  newRenderings(cacheSize),
		keys:   &pgp.ParsedKeys{Verdicts: cfg.Keys},
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

	encrypted := false
	switch job.Mode {
	case delivery.ModeSigned:
		if a.MustEncrypt() {
			// Fail closed: the policy must have asked for encryption.
			return delivery.Permanent(delivery.ReasonEncrypt,
				fmt.Errorf("email: %s %s alert %s must be encrypted; refusing to send it signed only", a.TLP.Label(), a.Marking, a.ID))
		}
	case delivery.ModeEncrypted:
		encrypted = true
	case delivery.ModeKeyNotice, delivery.ModeCancelNotice, delivery.ModeFollowUpKeyNotice:
		// Content-free: signed only.
	case delivery.ModeKeyExpiryNotice:
		// Content-free, signed only, and about its own target: checked
		// here, before a rendering cached by content could be reused.
		if _, err := delivery.KeyExpiryOf(job); err != nil {
			return delivery.Permanent(delivery.ReasonInvalid, fmt.Errorf("email: %w", err))
		}
	default:
		return delivery.Permanent(delivery.ReasonInvalid, fmt.Errorf("email: unknown mode %q", job.Mode))
	}
	var recipient *pgp.Recipient
	if encrypted {
		r, err := n.recipient(job, sub)
		if err != nil {
			return delivery.Permanent(delivery.ReasonEncrypt, err)
		}
		recipient = r
	}

	var ks keyState
	if job.Mode == delivery.ModeKeyNotice || job.Mode == delivery.ModeFollowUpKeyNotice {
		ks = n.keyState(job, sub)
	}
	key, err := contentKey(job, n.issuer, ks)
	if err != nil {
		return delivery.Permanent(delivery.ReasonInvalid, fmt.Errorf("email: alert %s: %w", a.ID, err))
	}
	c, err := n.cache.get(ctx, key, func() (*content, error) {
		n.renders.Add(1)
		return render(job, n.issuer, n.signer.Fingerprint(), ks)
	})
	if err != nil {
		if ctx.Err() != nil {
			return delivery.Temporary(delivery.ReasonTimeout, fmt.Errorf("email: waiting for the rendering: %w", err))
		}
		return delivery.Permanent(delivery.ReasonInvalid, fmt.Errorf("email: render alert %s: %w", a.ID, err))
	}

	h := header{From: n.from, To: job.Target, Date: n.now(), MessageID: n.messageID(job.ID)}
	switch {
	case job.Mode == delivery.ModeCancelNotice || job.Mode == delivery.ModeFollowUpKeyNotice:
		for _, hd := range held(job) {
			h.References = append(h.References, n.messageID(delivery.ID(hd.ID, sub.ID, job.Target)))
		}
	case a.Type == alerts.TypeUpdate || a.Type == alerts.TypeCancel:
		for _, ref := range a.References {
			h.References = append(h.References, n.messageID(delivery.ID(ref, sub.ID, job.Target)))
		}
	}
	if job.Lineage != nil && job.Lineage.Root != "" && len(h.References) > 0 {
		// A follow-up of a follow-up threads under the chain's first
		// alert too, so the partner sees it with the alert it first got.
		h.Thread = n.messageID(delivery.ID(job.Lineage.Root, sub.ID, job.Target))
	}
	var ack string
	if c.ack && n.cfg.AckURL != nil {
		ack = n.cfg.AckURL(job)
	}
	// The signed part carries this message's own header fields (and its
	// acknowledgement link), so every message is signed, and encrypted,
	// on its own.
	entity, err := signedEntity(textPart(c, h, encrypted, ack), n.signer)
	if err != nil {
		return delivery.Permanent(delivery.ReasonSign, fmt.Errorf("email: sign alert %s: %w", a.ID, err))
	}
	if encrypted {
		armored, err := pgp.EncryptTo(recipient, entity)
		if err != nil {
			return delivery.Permanent(delivery.ReasonEncrypt, fmt.Errorf("email: encrypt alert %s to %s: %w", a.ID, job.Target, err))
		}
		entity = encryptedEntity(armored)
	}

	if err := n.pool.send(ctx, n.from.Address, job.Target, message(h, c.outer, entity)); err != nil {
		f := classify(ctx, err)
		n.log.Debug("email not sent", "alert", a.ID, "subscriber", sub.ID, "delivery", job.ID, "reason", f.Reason, "temporary", f.Temporary, "error", err)
		return f
	}
	n.log.Debug("email sent", "alert", a.ID, "subscriber", sub.ID, "delivery", job.ID, "mode", job.Mode)
	return nil
}

// messageID returns the Message-ID (without brackets) of a delivery.
func (n *Notifier) messageID(deliveryID string) string { return deliveryID + "@" + n.domain }

// recipient re-checks the target's key now and returns it, or says why
// it cannot be encrypted to.
func (n *Notifier) recipient(job *delivery.Job, sub *subscribers.Subscriber) (*pgp.Recipient, error) {
	key, found := targetKey(job, sub)
	switch {
	case !found:
		return nil, fmt.Errorf("email: %s is not an address of %s", job.Target, sub.ID)
	case strings.TrimSpace(key) == "":
		return nil, fmt.Errorf("email: no OpenPGP key for %s", job.Target)
	}
	r, err := n.keys.Recipient(key, n.now())
	if err != nil {
		return nil, fmt.Errorf("email: key for %s unusable: %w", job.Target, err)
	}
	return r, nil
}

// targetKey returns the armoured key sub's record holds for job's target
// ("" for none), and whether the record has the address at all.
func targetKey(job *delivery.Job, sub *subscribers.Subscriber) (key string, found bool) {
	for _, e := range sub.Email {
		if strings.EqualFold(e.Address, job.Target) {
			return e.PGPKey, true
		}
	}
	return "", false
}

// keyState judges, now, the key sub's record holds for job's target, for
// a key notice to say what the partner must fix: its fingerprint when the
// key parses, and why it cannot be encrypted to (the process's verdict on
// it, pgp.Verdict) when it cannot. The zero keyState when the record does not have the address.
func (n *Notifier) keyState(job *delivery.Job, sub *subscribers.Subscriber) keyState {
	key, found := targetKey(job, sub)
	switch {
	case !found:
		return keyState{}
	case strings.TrimSpace(key) == "":
		return keyState{why: "we hold no OpenPGP key for this address"}
	}
	v := n.keys.Judge(key, n.now())
	if !v.Parses() {
		return keyState{why: "the OpenPGP key we hold for this address cannot be read"}
	}
	fp := v.Info.Fingerprint
	if err := v.Err; err != nil {
		// The notice shows the fingerprint on a line of its own, and the
		// problem about "the key we hold".
		const ours = "the OpenPGP key we hold for this address"
		var ke *pgp.KeyError
		switch {
		case errors.As(err, &ke) && ke.Predicate: // "is revoked", "expired on 2020-01-02"
			return keyState{fingerprint: fp, why: ours + " " + oneLine(ke.Problem)}
		case errors.As(err, &ke): // "its user id is revoked"
			return keyState{fingerprint: fp, why: ours + " cannot be used for encryption: " + oneLine(ke.Problem)}
		}
		return keyState{fingerprint: fp, why: ours + " cannot be used for encryption: " + oneLine(err.Error())}
	}
	return keyState{fingerprint: fp}
}

// classify maps a send error onto a delivery failure: a relay that refused
// Herald's credentials is the operator's to fix (temporary, config), so
// the retries go through once it is; everything else is classified by
// internal/delivery, SMTP replies first.
func classify(ctx context.Context, err error) *delivery.Failure {
	var ae *authError
	if errors.As(err, &ae) {
		return delivery.Temporary(delivery.ReasonConfig, err)
	}
	if f := delivery.ClassifySMTP(err); f != nil {
		return f
	}
	return delivery.ClassifyNetwork(ctx, err)
}
