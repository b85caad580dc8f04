package alerts_test

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
)

// FuzzScreen checks the screen of what people write on any input: it
// never panics, lets nothing through that is JSON but not UTF-8, and
// names a field in every error it gives, as valid UTF-8 (the names reach
// API answers and the audit trail).
func FuzzScreen(f *testing.F) {
	f.Add([]byte(`{"title":"t","tlp":"GREEN","TLP":"RED"}`))
	f.Add([]byte(`{"audience":{"sectors":["care"],"Sectors":["x"]},"email":[{"address":"a"},{"address":"\xff"}]}`))
	f.Add([]byte(`[{"clearance":"GREEN","clearance":"RED"}]`))
	f.Add([]byte("title: t\ntlp: GREEN\ntlp: RED\n"))
	f.Add([]byte("{\"ti\xc3tle\":1}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for name, screen := range map[string]func([]byte, string) error{"json": alerts.ScreenJSON, "yaml": alerts.ScreenYAML} {
			err := screen(data, "alert")
			if err == nil {
				if name == "json" && json.Valid(data) {
					require.True(t, utf8.Valid(data), "JSON that is not UTF-8 passed the screen: %q", data)
				}
				continue
			}
			var v *alerts.ValidationError
			if errors.As(err, &v) {
				require.NotEmpty(t, v.Fields, "%s: %q", name, data)
				for _, fe := range v.Fields {
					require.NotEmpty(t, fe.Field, "%s: %q", name, data)
					require.True(t, utf8.ValidString(fe.Field), "%s: a field named in bytes that are not UTF-8: %q", name, fe.Field)
				}
			}
			require.True(t, utf8.ValidString(err.Error()), "%s: %q", name, err.Error())
		}
	})
}
