package publish

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/record"
)

// Body is an alert as an analyst sent it, not yet read.
type Body struct {
	// Data is the alert: JSON, or YAML when YAML is set.
	Data []byte
	// YAML allows YAML when Data is not JSON: a file given to the CLI.
	// The API takes JSON only.
	YAML bool
}

// DecodeBody reads the alert in b: JSON by alerts.DecodeInput (a key
// given twice, bytes that are not UTF-8, a bad time, anything but an
// object are refused naming the field), or YAML by alerts.DecodeYAML. It
// does not validate: Prepare and Publish do.
func DecodeBody(b Body) (*alerts.Alert, error) {
	if b.YAML && !json.Valid(b.Data) {
		return alerts.DecodeYAML(b.Data)
	}
	return alerts.DecodeInput(b.Data)
}

// InputError is PublishBody's error for a body that is not an alert: Err
// says why, a *alerts.ValidationError naming the fields or the decoder's
// error.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }

// Unwrap returns Err.
func (e *InputError) Unwrap() error { return e.Err }

// PublishBody reads the alert in b (DecodeBody) and publishes it as
// issued by by, as Publish does, returning it as read. A body that is not
// an alert is refused with an *InputError and recorded in the audit trail
// as Publish records an invalid alert: naming the fields, never their
// values.
func (p *Publisher) PublishBody(ctx context.Context, b Body, by string) (*alerts.Alert, *Result, error) {
	a, err := DecodeBody(b)
	if err != nil {
		p.refused(ctx, by, record.ActionPublish, "", refusal(err, b))
		return nil, nil, &InputError{Err: err}
	}
	res, err := p.Publish(ctx, a, by)
	return a, res, err
}

// RefuseBody records a publish refused before its body was read (the
// API's media type or size), with why: reason must not hold the body.
func (p *Publisher) RefuseBody(ctx context.Context, by, reason string) {
	p.refused(ctx, by, record.ActionPublish, "", reason)
}

// refusal says why the body b was not an alert (err from DecodeBody), for
// the audit trail: the fields it names, never their values, and never
// the parser's words, which quote the body.
func refusal(err error, b Body) string {
	if v := alerts.FieldErrors(err, "alert"); v != nil {
		return invalidFields(v)
	}
	if errors.Is(err, alerts.ErrNotObject) {
		return err.Error()
	}
	if b.YAML {
		return "the alert could not be read as JSON or YAML"
	}
	return "the alert is not JSON"
}

// maxRefusalReason bounds the audit trail's reason for an invalid alert:
// a body of many bad keys names them all to its author, not to the audit
// trail, whose entries stay small.
const maxRefusalReason = 1024

// invalidFields is the audit trail's reason for an invalid alert: the
// fields v names, at most maxRefusalReason bytes of them.
func invalidFields(v *alerts.ValidationError) string {
	names := make([]string, len(v.Fields))
	for i, f := range v.Fields {
		names[i] = f.Field
	}
	return alerts.Clip("invalid alert: "+strings.Join(names, ", "), maxRefusalReason, "…")
}
