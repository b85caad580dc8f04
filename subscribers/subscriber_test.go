package subscribers_test

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/subscribers"
)

const (
	secret1 = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	secret2 = "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7"
	key     = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxjMEZ0000\n-----END PGP PUBLIC KEY BLOCK-----\n"
)

var errBadKey = errors.New("openpgp: no encryption subkey")

// keys rejects any key but the fixture's.
func keys(armored string) error {
	if armored == key {
		return nil
	}
	return errBadKey
}

func validSubscriber() *subscribers.Subscriber {
	s := &subscribers.Subscriber{
		ID: "acme-builders", Name: "Acme Builders Ltd", Kind: subscribers.KindBusiness,
		Sectors: []string{"construction"}, Regions: []string{"TLI"}, Clearance: alerts.TLPAmber,
		Email:    []subscribers.Email{{Address: "alerts@acme.example", PGPKey: key}},
		Webhooks: []subscribers.Webhook{{URL: "https://hooks.acme.example/herald", Secrets: []string{secret1, secret2}}},
	}
	return s
}

func fieldNames(t *testing.T, err error) []string {
	t.Helper()
	var v *alerts.ValidationError
	require.True(t, errors.As(err, &v), "want *alerts.ValidationError, got %T: %v", err, err)
	var out []string
	for _, f := range v.Fields {
		assert.NotEmpty(t, f.Message, f.Field)
		out = append(out, f.Field)
	}
	return out
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*subscribers.Subscriber)
		want   []string
	}{
		{"valid", func(*subscribers.Subscriber) {}, nil},
		{"no targets is valid", func(s *subscribers.Subscriber) { s.Email, s.Webhooks = nil, nil }, nil},
		{"bad id", func(s *subscribers.Subscriber) { s.ID = "Acme Builders" }, []string{"id"}},
		{"missing name", func(s *subscribers.Subscriber) { s.Name = " " }, []string{"name"}},
		{"two-line name", func(s *subscribers.Subscriber) { s.Name = "Acme\r\nBcc: x" }, []string{"name"}},
		{"bad kind", func(s *subscribers.Subscriber) { s.Kind = "charity" }, []string{"kind"}},
		{"unknown sector", func(s *subscribers.Subscriber) { s.Sectors = []string{"construction", "mining"} }, []string{"sectors[1]"}},
		{"unknown region", func(s *subscribers.Subscriber) { s.Regions = []string{"TLZ"} }, []string{"regions[0]"}},
		{"bad min_severity", func(s *subscribers.Subscriber) { s.MinSeverity = "critical" }, []string{"min_severity"}},
		{"bad clearance", func(s *subscribers.Subscriber) { s.Clearance = "SECRET" }, []string{"clearance", "webhooks[0].max_tlp"}},
		{"missing clearance", func(s *subscribers.Subscriber) { s.Clearance = ""; s.Webhooks = nil }, []string{"clearance"}},
		{"bad status", func(s *subscribers.Subscriber) { s.Status = "paused" }, []string{"status"}},
		{"address with display name", func(s *subscribers.Subscriber) { s.Email[0].Address = "Acme <alerts@acme.example>" }, []string{"email[0].address"}},
		{"address with CRLF", func(s *subscribers.Subscriber) { s.Email[0].Address = "alerts@acme.example\r\nBcc: x@y.example" }, []string{"email[0].address"}},
		{"address without domain dot", func(s *subscribers.Subscriber) { s.Email[0].Address = "alerts@localhost" }, []string{"email[0].address"}},
		{"address non-ASCII", func(s *subscribers.Subscriber) { s.Email[0].Address = "alérts@acme.example" }, []string{"email[0].address"}},
		{"address missing", func(s *subscribers.Subscriber) { s.Email[0].Address = "" }, []string{"email[0].address"}},
		{"address twice", func(s *subscribers.Subscriber) {
			s.Email = append(s.Email, subscribers.Email{Address: "ALERTS@acme.example"})
		}, []string{"email[1].address"}},
		{"unusable key", func(s *subscribers.Subscriber) { s.Email[0].PGPKey = "not a key" }, []string{"email[0].pgp_key"}},
		{"no key is valid", func(s *subscribers.Subscriber) { s.Email[0].PGPKey = "" }, nil},
		{"URL not absolute", func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "/herald" }, []string{"webhooks[0].url"}},
		{"URL ftp", func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "ftp://hooks.acme.example/" }, []string{"webhooks[0].url"}},
		{"URL with credentials", func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "https://user:pw@hooks.acme.example/" }, []string{"webhooks[0].url"}},
		{"URL with fragment", func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "https://hooks.acme.example/#x" }, []string{"webhooks[0].url"}},
		{"URL without host", func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "https:///herald" }, []string{"webhooks[0].url"}},
		{"URL unparsable", func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "https://%zz/" }, []string{"webhooks[0].url"}},
		{"plain http to loopback is for the operator's setting to judge", func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "http://127.0.0.1:8080/" }, nil},
		{"plain http elsewhere never goes", func(s *subscribers.Subscriber) { s.Webhooks[0].URL = "http://hooks.acme.example/" }, []string{"webhooks[0].url"}},
		{"URL twice", func(s *subscribers.Subscriber) {
			s.Webhooks = append(s.Webhooks, subscribers.Webhook{URL: s.Webhooks[0].URL, Secrets: []string{secret1}})
		}, []string{"webhooks[1].url"}},
		{"no secret", func(s *subscribers.Subscriber) { s.Webhooks[0].Secrets = nil }, []string{"webhooks[0].secrets"}},
		{"secret without prefix", func(s *subscribers.Subscriber) { s.Webhooks[0].Secrets[1] = strings.TrimPrefix(secret2, "whsec_") },
			[]string{"webhooks[0].secrets[1]"}},
		{"secret not base64", func(s *subscribers.Subscriber) { s.Webhooks[0].Secrets[0] = "whsec_not*base64" }, []string{"webhooks[0].secrets[0]"}},
		{"secret too short", func(s *subscribers.Subscriber) { s.Webhooks[0].Secrets[0] = "whsec_c2hvcnQ=" }, []string{"webhooks[0].secrets[0]"}},
		{"max_tlp above clearance", func(s *subscribers.Subscriber) { s.Webhooks[0].MaxTLP = alerts.TLPAmberStrict }, []string{"webhooks[0].max_tlp"}},
		{"max_tlp equal to clearance", func(s *subscribers.Subscriber) { s.Webhooks[0].MaxTLP = alerts.TLPAmber }, nil},
		{"max_tlp below clearance", func(s *subscribers.Subscriber) { s.Webhooks[0].MaxTLP = "tlp:clear" }, nil},
		{"max_tlp invalid", func(s *subscribers.Subscriber) { s.Webhooks[0].MaxTLP = "WHITE" }, []string{"webhooks[0].max_tlp"}},
		{"format stix", func(s *subscribers.Subscriber) { s.Webhooks[0].Format = subscribers.FormatSTIX }, nil},
		{"format misp", func(s *subscribers.Subscriber) { s.Webhooks[0].Format = subscribers.FormatMISP }, nil},
		{"format cap", func(s *subscribers.Subscriber) { s.Webhooks[0].Format = subscribers.FormatCAP }, nil},
		{"format unknown", func(s *subscribers.Subscriber) { s.Webhooks[0].Format = "openioc" }, []string{"webhooks[0].format"}},
		{"pull at the clearance", func(s *subscribers.Subscriber) { s.Pull = &subscribers.Pull{MaxTLP: alerts.TLPAmber} }, nil},
		{"pull below the clearance", func(s *subscribers.Subscriber) { s.Pull = &subscribers.Pull{MaxTLP: alerts.TLPGreen} }, nil},
		{"pull above the clearance", func(s *subscribers.Subscriber) { s.Pull = &subscribers.Pull{MaxTLP: alerts.TLPAmberStrict} }, []string{"pull.max_tlp"}},
		{"pull never RED", func(s *subscribers.Subscriber) {
			s.Clearance = alerts.TLPRed
			s.Pull = &subscribers.Pull{MaxTLP: alerts.TLPRed}
		}, []string{"pull.max_tlp"}},
		{"pull max_tlp invalid", func(s *subscribers.Subscriber) { s.Pull = &subscribers.Pull{MaxTLP: "WHITE"} }, []string{"pull.max_tlp"}},
		{"client cert without key", func(s *subscribers.Subscriber) { s.Webhooks[0].ClientCert = "/etc/herald/acme.pem" }, []string{"webhooks[0].client_cert"}},
		{"every problem at once", func(s *subscribers.Subscriber) {
			s.ID, s.Kind = "", ""
			s.Email[0].Address = "nope"
			s.Webhooks[0].URL = "gopher://x"
			s.Webhooks[0].Secrets = []string{"x"}
		}, []string{"id", "kind", "email[0].address", "webhooks[0].url", "webhooks[0].secrets[0]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := validSubscriber()
			tc.mutate(s)
			s.Normalize()
			err := s.Validate(taxonomy.Default(), keys)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Equal(t, tc.want, fieldNames(t, err))
			assert.True(t, strings.HasPrefix(err.Error(), "invalid subscriber: "), err.Error())
		})
	}
}

