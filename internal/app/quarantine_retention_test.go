package app_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// TestShortQuarantineTopicStopsTheAPIRole: the api role's view reads the
// quarantine topic (status and the alert list say which alerts the
// fan-out refused, and why), so a quarantine topic that keeps records for
// 7 days, where kafka.retention.quarantine asks for 400, stops it: an
// alert quarantined a week ago would read as published again once the
// view is rebuilt. The error names the topic, its setting and both
// durations.
func TestShortQuarantineTopicStopsTheAPIRole(t *testing.T) {
	cluster := kafkatest.Start(t)
	const prefix = "quarantine7d."
	admin := &kafka.Client{Addr: kafka.TCP(cluster.Addrs()...), Timeout: 10 * time.Second}
	res, err := admin.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: prefix + "quarantine", NumPartitions: 3, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "604800000"}},
	}}})
	require.NoError(t, err)
	require.NoError(t, res.Errors[prefix+"quarantine"])

	cfg := config.Default()
	cfg.Kafka = cluster.Config()
	cfg.Kafka.TopicPrefix = prefix
	cfg.Publishing.KeyFile = kafkatest.KeyFile(t)
	cfg.API.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = app.Run(ctx, &cfg, slog.New(slog.DiscardHandler), app.Options{
		Roles: []string{app.RoleAPI}, Explicit: true,
		Started: func(*app.App) {
			t.Error("the api role started on a quarantine topic that keeps records for 7 days")
			cancel()
		},
	})
	assert.EqualError(t, err, "api role not started: kafka topics keep records for too short a time: "+
		prefix+"quarantine keeps records for 7d, kafka.retention.quarantine asks for 400d; raise its retention.ms "+
		"(or set kafka.retention.accept_shorter: true to accept losing older records)")
}
