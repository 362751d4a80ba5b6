package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/directory"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/exchange"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/schemas"
)

func newExchangeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "exchange",
		Short: "Periodic exchange (定期交换): the agreements' schedules, their batches, and a receiver's verification",
		Long: `The schedules of the agreements in force push the records that changed in a
period — the day's hukou cancellations, say — to the agency they name, as a
batch: signed batch_record messages on <prefix><recipient>.batches, closed
by a signed batch_manifest with the count, the records' digest and their
RFC 6962 Merkle root. The first batch built for a period is that period's
batch: a re-run sends the same bytes. Schedules run in Beijing time.

  list     the schedules, their last batch and when the next is due
  status   each schedule's batches built, published, acknowledged, overdue
  run      build (or take the stored) batch of a period and publish it
  export   write a stored batch as files: manifest.jws and records/NNNNNN.jws
  verify   a receiver's check of such files, naming the first bad part`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(exchangeListCmd(g), exchangeStatusCmd(g), exchangeRunCmd(g), exchangeExportCmd(g), exchangeVerifyCmd(g))
	return cmd
}

// cliJobs lists the schedules of the agreements in force at now, as the
// broker would run them.
func cliJobs(cfg *config.Config, now time.Time) ([]exchange.Job, error) {
	reg, err := keys.LoadDir(cfg.KeysDir)
	if err != nil {
		return nil, err
	}
	set, _ := policies.LoadFor(cfg.PoliciesDir, reg, cfg.DataOwners)
	return exchangeJobs(set, now), nil
}

func findJob(jobs []exchange.Job, agreementID, name string) (exchange.Job, bool) {
	for _, j := range jobs {
		if j.Agreement.ID == agreementID && j.Schedule == name {
			return j, true
		}
	}
	return exchange.Job{}, false
}

func exchangeListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "The schedules of the agreements in force: last batch stored, next due",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			now := time.Now()
			jobs, err := cliJobs(cfg, now)
			if err != nil {
				return err
			}
			st, err := exchange.Open(cmd.Context(), cfg.Store.DSN)
			if err != nil {
				return err
			}
			defer st.Close()
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "agreement\tschedule\tquery\trecipient\tcron (Beijing)\tperiods ended\tlast batch\tlast period\tnext due\t")
			for _, j := range jobs {
				ps, err := exchange.Periods(j.Cron, j.From, j.Until, now)
				if err != nil {
					return err
				}
				last, err := st.Last(cmd.Context(), j.Agreement.ID, j.Schedule)
				if err != nil {
					return err
				}
				lastPeriod := "-"
				if len(ps) > 0 {
					p := ps[len(ps)-1]
					lastPeriod = fmt.Sprintf("%d [%s, %s)", p.Sequence, p.From.In(exchange.Beijing).Format("01-02 15:04"), p.To.In(exchange.Beijing).Format("01-02 15:04"))
				}
				next, _ := exchange.Next(j.Cron, now)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t\n", j.Agreement.ID, j.Schedule, j.Query, j.Recipient, j.Cron,
					len(ps), last, lastPeriod, next.In(exchange.Beijing).Format("2006-01-02 15:04"))
			}
			return tw.Flush()
		},
	}
}