// TestNameFollowsTitleRules checks that a partner's name, shown to
// analysts in previews and in partners' own messages, follows the title's
// character rules (PRODUCT.md §2): one line, 1-200 characters, no control,
// Unicode format (Cf) or separator characters.
func TestNameFollowsTitleRules(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"ESC", "Acme \x1b[31mBuilders", "contains the control character U+001B at character 6"},
		{"DEL", "Acme\x7f", "contains the control character U+007F at character 5"},
		{"C1 CSI", "Acme\u009b", "contains the control character U+009B at character 5"},
		{"tab", "Acme\tBuilders", "contains the control character U+0009 at character 5"},
		{"LF", "Acme\nBcc: x", "must be one line: contains the line break U+000A at character 5"},
		{"CRLF", "Acme\r\nBcc: x", "must be one line: contains the line break U+000D at character 5"},
		{"NEL", "Acme\u0085Builders", "must be one line: contains the line break U+0085 at character 5"},
		{"line separator", "Acme\u2028Builders", "must be one line: contains the line break U+2028 (LINE SEPARATOR) at character 5"},
		{"paragraph separator", "Acme\u2029Builders", "must be one line: contains the line break U+2029 (PARAGRAPH SEPARATOR) at character 5"},
		{"LRE", "Acme\u202aBuilders", "contains the Unicode format character U+202A (LEFT-TO-RIGHT EMBEDDING) at character 5"},
		{"RLE", "Acme\u202bBuilders", "contains the Unicode format character U+202B (RIGHT-TO-LEFT EMBEDDING) at character 5"},
		{"PDF", "Acme\u202cBuilders", "contains the Unicode format character U+202C (POP DIRECTIONAL FORMATTING) at character 5"},
		{"LRO", "Acme\u202dBuilders", "contains the Unicode format character U+202D (LEFT-TO-RIGHT OVERRIDE) at character 5"},
		{"RLO", "Acme\u202eBuilders", "contains the Unicode format character U+202E (RIGHT-TO-LEFT OVERRIDE) at character 5"},
		{"LRI", "Acme\u2066Builders", "contains the Unicode format character U+2066 (LEFT-TO-RIGHT ISOLATE) at character 5"},
		{"RLI", "Acme\u2067Builders", "contains the Unicode format character U+2067 (RIGHT-TO-LEFT ISOLATE) at character 5"},
		{"FSI", "Acme\u2068Builders", "contains the Unicode format character U+2068 (FIRST STRONG ISOLATE) at character 5"},
		{"PDI", "Acme\u2069Builders", "contains the Unicode format character U+2069 (POP DIRECTIONAL ISOLATE) at character 5"},
		{"LRM", "Acme\u200eBuilders", "contains the Unicode format character U+200E (LEFT-TO-RIGHT MARK) at character 5"},
		{"ZWSP", "Acme\u200bBuilders", "contains the Unicode format character U+200B (ZERO WIDTH SPACE) at character 5"},
		{"ZWJ", "Acme\u200dBuilders", "contains the Unicode format character U+200D (ZERO WIDTH JOINER) at character 5"},
		{"BOM", "\ufeffAcme Builders", "contains the Unicode format character U+FEFF (ZERO WIDTH NO-BREAK SPACE) at character 1"},
		{"soft hyphen", "Acme Build\u00aders", "contains the Unicode format character U+00AD (SOFT HYPHEN) at character 11"},
		{"invalid UTF-8", "Acme \xff", "is not valid UTF-8"},
		{"empty", "", "is required"},
		{"blank", " \t ", "is required"},
		{"201 characters", strings.Repeat("é", 201), "is 201 characters; the limit is 200"},
		{"200 characters", strings.Repeat("é", 200), ""},
		{"other scripts and marks", "Ελληνικά Ltd — شركة ⚠\ufe0f café", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := validSubscriber()
			s.Name = tc.value
			s.Normalize()
			err := s.Validate(taxonomy.Default(), keys)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			var v *alerts.ValidationError
			require.True(t, errors.As(err, &v))
			require.Equal(t, []alerts.FieldError{{Field: "name", Message: tc.want}}, v.Fields)
		})
	}
}

