// Package email is Herald's email channel: it renders an alert as a plain
// text message, signs it with the agency key as RFC 3156 PGP/MIME
// (multipart/signed, text-mode signature, RFC 2045 quoted-printable),
// encrypts it where the policy demands (multipart/encrypted, RFC 3156 §4),
// and submits one message per recipient address over SMTP (RFC 5321) with
// STARTTLS (RFC 3207) or implicit TLS (RFC 8314) and AUTH PLAIN (RFC 4954,
// RFC 4616) through a pool of reused connections.
//
// Header protection (RFC 9788): the signed text part of every message
// carries the message's own header fields (From, To, Subject, Date,
// Message-ID, threading) with hp="clear" when the message is signed only
// and hp="cipher" when it is encrypted, and protected-headers="v1", the
// older convention Thunderbird, Enigmail and Autocrypt clients read. An
// encrypted alert shows outside only its TLP label, marking and id as the
// subject; inside, the real subject, the HP-Outer record of the header
// fields shown outside, and a Legacy Display Element (hp-legacy-display)
// that repeats the subject at the top of the text for mail clients that
// decrypt but do not read protected headers.
//
// Because the signed part names its recipient (and may carry the
// delivery's own acknowledgement link), every message is signed, and
// encrypted to its one recipient, on its own. The text is rendered once
// per content: renderings are cached under a digest of everything they
// depend on (the alert's exact content, the mode, the alerts the target
// holds, the issuer name), never under the alert id alone. Updates and
// cancels thread under the original (In-Reply-To, References, RFC 5322
// §3.6.4). Non-ASCII header text is sent as RFC 2047 encoded words.
//
// Partner-facing text names the agency (Config.IssuerName), never the
// analyst who issued or approved an alert. Content-free notices (a key
// that needs attention; an alert the partner holds that was withdrawn or
// updated, PRODUCT.md §3 rule 7) are wrapped at 72 columns.
//
// Verify is the partner's side: it decrypts and checks a received message.
package email
