// Package api is Herald's HTTP API and analyst web console (PRODUCT.md §8).
//
// Analysts publish and preview alerts and follow their deliveries;
// administrators manage partner records; anyone may fetch the agency's
// public signing key, the health and readiness probes and the Prometheus
// metrics. The package depends on the rest of Herald only through the small
// interfaces declared here (Publisher, Ledger, Subscribers,
// SubscriberWriter), so it never imports the Kafka bus or the wiring.
//
// # Protocol
//
// JSON in and out (RFC 8259); errors are {"error": "...", "errors":
// [{"field": "...", "message": "..."}]}, with 422 for an alert or record
// that names its bad fields, 413 for a body over the limit and 415 for a
// write that is not application/json. Clients authenticate with OAuth 2.0
// bearer tokens (RFC 6750) taken from the configuration, where only their
// SHA-256 is stored; a missing or unknown token gets 401 with a
// WWW-Authenticate: Bearer challenge, a token whose role does not allow
// the request gets 403 (error="insufficient_scope"). Tokens are compared
// in constant time and never logged: the request log names the token.
//
// # Roles
//
//   - analyst: publish (POST /v1/alerts), preview, read alert status and
//     deliveries.
//   - admin: manage subscribers (GET, PUT, DELETE /v1/subscribers), and
//     also preview and read alert status and deliveries, so that an
//     operator can answer "who got alert X". Publishing stays with the
//     analyst role alone: issuing an alert is an analyst's decision
//     (separation of duties), and the record names the token that did it.
//   - either role: GET /v1/whoami answers the token's name and role (the
//     console checks a token with it at sign-in).
//   - partner: a token bound to one subscriber (api.tokens[].subscriber)
//     reaches /v1/partner/… only, and only that subscriber's data
//     (PRODUCT.md §12): its deliveries (never one the policy withheld),
//     acknowledgements, its own dead letters, its OpenPGP keys and its
//     webhook secrets. Anything not its own is 404, never another
//     partner's data; every change is audited as "partner:<token name>".
//     GET /v1/taxonomy, which is public reference data, is open to it too.
//   - public: GET /v1/signing-key (application/pgp-keys, RFC 3156 §7),
//     /healthz, /readyz and /metrics. Following the Prometheus convention,
//     /metrics is unauthenticated: it carries counts and durations, never
//     alert content or partner data, and the API listens on a private
//     address (api.listen, default 127.0.0.1:8080). Expose it beyond
//     that only through a proxy that restricts /metrics.
//
// # Partner records
//
// Webhook secrets are never returned: GET shows each as "redacted:" and a
// short SHA-256 prefix, and a PUT may send that form back to keep the
// stored secret, so a fetched record can be edited and put back. PUT and
// DELETE write to the subscribers topic; GET reads the registry, which
// sees a write once it has consumed it. DELETE is idempotent (204).
//
// # Acknowledgement links
//
// Every email that carries an alert's content carries a link,
// <api.public_url>/ack/<capability> (internal/ack: opaque, bound to that
// one delivery, expiring with the alert). GET shows a page with a single
// "Confirm receipt" button and records nothing, so the mail scanners
// that fetch every link acknowledge nothing; the button POSTs, which
// records the acknowledgement once. The pages run no script and load
// nothing (their own Content-Security-Policy allows one inline style by
// its hash). A link that is altered, forged or expired is a 404 page.
//
// # Console
//
// The web console is a set of server-rendered pages (html/template, with
// every value escaped by context) and one embedded script that calls the
// API with the token the analyst signs in with, kept in sessionStorage for
// the tab's life. The pages themselves carry no data, so they are served
// without a token; every datum comes from the API under the bearer token.
// Bearer tokens in a header, never cookies, leave no room for cross-site
// request forgery. The script builds the DOM with textContent only. Every
// response carries a Content-Security-Policy (CSP Level 3) that allows
// scripts, styles and fetches from the same origin only, plus
// X-Content-Type-Options: nosniff, frame denial and no-referrer.
package api
