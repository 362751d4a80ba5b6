package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/config"
	"github.com/certless/certless/directory"
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
  run      build (or take the stored) batch of a period and publish it
  export   write a stored batch as files: manifest.jws and records/NNNNNN.jws
  verify   a receiver's check of such files, naming the first bad part`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(exchangeListCmd(g), exchangeRunCmd(g), exchangeExportCmd(g), exchangeVerifyCmd(g))
	return cmd
}

// schedule is one schedule of an agreement in force.
type schedule struct {
	info      policies.Info
	s         policies.Schedule
	recipient string
}

// schedules lists the schedules of the agreements in force at now.
func schedules(cfg *config.Config, now time.Time) ([]schedule, error) {
	reg, err := keys.LoadDir(cfg.KeysDir)
	if err != nil {
		return nil, err
	}
	set, _ := policies.LoadFor(cfg.PoliciesDir, reg, cfg.DataOwners)
	var out []schedule
	for _, in := range set.InForce(now) {
		for _, s := range in.Agreement.Schedules {
			r := s.Recipient
			if r == "" {
				r = in.Agreement.Parties.Requester
			}
			out = append(out, schedule{info: in, s: s, recipient: r})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].info.Ref.ID+"/"+out[i].s.Name < out[j].info.Ref.ID+"/"+out[j].s.Name
	})
	return out, nil
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
			ss, err := schedules(cfg, now)
			if err != nil {
				return err
			}
			st, err := exchange.Open(cmd.Context(), cfg.Store.DSN)
			if err != nil {
				return err
			}
			defer st.Close()
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "agreement\tschedule\tquery\trecipient\tcron (Beijing)\tperiods done\tlast batch\tnext due\t")
			for _, s := range ss {
				ps, err := exchange.Periods(s.s.Cron, s.info.Agreement.Validity.From, s.info.Agreement.Validity.Until, now)
				if err != nil {
					return err
				}
				last, err := st.Last(cmd.Context(), s.info.Ref.ID, s.s.Name)
				if err != nil {
					return err
				}
				next, _ := exchange.Next(s.s.Cron, now)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t\n", s.info.Ref.ID, s.s.Name, s.s.Query, s.recipient, s.s.Cron,
					len(ps), last, next.In(exchange.Beijing).Format("2006-01-02 15:04"))
			}
			return tw.Flush()
		},
	}
}

func exchangeRunCmd(g *globals) *cobra.Command {
	var agreementID, name, at string
	var sequence int
	var noSend bool
	cmd := &cobra.Command{
		Use:   "run --agreement ID --schedule NAME [--sequence N | --at TIME] [--no-send]",
		Short: "Build (or take the stored) batch of a period and publish it to the recipient's batches topic",
		Long: `Builds the batch of one period of a schedule from the configured record
sources — the most specific source covering the recipient's region — signed
with the broker's key, stores it (the first batch of a period is kept; a
re-run takes the stored one, byte for byte) and publishes it to
<prefix><recipient>.batches unless --no-send. The period is the last one
completed, or --sequence N, or the one containing --at (RFC 3339 or a date,
Beijing time).`,
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
			ss, err := schedules(cfg, now)
			if err != nil {
				return err
			}
			var s *schedule
			for i := range ss {
				if ss[i].info.Ref.ID == agreementID && ss[i].s.Name == name {
					s = &ss[i]
				}
			}
			if s == nil {
				return fmt.Errorf("no schedule %q in an agreement %s in force (certless exchange list)", name, agreementID)
			}
			ps, err := exchange.Periods(s.s.Cron, s.info.Agreement.Validity.From, s.info.Agreement.Validity.Until, now)
			if err != nil {
				return err
			}
			if len(ps) == 0 {
				next, _ := exchange.Next(s.s.Cron, now)
				return fmt.Errorf("no period of %s/%s has ended yet; the first ends %s", agreementID, name, next.In(exchange.Beijing).Format(time.RFC3339))
			}
			p := ps[len(ps)-1]
			switch {
			case sequence > 0:
				if sequence > len(ps) {
					return fmt.Errorf("period %d has not ended (%d have)", sequence, len(ps))
				}
				p = ps[sequence-1]
			case at != "":
				t, err := parseInstant(at)
				if err != nil {
					return usagef("--at: %v", err)
				}
				i := sort.Search(len(ps), func(i int) bool { return ps[i].To.After(t) })
				if i == len(ps) || t.Before(ps[i].From) {
					return fmt.Errorf("no ended period of %s/%s contains %s", agreementID, name, t.Format(time.RFC3339))
				}
				p = ps[i]
			}
			b, err := buildBatch(ctx, g, cfg, s, p)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "batch %s: %s/%s sequence %d, [%s, %s), %d records to %s\n", b.ID, agreementID, name, p.Sequence,
				p.From.In(exchange.Beijing).Format(time.RFC3339), p.To.In(exchange.Beijing).Format(time.RFC3339), b.Count, s.recipient)
			if noSend {
				return nil
			}
			return sendBatch(ctx, g, cfg, b)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&agreementID, "agreement", "", "agreement id")
	fl.StringVar(&name, "schedule", "", "the agreement's schedule name")
	fl.IntVar(&sequence, "sequence", 0, "the period's sequence number (default: the last ended)")
	fl.StringVar(&at, "at", "", "the ended period containing this time")
	fl.BoolVar(&noSend, "no-send", false, "build and store only")
	return cmd
}

