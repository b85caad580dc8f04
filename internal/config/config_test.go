package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/spf13/viper"
	"github.com/stretchr/testify/require"
)

func TestDefaultsAreValid(t *testing.T) {
	c, err := config.Load("")
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Empty(t, c.Kafka.Brokers)
	require.Equal(t, "127.0.0.1:9092", c.Kafka.Embedded.Listen)
	require.Equal(t, "herald.", c.Kafka.TopicPrefix)
	require.Equal(t, 10*time.Second, c.Webhooks.Timeout)
	require.Equal(t, []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 6 * time.Hour, 12 * time.Hour}, c.Delivery.RetrySchedule)
	require.Equal(t, "127.0.0.1:8080", c.API.Listen)
}

// TestExampleConfigIsTheDefault keeps config.example.yaml and Default in
// step: the example shows every key with its built-in value.
func TestExampleConfigIsTheDefault(t *testing.T) {
	c, err := config.Load("../../config.example.yaml")
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, config.Default(), *c, "config.example.yaml documents a value that is not the default")

	v := viper.New()
	v.SetConfigFile("../../config.example.yaml")
	require.NoError(t, v.ReadInConfig())
	documented := map[string]bool{}
	for _, k := range v.AllKeys() {
		documented[k] = true
	}
	for k := range config.Keys() {
		require.True(t, documented[k], "config.example.yaml does not document %s", k)
	}
}

func TestLoadWithoutFileIsTheDefault(t *testing.T) {
	c, err := config.Load("")
	require.NoError(t, err)
	require.Equal(t, config.Default(), *c)
}

func TestDurationsInDays(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(f, []byte("kafka:\n  retention:\n    receipts: 500d\n    alerts: 9600h\n"), 0o600))
	c, err := config.Load(f)
	require.NoError(t, err)
	require.Equal(t, 500*config.Day, c.Kafka.Retention.Receipts)
	require.Equal(t, 400*config.Day, c.Kafka.Retention.Alerts)
	t.Setenv("HERALD_KAFKA_RETENTION_AUDIT", "401d")
	c, err = config.Load(f)
	require.NoError(t, err)
	require.Equal(t, 401*config.Day, c.Kafka.Retention.Audit)
	for _, bad := range []string{"d", "1.5d", "-d", "12x", "3dd"} {
		_, err := config.ParseDuration(bad)
		require.Error(t, err, bad)
	}
}

func TestMisspeltKeyIsNamed(t *testing.T) {
	_, err := config.Load("testdata/misspelt.yaml")
	require.Error(t, err)
	require.Contains(t, err.Error(), "brokres")
}

func TestValidateNamesEveryBadField(t *testing.T) {
	c, err := config.Load("testdata/bad-values.yaml")
	require.NoError(t, err)
	err = c.Validate()
	var v *alerts.ValidationError
	require.True(t, errors.As(err, &v), "want a ValidationError, got %v", err)
	var fields []string
	for _, f := range v.Fields {
		fields = append(fields, f.Field)
	}
	require.ElementsMatch(t, []string{"smtp.tls", "smtp.from", "webhooks.allow_cidrs[0]", "delivery.retry_schedule[1]", "api.tokens[0].role", "api.tokens[0].sha256"}, fields)
}

