// Package demo is `herald demo`, the one-command quick start: in one
// process it starts the embedded Kafka-protocol broker, a local SMTP server
// that requires STARTTLS (RFC 5321, RFC 3207) and a local HTTPS webhook
// receiver standing in for the partners, both with certificates from a
// throwaway CA that Herald is told to trust, generates a throwaway agency key and partner keys (OpenPGP, RFC 4880 v4
// Ed25519/Curve25519), loads sample partners, runs Herald's fanout and
// deliver roles, publishes three alerts (TLP:GREEN, TLP:AMBER
// OFFICIAL-SENSITIVE, and a cancel of the first), and then checks, as a
// partner would, everything that arrived:
//
//   - every email's RFC 3156 PGP/MIME signature against the agency key,
//     decrypting it with the partner's key where it was encrypted;
//   - every webhook's Standard Webhooks v1 signature with the endpoint's
//     secrets, and its herald-pgp-signature (an OpenPGP detached signature
//     of the body) against the agency key;
//   - that no email carries the title of a TLP:AMBER or OFFICIAL-SENSITIVE
//     alert in clear;
//   - that every decision, and every final state in the ledger, is the one
//     PRODUCT.md §3 requires, from a table written out by hand.
//
// It writes what the partners received (.eml files, raw HTTP requests), the
// agency's public key and the partners' keys and records to a folder, so
// that `herald verify email|webhook` can be tried on real messages.
package demo
