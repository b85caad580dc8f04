package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
)

// errorBody is the JSON shape of every error.
type errorBody struct {
	Error  string              `json:"error"`
	Errors []alerts.FieldError `json:"errors,omitempty"`
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// writeError writes an error with the fields it names, if any.
func writeError(w http.ResponseWriter, status int, msg string, fields []alerts.FieldError) {
	if sw, ok := w.(*statusWriter); ok {
		// For the request's log line: the fields by name, never their
		// values.
		sw.refusal, sw.fields = msg, nil
		for _, f := range fields {
			sw.fields = append(sw.fields, f.Field)
		}
	}
	writeJSON(w, status, errorBody{Error: msg, Errors: fields})
}

// writeInvalid writes a 422 naming every bad field of err, which is an
// *alerts.ValidationError or any other error.
func writeInvalid(w http.ResponseWriter, err error) {
	var v *alerts.ValidationError
	if errors.As(err, &v) {
		what := v.What
		if what == "" {
			what = "invalid input"
		}
		writeError(w, http.StatusUnprocessableEntity, what, v.Fields)
		return
	}
	writeError(w, http.StatusUnprocessableEntity, err.Error(), nil)
}

// errResponded tells a handler that readBody has already answered.
var errResponded = errors.New("response written")

// bodyRefused is readBody's error for a body it refused before reading it
// (media type, size), having answered: reason says why, for the audit
// trail of a handler that records it. It matches errResponded.
type bodyRefused struct{ reason string }

func (e *bodyRefused) Error() string        { return e.reason }
func (e *bodyRefused) Is(target error) bool { return target == errResponded }

// readBody reads a JSON request body of at most limit bytes, answering
// 415 for another media type and 413 for a larger body (a *bodyRefused).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		msg := "the body must be application/json"
		writeError(w, http.StatusUnsupportedMediaType, msg, nil)
		return nil, &bodyRefused{msg}
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		writeError(w, http.StatusUnsupportedMediaType, "the body must be UTF-8 JSON, not charset "+cs, nil)
		return nil, &bodyRefused{"the body must be UTF-8 JSON, not another charset"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			msg := fmt.Sprintf("the body exceeds %d bytes", limit)
			writeError(w, http.StatusRequestEntityTooLarge, msg, nil)
			return nil, &bodyRefused{msg}
		}
		writeError(w, http.StatusBadRequest, "read the body: "+err.Error(), nil)
		return nil, errResponded
	}
	return body, nil
}

// screenBody refuses, answering, what alerts.ScreenJSON refuses in a
// request's body (a key given twice, bytes that are not UTF-8, anything
// but an object), naming the field; what names the body.
func screenBody(w http.ResponseWriter, body []byte, what string) bool {
	if err := alerts.ScreenJSON(body, what); err != nil {
		writeDecodeError(w, what, err)
		return false
	}
	return true
}

// writeDecodeError answers a body that could not be decoded: 422 naming
// the field for an unknown field or a value of the wrong type, 400 for
// anything that is not JSON at all.
func writeDecodeError(w http.ResponseWriter, what string, err error) {
	if v := alerts.FieldErrors(err, what); v != nil {
		writeInvalid(w, v)
		return
	}
	if errors.Is(err, alerts.ErrNotObject) {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	var timeErr *time.ParseError
	if errors.As(err, &timeErr) {
		writeError(w, http.StatusUnprocessableEntity, "invalid "+what+": a time is not RFC 3339: "+timeErr.Error(), nil)
		return
	}
	writeError(w, http.StatusBadRequest, what+" is not valid JSON: "+strings.TrimPrefix(err.Error(), "decode "+what+": "), nil)
}