func TestValidateErrorKeepsSecretsOut(t *testing.T) {
	s := validSubscriber()
	s.Webhooks[0].Secrets[0] = "whsec_" + strings.Repeat("A", 8) + "*" // malformed, but secret-looking
	s.Normalize()
	err := s.Validate(nil, nil)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "AAAAAAAA", "a rejected secret must not be echoed")
}

func TestValidateWithoutTaxonomyOrKeys(t *testing.T) {
	s := validSubscriber()
	s.Sectors = []string{"mining"}
	s.Email[0].PGPKey = "not a key"
	s.Normalize()
	require.NoError(t, s.Validate(nil, nil))
}

func TestNormalize(t *testing.T) {
	s := validSubscriber()
	s.Clearance = "tlp:amber"
	s.Webhooks = append(s.Webhooks, subscribers.Webhook{URL: "https://two.example/", MaxTLP: "tlp:green"})
	s.Email[0].Address = "  alerts@acme.example "
	s.Normalize()
	assert.Equal(t, subscribers.StatusActive, s.Status)
	assert.True(t, s.Active())
	assert.Equal(t, alerts.SeverityMinor, s.MinSeverity)
	assert.Equal(t, alerts.TLPAmber, s.Clearance)
	assert.Equal(t, alerts.TLPAmber, s.Webhooks[0].MaxTLP, "max_tlp defaults to the clearance")
	assert.Equal(t, alerts.TLPGreen, s.Webhooks[1].MaxTLP)
	assert.Equal(t, "alerts@acme.example", s.Email[0].Address)
	assert.False(t, s.Sensitive, "sensitive defaults to false")
	assert.False(t, s.AcceptsTest)

	assert.Equal(t, subscribers.FormatHerald, s.Webhooks[0].Format, "format defaults to herald")
	assert.Nil(t, s.Pull, "no pull channel unless asked for")

	s.Status = subscribers.StatusSuspended
	assert.False(t, s.Active())
}

