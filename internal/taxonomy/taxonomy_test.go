package taxonomy_test

import (
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/taxonomy"
)

func TestDefaultSectors(t *testing.T) {
	tax := taxonomy.Default()
	required := []string{"agriculture", "food-processing", "construction", "manufacturing", "textiles",
		"warehousing-logistics", "recruitment", "hospitality", "care", "cleaning", "car-washes", "nail-bars",
		"fishing-maritime", "waste-recycling", "retail", "transport", "financial-services", "property-lettings",
		"online-platforms"}
	for _, slug := range required {
		assert.True(t, tax.HasSector(slug), slug)
		s, ok := tax.Sector(slug)
		require.True(t, ok, slug)
		assert.NotEmpty(t, s.Name, slug)
		assert.NotEmpty(t, s.SIC, "%s has no UK SIC 2007 code", slug)
	}
	assert.Len(t, tax.Sectors(), len(required))
	assert.False(t, tax.HasSector("Construction"))
	assert.False(t, tax.HasSector(""))
	_, ok := tax.Sector("mining")
	assert.False(t, ok)
}

// TestDefaultSIC pins codes that identify the sectors best, from the ONS
// UK SIC 2007 structure.
func TestDefaultSIC(t *testing.T) {
	want := map[string][]string{
		"agriculture":           {"01.1", "01.4"},
		"construction":          {"41", "43"},
		"textiles":              {"13", "14"},
		"recruitment":           {"78.10", "78.20"},
		"hospitality":           {"55.10", "56.10"},
		"care":                  {"87.10", "88.10"},
		"cleaning":              {"81.21"},
		"car-washes":            {"45.20"},
		"nail-bars":             {"96.02"},
		"financial-services":    {"64.19"},
		"property-lettings":     {"68.20"},
		"retail":                {"47"},
		"warehousing-logistics": {"52.10"},
	}
	tax := taxonomy.Default()
	for slug, codes := range want {
		s, ok := tax.Sector(slug)
		require.True(t, ok, slug)
		assert.Subset(t, s.SIC, codes, slug)
	}
	code := regexp.MustCompile(`^[0-9]{2}(\.[0-9]{1,2}(/[0-9])?)?$`)
	for _, s := range tax.Sectors() {
		for _, c := range s.SIC {
			assert.Regexp(t, code, c, s.Slug)
		}
	}
}

func TestDefaultRegions(t *testing.T) {
	tax := taxonomy.Default()
	want := map[string]string{
		"TLC": "North East", "TLD": "North West", "TLE": "Yorkshire and The Humber", "TLF": "East Midlands",
		"TLG": "West Midlands", "TLH": "East of England", "TLI": "London", "TLJ": "South East", "TLK": "South West",
		"TLL": "Wales", "TLM": "Scotland", "TLN": "Northern Ireland",
	}
	for code, name := range want {
		r, ok := tax.Region(code)
		require.True(t, ok, code)
		assert.Equal(t, name, r.Name)
		assert.True(t, tax.HasRegion(code))
	}
	assert.True(t, tax.HasRegion(taxonomy.AllRegions))
	assert.Len(t, tax.Regions(), 13)
	assert.False(t, tax.HasRegion("tli"))
	assert.False(t, tax.HasRegion("TLO"))
}

func TestDefaultIsShared(t *testing.T) {
	assert.Same(t, taxonomy.Default(), taxonomy.Default())
}

func TestCopies(t *testing.T) {
	sectors := []taxonomy.Sector{{Slug: "a", Name: "A", SIC: []string{"01"}}}
	regions := []taxonomy.Region{{Code: "R1", Name: "One"}}
	tax, err := taxonomy.New(sectors, regions)
	require.NoError(t, err)
	sectors[0].SIC[0], sectors[0].Slug, regions[0].Code = "99", "b", "R2"
	got := tax.Sectors()
	assert.Equal(t, []taxonomy.Sector{{Slug: "a", Name: "A", SIC: []string{"01"}}}, got)
	got[0].SIC[0] = "98"
	s, _ := tax.Sector("a")
	assert.Equal(t, []string{"01"}, s.SIC)
	rs := tax.Regions()
	rs[0].Name = "changed"
	assert.Equal(t, []taxonomy.Region{{Code: "R1", Name: "One"}}, tax.Regions())
	assert.True(t, tax.HasSector("a"))
	assert.True(t, tax.HasRegion("R1"))
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name    string
		sectors []taxonomy.Sector
		regions []taxonomy.Region
		fields  []string
	}{
		{"no sectors", nil, nil, []string{"sectors"}},
		{"bad slug", []taxonomy.Sector{{Slug: "Car Washes", Name: "x"}}, nil, []string{"sectors[0].slug"}},
		{"empty slug", []taxonomy.Sector{{Slug: "", Name: "x"}}, nil, []string{"sectors[0].slug"}},
		{"duplicate slug", []taxonomy.Sector{{Slug: "a", Name: "x"}, {Slug: "a", Name: "y"}}, nil, []string{"sectors[1].slug"}},
		{"missing name", []taxonomy.Sector{{Slug: "a"}}, nil, []string{"sectors[0].name"}},
		{"bad SIC", []taxonomy.Sector{{Slug: "a", Name: "x", SIC: []string{"01.11", "7810", "96.02/12"}}}, nil,
			[]string{"sectors[0].sic[1]", "sectors[0].sic[2]"}},
		{"bad region code", []taxonomy.Sector{{Slug: "a", Name: "x"}}, []taxonomy.Region{{Code: "tli", Name: "London"}},
			[]string{"regions[0].code"}},
		{"duplicate region", []taxonomy.Sector{{Slug: "a", Name: "x"}},
			[]taxonomy.Region{{Code: "TLI", Name: "London"}, {Code: "TLI", Name: "London"}}, []string{"regions[1].code"}},
		{"unnamed region", []taxonomy.Sector{{Slug: "a", Name: "x"}}, []taxonomy.Region{{Code: "TLI"}}, []string{"regions[0].name"}},
		{"every problem", []taxonomy.Sector{{Slug: "A"}}, []taxonomy.Region{{Code: "x"}},
			[]string{"sectors[0].slug", "sectors[0].name", "regions[0].code", "regions[0].name"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tax, err := taxonomy.New(tc.sectors, tc.regions)
			require.Error(t, err)
			require.Nil(t, tax)
			var v *alerts.ValidationError
			require.True(t, errors.As(err, &v), "%T", err)
			var got []string
			for _, f := range v.Fields {
				got = append(got, f.Field)
			}
			assert.ElementsMatch(t, tc.fields, got)
		})
	}
}

func TestTaxonomyValidatesAlerts(t *testing.T) {
	a := &alerts.Alert{Title: "t", Severity: alerts.SeverityMinor, Marking: alerts.MarkingOfficial, TLP: alerts.TLPClear,
		Handling: alerts.Handling{Code: "P"}, Audience: alerts.Audience{Sectors: []string{"nail-bars", "mining"}, Regions: []string{"UK", "TLZ"}}}
	a.Normalize()
	err := a.Validate(time.Now(), taxonomy.Default())
	require.Error(t, err)
	var v *alerts.ValidationError
	require.True(t, errors.As(err, &v))
	var got []string
	for _, f := range v.Fields {
		got = append(got, f.Field)
	}
	assert.Equal(t, []string{"audience.sectors[1]", "audience.regions[1]"}, got)
}
