package formats_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/formats"
)

// FuzzRender: any alert that passes validation renders in every format;
// the STIX and MISP output is valid JSON whose patterns parse, and the CAP
// output is well-formed XML.
func FuzzRender(f *testing.F) {
	for _, c := range cases() {
		b, err := json.Marshal(c.a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"title":"t","severity":"minor","audience":{"sectors":["s"]},"marking":"OFFICIAL","tlp":"clear","handling":{"code":"P"}}`))
	f.Add([]byte(`{"id":"a.b-c","type":"cancel","references":["x"],"title":"'\\]","severity":"extreme","audience":{"subscribers":["p"]},"marking":"OFFICIAL-SENSITIVE","tlp":"TLP:RED","handling":{"code":"c","conditions":"\u0000?"},"indicators":[{"type":"url","value":"\\'"}]}`))

	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := alerts.Parse(data, now, nil)
		if err != nil {
			return
		}
		// Herald stamps these before anything is rendered.
		if a.ID == "" {
			a.ID = "fuzz-1"
		}
		issued := now.Add(time.Minute)
		a.IssuedAt = &issued
		ctx := formats.Context{Agency: agency, Sender: sender, Earlier: a.Indicators}
		if a.Type != alerts.TypeAlert {
			ctx.Root, ctx.RootIssuedAt = "root-1", issued.Add(-time.Hour)
			for _, r := range a.References {
				ctx.References = append(ctx.References, formats.Ref{ID: r, IssuedAt: issued.Add(-time.Minute)})
			}
		}

		b, err := formats.STIX(a, ctx)
		if err != nil {
			t.Fatalf("STIX: %v", err)
		}
		var bundle struct {
			Objects []map[string]any `json:"objects"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			t.Fatalf("STIX is not JSON: %v", err)
		}
		for _, o := range bundle.Objects {
			if p, ok := o["pattern"].(string); ok {
				if _, _, err := parsePattern(p); err != nil {
					t.Fatalf("pattern %q: %v", p, err)
				}
			}
		}

		b, err = formats.MISP(a, ctx)
		if err != nil {
			t.Fatalf("MISP: %v", err)
		}
		if !json.Valid(b) {
			t.Fatalf("MISP is not JSON: %s", b)
		}

		b, err = formats.CAP(a, ctx)
		if err != nil {
			t.Fatalf("CAP: %v", err)
		}
		dec := xml.NewDecoder(bytes.NewReader(b))
		for {
			if _, err := dec.Token(); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("CAP is not well-formed XML: %v\n%s", err, b)
				}
				break
			}
		}
	})
}