// TestNormalizePull: pull max_tlp defaults to the clearance, never above
// AMBER+STRICT; a format is lower-cased.
func TestNormalizePull(t *testing.T) {
	for clearance, want := range map[alerts.TLP]alerts.TLP{
		alerts.TLPGreen: alerts.TLPGreen, alerts.TLPAmber: alerts.TLPAmber,
		alerts.TLPAmberStrict: alerts.TLPAmberStrict, alerts.TLPRed: alerts.TLPAmberStrict,
	} {
		s := validSubscriber()
		s.Clearance = clearance
		s.Webhooks[0].MaxTLP = alerts.TLPClear
		s.Webhooks[0].Format = " STIX "
		s.Pull = &subscribers.Pull{}
		s.Normalize()
		assert.Equal(t, want, s.Pull.MaxTLP, clearance)
		assert.Equal(t, subscribers.FormatSTIX, s.Webhooks[0].Format)
		require.NoError(t, s.Validate(nil, keys), clearance)
	}
	s := validSubscriber()
	s.Pull = &subscribers.Pull{MaxTLP: "tlp:green"}
	s.Normalize()
	assert.Equal(t, alerts.TLPGreen, s.Pull.MaxTLP)
}

// TestDecodePullAndFormat reads both fields from YAML and JSON; an unknown
// field inside pull is an error.
func TestDecodePullAndFormat(t *testing.T) {
	list, err := subscribers.DecodeList([]byte(`
id: bank
name: Bank
kind: business
clearance: AMBER
pull: {}
webhooks:
  - url: https://hooks.bank.example/
    secrets: [` + secret1 + `]
    format: misp
`))
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.NotNil(t, list[0].Pull)
	assert.Equal(t, "misp", list[0].Webhooks[0].Format)
	s, err := subscribers.Decode([]byte(`{"id":"bank","name":"Bank","kind":"business","clearance":"GREEN","pull":{"max_tlp":"CLEAR"}}`))
	require.NoError(t, err)
	assert.Equal(t, alerts.TLPClear, s.Pull.MaxTLP)
	_, err = subscribers.Decode([]byte(`{"id":"bank","pull":{"collection":"x"}}`))
	require.Error(t, err)
}

