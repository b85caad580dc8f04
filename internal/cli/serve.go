package cli

import (
	"strings"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/spf13/cobra"
)

func newServeCmd(e *env) *cobra.Command {
	var roles string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run Herald's roles: api, fanout and deliver (all by default)",
		Long: "Serve runs the HTTP API, the fan-out worker and the delivery worker. Run several processes\n" +
			"with --roles to scale each out: they share the work through Kafka consumer groups.\n" +
			"With no kafka.brokers configured it starts the embedded single-node development broker\n" +
			"on kafka.embedded.listen (default 127.0.0.1:9092), in memory unless kafka.embedded.data_dir is set.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.config()
			if err != nil {
				return err
			}
			rs, err := app.ParseRoles(roles)
			if err != nil {
				return invalid(err)
			}
			explicit := cmd.Flags().Changed("roles")
			return app.Run(cmd.Context(), c, e.logger(c), app.Options{Roles: rs, Explicit: explicit})
		},
	}
	cmd.Flags().StringVar(&roles, "roles", strings.Join(app.AllRoles, ","), "comma-separated roles to run: api, fanout, deliver")
	return cmd
}
