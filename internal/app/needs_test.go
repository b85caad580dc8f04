package app

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOperatorGuideListsTheTopicsEachRoleNeeds: the operator guide's table
// of the topics whose retention stops each role is the one needsTopics
// applies, role by role, so that an operator reading why a role did not
// start finds the topic there.
func TestOperatorGuideListsTheTopicsEachRoleNeeds(t *testing.T) {
	guide, err := os.ReadFile("../../docs/operator-guide.md")
	require.NoError(t, err)
	_, table, ok := strings.Cut(string(guide), "| role | needs (its retention is checked) |\n|---|---|\n")
	require.True(t, ok, "the operator guide has the table of the topics each role needs")
	table, _, _ = strings.Cut(table, "\n\n")
	row := regexp.MustCompile("^\\| `([a-z]+)` \\| (.*) \\|$")
	documented := map[string][]string{}
	for _, line := range strings.Split(table, "\n") {
		m := row.FindStringSubmatch(line)
		require.NotNil(t, m, "a row of the table: %q", line)
		for _, topic := range strings.Split(m[2], ", ") {
			documented[m[1]] = append(documented[m[1]], strings.Trim(topic, "`"))
		}
	}
	for _, role := range AllRoles {
		t.Run(role, func(t *testing.T) {
			var needs []string
			for _, topic := range needsTopics(role, 2) {
				if strings.HasPrefix(topic, "retry.") {
					topic = "retry.*"
				}
				if !slices.Contains(needs, topic) {
					needs = append(needs, topic)
				}
			}
			require.NotEmpty(t, needs)
			require.ElementsMatch(t, needs, documented[role])
		})
	}
	require.Len(t, documented, len(AllRoles), "a row for each role, and no other")
}