func exchangeStatusCmd(g *globals) *cobra.Command {
	var deadline time.Duration
	cmd := &cobra.Command{
		Use:   "status [--deadline D]",
		Short: "Each schedule's batches: built, published, acknowledged, waiting and overdue for acknowledgement",
		Long: `Per schedule: the last sequence built, published and acknowledged, the
batches built but not yet published, those published and waiting for their
acknowledgement, and those waiting past the acknowledgement deadline
(exchange.ack_deadline, default 24h) — which the broker offers again, the
same bytes, and which raise certless_exchange_overdue. Exit 1 when any is
overdue.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			if deadline <= 0 {
				deadline = cmp.Or(cfg.Exchange.AckDeadline.D(), exchange.DefaultAckDeadline)
			}
			st, err := exchange.Open(cmd.Context(), cfg.Store.DSN)
			if err != nil {
				return err
			}
			defer st.Close()
			sums, err := st.Summaries(cmd.Context(), time.Now(), deadline)
			if err != nil {
				return err
			}
			if len(sums) == 0 {
				fmt.Fprintln(g.stdout, "no batch built yet (certless exchange list shows the schedules)")
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "agreement\tschedule\trecipient\tlast built\tlast sent\tlast acked\tunsent\tunacknowledged\toverdue\toffers\t")
			overdue := 0
			for _, m := range sums {
				od := fmt.Sprint(m.Overdue)
				if m.Overdue > 0 {
					od += fmt.Sprintf(" (oldest #%d)", m.OldestOverdue)
				}
				overdue += m.Overdue
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t\n", m.AgreementID, m.Schedule, m.Recipient, m.Last, m.LastSent, m.LastAcked,
					m.Unsent, m.Unacknowledged, od, m.Offers)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if overdue > 0 {
				return fmt.Errorf("%d batches unacknowledged past %s", overdue, deadline)
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&deadline, "deadline", 0, "acknowledgement deadline (default: the configuration's exchange.ack_deadline)")
	return cmd
}

func exchangeRunCmd(g *globals) *cobra.Command {
	var agreementID, name, period string
	var noSend bool
	cmd := &cobra.Command{
		Use:   "run --agreement ID --schedule NAME [--period P] [--no-send]",
		Short: "Build (or take the stored) batch of a period and publish it to the recipient's batches topic",
		Long: `The operator's run of one period of a schedule, the one the broker's
scheduler also runs: builds the batch from the record source with a change
feed covering the recipient's region, signed with the broker's key, stores
it (the first batch of a period is kept: a re-run takes the stored one,
byte for byte), logs its manifest in the transparency log, and publishes it
to <prefix><recipient>.batches unless --no-send. --period is the period's
sequence number, or a time or date (RFC 3339 or YYYY-MM-DD, Beijing time)
it contains; by default the last period ended.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if agreementID == "" || name == "" {
				return usagef("--agreement and --schedule are required")
			}
			ctx := cmd.Context()
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			now := time.Now()
			jobs, err := cliJobs(cfg, now)
			if err != nil {
				return err
			}
			job, ok := findJob(jobs, agreementID, name)
			if !ok {
				return fmt.Errorf("no schedule %q in an agreement %s in force (certless exchange list)", name, agreementID)
			}
			p, err := pickPeriod(job, now, period)
			if err != nil {
				return err
			}
			st, err := exchange.Open(ctx, cfg.Store.DSN)
			if err != nil {
				return err
			}
			defer st.Close()
			b, ok, err := st.Get(ctx, job.Agreement.ID, job.Schedule, p.Sequence)
			if err != nil {
				return err
			}
			if !ok {
				if b, err = cliBuild(ctx, g, cfg, st, job, p); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.stdout, "batch %s: %s/%s sequence %d, [%s, %s), %d records to %s\n", b.ID, agreementID, name, p.Sequence,
				p.From.In(exchange.Beijing).Format(time.RFC3339), p.To.In(exchange.Beijing).Format(time.RFC3339), b.Count, job.Recipient)
			if noSend {
				return nil
			}
			return cliSend(ctx, g, cfg, st, b)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&agreementID, "agreement", "", "agreement id")
	fl.StringVar(&name, "schedule", "", "the agreement's schedule name")
	fl.StringVar(&period, "period", "", "the period: its sequence number, or a time or date it contains (default: the last ended)")
	fl.BoolVar(&noSend, "no-send", false, "build and store only")
	return cmd
}

// pickPeriod is the ended period of job that spec names (a sequence
// number, or a time or date it contains), the last ended when spec is "".
func pickPeriod(job exchange.Job, now time.Time, spec string) (exchange.Period, error) {
	ps, err := exchange.Periods(job.Cron, job.From, job.Until, now)
	if err != nil {
		return exchange.Period{}, err
	}
	if len(ps) == 0 {
		next, _ := exchange.Next(job.Cron, now)
		return exchange.Period{}, fmt.Errorf("no period of %s has ended yet; the first ends %s", job.Key(), next.In(exchange.Beijing).Format(time.RFC3339))
	}
	if spec == "" {
		return ps[len(ps)-1], nil
	}
	if n, err := strconv.Atoi(spec); err == nil {
		if n < 1 || n > len(ps) {
			return exchange.Period{}, fmt.Errorf("period %d of %s has not ended (%d have)", n, job.Key(), len(ps))
		}
		return ps[n-1], nil
	}
	t, err := parseInstant(spec)
	if err != nil {
		return exchange.Period{}, usagef("--period: a sequence number, or %v", err)
	}
	i := sort.Search(len(ps), func(i int) bool { return ps[i].To.After(t) })
	if i == len(ps) || t.Before(ps[i].From) {
		return exchange.Period{}, fmt.Errorf("no ended period of %s contains %s", job.Key(), t.Format(time.RFC3339))
	}
	return ps[i], nil
}

