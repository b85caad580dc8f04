// Package email is Herald's email channel: it renders an alert as a plain
// text message, signs it with the agency key as RFC 3156 PGP/MIME
// (multipart/signed, text-mode signature, RFC 2045 quoted-printable),
// encrypts it where the policy demands (multipart/encrypted, RFC 3156 §4),
// and submits one message per recipient address over SMTP (RFC 5321) with
// STARTTLS (RFC 3207) or implicit TLS (RFC 8314) and AUTH PLAIN (RFC 4954,
// RFC 4616) through a pool of reused connections.
//
// Every recipient of an alert receives the same signed MIME entity: it is
// signed once per alert, and for encrypted delivery encrypted once per
// alert, each recipient's message carrying only its own key packet in
// front of the shared encrypted data (see crypto/pgp.Sealed). Headers are
// built per recipient: Message-ID carries the delivery id, and updates and
// cancels thread under the original with In-Reply-To and References (RFC
// 5322 §3.6.4). Non-ASCII header text is sent as RFC 2047 encoded words.
//
// Verify is the partner's side: it decrypts and checks a received message.
package email
