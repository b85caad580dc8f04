package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/stretchr/testify/require"
)

// indent prefixes every line of s for a YAML block scalar.
func indent(s, pad string) string {
	return pad + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pad)
}

// TestEmailThroughServe runs the whole email path in the real binary:
// serve (embedded broker, fan-out, deliver) sends through STARTTLS and AUTH
// to an SMTP sink; a partner checks what arrived with `herald verify email`.
func TestEmailThroughServe(t *testing.T) {
	sink := smtptest.New(t, smtptest.Options{StartTLS: true, Username: "herald", Password: "relay-pw"})
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(data), 0o600))
		return p
	}
	agencyPub, agencySec := pgptest.Key(t, pgptest.Agency)
	alicePub, aliceSec := pgptest.RecipientKey(t, pgptest.Alice)
	extra := fmt.Sprintf(`signing: {key_file: %q}
smtp: {host: %q, port: %d, tls: starttls, username: herald, password_file: %q, from: alerts@agency.example, ca_file: %q}
delivery: {retry_schedule: [200ms, 500ms, 1s]}
`, write("agency.sec.asc", agencySec), sink.Host, sink.Port, write("smtp.pw", "relay-pw\n"), write("relay-ca.pem", string(sink.CertPEM)))
	s := startServe(t, extra)

	partners := write("partners.yaml", fmt.Sprintf(`
- id: bank
  name: Bank
  kind: business
  sectors: [hospitality]
  clearance: AMBER
  sensitive: true
  email:
    - address: fc@bank.example
      pgp_key: |
%s
- id: hotel
  name: Hotel without a key
  kind: business
  sectors: [hospitality]
  clearance: AMBER
  sensitive: true
  email: [{address: security@hotel.example}]
- id: recruiter
  name: Recruiter
  kind: business
  sectors: [hospitality]
  clearance: GREEN
  email: [{address: ops@recruiter.example}]
`, indent(alicePub, "        ")))
	s.must(t, "subscribers", "import", partners)

	green := write("green.yaml", `{title: "Green sector warning GRN-77", severity: severe, marking: OFFICIAL, tlp: GREEN,
  handling: {code: P}, audience: {sectors: [hospitality]}, body: "green body text"}`)
	amber := write("amber.yaml", `{title: "Amber secret operation AMB-99", severity: severe, marking: OFFICIAL-SENSITIVE, tlp: AMBER,
  handling: {code: C, conditions: "Financial crime team only"}, audience: {sectors: [hospitality]}, body: "amber body text"}`)
	greenID := strings.TrimSpace(s.must(t, "publish", green))
	// AMBER OFFICIAL-SENSITIVE waits for a second analyst; bob approves it
	// through the API.
	pending := s.must(t, "publish", amber)
	require.Contains(t, pending, "awaiting approval")
	amberID := strings.Fields(pending)[0]
	require.Never(t, func() bool { return sink.Count() > 3 }, 500*time.Millisecond, 20*time.Millisecond, "nothing of the AMBER alert goes before approval")
	s.approve(t, amberID, bobToken)

	// GREEN: three signed emails. AMBER O-S: the bank encrypted, the hotel
	// a key notice, the recruiter nothing (clearance).
	require.Eventually(t, func() bool { return sink.Count() == 5 }, 60*time.Second, 50*time.Millisecond, "emails: %d\n%s", sink.Count(), s.log)
	require.Never(t, func() bool { return sink.Count() > 5 }, 300*time.Millisecond, 20*time.Millisecond, "a sixth message would be a defect")
	msgs := sink.Messages()
	require.Len(t, msgs, 5)
	agencyKey := write("agency.pub.asc", agencyPub)
	aliceKey := write("alice.sec.asc", aliceSec)
	got := map[string]string{}
	tamperChecked := false
	for i, m := range msgs {
		require.True(t, m.TLS, "sent over STARTTLS")
		require.Equal(t, "herald", m.Auth)
		raw := string(m.Data)
		file := write(fmt.Sprintf("msg%d.eml", i), raw)
		switch {
		case strings.Contains(raw, "Subject: [TLP:GREEN] Green sector warning GRN-77"):
			require.Contains(t, raw, "multipart/signed")
			out := s.must(t, "verify", "email", file, "--key", agencyKey)
			require.Contains(t, out, "good signature")
			require.Contains(t, out, "green body text")
			got[m.To[0]+" green"] = "signed"
			if !tamperChecked {
				// One changed byte in the signed text breaks verification.
				tampered := strings.Replace(raw, "green body text", "green body test", 1)
				require.NotEqual(t, raw, tampered)
				code, _, _ := s.run(t, "", "verify", "email", write("tampered.eml", tampered), "--key", agencyKey)
				require.Equal(t, 1, code)
				tamperChecked = true
			}
		case strings.Contains(raw, "multipart/encrypted"):
			require.NotContains(t, raw, "AMB-99", "no plaintext of an AMBER alert leaves")
			require.NotContains(t, raw, "amber body text")
			require.Contains(t, raw, "Subject: [TLP:AMBER] OFFICIAL-SENSITIVE "+amberID)
			code, _, _ := s.run(t, "", "verify", "email", file, "--key", agencyKey)
			require.NotEqual(t, 0, code, "an encrypted message cannot be verified without the secret key")
			out := s.must(t, "verify", "email", file, "--key", agencyKey, "--secret-key", aliceKey)
			require.Contains(t, out, "encrypted: true")
			require.Contains(t, out, "Amber secret operation AMB-99")
			require.Contains(t, out, "Financial crime team only")
			got[m.To[0]+" amber"] = "encrypted"
		default:
			require.NotContains(t, raw, "AMB-99", "a key notice carries no content")
			require.NotContains(t, raw, "amber body text")
			require.Contains(t, s.must(t, "verify", "email", file, "--key", agencyKey), "good signature")
			got[m.To[0]+" amber"] = "notice"
		}
	}
	require.Equal(t, map[string]string{
		"fc@bank.example green":        "signed",
		"security@hotel.example green": "signed",
		"ops@recruiter.example green":  "signed",
		"fc@bank.example amber":        "encrypted",
		"security@hotel.example amber": "notice",
	}, got)
	require.True(t, tamperChecked)

	// The ledger agrees.
	for _, id := range []string{greenID, amberID} {
		require.Eventually(t, func() bool {
			code, out, _ := s.run(t, "", "status", id, "--output", "json")
			if code != 0 || !fannedOut(out) {
				return false
			}
			for _, r := range rowsOf(t, out) {
				if r.Decision != "withhold" && r.State != "delivered" {
					return false
				}
			}
			return true
		}, 30*time.Second, 100*time.Millisecond)
	}
	code, out, _ := s.run(t, "", "status", amberID, "--output", "json")
	require.Equal(t, 0, code)
	rows := rowsOf(t, out)
	require.Equal(t, "clearance.tlp", rows["recruiter ops@recruiter.example"].Rule)
	require.Equal(t, "email.no-usable-key", rows["hotel security@hotel.example"].Rule)
	require.Equal(t, "email.encrypted", rows["bank fc@bank.example"].Rule)
}
