package config

import (
	"errors"
	"slices"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/taxonomy"
)

// Build returns the taxonomy alerts and partners are checked against, and
// the one GET /v1/taxonomy and the console's pickers show: the built-in
// taxonomy (taxonomy.Default) when both lists are empty; otherwise each
// list given replaces its default whole, and the other keeps it.
//
// UK (taxonomy.AllRegions) stays a region whatever the list: the policy
// matches an alert or partner in UK to every region (PRODUCT.md §3 rule 2),
// so a list without it has it added at the end, named as in the default;
// a list that names it keeps it where and as it is listed.
//
// It is the only place the taxonomy is made from the configuration.
// Problems are an *alerts.ValidationError naming each field by its key
// (taxonomy.sectors[3].slug); Validate reports them too.
func (t Taxonomy) Build() (*taxonomy.Taxonomy, error) {
	if len(t.Sectors) == 0 && len(t.Regions) == 0 {
		return taxonomy.Default(), nil
	}
	sectors, regions := t.Sectors, t.Regions
	if len(sectors) == 0 {
		sectors = taxonomy.DefaultSectors()
	}
	if len(regions) == 0 {
		regions = taxonomy.DefaultRegions()
	} else if !slices.ContainsFunc(regions, func(r taxonomy.Region) bool { return r.Code == taxonomy.AllRegions }) {
		uk, _ := taxonomy.Default().Region(taxonomy.AllRegions)
		regions = append(slices.Clone(regions), uk)
	}
	tax, err := taxonomy.New(sectors, regions)
	if v, ok := errors.AsType[*alerts.ValidationError](err); ok {
		out := &alerts.ValidationError{What: "invalid configuration"}
		for _, f := range v.Fields {
			out.Add("taxonomy."+f.Field, "%s", f.Message)
		}
		return nil, out
	}
	return tax, err
}
