package ledger

import (
	"errors"
	"fmt"

	"github.com/herald-alerts/herald/alerts"
)

// CheckReferences applies rule 7 of PRODUCT.md §3 to an update or cancel,
// given what the ledger knows of the alerts it references: each must have
// been fanned out, and the marking and TLP may not be lower than its. It
// returns one field error per problem, named references[i], marking or
// tlp. References that are not valid ids are left to Alert.Validate.
func CheckReferences(a *alerts.Alert, known map[string]*Alert) []alerts.FieldError {
	v := &alerts.ValidationError{}
	for i, ref := range a.References {
		if !alerts.ValidID(ref) || ref == a.ID {
			continue
		}
		orig := known[ref]
		if orig == nil || orig.FannedOut.IsZero() {
			v.Add(fmt.Sprintf("references[%d]", i), "alert %q is not known to Herald (it has not been published, or not yet fanned out)", ref)
			continue
		}
		if !a.TLP.Valid() || !a.Marking.Valid() {
			continue // Validate names them; comparing would repeat it
		}
		var follow *alerts.ValidationError
		if errors.As(a.MayFollow(&alerts.Alert{ID: orig.ID, TLP: orig.TLP, Marking: orig.Marking}), &follow) {
			v.Fields = append(v.Fields, follow.Fields...)
		}
	}
	return v.Fields
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