// TestValidateEveryKey changes one key at a time to a bad value and wants
// exactly that key named: nothing is silently replaced by a default.
func TestValidateEveryKey(t *testing.T) {
	for _, tc := range []struct {
		key  string
		edit func(*config.Config)
	}{
		{"kafka.brokers[0]", func(c *config.Config) { c.Kafka.Brokers, c.Publishing.KeyFile = []string{"kafka1"}, "config_test.go" }},
		{"kafka.embedded.listen", func(c *config.Config) { c.Kafka.Embedded.Listen = "9092" }},
		{"kafka.topic_prefix", func(c *config.Config) { c.Kafka.TopicPrefix = "herald/" }},
		{"kafka.client_id", func(c *config.Config) { c.Kafka.ClientID = "" }},
		{"kafka.partitions", func(c *config.Config) { c.Kafka.Partitions = 0 }},
		{"kafka.replication_factor", func(c *config.Config) { c.Kafka.ReplicationFactor = 0 }},
		{"kafka.retention.receipts", func(c *config.Config) { c.Kafka.Retention.Receipts = 7 * config.Day }},
		{"kafka.retention.alerts", func(c *config.Config) { c.Kafka.Retention.Alerts = 0 }},
		{"kafka.retention.audit", func(c *config.Config) { c.Kafka.Retention.Audit = 399 * config.Day }},
		{"kafka.retention.retry", func(c *config.Config) { c.Kafka.Retention.Retry = time.Hour }},
		{"kafka.retention.deliveries", func(c *config.Config) { c.Kafka.Retention.Deliveries = time.Hour }},
		{"kafka.retention.pending", func(c *config.Config) { c.Kafka.Retention.Pending = time.Hour }},
		{"kafka.retention.alerts", func(c *config.Config) { c.Kafka.Retention.Receipts = 500 * config.Day }},
		{"kafka.retention.dead", func(c *config.Config) { c.Kafka.Retention.Dead = 401 * config.Day }},
		{"kafka.retention.quarantine", func(c *config.Config) { c.Kafka.Retention.Quarantine = 30 * config.Day }},
		{"kafka.retention.quarantine", func(c *config.Config) {
			c.Kafka.Retention.Alerts, c.Kafka.Retention.Receipts = 500*config.Day, 500*config.Day
		}},
		{"kafka.tls.enabled", func(c *config.Config) { c.Kafka.TLS.Enabled = true }},
		{"kafka.sasl.mechanism", func(c *config.Config) {
			c.Kafka.Brokers, c.Publishing.KeyFile, c.Kafka.SASL.Mechanism = []string{"k:9092"}, "config_test.go", "GSSAPI"
		}},
		{"kafka.sasl.password_file", func(c *config.Config) {
			c.Kafka.Brokers, c.Publishing.KeyFile = []string{"k:9092"}, "config_test.go"
			c.Kafka.SASL = config.KafkaSASL{Mechanism: config.SASLSCRAMSHA512, Username: "herald"}
		}},
		{"publishing.key_file", func(c *config.Config) { c.Publishing.KeyFile = "/nonexistent/publishing.key" }},
		{"kafka.consumer.session_timeout", func(c *config.Config) {
			c.Kafka.Consumer.SessionTimeout, c.Kafka.Consumer.HeartbeatInterval = 900*time.Millisecond, 100*time.Millisecond
		}},
		{"kafka.consumer.heartbeat_interval", func(c *config.Config) { c.Kafka.Consumer.HeartbeatInterval = c.Kafka.Consumer.SessionTimeout }},
		{"kafka.consumer.rebalance_timeout", func(c *config.Config) { c.Kafka.Consumer.RebalanceTimeout = -time.Second }},
		{"kafka.consumer.join_group_backoff", func(c *config.Config) { c.Kafka.Consumer.JoinGroupBackoff = 0 }},
		{"kafka.consumer.max_wait", func(c *config.Config) { c.Kafka.Consumer.MaxWait = 0 }},
		{"kafka.consumer.commit_batch", func(c *config.Config) { c.Kafka.Consumer.CommitBatch = 0 }},
		{"kafka.consumer.linger", func(c *config.Config) { c.Kafka.Consumer.Linger = -1 }},
		{"kafka.consumer.retry_backoff_min", func(c *config.Config) { c.Kafka.Consumer.RetryBackoffMin = 0 }},
		{"kafka.consumer.retry_backoff_max", func(c *config.Config) { c.Kafka.Consumer.RetryBackoffMax = time.Millisecond }},
		{"kafka.consumer.drain_timeout", func(c *config.Config) { c.Kafka.Consumer.DrainTimeout = 0 }},
		{"signing.key_file", func(c *config.Config) { c.Signing.KeyFile = "/nonexistent/agency.key" }},
		{"publishing.key_file", func(c *config.Config) { c.Kafka.Brokers = []string{"k:9092"} }},
		{"kafka.tls.cert_file", func(c *config.Config) {
			c.Kafka.Brokers, c.Publishing.KeyFile = []string{"k:9092"}, "config_test.go"
			c.Kafka.TLS = config.KafkaTLS{Enabled: true, CertFile: "config_test.go"}
		}},
		{"smtp.port", func(c *config.Config) { c.SMTP.Port = 0 }},
		{"smtp.pool", func(c *config.Config) { c.SMTP.Pool = 0 }},
		{"smtp.timeout", func(c *config.Config) { c.SMTP.Timeout = 0 }},
		{"smtp.tls", func(c *config.Config) {
			c.SMTP.Host, c.SMTP.From, c.SMTP.TLS, c.SMTP.Username = "relay.example.org", "a@example.org", "none", "herald"
		}},
		{"email.key_expiry_warning[1]", func(c *config.Config) { c.Email.KeyExpiryWarning = []time.Duration{time.Hour, 0} }},
		{"webhooks.timeout", func(c *config.Config) { c.Webhooks.Timeout = 0 }},
		{"webhooks.max_response_bytes", func(c *config.Config) { c.Webhooks.MaxResponseBytes = 0 }},
		{"webhooks.client_cert_dir", func(c *config.Config) { c.Webhooks.ClientCertDir = "/nonexistent/certs" }},
		{"delivery.retry_schedule", func(c *config.Config) { c.Delivery.RetrySchedule = nil }},
		{"delivery.concurrency", func(c *config.Config) { c.Delivery.Concurrency = 0 }},
		{"delivery.per_endpoint", func(c *config.Config) { c.Delivery.PerEndpoint = -1 }},
		{"delivery.jitter", func(c *config.Config) { c.Delivery.Jitter = 1 }},
		{"delivery.breaker.failures", func(c *config.Config) { c.Delivery.Breaker.Failures = 0 }},
		{"delivery.breaker.cooldown", func(c *config.Config) { c.Delivery.Breaker.Cooldown = 0 }},
		{"release.second_analyst[0]", func(c *config.Config) { c.Release.SecondAnalyst = []string{"SECRET"} }},
		{"release.pending_ttl", func(c *config.Config) { c.Release.PendingTTL = 0; c.Kafka.Retention.Pending = time.Hour }},
		{"api.listen", func(c *config.Config) { c.API.Listen = "8080" }},
		{"api.public_url", func(c *config.Config) { c.API.PublicURL = "ftp://herald.example" }},
		{"api.tokens[0].subscriber", func(c *config.Config) {
			c.API.Tokens = []config.Token{{Name: "p", Role: config.RolePartner, SHA256: config.HashToken("t")}}
		}},
		{"api.tokens[1].name", func(c *config.Config) {
			c.API.Tokens = []config.Token{{Name: "a", Role: config.RoleAnalyst, SHA256: config.HashToken("t")},
				{Name: "a", Role: config.RoleAdmin, SHA256: config.HashToken("u")}}
		}},
		{"metrics.listen", func(c *config.Config) { c.Metrics.Listen = "nowhere" }},
		{"taxonomy.sectors[0].slug", func(c *config.Config) {
			c.Taxonomy.Sectors = []taxonomy.Sector{{Slug: "Seasonal Labour", Name: "Seasonal labour"}}
		}},
		{"taxonomy.sectors[2].slug", func(c *config.Config) {
			c.Taxonomy.Sectors = append(taxonomy.DefaultSectors()[:2], taxonomy.Sector{Slug: "agriculture", Name: "Farming"})
		}},
		{"taxonomy.sectors[1].name", func(c *config.Config) {
			c.Taxonomy.Sectors = []taxonomy.Sector{{Slug: "care", Name: "Care"}, {Slug: "seasonal-labour"}}
		}},
		{"taxonomy.sectors[0].sic[1]", func(c *config.Config) {
			c.Taxonomy.Sectors = []taxonomy.Sector{{Slug: "care", Name: "Care", SIC: []string{"87.10", "87-10"}}}
		}},
		{"taxonomy.regions[0].code", func(c *config.Config) { c.Taxonomy.Regions = []taxonomy.Region{{Code: "tli", Name: "London"}} }},
		{"taxonomy.regions[1].code", func(c *config.Config) {
			c.Taxonomy.Regions = []taxonomy.Region{{Code: "TLI", Name: "London"}, {Code: "TLI", Name: "Greater London"}}
		}},
		{"taxonomy.regions[0].name", func(c *config.Config) { c.Taxonomy.Regions = []taxonomy.Region{{Code: "TLI"}} }},
		{"log.level", func(c *config.Config) { c.Log.Level = "loud" }},
		{"log.format", func(c *config.Config) { c.Log.Format = "xml" }},
	} {
		t.Run(tc.key, func(t *testing.T) {
			c := config.Default()
			tc.edit(&c)
			err := c.Validate()
			var v *alerts.ValidationError
			require.ErrorAs(t, err, &v)
			var fields []string
			for _, f := range v.Fields {
				fields = append(fields, f.Field)
			}
			require.Equal(t, []string{tc.key}, fields, "%v", err)
		})
	}
}

