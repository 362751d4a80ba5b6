package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/certless/certless/adapters/httpsource"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/config"
	"github.com/certless/certless/exchange"
)

func newRecordsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "records",
		Short: "Synthetic police records for development and tests (Jilin province)",
		Args:  cobra.NoArgs,
	}
	var (
		persons int
		seed    int64
		db      string
		journal string
	)
	seedCmd := &cobra.Command{
		Use:   "seed --persons N --db DSN",
		Short: "Load N deterministic synthetic persons, households, kinship, names, residences, cancellations and criminal records",
		Long: `Generate a deterministic synthetic population of Jilin province (same
--seed and --persons give the same records) and load it into PostgreSQL
(--db postgres://owner@host/db) or an SQLite file (--db path). The DSN must
be allowed to create tables; the broker later reads with a SELECT-only role.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if persons <= 0 {
				return usagef("--persons must be positive")
			}
			if db == "" {
				return usagef("--db is required")
			}
			bar := progressbar.NewOptions(persons,
				progressbar.OptionSetWriter(progressTo(g.stderr)),
				progressbar.OptionSetDescription("seeding persons"),
				progressbar.OptionShowCount(),
				progressbar.OptionShowIts(),
				progressbar.OptionSetItsString("persons"),
				progressbar.OptionThrottle(100_000_000),
				progressbar.OptionOnCompletion(func() { fmt.Fprintln(progressTo(g.stderr)) }),
			)
			var through time.Time
			if journal != "" {
				t, err := time.ParseInLocation(time.DateOnly, journal, exchange.Beijing)
				if err != nil {
					return usagef("--journal-through: %v", err)
				}
				through = t
			}
			err := sqlsource.SeedThrough(cmd.Context(), db, persons, seed, nil, through, func(done, total int) { _ = bar.Set(done) })
			if err != nil {
				return err
			}
			_ = bar.Finish()
			fmt.Fprintf(g.stdout, "seeded %d persons (seed %d) into %s\n", persons, seed, redactDSN(db))
			return nil
		},
	}
	seedCmd.Flags().IntVar(&persons, "persons", 10000, "number of persons")
	seedCmd.Flags().Int64Var(&seed, "seed", 1, "generator seed")
	seedCmd.Flags().StringVar(&db, "db", "", "postgres://… DSN or SQLite file path")
	seedCmd.Flags().StringVar(&journal, "journal-through", "", "also load the change journal (one cancellation per prefecture and day after 2026-06-30) through this date, YYYY-MM-DD")

	var n int
	var sampleOut *outputFormat
	sample := &cobra.Command{
		Use:   "sample [--n 10] [--output json]",
		Short: "Print subjects of the dev dataset to try requests with",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := sampleOut.json()
			if err != nil {
				return err
			}
			ds := records.Generate(devSeed, devPersons)
			picks := demoSubjects(ds)
			type subject struct {
				IDNumber string `json:"id_number"`
				Name     string `json:"name"`
				Note     string `json:"note,omitempty"`
			}
			var subjects []subject
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, "id_number\tname\tnote")
			}
			row := func(p records.Person, note string) {
				subjects = append(subjects, subject{p.IDNumber, p.Name, note})
				if !asJSON {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", p.IDNumber, p.Name, note)
				}
			}
			row(picks.clean, "no criminal record")
			row(picks.offender, "has a criminal record")
			row(picks.cancelled, "hukou cancelled ("+picks.cancelled.CancelReason+")")
			row(picks.renamed, "has former names")
			row(picks.kinA, "kinship: related to the next line")
			row(picks.kinB, "kinship: related to the line above")
			for i := 0; i < n && i < len(ds.Persons); i++ {
				row(ds.Persons[i], "")
			}
			if asJSON {
				return writeAgencyJSON(g.stdout, subjects)
			}
			return tw.Flush()
		},
	}
	sample.Flags().IntVar(&n, "n", 5, "further persons to list")
	sampleOut = addOutputFlag(sample)

	var addr string
	serve := &cobra.Command{
		Use:   "serve --db DSN [--addr 127.0.0.1:8090]",
		Short: "Serve a records database over the HTTP record-source protocol (POST /v1/answer)",
		Long: `Stand up an HTTP record service in front of a records database, speaking the
protocol of the "http" adapter type: POST /v1/answer with a query, GET
/v1/health. Useful to try a prefecture- or county-level HTTP source in dev,
and as the reference for police systems that implement the protocol.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if db == "" {
				return usagef("--db is required")
			}
			src, err := sqlsource.Open(cmd.Context(), db, sqlsource.Options{Name: "records-http"})
			if err != nil {
				return err
			}
			defer src.Close()
			log, err := newLogger(config.Log{Level: "info", Format: "console"}, g.stderr)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: httpsource.Handler(src, httpsource.HandlerOptions{Logger: log}), ReadHeaderTimeout: 5 * time.Second}
			log.Info("record service listening", zap.String("url", "http://"+ln.Addr().String()+"/v1/answer"))
			go func() {
				<-cmd.Context().Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	serve.Flags().StringVar(&db, "db", "", "records database: postgres://… or SQLite file path")
	serve.Flags().StringVar(&addr, "addr", "127.0.0.1:8090", "listen address")
	cmd.AddCommand(seedCmd, sample, serve)
	return cmd
}

