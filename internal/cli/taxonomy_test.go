package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// taxonomyConfig writes a configuration whose sectors are two of the
// built-in ones and one more, seasonal-labour, and returns its path.
func taxonomyConfig(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(f, []byte(`taxonomy:
  sectors:
    - {slug: hospitality, name: "Hotels, restaurants and bars"}
    - {slug: care, name: Residential and domiciliary care, sic: ["87.10"]}
    - {slug: seasonal-labour, name: Seasonal and gang labour, sic: ["01.61"]}
`), 0o600))
	return f
}

// seasonalAlert is an alert for the configured sector seasonal-labour.
const seasonalAlert = `{id: s-1, title: "Gang labour on farms", severity: severe, marking: OFFICIAL, tlp: GREEN,
  handling: {code: P}, audience: {sectors: [seasonal-labour], regions: [TLE]}}`

// TestValidateWithConfiguredTaxonomy: validate checks an alert's sectors
// against the taxonomy of --config, not the built-in one.
func TestValidateWithConfiguredTaxonomy(t *testing.T) {
	cfg := taxonomyConfig(t)
	code, out, errOut := run(t, seasonalAlert, "--config", cfg, "validate", "-")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "valid: alert TLP:GREEN [OFFICIAL] Gang labour on farms\n", out)

	// Without the configuration the sector is unknown, named by its field.
	code, _, errOut = run(t, seasonalAlert, "validate", "-")
	require.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, `audience.sectors[0]: unknown sector "seasonal-labour"`)

	// The configured list replaces the built-in one.
	code, _, errOut = run(t, strings.Replace(seasonalAlert, "[seasonal-labour]", "[care, construction]", 1), "--config", cfg, "validate", "-")
	require.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, `audience.sectors[1]: unknown sector "construction"`)
	assert.NotContains(t, errOut, "audience.sectors[0]")

	// A bad taxonomy is refused before anything, naming the key.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("taxonomy:\n  sectors:\n    - {slug: care, name: Care}\n    - {slug: Seasonal Labour, name: Seasonal}\n"), 0o600))
	code, _, errOut = run(t, seasonalAlert, "--config", bad, "validate", "-")
	require.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, `taxonomy.sectors[1].slug: must be a lower-case slug`)
}

// TestPublishWithConfiguredTaxonomy: publish checks against the taxonomy of
// --config too.
func TestPublishWithConfiguredTaxonomy(t *testing.T) {
	onBroker(t)
	f := filepath.Join(t.TempDir(), "seasonal.yaml")
	require.NoError(t, os.WriteFile(f, []byte(seasonalAlert), 0o600))
	code, _, errOut := run(t, "", "publish", f)
	require.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, `audience.sectors[0]: unknown sector "seasonal-labour"`)

	code, out, errOut := run(t, "", "--config", taxonomyConfig(t), "publish", f)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "s-1\n", out)
}
