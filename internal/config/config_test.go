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

func TestExampleConfigLoads(t *testing.T) {
	c, err := config.Load("../../config.example.yaml")
	require.NoError(t, err)
	require.NoError(t, c.Validate())
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