func TestSMTPNoneWithAuthOnLoopbackIsAllowed(t *testing.T) {
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		c := config.Default()
		c.SMTP.Host, c.SMTP.From, c.SMTP.TLS, c.SMTP.Username = host, "a@example.org", config.SMTPNone, "herald"
		require.NoError(t, c.Validate(), host)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	t.Setenv("HERALD_KAFKA_BROKERS", "k1:9092, k2:9092")
	t.Setenv("HERALD_SMTP_PORT", "2525")
	t.Setenv("HERALD_WEBHOOKS_TIMEOUT", "3s")
	t.Setenv("HERALD_KAFKA_EMBEDDED_DATA_DIR", "/var/lib/herald")
	c, err := config.Load("")
	require.NoError(t, err)
	require.Equal(t, []string{"k1:9092", "k2:9092"}, c.Kafka.Brokers)
	require.Equal(t, 2525, c.SMTP.Port)
	require.Equal(t, 3*time.Second, c.Webhooks.Timeout)
	require.Equal(t, "/var/lib/herald", c.Kafka.Embedded.DataDir)
}

// Lists of durations come from one variable, comma-separated, as the
// other lists do; a bad element is an error naming the key.
func TestEnvironmentDurationLists(t *testing.T) {
	t.Setenv("HERALD_DELIVERY_RETRY_SCHEDULE", "10s, 1m,2h")
	t.Setenv("HERALD_EMAIL_KEY_EXPIRY_WARNING", "30d,168h")
	c, err := config.Load("")
	require.NoError(t, err)
	require.Equal(t, []time.Duration{10 * time.Second, time.Minute, 2 * time.Hour}, c.Delivery.RetrySchedule)
	require.Equal(t, []time.Duration{30 * config.Day, 7 * config.Day}, c.Email.KeyExpiryWarning)
	require.NoError(t, c.Validate())

	t.Setenv("HERALD_DELIVERY_RETRY_SCHEDULE", "10s,soon")
	_, err = config.Load("")
	require.ErrorContains(t, err, "retry_schedule")
	require.ErrorContains(t, err, `"soon" is not a duration`)
}

