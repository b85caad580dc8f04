package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/herald-alerts/herald/internal/config"
)

// FuzzLoad feeds arbitrary files to the loader: it must answer with a
// configuration or an error, never panic, and whatever it loads Validate
// must judge without panicking.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		"",
		"kafka:\n  brokers: [k1:9092]\n",
		"kafka:\n  retention:\n    receipts: 400d\n",
		"delivery:\n  retry_schedule: [1s, 2d]\n",
		"api:\n  tokens:\n    - {name: a, role: partner, subscriber: x, sha256: 00}\n",
		"smtp: {port: 99999}\n",
		"kafka: [1, 2]\n",
		"release:\n  second_analyst: AMBER,RED\n",
		"log: {level: debug}\n\x00\xff",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(p)
		if err != nil {
			return
		}
		_ = c.Validate()
	})
}
