package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/certless/certless/config"
	"github.com/certless/certless/exchange"
)

func newDevCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "dev",
		Short: "Run the broker on embedded defaults: in-process Kafka, SQLite, generated keys, sample agencies",
		Long: `Run a complete Certless on this machine with no external service: an
in-process Kafka-protocol cluster, an SQLite decision store, synthetic Jilin
police records (a provincial database and five prefecture bureaus' own),
keys generated on first run and six sample agencies at province, prefecture
and county level. State lives in the data folder (--data, $CERTLESS_DATA,
default ./.certless).

In another terminal:  certless request --as court-changchun --query criminal_record --subject <ID> --name <NAME>
                      certless records sample   (prints seeded subjects to ask about)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dataDir := g.resolveDataDir(os.Getenv)
			boot, err := newLogger(config.Log{Level: "info", Format: "console"}, g.stderr)
			if err != nil {
				return err
			}
			var cfg *config.Config
			if g.configPath != "" {
				cfg, err = g.loadConfig(os.Getenv)
			} else {
				cfg, err = ensureDevData(cmd.Context(), dataDir, boot)
			}
			if err != nil {
				return err
			}
			log, err := newLogger(config.Log{Level: cfg.Log.Level, Format: "console"}, g.stderr)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			log.Info("certless dev", zap.String("data", cfg.DataDir), zap.String("config", dataDir+"/"+config.FileName),
				zap.String("store", redactDSN(cfg.Store.DSN)), zap.String("keys", cfg.KeysDir))
			svc, err := startService(cmd.Context(), cfg, log, serviceOptions{})
			if err != nil {
				return err
			}
			today := time.Now().In(exchange.Beijing)
			log.Info("try, in another terminal",
				zap.String("a request", "certless request --as court-changchun --query criminal_record --subject ID --name NAME (certless records sample lists subjects)"),
				zap.String("periodic exchange", "certless exchange status; certless exchange run --agreement social-security-baicheng/records --schedule daily-cancellations"),
				zap.String("supervision report", fmt.Sprintf("certless report --from %s --to %s", today.Format(time.DateOnly), today.AddDate(0, 0, 1).Format(time.DateOnly))),
				zap.String("auditor console", consoleHint(cfg, svc)))
			return svc.run(cmd.Context())
		},
	}
}

// consoleHint says where the auditor console is and how to log in.
func consoleHint(cfg *config.Config, svc *service) string {
	url := svc.httpBase() + "/audit/"
	if len(cfg.HTTP.Auditors) == 0 {
		return url + " (no auditor login configured: set http.web_config_file and http.auditors)"
	}
	if p := filepath.Join(cfg.DataDir, devPasswordFile); fileExists(p) {
		return url + " (user " + cfg.HTTP.Auditors[0] + ", password in " + p + ")"
	}
	return url + " (users of " + cfg.HTTP.WebConfigFile + ")"
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
