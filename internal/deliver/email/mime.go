package email

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
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

// textPart is the MIME entity of the plain text, the part that is signed.
func textPart(text string) []byte {
	var b bytes.Buffer
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Content-Transfer-Encoding: quoted-printable\r\n")
	b.WriteString("\r\n")
	b.Write(quotedPrintable(text))
	return b.Bytes()
}

// signedEntity signs the text once and returns the complete RFC 3156 §5
// multipart/signed entity, starting with its Content-Type header. The
// signed data is the text part exactly as it appears between the first
// boundary line and the CRLF before the second (RFC 3156 §5, RFC 2046
// §5.1.1).
func signedEntity(text string, signer *pgp.Signer) ([]byte, error) {
	part := textPart(text)
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

// header is the per-recipient part of a message.
type header struct {
	From       *mail.Address
	To         string
	Subject    string
	Date       time.Time
	MessageID  string
	References []string // message ids, without angle brackets
}

// write writes the header fields; the entity's own Content-Type follows.
func (h header) write(b *bytes.Buffer) {
	fmt.Fprintf(b, "From: %s\r\n", h.From.String())
	fmt.Fprintf(b, "To: <%s>\r\n", h.To)
	fmt.Fprintf(b, "Subject: %s\r\n", encodeHeader(h.Subject))
	fmt.Fprintf(b, "Date: %s\r\n", h.Date.Format(time.RFC1123Z))
	fmt.Fprintf(b, "Message-ID: <%s>\r\n", h.MessageID)
	if len(h.References) > 0 {
		fmt.Fprintf(b, "In-Reply-To: <%s>\r\n", h.References[0])
		b.WriteString("References:")
		for _, r := range h.References {
			fmt.Fprintf(b, "\r\n <%s>", r)
		}
		b.WriteString("\r\n")
	}
	b.WriteString("Auto-Submitted: auto-generated\r\n")
	b.WriteString("MIME-Version: 1.0\r\n")
}

// message assembles the per-recipient header and the shared entity.
func message(h header, entity []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(entity) + 640)
	h.write(&b)
	b.Write(entity)
	return b.Bytes()
}
