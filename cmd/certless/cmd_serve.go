package main

import (
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

func newServeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the broker against the configured Kafka cluster and decision store",
		Long: `Run the broker: consume every registered agency's request topic, answer
from the configured record sources and publish signed receipts. Logs JSON.
Stops cleanly on SIGINT/SIGTERM: stops consuming, finishes in-flight
requests, commits, flushes the decision store.`,
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
			svc, err := startService(cmd.Context(), cfg, log, serviceOptions{})
			if err != nil {
				log.Error("start failed", zap.Error(err))
				return err
			}
			return svc.run(cmd.Context())
		},
	}
}
