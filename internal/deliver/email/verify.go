package email

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"

	"github.com/herald-alerts/herald/crypto/pgp"
)

// Verification is what Verify found in a message.
type Verification struct {
	// Signer is the fingerprint of the key that signed the
	// message, upper-case hex.
	Signer string
	// Encrypted reports whether the message was multipart/encrypted.
	Encrypted bool
	// Micalg is the hash the sender declared (such as "pgp-sha256").
	Micalg string
	// Subject and MessageID are the outer headers, decoded. They are not
	// covered by the signature.
	Subject   string
	MessageID string
	// Protected holds the header fields carried inside the signed part
	// (RFC 9788 header protection), as written, without the HP-Outer
	// record of the outer ones; nil when the message has none. They are
	// covered by the signature: prefer them to the outer ones. HP is its
	// hp parameter: "clear" (signed only) or "cipher" (encrypted).
	Protected mail.Header
	HP        string
	// ProtectedSubject is the protected Subject, decoded: for an
	// encrypted message whose outer subject is minimal, the real one.
	ProtectedSubject string
	// Text is the signed plain text, without the Legacy Display Element
	// (RFC 9788 §4.5) that repeats the protected subject for mail clients
	// that do not read protected headers.
	Text string
}

// Verify checks a message as a partner would: it parses the raw message,
// decrypts it with secretArmored (unlocked with passphrase if protected)
// if it is RFC 3156 multipart/encrypted, and verifies the
// multipart/signed signature against the agency's public key. It returns
// an error unless the signature is good.
func Verify(raw []byte, agencyPublicArmored []byte, secretArmored []byte, passphrase []byte) (*Verification, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("verify email: parse message: %w", err)
	}
	v := &Verification{MessageID: strings.Trim(msg.Header.Get("Message-ID"), "<> ")}
	if s, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err == nil {
		v.Subject = s
	} else {
		v.Subject = msg.Header.Get("Subject")
	}
	body, err := io.ReadAll(msg.Body)
	if err != nil {
		return nil, fmt.Errorf("verify email: read body: %w", err)
	}
	ct, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("verify email: content type: %w", err)
	}
	if ct == "multipart/encrypted" {
		if params["protocol"] != "application/pgp-encrypted" {
			return nil, fmt.Errorf("verify email: multipart/encrypted with protocol %q, not application/pgp-encrypted", params["protocol"])
		}
		if len(secretArmored) == 0 {
			return nil, errors.New("verify email: the message is encrypted: give the recipient's secret key")
		}
		parts, err := splitMultipart(body, params["boundary"])
		if err != nil {
			return nil, fmt.Errorf("verify email: %w", err)
		}
		if len(parts) != 2 {
			return nil, fmt.Errorf("verify email: multipart/encrypted has %d parts, want 2", len(parts))
		}
		_, armored, err := splitEntity(parts[1])
		if err != nil {
			return nil, fmt.Errorf("verify email: encrypted part: %w", err)
		}
		plain, err := pgp.Decrypt(secretArmored, passphrase, armored)
		if err != nil {
			return nil, fmt.Errorf("verify email: %w", err)
		}
		inner, err := mail.ReadMessage(bytes.NewReader(plain))
		if err != nil {
			return nil, fmt.Errorf("verify email: parse decrypted entity: %w", err)
		}
		if body, err = io.ReadAll(inner.Body); err != nil {
			return nil, fmt.Errorf("verify email: read decrypted entity: %w", err)
		}
		if ct, params, err = mime.ParseMediaType(inner.Header.Get("Content-Type")); err != nil {
			return nil, fmt.Errorf("verify email: decrypted content type: %w", err)
		}
		v.Encrypted = true
	}
	if ct != "multipart/signed" || params["protocol"] != "application/pgp-signature" {
		return nil, fmt.Errorf("verify email: not an OpenPGP/MIME signed message (%s; protocol %q)", ct, params["protocol"])
	}
	v.Micalg = params["micalg"]
	parts, err := splitMultipart(body, params["boundary"])
	if err != nil {
		return nil, fmt.Errorf("verify email: %w", err)
	}
	if len(parts) != 2 {
		return nil, fmt.Errorf("verify email: multipart/signed has %d parts, want 2", len(parts))
	}
	_, sig, err := splitEntity(parts[1])
	if err != nil {
		return nil, fmt.Errorf("verify email: signature part: %w", err)
	}
	fp, err := pgp.VerifyDetached(agencyPublicArmored, parts[0], sig)
	if err != nil {
		return nil, fmt.Errorf("verify email: %w", err)
	}
	v.Signer = fp
	h, text, err := decodeText(parts[0])
	if err != nil {
		return nil, fmt.Errorf("verify email: signed part: %w", err)
	}
	_, tparams, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if hp := tparams["hp"]; hp == "clear" || hp == "cipher" {
		v.HP, v.Protected = hp, mail.Header{}
		for k, vals := range h {
			if !strings.HasPrefix(k, "Content-") && k != "Mime-Version" && k != "Hp-Outer" {
				v.Protected[k] = vals
			}
		}
		if s, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject")); err == nil {
			v.ProtectedSubject = s
		} else {
			v.ProtectedSubject = h.Get("Subject")
		}
		if hp == "cipher" && v.Encrypted && tparams["hp-legacy-display"] == "1" {
			text = stripLegacyDisplay(text)
		}
	}
	v.Text = text
	return v, nil
}

