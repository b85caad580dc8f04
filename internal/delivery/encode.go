package delivery

import (
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// Encode returns the receipt's JSON encoding: the bytes json.Marshal
// gives, written directly. Receipts are written twice per delivery (the
// decision and the outcome), and encoding/json's reflection was most of
// the cost of writing one. FuzzReceiptEncode checks the two agree.
func (r *Receipt) Encode() []byte {
	if !encodableTime(r.At) || !encodableTime(r.RetryAt) {
		b, _ := json.Marshal(r) // an error for such a time, as json.Marshal gives
		return b
	}
	b := make([]byte, 0, r.encodedSize())
	b = append(b, `{"kind":`...)
	b = appendString(b, r.Kind)
	b = append(b, `,"alert":`...)
	b = appendString(b, r.AlertID)
	b = appendOmitEmpty(b, `,"delivery":`, r.DeliveryID)
	b = append(b, `,"subscriber":`...)
	b = appendString(b, r.Subscriber)
	b = appendOmitEmpty(b, `,"incarnation":`, r.Incarnation)
	b = appendOmitEmpty(b, `,"channel":`, r.Channel)
	b = appendOmitEmpty(b, `,"target":`, r.Target)
	b = appendOmitEmpty(b, `,"decision":`, r.Decision)
	b = appendOmitEmpty(b, `,"mode":`, r.Mode)
	b = appendOmitEmpty(b, `,"rule":`, r.Rule)
	b = appendOmitEmpty(b, `,"reason":`, r.Reason)
	b = appendOmitEmpty(b, `,"state":`, r.State)
	if r.Attempt != 0 {
		b = append(b, `,"attempt":`...)
		b = strconv.AppendInt(b, int64(r.Attempt), 10)
	}
	b = appendOmitEmpty(b, `,"error":`, r.Error)
	if !r.RetryAt.IsZero() {
		b = append(b, `,"retry_at":`...)
		b = appendTime(b, r.RetryAt)
	}
	b = append(b, `,"at":`...)
	b = appendTime(b, r.At)
	b = appendOmitEmpty(b, `,"type":`, string(r.Type))
	b = appendOmitEmpty(b, `,"tlp":`, string(r.TLP))
	b = appendOmitEmpty(b, `,"marking":`, string(r.Marking))
	if len(r.References) > 0 {
		b = append(b, `,"references":[`...)
		for i, ref := range r.References {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, ref)
		}
		b = append(b, ']')
	}
	b = appendOmitEmpty(b, `,"issued_by":`, r.IssuedBy)
	b = appendOmitEmpty(b, `,"approved_by":`, r.ApprovedBy)
	b = appendOmitEmpty(b, `,"title":`, r.Title)
	b = appendOmitEmpty(b, `,"digest":`, r.Digest)
	b = appendOmitEmpty(b, `,"by":`, r.By)
	b = appendOmitEmpty(b, `,"note":`, r.Note)
	return append(b, '}')
}

// encodedSize is about the size of the receipt's encoding, so that Encode
// allocates once: every member's name and punctuation (about 320 bytes
// with both times) and its string values, unescaped.
func (r *Receipt) encodedSize() int {
	n := 340 + len(r.Kind) + len(r.AlertID) + len(r.DeliveryID) + len(r.Subscriber) + len(r.Incarnation) + len(r.Channel) +
		len(r.Target) + len(r.Decision) + len(r.Mode) + len(r.Rule) + len(r.Reason) + len(r.State) +
		len(r.Error) + len(r.Type) + len(r.TLP) + len(r.Marking) + len(r.IssuedBy) + len(r.ApprovedBy) +
		len(r.Title) + len(r.Digest) + len(r.By) + len(r.Note)
	for _, ref := range r.References {
		n += 3 + len(ref)
	}
	return n
}

// plain reports whether the job is one appendPlain writes: a first
// attempt with its alert's bytes, and no lineage, held alerts or
// not_before.
func (j *Job) plain() bool {
	return j.Attempt == 0 && j.NotBefore.IsZero() && j.History == nil && j.Held == nil && j.Lineage == nil &&
		len(j.AlertJSON) > 0
}

// appendPlain writes a plain job as encodeReflect does.
func (j *Job) appendPlain() []byte { return j.appendFields(j.AlertJSON) }

// appendFields writes a plain job's members, with alert after its id
// unless alert is nil (a job of a pack, EncodeBare).
func (j *Job) appendFields(alert []byte) []byte {
	b := make([]byte, 0, len(alert)+len(j.ID)+len(j.Subscriber)+len(j.Incarnation)+len(j.Channel)+len(j.Target)+len(j.Mode)+112)
	b = append(b, `{"id":`...)
	b = appendString(b, j.ID)
	if alert != nil {
		b = append(b, `,"alert":`...)
		b = append(b, alert...)
	}
	b = append(b, `,"subscriber":`...)
	b = appendString(b, j.Subscriber)
	b = appendOmitEmpty(b, `,"incarnation":`, j.Incarnation)
	b = append(b, `,"channel":`...)
	b = appendString(b, j.Channel)
	b = append(b, `,"target":`...)
	b = appendString(b, j.Target)
	b = append(b, `,"mode":`...)
	b = appendString(b, j.Mode)
	return append(b, `,"attempt":0}`...)
}

// encodableTime reports whether t encodes as JSON (time.Time.MarshalJSON
// refuses years outside 0-9999).
func encodableTime(t time.Time) bool {
	y := t.Year()
	return y >= 0 && y <= 9999
}

// appendTime appends t as time.Time.MarshalJSON writes it.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendOmitEmpty(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendString(append(b, name...), s)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string as encoding/json writes it: with
// <, > and & escaped, invalid UTF-8 replaced by U+FFFD, and U+2028 and
// U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
