package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/certless/certless/config"
)

func newServeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the broker against the configured Kafka cluster and decision store",
		Long: `Run the broker: consume every registered agency's request topic, answer
from the configured record sources and publish signed receipts. Logs JSON.
Stops cleanly on SIGINT/SIGTERM: stops consuming, finishes in-flight
requests, commits, flushes the decision store.

At start-up it logs "connecting to Kafka at ADDR" and each failed attempt,
answers /healthz at once and says on /readyz what it waits for; if no
broker answers within kafka.startup_timeout (default 15s) it stops with an
error naming the addresses and the likely cause (refused, timed out, TLS,
SASL).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			cfg.Log.Format = "json"
			log, err := newLogger(cfg.Log, g.stderr)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			if cfg.File == "" {
				hint := fmt.Sprintf("data folder %s, embedded Kafka %v; for production pass --config FILE or set $%s", cfg.DataDir, cfg.Kafka.Embedded, config.EnvConfig)
				log.Warn("no configuration file: running on dev defaults", zap.String("hint", hint))
				fmt.Fprintf(g.stderr, "certless serve: WARNING: no configuration file: running on dev defaults (%s)\n", hint)
			}
			svc, err := startService(cmd.Context(), cfg, log, serviceOptions{launched: g.launched})
			if err != nil {
				log.Error("start failed", zap.Error(err))
				return err
			}
			return svc.run(cmd.Context())
		},
	}
}
