// Package taxonomy holds the sectors and regions that alerts and partners
// are addressed by (PRODUCT.md §9). Sectors are slugs, each mapped to the
// UK Standard Industrial Classification of economic activities 2007
// (UK SIC 2007, ONS) where a code exists; regions are the UK International
// Territorial Levels ITL1 codes (ONS, 2021) plus UK, which covers them all.
//
// A Taxonomy is immutable once built and safe for concurrent use; it
// satisfies alerts.Taxonomy so that validation can check audience slugs and
// region codes against it.
package taxonomy

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/herald-alerts/herald/alerts"
)

// AllRegions is the region code that covers every other region: an alert
// for UK reaches partners in any region, and a partner in UK takes alerts
// for any region.
const AllRegions = "UK"

// Sector is one sector partners subscribe to. It is also the shape of an
// entry of the configuration's taxonomy.sectors (internal/config).
type Sector struct {
	// Slug is the sector's identifier in alerts and subscriber records.
	Slug string `json:"slug" yaml:"slug" mapstructure:"slug"`
	// Name is the sector's name for people.
	Name string `json:"name" yaml:"name" mapstructure:"name"`
	// SIC lists UK SIC 2007 codes (division "NN", group "NN.N", class
	// "NN.NN" or subclass "NN.NN/N") the sector covers, where one exists.
	// They are informative: matching is by slug.
	SIC []string `json:"sic,omitempty" yaml:"sic,omitempty" mapstructure:"sic"`
}

// Region is one region alerts and partners are addressed by. It is also
// the shape of an entry of the configuration's taxonomy.regions.
type Region struct {
	// Code is the region's identifier, such as the ITL1 code "TLI".
	Code string `json:"code" yaml:"code" mapstructure:"code"`
	// Name is the region's name for people.
	Name string `json:"name" yaml:"name" mapstructure:"name"`
}

// Taxonomy is a validated set of sectors and regions.
type Taxonomy struct {
	sectors  []Sector
	regions  []Region
	bySlug   map[string]int
	byRegion map[string]int
}

var _ alerts.Taxonomy = (*Taxonomy)(nil)

var (
	slugPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,63}$`)
	regionPattern = regexp.MustCompile(`^[A-Z][A-Z0-9]{1,15}$`)
	sicPattern    = regexp.MustCompile(`^[0-9]{2}(\.[0-9]{1,2}(/[0-9])?)?$`)
)

// New checks sectors and regions and returns a Taxonomy holding copies of
// them. Every problem is reported, by field, in an *alerts.ValidationError:
// slugs must be lower-case slugs, region codes upper-case letters and
// digits, both unique and named, and SIC codes well formed.
func New(sectors []Sector, regions []Region) (*Taxonomy, error) {
	v := &alerts.ValidationError{What: "invalid taxonomy"}
	t := &Taxonomy{
		sectors:  make([]Sector, 0, len(sectors)),
		regions:  slices.Clone(regions),
		bySlug:   make(map[string]int, len(sectors)),
		byRegion: make(map[string]int, len(regions)),
	}
	for i, s := range sectors {
		f := fmt.Sprintf("sectors[%d]", i)
		switch {
		case !slugPattern.MatchString(s.Slug):
			v.Add(f+".slug", "must be a lower-case slug (letters, digits, '-'; at most 64), not %q", s.Slug)
		case t.has(t.bySlug, s.Slug):
			v.Add(f+".slug", "%q is listed twice", s.Slug)
		}
		if s.Name == "" {
			v.Add(f+".name", "is required")
		}
		for j, code := range s.SIC {
			if !sicPattern.MatchString(code) {
				v.Add(fmt.Sprintf("%s.sic[%d]", f, j), "%q is not a UK SIC 2007 code such as 78.10 or 96.02/1", code)
			}
		}
		t.bySlug[s.Slug] = i
		t.sectors = append(t.sectors, Sector{Slug: s.Slug, Name: s.Name, SIC: slices.Clone(s.SIC)})
	}
	for i, r := range regions {
		f := fmt.Sprintf("regions[%d]", i)
		switch {
		case !regionPattern.MatchString(r.Code):
			v.Add(f+".code", "must be upper-case letters and digits such as TLI, not %q", r.Code)
		case t.has(t.byRegion, r.Code):
			v.Add(f+".code", "%q is listed twice", r.Code)
		}
		if r.Name == "" {
			v.Add(f+".name", "is required")
		}
		t.byRegion[r.Code] = i
	}
	if len(sectors) == 0 {
		v.Add("sectors", "at least one sector is required")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

func (*Taxonomy) has(m map[string]int, k string) bool { _, ok := m[k]; return ok }

// HasSector reports whether slug is a sector of the taxonomy.
func (t *Taxonomy) HasSector(slug string) bool { _, ok := t.bySlug[slug]; return ok }

// HasRegion reports whether code is a region of the taxonomy.
func (t *Taxonomy) HasRegion(code string) bool { _, ok := t.byRegion[code]; return ok }

// Sector returns the sector with slug, if there is one.
func (t *Taxonomy) Sector(slug string) (Sector, bool) {
	i, ok := t.bySlug[slug]
	if !ok {
		return Sector{}, false
	}
	s := t.sectors[i]
	s.SIC = slices.Clone(s.SIC)
	return s, true
}

// Region returns the region with code, if there is one.
func (t *Taxonomy) Region(code string) (Region, bool) {
	i, ok := t.byRegion[code]
	if !ok {
		return Region{}, false
	}
	return t.regions[i], true
}

// Sectors returns a copy of the sectors, in the order they were given.
func (t *Taxonomy) Sectors() []Sector {
	out := make([]Sector, len(t.sectors))
	for i, s := range t.sectors {
		out[i] = Sector{Slug: s.Slug, Name: s.Name, SIC: slices.Clone(s.SIC)}
	}
	return out
}

// Regions returns a copy of the regions, in the order they were given.
func (t *Taxonomy) Regions() []Region { return slices.Clone(t.regions) }