func TestDecode(t *testing.T) {
	data, err := os.ReadFile("testdata/single.json")
	require.NoError(t, err)
	s, err := subscribers.Decode(data)
	require.NoError(t, err)
	s.Normalize()
	require.NoError(t, s.Validate(taxonomy.Default(), keys))
	assert.Equal(t, "acme-builders", s.ID)
	assert.Equal(t, []string{secret1, secret2}, s.Webhooks[0].Secrets)

	for name, tc := range map[string]struct{ in, want string }{
		"unknown field": {`{"id":"a","password":"x"}`, "decode subscriber"},
		"trailing data": {string(data) + "{}", "decode subscriber"},
		"list":          {`[` + string(data) + `]`, "the subscriber must be a JSON object, not an array"},
		"wrong type":    {`{"sensitive":"yes"}`, "decode subscriber"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := subscribers.Decode([]byte(tc.in))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestDecodeList(t *testing.T) {
	tests := []struct {
		file string
		ids  []string
	}{
		{"testdata/list.yaml", []string{"acme-builders", "hope-ngo"}},
		{"testdata/list.json", []string{"acme-builders", "hope-ngo"}},
		{"testdata/single.yaml", []string{"hope-ngo"}},
		{"testdata/single.json", []string{"acme-builders"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(tc.file)
			require.NoError(t, err)
			list, err := subscribers.DecodeList(data)
			require.NoError(t, err)
			var ids []string
			for _, s := range list {
				s.Normalize()
				require.NoError(t, s.Validate(taxonomy.Default(), keys), s.ID)
				ids = append(ids, s.ID)
			}
			assert.Equal(t, tc.ids, ids)
		})
	}
	t.Run("YAML list fields", func(t *testing.T) {
		y, err := os.ReadFile("testdata/list.yaml")
		require.NoError(t, err)
		fromYAML, err := subscribers.DecodeList(y)
		require.NoError(t, err)
		assert.Equal(t, alerts.TLP("TLP:amber"), fromYAML[0].Clearance, "decoding does not normalise")
		fromYAML[0].Normalize()
		assert.Equal(t, alerts.TLPAmber, fromYAML[0].Clearance)
		assert.True(t, fromYAML[0].Sensitive)
		assert.True(t, fromYAML[1].AcceptsTest)
	})
	rejects := map[string]string{
		"testdata/unknown-field.yaml":  "password",
		"testdata/multi-document.yaml": "more than one YAML document",
	}
	for file, want := range rejects {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(file)
			require.NoError(t, err)
			list, err := subscribers.DecodeList(data)
			require.Error(t, err)
			assert.Nil(t, list)
			assert.Contains(t, err.Error(), want)
		})
	}
	for name, in := range map[string]string{
		"null entry":        "[null]",
		"scalar":            "hello",
		"bad YAML":          "- id: [",
		"unknown in JSON":   `[{"id":"a","nope":1}]`,
		"second list":       "- id: a\n---\n- id: b\n",
		"wrong field type":  "- id: a\n  sectors: care\n",
		"list of non-lists": "[1, 2]",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := subscribers.DecodeList([]byte(in))
			require.Error(t, err)
		})
	}
	for name, in := range map[string]string{"empty": "", "empty list": "[]", "trailing empty document": "id: a\n---\n"} {
		t.Run(name, func(t *testing.T) {
			list, err := subscribers.DecodeList([]byte(in))
			require.NoError(t, err)
			assert.LessOrEqual(t, len(list), 1)
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	s := validSubscriber()
	s.Normalize()
	b, err := json.Marshal(s)
	require.NoError(t, err)
	back, err := subscribers.Decode(b)
	require.NoError(t, err)
	assert.Equal(t, s, back)
}

func TestSharesSector(t *testing.T) {
	s := validSubscriber()
	s.Sectors = []string{"care", "cleaning"}
	assert.True(t, s.SharesSector([]string{"retail", "cleaning"}))
	assert.False(t, s.SharesSector([]string{"retail"}))
	assert.False(t, s.SharesSector(nil))
}

// TestWebhookURL is the webhook URL rule, which registration, the policy
// and the webhook transport all apply.
func TestWebhookURL(t *testing.T) {
	const refused = "must use https (plain http is allowed only to loopback, localhost or a loopback address, when webhooks.allow_insecure_loopback is on)"
	tests := []struct {
		raw   string
		allow bool
		plain bool
		err   string // "" for accepted
	}{
		{"https://hooks.acme.example/herald?token=x", false, false, ""},
		{"HTTPS://hooks.acme.example/", false, false, ""},
		{"https://127.0.0.1/h", false, false, ""}, // the SSRF guard's business, not this rule's
		{"http://127.0.0.1:8080/h", true, true, ""},
		{"http://127.9.9.9/h", true, true, ""},
		{"http://[::1]:9000/h", true, true, ""},
		{"http://[::ffff:127.0.0.1]/h", true, true, ""},
		{"http://LocalHost:9000/h", true, true, ""},
		{"http://127.0.0.1:8080/h", false, false, refused},
		{"http://hooks.acme.example/h", true, false, refused},
		{"http://10.0.0.1/h", true, false, refused},
		{"http://localhost.evil.example/h", true, false, refused},
		{"ftp://hooks.acme.example/", true, false, `scheme must be https, not "ftp"`},
		{"/herald", true, false, `scheme must be https, not ""`},
		{"https:///herald", true, false, "has no host"},
		{"https://:443/herald", true, false, "has no host"},
		{"https://user:pw@hooks.acme.example/", true, false, "must not carry credentials"},
		{"https://hooks.acme.example/#x", true, false, "must not have a fragment"},
		{"https://%zz/", true, false, `not a URL: invalid URL escape "%zz"`},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			u, plain, err := subscribers.WebhookURL(tt.raw, tt.allow)
			if tt.err != "" {
				require.EqualError(t, err, tt.err)
				require.Nil(t, u)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.plain, plain)
			require.NotEmpty(t, u.Hostname())
		})
	}
	_, _, err := subscribers.WebhookURL("https://user:secret@%zz/", true)
	require.NotContains(t, err.Error(), "secret", "the error never repeats the URL")
}

