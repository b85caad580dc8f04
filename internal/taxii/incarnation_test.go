package taxii_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/subscribers"
)

// TestReRegisteredPartnerSeesNothingOfTheDeletedOnes: a partner deleted
// and registered again under its id (a new incarnation of its record:
// perhaps another organisation) finds none of the deleted partner's
// alerts in its pull collection, even those whose audience names the id,
// which the policy would let it have. What was made available before
// Herald recorded incarnations (no incarnation in its receipts) is still
// found by id alone.
func TestReRegisteredPartnerSeesNothingOfTheDeletedOnes(t *testing.T) {
	e := newEnv(t)
	reRegister := func(id, incarnation string) {
		old := *e.reg.Get(id)
		require.True(t, e.reg.Delete(id))
		old.Incarnation = incarnation
		e.reg.Put(&old)
	}
	e.put("bank", func(s *subscribers.Subscriber) { s.Incarnation = "inc-bank-AAAAAAA" })
	e.publish(alert("ri-001", func(a *alerts.Alert) { a.Audience.Subscribers = []string{"bank", "charity"} }))
	bank, _ := e.all(bankToken, "bank", "", 100)
	require.Equal(t, []string{"ri-001"}, alertsIn(bank), "the first bank pulls the alert")
	charity, _ := e.all(charityToken, "charity", "", 100)
	require.Equal(t, []string{"ri-001"}, alertsIn(charity))

	reRegister("bank", "inc-bank-BBBBBBB")
	bank, _ = e.all(bankToken, "bank", "match[version]=all", 100)
	require.Empty(t, alertsIn(bank), "the new bank sees nothing the deleted bank had")
	e.publish(alert("ri-002", nil))
	bank, _ = e.all(bankToken, "bank", "", 100)
	require.Equal(t, []string{"ri-002"}, alertsIn(bank), "what is decided for the new bank it has")

	// The charity's record had no incarnation (made before Herald set
	// them): its history is found by id, as before.
	reRegister("charity", "inc-charity-CCCC")
	charity, _ = e.all(charityToken, "charity", "", 100)
	require.Equal(t, []string{"ri-001", "ri-002"}, alertsIn(charity))
}
