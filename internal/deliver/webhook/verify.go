package webhook

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/crypto/whsig"
)

// maxCapture bounds a captured request VerifyRequest reads.
const maxCapture = 4 << 20

// Report is what VerifyRequest found in a captured webhook request.
type Report struct {
	// ID is the webhook-id: the delivery id, the same on every retry.
	ID string
	// Timestamp is the webhook-timestamp.
	Timestamp time.Time
	// Event and AlertID come from the body, if it is Herald's JSON
	// envelope (format herald, or a notice); other formats leave them
	// empty.
	Event   string
	AlertID string
	// Notice is the body's notice field, set on content-free notices.
	Notice string

	// SignatureErr is nil when a v1 entry of webhook-signature matches
	// one of the secrets.
	SignatureErr error
	// TimestampErr is nil when the timestamp lies within the tolerance.
	TimestampErr error
	// PGPChecked says whether herald-pgp-signature was checked (a key
	// was given); PGPErr is nil when it is a valid signature of the body
	// by that key, and PGPSigner is then the signing key's fingerprint.
	PGPChecked bool
	PGPErr     error
	PGPSigner  string
}

// OK reports whether every check that was made passed.
func (r *Report) OK() bool {
	return r.SignatureErr == nil && r.TimestampErr == nil && (!r.PGPChecked || r.PGPErr == nil)
}

// String renders the report for people, one check per line.
func (r *Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "webhook-id:        %s\n", r.ID)
	if !r.Timestamp.IsZero() {
		fmt.Fprintf(&b, "webhook-timestamp: %s\n", r.Timestamp.UTC().Format(time.RFC3339))
	}
	if r.Event != "" {
		fmt.Fprintf(&b, "event:             %s (alert %s)\n", r.Event, r.AlertID)
	}
	if r.Notice != "" {
		fmt.Fprintf(&b, "notice:            %s\n", r.Notice)
	}
	fmt.Fprintf(&b, "signature:         %s\n", verdict(r.SignatureErr))
	fmt.Fprintf(&b, "timestamp:         %s\n", verdict(r.TimestampErr))
	if r.PGPChecked {
		v := verdict(r.PGPErr)
		if r.PGPErr == nil {
			v += " (key " + r.PGPSigner + ")"
		}
		fmt.Fprintf(&b, "pgp signature:     %s\n", v)
	} else {
		b.WriteString("pgp signature:     not checked (no key given)\n")
	}
	return b.String()
}

func verdict(err error) string {
	if err == nil {
		return "valid"
	}
	return "INVALID: " + err.Error()
}

// VerifyRequest reads a captured webhook request and checks it: the
// Standard Webhooks signature against secrets, the timestamp against now
// and tolerance (whsig.DefaultTolerance if zero), and, when
// agencyPublicArmored is not empty, the herald-pgp-signature against the
// agency's ASCII-armoured public key.
//
// The capture is either raw HTTP/1.1 (request line, headers, blank line,
// body, as `nc -l` or a proxy dump shows it; LF line endings are accepted
// in the head, the body is taken byte for byte), or JSON
// {"headers": {"name": "value" | ["value", …]}, "body": "…"} (or
// "body_base64": "…" for a body that is not text).
//
// The error is for a capture that cannot be read or a key that cannot be
// parsed; the checks' results are in the Report.
func VerifyRequest(r io.Reader, secrets []string, agencyPublicArmored []byte, now time.Time, tolerance time.Duration) (*Report, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxCapture+1))
	if err != nil {
		return nil, fmt.Errorf("read capture: %w", err)
	}
	if len(data) > maxCapture {
		return nil, fmt.Errorf("read capture: larger than %d bytes", maxCapture)
	}
	h, body, err := parseCapture(data)
	if err != nil {
		return nil, err
	}
	var keys *pgp.PublicKeys
	if len(bytes.TrimSpace(agencyPublicArmored)) > 0 {
		keys, err = pgp.ReadPublicKeys(agencyPublicArmored)
		if err != nil {
			return nil, fmt.Errorf("read agency public key: %w", err)
		}
	}

	rep := &Report{ID: h.Get(whsig.HeaderID)}
	rep.Timestamp, _ = whsig.Timestamp(h)
	var env struct {
		Type   string `json:"type"`
		Notice string `json:"notice"`
		Alert  struct {
			ID string `json:"id"`
		} `json:"alert"`
	}
	// Only Herald's envelope names an event; a STIX bundle's "type" is
	// "bundle".
	if json.Unmarshal(body, &env) == nil && strings.HasPrefix(env.Type, "alert.") {
		rep.Event, rep.AlertID, rep.Notice = env.Type, env.Alert.ID, env.Notice
	}
	rep.SignatureErr = whsig.VerifySignature(h, body, secrets)
	rep.TimestampErr = whsig.CheckTimestamp(h, now, tolerance)
	if keys != nil {
		rep.PGPChecked = true
		rep.PGPSigner, rep.PGPErr = checkPGP(h, body, keys)
	}
	return rep, nil
}

// checkPGP checks herald-pgp-signature, the base64 of a binary detached
// signature of body.
func checkPGP(h http.Header, body []byte, keys *pgp.PublicKeys) (string, error) {
	v := h.Get(whsig.HeaderPGPSignature)
	if v == "" {
		return "", errors.New("no herald-pgp-signature header")
	}
	sig, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return "", fmt.Errorf("herald-pgp-signature is not base64: %w", err)
	}
	return keys.VerifyDetached(body, sig)
}

// parseCapture splits a capture into headers and body.
func parseCapture(data []byte) (http.Header, []byte, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return parseJSONCapture(trimmed)
	}
	br := bufio.NewReader(bytes.NewReader(trimmed))
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, fmt.Errorf("read capture as an HTTP request: %w", err)
	}
	defer req.Body.Close()
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("read capture body: %w", err)
	}
	if req.Header.Get("Content-Length") == "" && len(req.TransferEncoding) == 0 {
		// No length given (a hand-made capture): the rest is the body.
		body, _ = io.ReadAll(br)
	}
	return req.Header, body, nil
}

func parseJSONCapture(data []byte) (http.Header, []byte, error) {
	var c struct {
		Headers    map[string]json.RawMessage `json:"headers"`
		Body       *string                    `json:"body"`
		BodyBase64 *string                    `json:"body_base64"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, nil, fmt.Errorf("read capture as JSON: %w", err)
	}
	h := http.Header{}
	for name, raw := range c.Headers {
		var one string
		var many []string
		switch {
		case json.Unmarshal(raw, &one) == nil:
			h.Add(name, one)
		case json.Unmarshal(raw, &many) == nil:
			for _, v := range many {
				h.Add(name, v)
			}
		default:
			return nil, nil, fmt.Errorf("read capture as JSON: header %q is neither a string nor a list of strings", name)
		}
	}
	switch {
	case c.Body != nil && c.BodyBase64 != nil:
		return nil, nil, errors.New("read capture as JSON: give body or body_base64, not both")
	case c.BodyBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*c.BodyBase64)
		if err != nil {
			return nil, nil, fmt.Errorf("read capture as JSON: body_base64: %w", err)
		}
		return h, b, nil
	case c.Body != nil:
		return h, []byte(*c.Body), nil
	}
	return nil, nil, errors.New("read capture as JSON: no body")
}