// stripLegacyDisplay removes the Legacy Display Element from the start of
// a text/plain part (RFC 9788 §4.5): header-like lines up to and
// including the first blank line. A text that does not start that way is
// returned unchanged.
func stripLegacyDisplay(text string) string {
	end := strings.Index(text, "\n\n")
	if end < 0 {
		return text
	}
	for _, line := range strings.Split(text[:end], "\n") {
		name, _, ok := strings.Cut(line, ": ")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return text
		}
	}
	return text[end+2:]
}

// splitMultipart returns the raw body parts of a multipart body (RFC 2046
// §5.1.1): each is the bytes after a delimiter line up to, not including,
// the line break before the next delimiter. CRLF and bare LF line breaks
// are both accepted.
func splitMultipart(body []byte, boundary string) ([][]byte, error) {
	if boundary == "" {
		return nil, errors.New("multipart without boundary")
	}
	delim := []byte("--" + boundary)
	var parts [][]byte
	start := -1 // start of the current part
	for pos := 0; pos < len(body); {
		end := bytes.IndexByte(body[pos:], '\n')
		lineEnd := len(body)
		if end >= 0 {
			lineEnd = pos + end + 1
		}
		line := bytes.TrimRight(body[pos:lineEnd], "\r\n \t")
		if bytes.HasPrefix(line, delim) {
			rest := line[len(delim):]
			closing := bytes.Equal(rest, []byte("--"))
			if len(rest) == 0 || closing {
				if start >= 0 {
					p := body[start:pos]
					p = bytes.TrimSuffix(p, []byte("\n"))
					p = bytes.TrimSuffix(p, []byte("\r"))
					parts = append(parts, p)
				}
				if closing {
					return parts, nil
				}
				start = lineEnd
			}
		}
		pos = lineEnd
	}
	return nil, fmt.Errorf("multipart: no closing boundary --%s--", boundary)
}

// splitEntity splits a MIME entity into its header and body.
func splitEntity(entity []byte) (mail.Header, []byte, error) {
	m, err := mail.ReadMessage(bytes.NewReader(entity))
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(m.Body)
	return m.Header, body, err
}

// decodeText returns the header and the text of a text/plain entity.
func decodeText(entity []byte) (mail.Header, string, error) {
	h, body, err := splitEntity(entity)
	if err != nil {
		return nil, "", err
	}
	if ct, _, err := mime.ParseMediaType(h.Get("Content-Type")); err != nil || ct != "text/plain" {
		return nil, "", fmt.Errorf("signed part is %q, not text/plain", h.Get("Content-Type"))
	}
	switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		b, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return nil, "", fmt.Errorf("quoted-printable: %w", err)
		}
		body = b
	case "", "7bit", "8bit":
	default:
		return nil, "", fmt.Errorf("unexpected transfer encoding %q", h.Get("Content-Transfer-Encoding"))
	}
	return h, strings.ReplaceAll(string(body), "\r\n", "\n"), nil
}
