package alerts_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/taxonomy"
)

// FuzzDecodeValidate checks that decoding, normalising and validating
// outside input never panics, and that an alert which passes validation
// survives a round trip through its JSON encoding unchanged: what the API
// accepted is what the fan-out and the partners read.
func FuzzDecodeValidate(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		require.NoError(f, err)
		for _, file := range files {
			data, err := os.ReadFile(file)
			require.NoError(f, err)
			f.Add(data)
		}
	}
	f.Add([]byte(`{"title":"t","severity":"minor","audience":{"subscribers":["a"]},"marking":"OFFICIAL","tlp":"TLP:clear","handling":{"code":"p"},"issued_by":"x"}`))
	tax := taxonomy.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := alerts.Decode(data)
		if err != nil {
			return
		}
		a.Normalize()
		if err := a.Validate(now, tax); err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		enc, err := json.Marshal(a)
		require.NoError(t, err)
		b, err := alerts.Decode(enc)
		require.NoError(t, err, "%s", enc)
		b.Normalize()
		require.NoError(t, b.Validate(now, tax), "%s", enc)
		require.Equal(t, canon(a), canon(b), "%s", enc)
		again, err := json.Marshal(b)
		require.NoError(t, err)
		require.Equal(t, string(enc), string(again), "the encoding is a fixed point")
	})
}

// canon clears empty lists, which the JSON encoding omits (an empty list
// and no list mean the same), and puts times in UTC, so that reflection
// compares instants rather than *time.Location values.
func canon(a *alerts.Alert) *alerts.Alert {
	c := *a
	if len(c.References) == 0 {
		c.References = nil
	}
	if len(c.Indicators) == 0 {
		c.Indicators = nil
	}
	if len(c.Actions) == 0 {
		c.Actions = nil
	}
	if len(c.Audience.Sectors) == 0 {
		c.Audience.Sectors = nil
	}
	if len(c.Audience.Regions) == 0 {
		c.Audience.Regions = nil
	}
	if len(c.Audience.Subscribers) == 0 {
		c.Audience.Subscribers = nil
	}
	for _, tp := range []**time.Time{&c.NotBefore, &c.ExpiresAt, &c.IssuedAt} {
		if *tp != nil {
			u := (*tp).UTC() // the same instant; the offset is checked by the encoding
			*tp = &u
		}
	}
	return &c
}