// buildBatch returns the stored batch of period p, building and storing it
// first if there is none.
func buildBatch(ctx context.Context, g *globals, cfg *config.Config, s *schedule, p exchange.Period) (exchange.Stored, error) {
	st, err := exchange.Open(ctx, cfg.Store.DSN)
	if err != nil {
		return exchange.Stored{}, err
	}
	defer st.Close()
	if got, ok, err := st.Get(ctx, s.info.Ref.ID, s.s.Name, p.Sequence); err != nil || ok {
		return got, err
	}
	region, err := recipientRegion(ctx, cfg, s.recipient)
	if err != nil {
		return exchange.Stored{}, err
	}
	srcs, err := openSources(ctx, cfg, zap.NewNop(), broker.NewSourceMetrics(prometheus.NewRegistry()))
	if err != nil {
		return exchange.Stored{}, err
	}
	defer srcs.close()
	feed, feedName := srcs.feedFor(region)
	if feed == nil {
		return exchange.Stored{}, fmt.Errorf("no record source with a change feed covers %s", region)
	}
	key, err := keys.SigningKey(cfg.KeysDir, cfg.BrokerID, time.Now())
	if err != nil {
		return exchange.Stored{}, fmt.Errorf("the broker's signing key: %w", err)
	}
	set, err := schemas.Default()
	if err != nil {
		return exchange.Stored{}, err
	}
	terms := s.info.Agreement.Terms(s.s.Query)
	spec := exchange.Spec{
		Agreement: schemas.AgreementRef{ID: s.info.Ref.ID, Version: s.info.Ref.Version, Digest: s.info.Ref.Digest},
		Schedule:  s.s.Name, Recipient: s.recipient, Type: adapters.QueryType(s.s.Query), Region: region,
		From: p.From, To: p.To, Sequence: p.Sequence, Fields: terms.Fields,
	}
	if len(terms.Purposes) > 0 {
		spec.Purpose = terms.Purposes[0]
	}
	b, err := exchange.Build(ctx, feed, spec, cfg.BrokerID, key, set)
	if err != nil {
		return exchange.Stored{}, err
	}
	fmt.Fprintf(g.stderr, "built from %s (region %s)\n", feedName, region)
	return st.Put(ctx, s.info.Ref.ID, s.s.Name, s.recipient, p, b, time.Now())
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

// sendBatch publishes a stored batch: its records, then its manifest.
func sendBatch(ctx context.Context, g *globals, cfg *config.Config, b exchange.Stored) error {
	kc := kafkaConfig(cfg.Kafka)
	topic := broker.Topics{Prefix: cfg.Kafka.TopicPrefix}.Batches(b.Recipient)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := bkafka.EnsureTopics(ctx, kc, bkafka.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: cfg.Kafka.ReplicationFactor}); err != nil {
		return fmt.Errorf("batches topic: %w", bkafka.Explain(ctx, kc, err))
	}
	p, err := bkafka.NewProducer(kc, bkafka.ProducerOptions{})
	if err != nil {
		return err
	}
	defer p.Close()
	msgs := make([]bkafka.Message, 0, len(b.Records)+1)
	for i, r := range b.Records {
		msgs = append(msgs, bkafka.Message{Topic: topic, Key: []byte(b.ID), Value: r,
			Headers: []bkafka.Header{{Key: "certless-batch", Value: []byte(b.ID)}, {Key: "certless-batch-index", Value: []byte(fmt.Sprint(i))}}})
	}
	msgs = append(msgs, bkafka.Message{Topic: topic, Key: []byte(b.ID), Value: b.Manifest,
		Headers: []bkafka.Header{{Key: "certless-batch", Value: []byte(b.ID)}, {Key: "certless-batch-manifest", Value: []byte("1")}}})
	if err := p.Produce(ctx, msgs...); err != nil {
		return fmt.Errorf("publish batch %s: %w", b.ID, bkafka.Explain(ctx, kc, err))
	}
	st, err := exchange.Open(ctx, cfg.Store.DSN)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.MarkSent(ctx, b.ID, time.Now()); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "published %d records and the manifest to %s\n", len(b.Records), topic)
	return nil
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
	var jwksFile, brokerID string
	var sequence int
	cmd := &cobra.Command{
		Use:   "verify DIR [--jwks F] [--sequence N]",
		Short: "A receiver's check of an exported batch: signatures, sequence, count, digest and Merkle root; names the first bad part",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
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
			fmt.Fprintf(g.stdout, "batch verified: %s sequence %d, %s records of [%s, %s) to %s, Merkle root %s\n",
				m.Agreement.ID, m.Sequence, fmt.Sprint(m.Count), m.Period.From.Format(time.RFC3339), m.Period.To.Format(time.RFC3339), m.Recipient, m.MerkleRoot)
			return nil
		},
	}
	cmd.Flags().StringVar(&jwksFile, "jwks", "", "the broker's JWK set file (default: the keys folder's)")
	cmd.Flags().StringVar(&brokerID, "broker-id", "", "the broker's id (default: the configuration's)")
	cmd.Flags().IntVar(&sequence, "sequence", 0, "the sequence number expected next (a replayed old batch fails)")
	return cmd
}
