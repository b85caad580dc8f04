package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/policy"
)

// TestDryRunDecidesForEveryPartner: `publish --dry-run` prints a decision
// for every registered partner (PRODUCT.md §7), not only for those sharing
// a sector with the alert: a partner outside the audience is shown
// withheld with the rule that withheld it, a suspended one as suspended,
// and the summary counts them. Candidates come first, as the fan-out
// decides them, then every other partner by id. Nothing is published.
func TestDryRunDecidesForEveryPartner(t *testing.T) {
	b := onBroker(t)
	code, _, errOut := run(t, "", "subscribers", "import", "../../examples/partners.yaml")
	require.Equal(t, 0, code, errOut)
	green, err := os.ReadFile("../../examples/alert-green.yaml")
	require.NoError(t, err)
	alert := strings.Replace(string(green), "sectors: [hospitality, recruitment, financial-services]", "sectors: [construction]", 1)
	require.NotEqual(t, string(green), alert, "the example's sectors line changed: update the test")

	code, out, errOut := run(t, alert, "publish", "--dry-run", "--output", "json", "-")
	require.Equal(t, 0, code, errOut)
	var ds []policy.Decision
	require.NoError(t, json.Unmarshal([]byte(out), &ds))
	type row struct{ subscriber, target, decision, rule string }
	got := make([]row, len(ds))
	for i, d := range ds {
		got[i] = row{d.Subscriber, d.Target, d.Decision, d.Rule}
	}
	assert.Equal(t, []row{
		// The one partner in the construction sector: a candidate.
		{"freedom-trust", "alerts@freedomtrust.example", "deliver", policy.RuleEmailSigned},
		{"freedom-trust", "https://api.freedomtrust.example/hooks/herald", "deliver", policy.RuleWebhookSign},
		// Every other partner, by id.
		{"grandstay", "security@grandstay.example", "withhold", policy.RuleSector},
		{"harvest-farms", "office@harvestfarms.example", "withhold", policy.RuleSuspended},
		{"northbank", "fincrime@northbank.example", "withhold", policy.RuleSector},
		{"northbank", "https://hooks.northbank.example/herald", "withhold", policy.RuleSector},
		{"sparkle-cleaning", "ops@sparkle.example", "withhold", policy.RuleSector},
		{"staffright", "compliance@staffright.example", "withhold", policy.RuleSector},
	}, got)

	code, out, errOut = run(t, alert, "publish", "--dry-run", "-")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, regexp.MustCompile(`(?m)^northbank\s+fincrime@northbank\.example\s+withhold\s+-\s+audience\.sector\s+the partner shares no sector with the alert$`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^harvest-farms\s+office@harvestfarms\.example\s+withhold\s+-\s+subscriber\.suspended\s`), out)
	assert.Contains(t, out, "\n2 deliver, 0 notice, 6 withhold\n", "the summary counts every row")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	require.NoError(t, b.ReadAll(ctx, bus.TopicAlerts, func(kafka.Message) error { n++; return nil }))
	assert.Zero(t, n, "a dry run publishes nothing")
}
