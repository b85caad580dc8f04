package webhook

import (
	"os"
	"path/filepath"
	"testing"
)

// certVolume lays out dir as a Kubernetes secret volume: tls.crt and
// tls.key are links through ..data to a timestamped directory.
func certVolume(b *testing.B) string {
	dir := filepath.Join(b.TempDir(), "etc", "herald", "client-certs")
	ts := filepath.Join(dir, "..2026_11_30_10_00_00.000000001")
	if err := os.MkdirAll(ts, 0o700); err != nil {
		b.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(ts, f), []byte("pem"), 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkCertFilesUnchanged is what each delivery to an mTLS endpoint
// does to learn that its certificate files have not changed: the full
// check (resolve both names inside the directory, stamp the files) and
// the names' stamp that now stands for it while they are unchanged.
//
//	go test -run '^$' -bench CertFilesUnchanged -benchmem ./internal/deliver/webhook/
func BenchmarkCertFilesUnchanged(b *testing.B) {
	dir := certVolume(b)
	names := certNames{"tls.crt", "tls.key"}
	b.Run("full-check", func(b *testing.B) {
		for b.Loop() {
			cert, err := ClientCertPath(dir, names.cert)
			if err != nil {
				b.Fatal(err)
			}
			key, err := ClientCertPath(dir, names.key)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := fileStamp(cert, key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("names-stamp", func(b *testing.B) {
		for b.Loop() {
			if _, err := namesStamp(dir, names); err != nil {
				b.Fatal(err)
			}
		}
	})
}