// ensureSeededRecords seeds the dev SQLite records on first run.
func ensureSeededRecords(ctx context.Context, cfg *config.Config, log *zap.Logger) error {
	for _, a := range cfg.Adapters {
		if a.Type != "sql" {
			continue
		}
		var o sqlOptions
		if err := a.DecodeOptions(&o); err != nil {
			return err
		}
		if sqlsource.DialectOf(o.DSN) != sqlsource.SQLite {
			continue
		}
		today := time.Now().In(exchange.Beijing)
		if _, err := os.Stat(o.DSN); err == nil {
			// Seeded on an earlier day: carry the change journal to today
			// (only the synthetic records dev keeps in its data folder).
			if rel, err := filepath.Rel(cfg.DataDir, o.DSN); err != nil || strings.HasPrefix(rel, "..") {
				continue
			}
			n, err := sqlsource.ExtendJournal(ctx, o.DSN, devPersons, devSeed, heldBy(a.Region), today)
			if err != nil {
				return fmt.Errorf("extend the change journal of %s: %w", o.DSN, err)
			}
			if n > 0 {
				log.Info("change journal carried to today", zap.String("db", o.DSN), zap.Int("cancellations", n))
			}
			continue
		}
		log.Info("seeding synthetic records (first run)", zap.Int("persons", devPersons), zap.String("db", o.DSN), zap.String("region", a.Region))
		// With the change journal through today, so the periodic
		// exchange of recent days has something to carry.
		err := sqlsource.SeedThrough(ctx, o.DSN, devPersons, devSeed, heldBy(a.Region), today, nil)
		if err != nil && !errors.Is(err, sqlsource.ErrNotEmpty) {
			return fmt.Errorf("seed %s: %w", o.DSN, err)
		}
	}
	return nil
}

// heldBy is what a bureau of region holds of the synthetic records of
// Jilin: a prefecture's or county's bureau the households registered under
// its code, the province all of them (nil).
func heldBy(region string) func(string) bool {
	switch {
	case len(region) != 6 || region[2:] == "0000":
		return nil
	case region[4:] == "00":
		return func(r string) bool { return r[:4] == region[:4] }
	default:
		return func(r string) bool { return r == region }
	}
}

// redactDSN hides a password in a DSN before it is printed.
func redactDSN(dsn string) string {
	if u, err := parseURL(dsn); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = userInfo(u.User.Username())
			return u.String()
		}
	}
	return dsn
}