// cliBuild builds and stores a period's batch from the configured sources.
func cliBuild(ctx context.Context, g *globals, cfg *config.Config, st *exchange.Store, job exchange.Job, p exchange.Period) (exchange.Stored, error) {
	srcs, err := openSources(ctx, cfg, zap.NewNop(), broker.NewSourceMetrics(prometheus.NewRegistry()))
	if err != nil {
		return exchange.Stored{}, err
	}
	defer srcs.close()
	set, err := schemas.Default()
	if err != nil {
		return exchange.Stored{}, err
	}
	bb := &batchBuilder{brokerID: cfg.BrokerID, feed: srcs.feedFor, set: set,
		region: func(ctx context.Context, agency string) (string, error) { return recipientRegion(ctx, cfg, agency) },
		key:    func() (*keys.Private, error) { return keys.SigningKey(cfg.KeysDir, cfg.BrokerID, time.Now()) }}
	b, err := bb.build(ctx, job, p)
	if err != nil {
		return exchange.Stored{}, err
	}
	stored, _, err := st.Put(ctx, job.Agreement.ID, job.Schedule, job.Recipient, p, b, time.Now())
	return stored, err
}

// cliSend logs and publishes a stored batch (again, when it was).
func cliSend(ctx context.Context, g *globals, cfg *config.Config, st *exchange.Store, b exchange.Stored) error {
	ds, err := store.Open(ctx, cfg.Store.DSN, store.Options{})
	if err != nil {
		return err
	}
	defer ds.Close()
	kc := kafkaConfig(cfg.Kafka)
	prod, err := bkafka.NewProducer(kc, bkafka.ProducerOptions{})
	if err != nil {
		return err
	}
	defer prod.Close()
	pub := &batchPublisher{kafka: kc, topics: broker.Topics{Prefix: cfg.Kafka.TopicPrefix}, replication: cfg.Kafka.ReplicationFactor, producer: prod}
	ok, err := st.Offer(ctx, b.ID, time.Now(), func(exchange.Stored) bool { return true }, func(ctx context.Context, b exchange.Stored) error {
		if err := logBatch(ctx, ds, b); err != nil {
			return err
		}
		return pub.publish(ctx, b)
	})
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("batch %s is being published by a running broker right now; try again", b.ID)
	}
	fmt.Fprintf(g.stdout, "published %d records and the manifest to %s\n", len(b.Records), pub.topics.Batches(b.Recipient))
	return nil
}

// recipientRegion is the recipient's region in the docking directory (else
// the configuration's): the jurisdiction whose residents' changes it
// receives.
func recipientRegion(ctx context.Context, cfg *config.Config, agency string) (string, error) {
	if dir, err := directory.Open(ctx, cfg.Store.DSN, nil); err == nil {
		defer dir.Close()
		if a, ok, err := dir.Get(ctx, agency); err == nil && ok {
			return a.Region, nil
		}
	}
	for _, a := range cfg.Agencies {
		if a.ID == agency && a.Region != "" {
			return a.Region, nil
		}
	}
	return "", fmt.Errorf("the recipient %s is not docked", agency)
}

