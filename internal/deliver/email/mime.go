package email

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/herald-alerts/herald/crypto/pgp"
)

// newBoundary returns a MIME boundary that cannot occur in
// quoted-printable text or in ASCII armour: "=_" is never produced by
// either encoding (RFC 2045 §6.7 and §5.1.1).
func newBoundary() string {
	var b [12]byte
	rand.Read(b[:])
	return "=_herald_" + hex.EncodeToString(b[:])
}

// quotedPrintable encodes text (LF or CRLF line endings) as
// quoted-printable with CRLF line endings, escaping "From " at the start
// of a line so that no mbox store alters the signed bytes.
func quotedPrintable(text string) []byte {
	var buf bytes.Buffer
	w := quotedprintable.NewWriter(&buf)
	w.Write([]byte(normalizeNewlines(text)))
	w.Close()
	out := buf.Bytes()
	if bytes.HasPrefix(out, []byte("From ")) {
		out = append([]byte("=46"), out[1:]...)
	}
	return bytes.ReplaceAll(out, []byte("\r\nFrom "), []byte("\r\n=46rom "))
}

// textPart returns the signed MIME entity of one message: the text/plain
// part whose header carries, besides its own MIME fields, the message's
// header fields with the real subject (RFC 9788 header protection:
// hp="clear" when signed only, hp="cipher" when it will be encrypted, and
// protected-headers="v1", which Thunderbird, Enigmail and Autocrypt
// clients read). An encrypted message also records, as HP-Outer fields,
// the header fields it shows outside. The body is the content's text with
// the delivery's acknowledgement paragraph, if any, before the footer.
func textPart(c *content, h header, encrypted bool, ack string) []byte {
	ackQP := quotedPrintable(ackParagraph(ack))
	var b bytes.Buffer
	b.Grow(len(c.head) + len(ackQP) + len(c.tail) + 1024)
	hp := "clear"
	if encrypted {
		hp = "cipher"
	}
	b.WriteString("Content-Type: text/plain; charset=utf-8; protected-headers=\"v1\";\r\n hp=\"" + hp + "\"")
	if encrypted && c.legacy {
		b.WriteString("; hp-legacy-display=\"1\"")
	}
	b.WriteString("\r\nContent-Transfer-Encoding: quoted-printable\r\n")
	for _, f := range h.fields(c.subject) {
		b.WriteString(f)
		b.WriteString("\r\n")
	}
	if encrypted {
		for _, f := range h.fields(c.outer) {
			b.WriteString("HP-Outer: ")
			b.WriteString(f)
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n")
	b.Write(c.head)
	b.Write(ackQP)
	b.Write(c.tail)
	return b.Bytes()
}

// signedEntity signs part and returns the complete RFC 3156 §5
// multipart/signed entity, starting with its Content-Type header. The
// signed data is the part exactly as it appears between the first
// boundary line and the CRLF before the second (RFC 3156 §5, RFC 2046
// §5.1.1).
func signedEntity(part []byte, signer *pgp.Signer) ([]byte, error) {
	sig, micalg, err := signer.SignDetachedText(part)
	if err != nil {
		return nil, err
	}
	bd := newBoundary()
	var b bytes.Buffer
	b.Grow(len(part) + len(sig) + 512)
	fmt.Fprintf(&b, "Content-Type: multipart/signed; boundary=%q; micalg=%s;\r\n protocol=\"application/pgp-signature\"\r\n", bd, micalg)
	b.WriteString("\r\n")
	b.WriteString("This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n")
	fmt.Fprintf(&b, "--%s\r\n", bd)
	b.Write(part)
	fmt.Fprintf(&b, "\r\n--%s\r\n", bd)
	b.WriteString("Content-Type: application/pgp-signature; name=\"signature.asc\"\r\n")
	b.WriteString("Content-Description: OpenPGP digital signature\r\n")
	b.WriteString("Content-Disposition: attachment; filename=\"signature.asc\"\r\n")
	b.WriteString("\r\n")
	b.Write(sig)
	fmt.Fprintf(&b, "\r\n--%s--\r\n", bd)
	return b.Bytes(), nil
}

// encryptedEntity wraps one recipient's armoured OpenPGP message as the
// RFC 3156 §4 multipart/encrypted entity.
func encryptedEntity(armored []byte) []byte {
	bd := newBoundary()
	var b bytes.Buffer
	b.Grow(len(armored) + 768)
	fmt.Fprintf(&b, "Content-Type: multipart/encrypted; boundary=%q;\r\n protocol=\"application/pgp-encrypted\"\r\n", bd)
	b.WriteString("\r\n")
	b.WriteString("This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n")
	fmt.Fprintf(&b, "--%s\r\n", bd)
	b.WriteString("Content-Type: application/pgp-encrypted\r\n")
	b.WriteString("Content-Description: PGP/MIME version identification\r\n")
	b.WriteString("\r\n")
	b.WriteString("Version: 1\r\n")
	fmt.Fprintf(&b, "\r\n--%s\r\n", bd)
	b.WriteString("Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n")
	b.WriteString("Content-Description: OpenPGP encrypted message\r\n")
	b.WriteString("Content-Disposition: inline; filename=\"encrypted.asc\"\r\n")
	b.WriteString("\r\n")
	b.Write(armored)
	fmt.Fprintf(&b, "\r\n--%s--\r\n", bd)
	return b.Bytes()
}

// encodeHeader returns s as header text: unchanged if it is printable
// ASCII, else RFC 2047 encoded words folded onto continuation lines. It
// never returns a bare CR or LF.
func encodeHeader(s string) string {
	s = oneLine(s)
	enc := mime.QEncoding.Encode("utf-8", s)
	return strings.ReplaceAll(enc, "?= =?", "?=\r\n =?")
}

// header is the per-message part of a message's header; the subject
// comes from the content.
type header struct {
	From       *mail.Address
	To         string
	Date       time.Time
	MessageID  string
	References []string // message ids, without angle brackets
	// Thread is the message id of the chain's first alert to this
	// target, listed before References (RFC 5322 §3.6.4: the parent's
	// References, then the parent) when it is not one of them; empty
	// outside a chain.
	Thread string
}

// fields returns the message's header fields with subject, each one whole
// field (continuation lines included) without its final CRLF: the fields
// shown outside, carried inside the signed part, and recorded there as
// HP-Outer.
func (h header) fields(subject string) []string {
	fs := make([]string, 0, 8)
	fs = append(fs,
		"From: "+h.From.String(),
		"To: <"+h.To+">",
		"Subject: "+encodeHeader(subject),
		"Date: "+h.Date.Format(time.RFC1123Z),
		"Message-ID: <"+h.MessageID+">",
	)
	if len(h.References) > 0 {
		fs = append(fs, "In-Reply-To: <"+h.References[0]+">")
		var b strings.Builder
		b.WriteString("References:")
		if h.Thread != "" && !slices.Contains(h.References, h.Thread) {
			b.WriteString("\r\n <" + h.Thread + ">")
		}
		for _, r := range h.References {
			b.WriteString("\r\n <" + r + ">")
		}
		fs = append(fs, b.String())
	}
	return append(fs, "Auto-Submitted: auto-generated")
}

// message assembles the outer header, with subject, and the entity.
func message(h header, subject string, entity []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(entity) + 640)
	for _, f := range h.fields(subject) {
		b.WriteString(f)
		b.WriteString("\r\n")
	}
	b.WriteString("MIME-Version: 1.0\r\n")
	b.Write(entity)
	return b.Bytes()
}
