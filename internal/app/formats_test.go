package app_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/config"
)

func TestAgencyAndCAPSender(t *testing.T) {
	cfg := config.Default()
	c := &cfg
	require.Equal(t, "", app.Agency(c, nil))
	require.Equal(t, app.DefaultCAPSender, app.CAPSender(c))
	cfg.Email.IssuerName = "  National Crime Agency "
	require.Equal(t, "National Crime Agency", app.Agency(c, nil))
	cfg.SMTP.From = "Herald Alerts <alerts@nca.example>"
	require.Equal(t, "alerts@nca.example", app.CAPSender(c))
	cfg.SMTP.From = "alerts@nca.example"
	require.Equal(t, "alerts@nca.example", app.CAPSender(c))
	wc, err := app.WebhookConfig(c)
	require.NoError(t, err)
	require.Equal(t, "National Crime Agency", wc.Agency)
	require.Equal(t, "alerts@nca.example", wc.Sender)
}