func exchangeExportCmd(g *globals) *cobra.Command {
	var id, out string
	cmd := &cobra.Command{
		Use:   "export --batch ID --out DIR",
		Short: "Write a stored batch as files: DIR/manifest.jws and DIR/records/NNNNNN.jws",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if id == "" || out == "" {
				return usagef("--batch and --out are required")
			}
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			st, err := exchange.Open(cmd.Context(), cfg.Store.DSN)
			if err != nil {
				return err
			}
			defer st.Close()
			b, ok, err := st.ByID(cmd.Context(), id)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("no batch %s", id)
			}
			if err := os.MkdirAll(filepath.Join(out, "records"), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(out, "manifest.jws"), b.Manifest, 0o644); err != nil {
				return err
			}
			for i, r := range b.Records {
				if err := os.WriteFile(filepath.Join(out, "records", fmt.Sprintf("%06d.jws", i)), r, 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(g.stdout, "wrote %s: manifest.jws and %d records\n", out, len(b.Records))
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "batch", "", "batch id (exchange run prints it)")
	cmd.Flags().StringVar(&out, "out", "", "directory to write")
	return cmd
}

func exchangeVerifyCmd(g *globals) *cobra.Command {
	var jwksFile, brokerID, topic string
	var sequence int
	cmd := &cobra.Command{
		Use:   "verify DIR | --topic T [--jwks F] [--sequence N]",
		Short: "A receiver's check of a batch (exported files) or of a whole batches topic; names the first bad part",
		Long: `Checks what a receiver holds, offline, with the broker's public keys
(--jwks, default the keys folder's): the manifest's and every record's
signature, that each record belongs to the manifest's agreement, type and
sequence, the count, the records' digest and the RFC 6962 Merkle root.

  verify DIR        files written by 'exchange export': DIR/manifest.jws and
                    DIR/records/*.jws; names the first bad record file
  verify --topic T  every batch on a batches topic, in order: also that a
                    part published again (a crash, an offer made again)
                    has the same bytes, and that each schedule's sequence
                    numbers run on without a gap or a step back (a
                    replayed old batch)

--sequence N is the sequence the receiver expects (of the batch in DIR, or
the first on the topic).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 1) == (topic != "") {
				return usagef("give a directory or --topic, one of them")
			}
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			bk, err := brokerKeysFor(cfg, jwksFile, brokerID)
			if err != nil {
				return err
			}
			set, err := schemas.Default()
			if err != nil {
				return err
			}
			if topic != "" {
				return verifyTopic(cmd.Context(), g, cfg, topic, bk, set, sequence)
			}
			dir := args[0]
			manifest, err := readBounded(filepath.Join(dir, "manifest.jws"), 1<<20)
			if err != nil {
				return err
			}
			files, err := filepath.Glob(filepath.Join(dir, "records", "*.jws"))
			if err != nil {
				return err
			}
			sort.Strings(files)
			var recs [][]byte
			for _, f := range files {
				b, err := readBounded(f, 1<<20)
				if err != nil {
					return err
				}
				recs = append(recs, b)
			}
			v, err := exchange.Verify(manifest, recs, bk, set, sequence)
			if err != nil {
				// Name the file of a part given by its file order.
				msg := err.Error()
				for i, f := range files {
					tag := fmt.Sprintf("part %d (file order)", i)
					if strings.Contains(msg, tag) {
						msg = strings.Replace(msg, tag, "record file "+filepath.Base(f), 1)
						break
					}
				}
				return errors.New(msg)
			}
			m := v.Manifest
			fmt.Fprintf(g.stdout, "batch verified: %s sequence %d, %d records of [%s, %s) to %s, Merkle root %s\n",
				m.Agreement.ID, m.Sequence, m.Count, m.Period.From.Format(time.RFC3339), m.Period.To.Format(time.RFC3339), m.Recipient, m.MerkleRoot)
			return nil
		},
	}
	cmd.Flags().StringVar(&jwksFile, "jwks", "", "the broker's JWK set file (default: the keys folder's)")
	cmd.Flags().StringVar(&brokerID, "broker-id", "", "the broker's id (default: the configuration's)")
	cmd.Flags().StringVar(&topic, "topic", "", "verify every batch on this batches topic (e.g. social-security-baicheng.batches)")
	cmd.Flags().IntVar(&sequence, "sequence", 0, "the sequence number expected (a replayed old batch fails)")
	return cmd
}

// maxTopicParts bounds what verify --topic reads.
const maxTopicParts = 1 << 20

// verifyTopic reads a batches topic from its start and verifies it.
func verifyTopic(ctx context.Context, g *globals, cfg *config.Config, topic string, bk envelope.KeyResolver, set *schemas.Set, from int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	kc := kafkaConfig(cfg.Kafka)
	recs, err := client.ReadTopic(ctx, kc, topic, 0, maxTopicParts)
	if err != nil {
		return fmt.Errorf("read %s: %w", topic, bkafka.Explain(ctx, kc, err))
	}
	parts, err := batchParts(recs)
	if err != nil {
		return err
	}
	batches, pending, err := exchange.VerifyStream(parts, bk, set, from)
	for _, b := range batches {
		m := b.Manifest
		again := ""
		if b.Offers > 1 {
			again = fmt.Sprintf(", offered %d times", b.Offers)
		}
		fmt.Fprintf(g.stdout, "batch %s verified: %s sequence %d, %d records of [%s, %s)%s\n", b.ID, b.Stream, m.Sequence, m.Count,
			m.Period.From.In(exchange.Beijing).Format(time.RFC3339), m.Period.To.In(exchange.Beijing).Format(time.RFC3339), again)
	}
	if err != nil {
		return err
	}
	for _, id := range pending {
		fmt.Fprintf(g.stdout, "batch %s: parts without a manifest yet (still being published, or cut off)\n", id)
	}
	fmt.Fprintf(g.stdout, "%s: %d batches verified, %d messages read\n", topic, len(batches), len(recs))
	return nil
}
