package ledger

import (
	"errors"
	"fmt"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
)

// ErrGone says that the alerts topic no longer holds an alert's record:
// retention deleted it, while its receipts (written after it) may still
// be in the receipts topic.
var ErrGone = errors.New("its record has left the alerts topic")

// Published returns the alert id as its record on the alerts topic holds
// it, for CheckReferences. It returns an error wrapping ErrGone when the
// topic holds the record no longer; any other error is a failure to find
// out (Kafka, the view), which the caller reports as such.
type Published func(id string) (*alerts.Alert, error)

// Remembered returns published asking it once per id: the chains of an
// alert's references may share alerts, and the fan-out traces the chain
// it checked. It is for one alert, from one goroutine.
func Remembered(published Published) Published {
	type answer struct {
		a   *alerts.Alert
		err error
	}
	asked := map[string]answer{}
	return func(id string) (*alerts.Alert, error) {
		if ans, ok := asked[id]; ok {
			return ans.a, ans.err
		}
		a, err := published(id)
		asked[id] = answer{a, err}
		return a, err
	}
}

// CheckReferences applies rule 7 of PRODUCT.md §3 to an update or cancel,
// given what the ledger knows of the alerts it references: each must have
// been fanned out, the marking and TLP may not be lower than its, and the
// alerts topic must still hold its record and those of the earlier alerts
// of its chain (published), from which the update's lineage is traced
// (delivery.TraceLineage): one that retention deleted cannot be traced,
// and a follow-up sent without its lineage would withdraw nothing. It
// returns one field error per problem, named references[i], marking or
// tlp; the error is published's when it failed other than with ErrGone.
// A chain that cannot be traced (a delivery.UntraceableError: too long,
// an alert without issued_at, references in a circle) is a field error
// too: it is a fact about the history, which asking again would not
// change, not a failure to find out. References that are not valid ids
// are left to Alert.Validate.
//
// The publisher (refusing the alert) and the fan-out (quarantining it)
// both judge references here, so that they judge them alike.
func CheckReferences(a *alerts.Alert, known map[string]*Alert, published Published) ([]alerts.FieldError, error) {
	v := &alerts.ValidationError{}
	for i, ref := range a.References {
		if !alerts.ValidID(ref) || ref == a.ID {
			continue
		}
		field := fmt.Sprintf("references[%d]", i)
		orig := known[ref]
		if orig == nil || orig.FannedOut.IsZero() {
			v.Add(field, "alert %q is not known to Herald (it has not been published, or not yet fanned out)", ref)
			continue
		}
		var untraceable *delivery.UntraceableError
		switch gone, err := goneFrom(a, ref, known, published); {
		case gone == ref:
			v.Add(field, "alert %q's record has left the alerts topic (retention); publish a new alert instead of %s", ref, article(a.Type))
			continue
		case gone != "":
			v.Add(field, "the chain of alert %q reaches alert %q, whose record has left the alerts topic (retention); publish a new alert instead of %s", ref, gone, article(a.Type))
			continue
		case errors.As(err, &untraceable):
			v.Add(field, "the chain of alert %q cannot be traced: %s; publish a new alert instead of %s", ref, untraceable.Why, article(a.Type))
			continue
		case err != nil:
			return nil, err
		}
		if !a.TLP.Valid() || !a.Marking.Valid() {
			continue // Validate names them; comparing would repeat it
		}
		var follow *alerts.ValidationError
		if errors.As(a.MayFollow(&alerts.Alert{ID: orig.ID, TLP: orig.TLP, Marking: orig.Marking}), &follow) {
			v.Fields = append(v.Fields, follow.Fields...)
		}
	}
	var refs []string
	for _, ref := range a.References {
		if alerts.ValidID(ref) && ref != a.ID {
			refs = append(refs, ref)
		}
	}
	if len(v.Fields) == 0 && len(refs) > 1 {
		// Each chain was traced alone; the fan-out traces them together
		// (delivery.TraceLineage of a), which may be too long although
		// none of them is.
		var untraceable *delivery.UntraceableError
		if _, err := delivery.TraceLineage(&alerts.Alert{ID: a.ID, References: refs}, published); errors.As(err, &untraceable) {
			v.Add("references", "the chains of the alerts referenced cannot be traced together: %s; publish a new alert instead of %s", untraceable.Why, article(a.Type))
		} else if err != nil {
			return nil, err
		}
	}
	return v.Fields, nil
}

// goneFrom traces the chain of a's reference ref through published, as
// the fan-out traces a's lineage, and returns the id of the first alert of
// it whose record is gone (ErrGone), or "" and the error that stopped the
// trace, if any. A record that is not the alert known under its id
// (Alert.IsRecord: a later record with other content survived retention
// of the alert's) is gone too.
func goneFrom(a *alerts.Alert, ref string, known map[string]*Alert, published Published) (gone string, err error) {
	_, err = delivery.TraceLineage(&alerts.Alert{ID: a.ID, References: []string{ref}}, func(id string) (*alerts.Alert, error) {
		r, err := published(id)
		if err == nil && r != nil && !known[id].IsRecord(r) {
			err = fmt.Errorf("alert %s: the record under its id is another alert: %w", id, ErrGone)
		}
		if errors.Is(err, ErrGone) {
			gone = id
		}
		return r, err
	})
	if gone != "" {
		return gone, nil
	}
	return "", err
}

// article names a follow-up of type t with its article: "an update",
// "a cancel".
func article(t alerts.Type) string {
	if t == alerts.TypeUpdate {
		return "an update"
	}
	return "a " + string(t)
}

// ReceivedAny returns the predicate rule 7 needs: whether target of
// subscriber's record of the given incarnation received any of the given
// alerts (Alert.Received).
func ReceivedAny(prior map[string]*Alert) func(subscriber, incarnation, target string) bool {
	return func(subscriber, incarnation, target string) bool {
		for _, p := range prior {
			if p.Received(subscriber, incarnation, target) {
				return true
			}
		}
		return false
	}
}
