package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/certless/certless/adapters/regions"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/config"
	"github.com/certless/certless/directory"
	"github.com/certless/certless/exchange"
	"github.com/certless/certless/feedback"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/report"
	"github.com/certless/certless/translog"
)

func newReportCmd(g *globals) *cobra.Command {
	var from, to, level, region, agency, format, out string
	var deadline time.Duration
	cmd := &cobra.Command{
		Use:   "report --from T --to T [--level L] [--region CODE] [--agency ID] [--format html|json|csv] [--out FILE]",
		Short: "A supervision report (监督检查) of a period, signed by the broker, tied to the transparency log",
		Long: `Computes, from the decision store, per agency, level, region and query type
over [--from, --to): volumes; decisions by outcome and reason; latency
percentiles and the on-time rate against --deadline; quota pressure;
disputes and their time to resolution; overdue agreement proposals,
disputes and periodic-exchange batches; county figures rolled up into
their prefecture and the province; and anomalies with their evidence
(volume far above an agency's usual, bursts outside service hours, one
subject asked about by many agencies, purposes that do not fit, a sudden
rise in refusals).

The report names the newest checkpoint of the transparency log and
reconciles its decisions with the log: each decision's leaf is read back
and compared, and every decision leaf of the period is accounted for.

It writes FILE (default certless-report-<from>-<to>.<format>) and FILE.jws,
the broker's detached JWS over the file's bytes; 'certless report verify
FILE' checks it. Times are RFC 3339 or dates (Beijing time).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if from == "" || to == "" {
				return usagef("--from and --to are required")
			}
			f, err := parseInstant(from)
			if err != nil {
				return usagef("--from: %v", err)
			}
			t, err := parseInstant(to)
			if err != nil {
				return usagef("--to: %v", err)
			}
			if !f.Before(t) {
				return usagef("--from must be before --to")
			}
			switch level {
			case "", "province", "prefecture", "county":
			default:
				return usagef("--level: province, prefecture or county")
			}
			if format != report.FormatJSON && format != report.FormatCSV && format != report.FormatHTML {
				return usagef("--format: html, json or csv")
			}
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			if out == "" {
				out = reportFileName(report.Period{From: f, To: t}, format)
			}
			if !cmd.Flags().Changed("deadline") && cfg.Report.Deadline > 0 {
				deadline = cfg.Report.Deadline.D()
			}
			r, err := buildReport(ctx, cfg, nil, report.Filter{Level: level, Region: region, Agency: agency}, report.Period{From: f, To: t}, deadline, progressTo(g.stderr))
			if err != nil {
				return err
			}
			key, err := keys.SigningKey(cfg.KeysDir, cfg.BrokerID, time.Now())
			if err != nil {
				return fmt.Errorf("the broker's signing key (the report is signed with it): %w", err)
			}
			file, sig, err := writeSignedReport(r, format, key)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out, file, 0o644); err != nil {
				return err
			}
			if err := os.WriteFile(out+".jws", sig, 0o644); err != nil {
				return err
			}
			rc := r.Reconciliation
			state := "reconciled with the log"
			if !rc.Reconciled {
				state = "NOT reconciled with the log: " + strings.Join(rc.Differences, "; ")
			}
			fmt.Fprintf(g.stdout, "wrote %s and %s: %d decisions of %d agencies, %d anomalies; %s\n", out, filepath.Base(out)+".jws",
				r.Totals.Requests, len(r.Agencies), len(r.Anomalies), state)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "", "start of the period (RFC 3339 or YYYY-MM-DD, Beijing time)")
	fl.StringVar(&to, "to", "", "end of the period, excluded")
	fl.StringVar(&level, "level", "", "only agencies of this level: province, prefecture or county")
	fl.StringVar(&region, "region", "", "only agencies of this region code and below (e.g. 220800)")
	fl.StringVar(&agency, "agency", "", "only this agency")
	fl.StringVar(&format, "format", report.FormatHTML, "html, json or csv")
	fl.StringVar(&out, "out", "", "file to write (and FILE.jws beside it)")
	fl.DurationVar(&deadline, "deadline", report.DefaultDeadline, "the on-time deadline of a decision")
	cmd.AddCommand(reportVerifyCmd(g))
	return cmd
}

func reportVerifyCmd(g *globals) *cobra.Command {
	var jwksFile, brokerID, sigFile string
	cmd := &cobra.Command{
		Use:   "verify FILE [--jwks F] [--signature FILE.jws]",
		Short: "Check a report file against the broker's detached signature beside it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			bk, err := brokerKeysFor(cfg, jwksFile, brokerID)
			if err != nil {
				return err
			}
			file, err := readBounded(args[0], 256<<20)
			if err != nil {
				return err
			}
			sig, err := readBounded(cmp.Or(sigFile, args[0]+".jws"), 64<<10)
			if err != nil {
				return err
			}
			kid, err := report.VerifyDetached(sig, file, bk)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(g.stdout, "%s: signed by %s; the figures are as the broker wrote them\n", args[0], kid)
			return nil
		},
	}
	cmd.Flags().StringVar(&jwksFile, "jwks", "", "the broker's JWK set file (default: the keys folder's)")
	cmd.Flags().StringVar(&brokerID, "broker-id", "", "the broker's id (default: the configuration's)")
	cmd.Flags().StringVar(&sigFile, "signature", "", "the detached JWS (default: FILE.jws)")
	return cmd
}

// reportStore is what a report reads of the decision store and the log.
type reportStore interface {
	store.Rows
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	ReadLeaves(ctx context.Context, start int64, n int) ([][]byte, error)
}

// buildReport reads what a report needs: the decisions of the period and
// its baseline window, the directory's agencies, the disputes, what is
// overdue, and the log's newest checkpoint and leaves. It opens the
// configuration's store unless s is given; progress, when not nil, shows a
// bar for many decisions.
func buildReport(ctx context.Context, cfg *config.Config, s reportStore, f report.Filter, p report.Period, deadline time.Duration, progress io.Writer) (*report.Report, error) {
	now := time.Now()
	if s == nil {
		opened, err := store.Open(ctx, cfg.Store.DSN, store.Options{})
		if err != nil {
			return nil, err
		}
		defer opened.Close()
		s = opened
	}
	th := cfg.Report.Anomalies
	in := report.Input{Broker: cfg.BrokerID, GeneratedAt: now, Period: p, Filter: f, Deadline: deadline,
		Agencies: map[string]report.Agency{}, RegionName: regions.Name,
		Thresholds: report.Thresholds{BaselineDays: th.BaselineDays, VolumeFactor: th.VolumeFactor, MinVolume: th.MinVolume,
			OffHoursBurst: th.OffHoursBurst, SubjectAgencies: th.SubjectAgencies, SubjectWindow: report.Duration(th.SubjectWindow.D()),
			PurposeMismatch: th.PurposeMismatch, DenialRise: th.DenialRise}}
	for _, a := range cfg.Agencies {
		in.Agencies[a.ID] = report.Agency{ID: a.ID, Name: a.Name, Level: a.Level, Region: a.Region}
	}
	if dir, err := directory.Open(ctx, cfg.Store.DSN, nil); err == nil {
		snap, err := dir.Snapshot(ctx)
		dir.Close()
		if err != nil {
			return nil, err
		}
		for id, a := range snap.Agencies {
			in.Agencies[id] = report.Agency{ID: id, Name: a.Name, Level: a.Level, Region: a.Region}
		}
	}
	// What is overdue at the report's end (or now, if earlier).
	at := now
	if p.To.Before(now) {
		at = p.To
	}
	if fb, err := feedback.Open(ctx, cfg.Store.DSN); err == nil {
		ds, err := fb.List(ctx, feedback.Filter{})
		if err == nil {
			for _, d := range ds {
				rd := report.Dispute{Agency: d.Agency, Owner: d.Owner, Status: d.Status, OpenedAt: d.OpenedAt, Overdue: d.Overdue(at)}
				if d.Answered() {
					if evs, err := fb.Events(ctx, d.ID); err == nil {
						for _, e := range evs {
							if e.Status == "confirmed" || e.Status == "corrected" {
								rd.ResolvedAt = e.At
								break
							}
						}
					}
				}
				if rd.Overdue {
					in.Overdue.Disputes++
				}
				in.Disputes = append(in.Disputes, rd)
			}
		}
		fb.Close()
		if err != nil {
			return nil, err
		}
	}
	if reg, err := keys.LoadDir(cfg.KeysDir); err == nil {
		set, _ := policies.LoadFor(cfg.PoliciesDir, reg, cfg.DataOwners)
		for _, i := range set.Agreements() {
			if st, _ := i.StatusAt(at); st == policies.StatusProposed && i.Agreement.ReviewDeadline != nil && at.After(*i.Agreement.ReviewDeadline) {
				in.Overdue.Agreements = append(in.Overdue.Agreements, fmt.Sprintf("%s v%d", i.Ref.ID, i.Ref.Version))
			}
		}
	}
	if ex, err := exchange.Open(ctx, cfg.Store.DSN); err == nil {
		sums, err := ex.Summaries(ctx, at, cmp.Or(cfg.Exchange.AckDeadline.D(), exchange.DefaultAckDeadline))
		ex.Close()
		if err != nil {
			return nil, err
		}
		for _, m := range sums {
			if m.Overdue > 0 {
				in.Overdue.Batches = append(in.Overdue.Batches, report.OverdueBatches{Schedule: m.AgreementID + "/" + m.Schedule, Recipient: m.Recipient, Overdue: m.Overdue, Oldest: m.OldestOverdue})
			}
		}
	}
	if cp, err := s.LatestCheckpoint(ctx); err == nil && cp != nil {
		c, err := translog.ParseCheckpointBody(cp)
		if err != nil {
			return nil, err
		}
		in.Checkpoint = &report.Checkpoint{Origin: c.Origin, Size: c.N, RootHash: "sha256:" + hex.EncodeToString(c.Hash[:])}
	}
	b := report.NewBuilder(in)
	start := in.Thresholds.BaselineFrom(p.From)
	total, err := s.CountBetween(ctx, start, p.To)
	if err != nil {
		return nil, err
	}
	var bar *progressbar.ProgressBar
	if total > 20000 && progress != nil {
		bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(progress), progressbar.OptionSetDescription("reading decisions"),
			progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionOnCompletion(func() { fmt.Fprintln(progress) }))
	}
	n := 0
	err = s.Rows(ctx, start, p.To, func(r store.Row) error {
		b.Add(report.Decision{Agency: r.Agency, Query: r.Query, Outcome: r.Outcome, Reason: r.Reason, Type: r.Type,
			SubjectKey: r.SubjectKey, DecidedAt: r.DecidedAt, LatencyMicros: r.LatencyMicros, LeafIndex: r.LeafIndex})
		if n++; bar != nil && n%1000 == 0 {
			_ = bar.Set(n)
		}
		return nil
	})
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		return nil, err
	}
	return b.Report(ctx, func(ctx context.Context, start int64, n int) ([][]byte, error) { return s.ReadLeaves(ctx, start, n) })
}
