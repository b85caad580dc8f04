package subscribers_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/subscribers"
)

// FuzzDecodeSubscriber checks that decoding, normalising and validating a
// subscriber record from outside never panics, that DecodeList never
// panics on the same bytes, that the registry gives back any record it
// read as decoded, and that a valid record survives a round trip through
// its JSON encoding unchanged.
func FuzzDecodeSubscriber(f *testing.F) {
	files, err := filepath.Glob("testdata/*")
	require.NoError(f, err)
	for _, file := range files {
		if fi, err := os.Stat(file); err != nil || fi.IsDir() {
			continue
		}
		data, err := os.ReadFile(file)
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte(`{"id":"a","name":"A","kind":"ngo","clearance":"tlp:red","webhooks":[{"url":"https://x.example/","secrets":["` + secret1 + `"]}]}`))
	// A name with each class of character the title rules refuse.
	for _, c := range []string{`\u001b[31m`, `\u0085`, `\u202e`, `\u2066`, `\u2069`, `\u200b`, `\u200d`, `\ufeff`, `\u2028`, `\u2029`, `\u00ad`} {
		f.Add([]byte(`{"id":"a","name":"A` + c + `B","kind":"ngo","clearance":"GREEN"}`))
		f.Add([]byte("- {id: b, name: \"A" + c + "B\", kind: ngo, clearance: GREEN}\n"))
	}
	tax := taxonomy.Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		if list, err := subscribers.DecodeList(data); err == nil {
			for _, s := range list {
				require.NotNil(t, s)
				s.Normalize()
				_ = s.Validate(tax, keys)
			}
		}
		s, err := subscribers.Decode(data)
		if err != nil {
			return
		}
		s.Normalize()
		if subscribers.IsRecordKey(s.ID) {
			// The registry keeps what it reads packed: it gives back the
			// record decoded, valid or not.
			r := subscribers.NewRegistry()
			require.NoError(t, r.Apply([]byte(s.ID), data))
			require.Equal(t, s, r.Record(s.ID))
		}
		if err := s.Validate(tax, keys); err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		for _, r := range s.Name {
			require.True(t, alerts.LineRune(r), "a valid name holds %U", r)
		}
		enc, err := json.Marshal(s)
		require.NoError(t, err)
		back, err := subscribers.Decode(enc)
		require.NoError(t, err, "%s", enc)
		back.Normalize()
		require.NoError(t, back.Validate(tax, keys), "%s", enc)
		again, err := json.Marshal(back)
		require.NoError(t, err)
		require.Equal(t, string(enc), string(again), "the encoding is a fixed point")
	})
}