// TestVersion: a record's version is a strong entity tag that changes
// with any field, and only then.
func TestVersion(t *testing.T) {
	a := &subscribers.Subscriber{ID: "acme", Name: "Acme", Kind: subscribers.KindBusiness, Sectors: []string{"care"}, Clearance: "GREEN"}
	b := *a
	require.Regexp(t, `^"[0-9a-f]{32}"$`, a.Version())
	require.Equal(t, a.Version(), b.Version())
	b.Status = subscribers.StatusSuspended
	require.NotEqual(t, a.Version(), b.Version())
}

// TestWebhookURLWithAHostIDNARefusesIsRejected: PRODUCT.md §2 — a record
// with a malformed URL is rejected with the field named. A host name that
// IDNA refuses can never be dialled (the webhook transport fails every
// delivery to it for good, ReasonInvalid: TestInternationalHostName), so
// registration refuses it rather than accept a partner who then gets
// nothing; a name IDNA takes is kept, and WebhookURL gives its ASCII form.
func TestWebhookURLWithAHostIDNARefusesIsRejected(t *testing.T) {
	s := validSubscriber()
	s.Webhooks[0].URL = "https://ü_x.partner.test/h"
	s.Normalize()
	err := s.Validate(nil, nil)
	require.Error(t, err, "registered, yet every delivery to it is dead-lettered as invalid")
	assert.Equal(t, []string{"webhooks[0].url"}, fieldNames(t, err))

	u, _, err := subscribers.WebhookURL("https://bücher.partner.test:8443/h", false)
	require.NoError(t, err)
	assert.Equal(t, "xn--bcher-kva.partner.test:8443", u.Host)
}

