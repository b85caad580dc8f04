package taxonomy

import "sync"

// DefaultSectors returns the built-in sectors of PRODUCT.md §9: the
// sectors where labour exploitation is most often found in the UK, each
// with the UK SIC 2007 codes (ONS) that cover it. Codes are divisions
// ("41"), groups ("01.1") or classes ("78.10"); a sector may share codes
// with another (online retail is both retail and an online platform).
func DefaultSectors() []Sector {
	return []Sector{
		{Slug: "agriculture", Name: "Agriculture and horticulture",
			SIC: []string{"01.1", "01.2", "01.3", "01.4", "01.5", "01.6"}},
		{Slug: "food-processing", Name: "Food processing and packing",
			SIC: []string{"10.1", "10.2", "10.3", "10.4", "10.5", "10.7", "10.8", "10.9", "11"}},
		{Slug: "construction", Name: "Construction",
			SIC: []string{"41", "42", "43"}},
		{Slug: "manufacturing", Name: "Manufacturing",
			SIC: []string{"16", "17", "20", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31", "32", "33"}},
		{Slug: "textiles", Name: "Textiles, clothing and leather",
			SIC: []string{"13", "14", "15"}},
		{Slug: "warehousing-logistics", Name: "Warehousing and logistics",
			SIC: []string{"52.10", "52.24", "52.29", "53.20"}},
		{Slug: "recruitment", Name: "Recruitment and labour providers",
			SIC: []string{"78.10", "78.20", "78.30"}},
		{Slug: "hospitality", Name: "Hotels, restaurants and bars",
			SIC: []string{"55.10", "55.20", "55.30", "55.90", "56.10", "56.21", "56.29", "56.30"}},
		{Slug: "care", Name: "Residential and domiciliary care",
			SIC: []string{"87.10", "87.20", "87.30", "87.90", "88.10"}},
		{Slug: "cleaning", Name: "Cleaning services",
			SIC: []string{"81.21", "81.22", "81.29"}},
		{Slug: "car-washes", Name: "Hand car washes and valeting",
			SIC: []string{"45.20"}},
		{Slug: "nail-bars", Name: "Nail bars and beauty salons",
			SIC: []string{"96.02"}},
		{Slug: "fishing-maritime", Name: "Fishing, aquaculture and maritime",
			SIC: []string{"03.11", "03.12", "03.21", "03.22", "50.10", "50.20", "52.22"}},
		{Slug: "waste-recycling", Name: "Waste collection and recycling",
			SIC: []string{"38.11", "38.12", "38.21", "38.22", "38.31", "38.32", "46.77"}},
		{Slug: "retail", Name: "Retail",
			SIC: []string{"47"}},
		{Slug: "transport", Name: "Road, rail and passenger transport",
			SIC: []string{"49.10", "49.20", "49.31", "49.32", "49.39", "49.41", "49.42", "53.10"}},
		{Slug: "financial-services", Name: "Banking, payments and financial services",
			SIC: []string{"64.11", "64.19", "64.91", "64.92", "64.99", "65.11", "65.12", "66.12", "66.19"}},
		{Slug: "property-lettings", Name: "Property letting and management",
			SIC: []string{"68.20", "68.31", "68.32"}},
		{Slug: "online-platforms", Name: "Online platforms and marketplaces",
			SIC: []string{"47.91", "63.11", "63.12"}},
	}
}

// DefaultRegions returns the built-in regions: the twelve ITL1 regions of
// the UK (ONS International Territorial Levels, 2021) and UK, which covers
// them all.
func DefaultRegions() []Region {
	return []Region{
		{Code: "TLC", Name: "North East"},
		{Code: "TLD", Name: "North West"},
		{Code: "TLE", Name: "Yorkshire and The Humber"},
		{Code: "TLF", Name: "East Midlands"},
		{Code: "TLG", Name: "West Midlands"},
		{Code: "TLH", Name: "East of England"},
		{Code: "TLI", Name: "London"},
		{Code: "TLJ", Name: "South East"},
		{Code: "TLK", Name: "South West"},
		{Code: "TLL", Name: "Wales"},
		{Code: "TLM", Name: "Scotland"},
		{Code: "TLN", Name: "Northern Ireland"},
		{Code: AllRegions, Name: "United Kingdom (all regions)"},
	}
}

var defaultTaxonomy = sync.OnceValue(func() *Taxonomy {
	t, err := New(DefaultSectors(), DefaultRegions())
	if err != nil {
		panic("taxonomy: built-in default is invalid: " + err.Error())
	}
	return t
})

// Default returns the built-in taxonomy of PRODUCT.md §9. It is built once
// and shared: a Taxonomy is immutable.
func Default() *Taxonomy { return defaultTaxonomy() }