func TestFileThenEnvironment(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "c.yaml")
	require.NoError(t, os.WriteFile(f, []byte("smtp:\n  host: relay.example.org\n  from: alerts@example.org\n  port: 587\n"), 0o600))
	t.Setenv("HERALD_SMTP_PORT", "465")
	c, err := config.Load(f)
	require.NoError(t, err)
	require.Equal(t, "relay.example.org", c.SMTP.Host)
	require.Equal(t, 465, c.SMTP.Port, "environment wins over the file")
}

func TestHashToken(t *testing.T) {
	h := config.HashToken("s3cret")
	require.Len(t, h, 64)
	require.Equal(t, strings.ToLower(h), h)
	require.NotEqual(t, h, config.HashToken("s3cret2"))
}

// TestTaxonomyDefault: without a taxonomy section the built-in taxonomy
// of PRODUCT.md §9 is the one alerts and partners are checked against,
// exactly as before the section existed.
func TestTaxonomyDefault(t *testing.T) {
	c, err := config.Load("")
	require.NoError(t, err)
	require.Empty(t, c.Taxonomy.Sectors)
	require.Empty(t, c.Taxonomy.Regions)
	tax, err := c.Taxonomy.Build()
	require.NoError(t, err)
	require.Same(t, taxonomy.Default(), tax)
	require.Equal(t, taxonomy.DefaultSectors(), tax.Sectors())
	require.Equal(t, taxonomy.DefaultRegions(), tax.Regions())
}