// TestDecodeRefusesAKeyTwiceAndBytesNotUTF8: a partner record whose key is
// given twice (also in another case) or whose text is not UTF-8 is
// refused naming the field by its path, in JSON (Decode, the admin API)
// and in YAML or JSON (DecodeList, herald subscribers put|import):
// encoding/json kept the last "clearance" and made the bytes U+FFFD, and
// YAML refused naming a line, not the field.
func TestDecodeRefusesAKeyTwiceAndBytesNotUTF8(t *testing.T) {
	const rec = `{"id":"acme","name":"Acme","kind":"business","clearance":"GREEN",` +
		`"email":[{"address":"soc@acme.example"},{"address":"ops@acme.example"}]}`
	tests := []struct {
		name, in, field string
	}{
		{"a key twice", strings.Replace(rec, `"kind"`, `"clearance":"RED","kind"`, 1), "clearance"},
		{"in another case", strings.Replace(rec, `"kind"`, `"Clearance":"RED","kind"`, 1), "clearance"},
		{"nested", strings.Replace(rec, `{"address":"ops@acme.example"}`, `{"address":"ops@acme.example","address":"x@evil.example"}`, 1), "email[1].address"},
		{"not UTF-8", strings.Replace(rec, "ops@", "ops\xff@", 1), "email[1].address"},
	}
	fieldsOf := func(t *testing.T, err error) []string {
		var v *alerts.ValidationError
		require.ErrorAs(t, err, &v)
		var out []string
		for _, f := range v.Fields {
			out = append(out, f.Field)
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := subscribers.Decode([]byte(tt.in))
			assert.Equal(t, []string{tt.field}, fieldsOf(t, err), "Decode: %v", err)
			_, err = subscribers.DecodeList([]byte(tt.in))
			assert.Equal(t, []string{tt.field}, fieldsOf(t, err), "DecodeList, JSON: %v", err)
			_, err = subscribers.DecodeList([]byte("[" + tt.in + "]"))
			assert.Equal(t, []string{"[0]." + tt.field}, fieldsOf(t, err), "DecodeList, a JSON list: %v", err)
		})
	}
	yamlTests := []struct {
		name, in, field string
	}{
		{"a key twice", "id: acme\nclearance: GREEN\nkind: business\nclearance: RED\n", "clearance"},
		{"in another case", "id: acme\nclearance: GREEN\nClearance: RED\n", "Clearance"},
		{"not UTF-8", "- id: acme\n  email:\n  - address: soc@acme.example\n  - address: ops\xff@acme.example\n", "[0].email[1].address"},
	}
	for _, tt := range yamlTests {
		t.Run("YAML "+tt.name, func(t *testing.T) {
			_, err := subscribers.DecodeList([]byte(tt.in))
			assert.Equal(t, []string{tt.field}, fieldsOf(t, err), "%v", err)
		})
	}
}
