package email_test

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	dateHeader = regexp.MustCompile(`(?m)^Date: .*\r$`)
	boundary   = regexp.MustCompile(`=_herald_[0-9a-f]{24}`)
	sigBlock   = regexp.MustCompile(`(?s)-----BEGIN PGP SIGNATURE-----.*?-----END PGP SIGNATURE-----`)
)

// normalize replaces what changes from run to run: the date, the random
// boundaries and the signature (which carries a time and a salt).
func normalize(raw []byte) []byte {
	raw = dateHeader.ReplaceAll(raw, []byte("Date: DATE\r"))
	raw = boundary.ReplaceAll(raw, []byte("=_herald_BOUNDARY"))
	return sigBlock.ReplaceAll(raw, []byte("-----BEGIN PGP SIGNATURE-----\r\nSIGNATURE\r\n-----END PGP SIGNATURE-----"))
}

// TestGolden compares whole messages, as the relay received them, with
// golden files; run with -update to rewrite them after a deliberate
// change.
func TestGolden(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{})
	n := newNotifier(t, sink, pgptest.AgencySigner(t), nil)
	sub := partner(t, map[string]string{"ops@acme.example": ""})
	green := testAlert("GREEN-G", alerts.TLPGreen, alerts.MarkingOfficial)
	amber := testAlert("AMBER-G", alerts.TLPAmber, alerts.MarkingOfficialSensitive)
	cancel := testAlert("AMBER-G2", alerts.TLPAmber, alerts.MarkingOfficialSensitive)
	cancel.Type, cancel.References = alerts.TypeCancel, []string{"AMBER-G"}
	for _, c := range []struct {
		file string
		job  *delivery.Job
	}{
		{"green-signed.eml", job(green, sub, "ops@acme.example", delivery.ModeSigned)},
		{"amber-key-notice.eml", job(amber, sub, "ops@acme.example", delivery.ModeKeyNotice)},
		{"amber-cancel-notice.eml", job(cancel, sub, "ops@acme.example", delivery.ModeCancelNotice)},
	} {
		t.Run(c.file, func(t *testing.T) {
			before := sink.Count()
			require.NoError(t, notify(t, n, c.job, sub))
			got := normalize(sink.Messages()[before].Data)
			path := filepath.Join("testdata", c.file)
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test -update to create %s", path)
			require.Equal(t, string(want), string(got))
		})
	}
}