// TestTaxonomyFromFile: a list in the file replaces its default whole;
// the other list keeps its default; UK is a region whether or not a
// configured list names it, since it covers every other region.
func TestTaxonomyFromFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(f, []byte(`taxonomy:
  sectors:
    - {slug: construction, name: Construction, sic: ["41", "42", "43"]}
    - slug: seasonal-labour
      name: Seasonal and gang labour
`), 0o600))
	c, err := config.Load(f)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	tax, err := c.Taxonomy.Build()
	require.NoError(t, err)
	require.Equal(t, []taxonomy.Sector{
		{Slug: "construction", Name: "Construction", SIC: []string{"41", "42", "43"}},
		{Slug: "seasonal-labour", Name: "Seasonal and gang labour"},
	}, tax.Sectors())
	require.False(t, tax.HasSector("agriculture"), "a configured list replaces the default")
	require.Equal(t, taxonomy.DefaultRegions(), tax.Regions())

	require.NoError(t, os.WriteFile(f, []byte(`taxonomy:
  regions:
    - {code: TLI, name: London}
    - {code: LEEDS, name: Leeds city region}
`), 0o600))
	c, err = config.Load(f)
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	tax, err = c.Taxonomy.Build()
	require.NoError(t, err)
	require.Equal(t, taxonomy.DefaultSectors(), tax.Sectors())
	uk, ok := taxonomy.Default().Region(taxonomy.AllRegions)
	require.True(t, ok)
	require.Equal(t, []taxonomy.Region{{Code: "TLI", Name: "London"}, {Code: "LEEDS", Name: "Leeds city region"}, uk}, tax.Regions())
	require.False(t, tax.HasRegion("TLC"))

	// Naming UK keeps it where it is listed, with the name given.
	c.Taxonomy.Regions = []taxonomy.Region{{Code: "UK", Name: "All of the UK"}, {Code: "TLI", Name: "London"}}
	tax, err = c.Taxonomy.Build()
	require.NoError(t, err)
	require.Equal(t, c.Taxonomy.Regions, tax.Regions())
}

func TestTaxonomyMisspeltKeyIsNamed(t *testing.T) {
	f := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(f, []byte("taxonomy:\n  sectors:\n    - {slug: seasonal-labour, name: Seasonal, sic_codes: [\"01.1\"]}\n"), 0o600))
	_, err := config.Load(f)
	require.ErrorContains(t, err, "sic_codes")
}

// The lists of objects come from environment variables too (PRODUCT.md
// §7: every setting), as a JSON array of objects with the file's keys; a
// misspelt key is named, and a value that is not such an array is an error
// saying what is expected, naming the variable's key.
func TestObjectListsFromEnvironment(t *testing.T) {
	t.Setenv("HERALD_TAXONOMY_SECTORS", `[{"slug": "seasonal-labour", "name": "Seasonal and gang labour", "sic": ["01.61"]}]`)
	t.Setenv("HERALD_TAXONOMY_REGIONS", `[{"code": "TLI", "name": "London"}]`)
	hash := config.HashToken("s3cret")
	t.Setenv("HERALD_API_TOKENS", `[{"name": "alice", "role": "analyst", "sha256": "`+hash+`"},
		{"name": "northbank", "role": "partner", "subscriber": "northbank", "sha256": "`+config.HashToken("other")+`"}]`)
	c, err := config.Load("")
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, []taxonomy.Sector{{Slug: "seasonal-labour", Name: "Seasonal and gang labour", SIC: []string{"01.61"}}}, c.Taxonomy.Sectors)
	require.Equal(t, []taxonomy.Region{{Code: "TLI", Name: "London"}}, c.Taxonomy.Regions)
	require.Len(t, c.API.Tokens, 2)
	require.Equal(t, config.Token{Name: "alice", Role: config.RoleAnalyst, SHA256: hash}, c.API.Tokens[0])
	require.Equal(t, "northbank", c.API.Tokens[1].Subscriber)

	for _, tc := range []struct{ env, value, err string }{
		{"HERALD_TAXONOMY_SECTORS", `[{"slug": "seasonal-labour", "name": "Seasonal", "sic_codes": ["01.61"]}]`, "sic_codes"},
		{"HERALD_TAXONOMY_SECTORS", "seasonal-labour", "a JSON array of objects"},
		{"HERALD_TAXONOMY_REGIONS", `{"code": "TLI", "name": "London"}`, "a JSON array of objects"},
		{"HERALD_API_TOKENS", "alice:analyst", "a JSON array of objects"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(tc.env, tc.value)
			_, err := config.Load("")
			require.ErrorContains(t, err, strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(tc.env, "HERALD_"), "_", ".")))
			require.ErrorContains(t, err, tc.err)
		})
	}
}
