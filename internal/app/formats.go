package app

import (
	"net/mail"
	"strings"

	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/taxii"
	"github.com/herald-alerts/herald/internal/view"
)

// Agency is the agency's name in everything partners read:
// email.issuer_name, or else the name on the signing key (signer may be
// nil); "" when neither is set.
func Agency(cfg *config.Config, signer *pgp.Signer) string {
	if n := strings.TrimSpace(cfg.Email.IssuerName); n != "" {
		return n
	}
	if signer != nil {
		return strings.TrimSpace(signer.Name())
	}
	return ""
}

// DefaultCAPSender is the CAP sender when smtp.from is not set.
const DefaultCAPSender = "herald"

// CAPSender is the sender of Herald's CAP messages: the address of
// smtp.from (the agency's alerts address), or DefaultCAPSender.
func CAPSender(cfg *config.Config) string {
	if a, err := mail.ParseAddress(cfg.SMTP.From); err == nil && a.Address != "" {
		return a.Address
	}
	return DefaultCAPSender
}

// The fan-out's history is the view, which keeps the published alerts that
// updates and cancels trace their lineage from.
var _ fanout.PublishedHistory = (*view.View)(nil)

// pullServer is the partners' pull channel (TAXII 2.1 and the MISP feed)
// the api role serves, answering from the view.
func (a *App) pullServer() *taxii.Server {
	agency := Agency(a.cfg, a.signer)
	if agency == "" {
		a.log.Warn("the agency has no name (email.issuer_name, or a name on the signing key): TAXII and the MISP feed answer 503")
	}
	return &taxii.Server{
		Source:   a.view,
		Registry: a.registry,
		Receipts: ReceiptWriter{P: a.bus.Producer(bus.TopicReceipts)},
		Audit:    AuditLog(a.bus, a.now),
		Policy:   PolicyOptions(a.cfg),
		Agency:   agency,
		// Discovery names api.public_url when it is set, else the
		// request's own host.
		BaseURL: strings.TrimRight(a.cfg.API.PublicURL, "/"),
		Now:     a.now,
		Log:     a.log.With("role", RoleAPI, "component", "pull"),
	}
}
