package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/bench"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// benchOptions are the flags of `certless bench`.
type benchOptions struct {
	requests  int
	rate      float64  // msg/s; 0: as fast as the window allows
	agencies  []string // send as these agencies; empty: every configured one
	inFlight  int      // most requests sent and not yet receipted; 0: no limit
	mode      string   // serve, embedded or running
	kafka     string   // brokers of serve and running
	postgres  string   // serve: an administrative DSN of a PostgreSQL cluster
	db        string   // embedded: the decision store DSN
	persons   int      // serve: persons seeded in the SQL record source
	serveBin  string   // serve: the certless binary to run (default this one)
	instances int      // serve: broker processes in one consumer group
	timeout   time.Duration
	verify    int    // receipts verified offline after the run
	profile   string // CPU profile of the measured phase, when set
	jsonOut   string
	halfLoad  bool // serve and embedded: also a run paced at half the saturation rate
	ceiling   bool // also the bare echo through the same cluster
	verbose   bool
	// soak, when positive, is how long to run at soakRate (default half
	// the saturation rate) after the other runs, sampled every soakEvery.
	soak, soakEvery time.Duration
	soakRate        float64
}

// soakInterval is the sampling interval of a soak of d: every, or else
// 10 s or a sixtieth of d, whichever is longer.
func soakInterval(d, every time.Duration) time.Duration {
	if every > 0 {
		return every
	}
	return max(10*time.Second, d/60)
}

const (
	benchServe    = "serve"
	benchEmbedded = "embedded"
	benchRunning  = "running"
)

func newBenchCmd(g *globals) *cobra.Command {
	o := benchOptions{}
	var out *outputFormat
	cmd := &cobra.Command{
		Use:   "bench [--mode serve|embedded|running]",
		Short: "Load-test the whole chain beside the transport ceiling and the crypto floor: throughput, latency, CPU per request",
		Long: `Pre-signs --requests verification requests (a mix of the agencies' allowed
query types over the seeded persons, some unknown subjects, some queries
outside the agreements), produces them within an in-flight window, reads
the receipt topics and times each request from the moment it is handed to
the producer until its receipt is read back. It prints, side by side:

  transport ceiling  the same messages, partitions and window through a bare
                     echo on the same cluster (consume, re-produce, commit)
  crypto floor       one JWS verify plus one JWS sign per request, µs
  pipeline           round trips per second at saturation; latency p50, p95,
                     p99 at half of that rate; the broker's CPU time per
                     request and peak RSS (serve mode)
  ratios             pipeline ÷ ceiling, broker CPU per request ÷ floor

Modes:
  serve (default)  'certless serve' in its own process against a real Kafka
                   and PostgreSQL (--kafka, --postgres; default the project's
                   services: eval "$(scripts/services.sh env)"): a fresh
                   decision database and topics, the dev agencies, keys and
                   agreements with their quotas, the SQL record source seeded
                   with --persons (kept between runs); CPU and RSS from the
                   broker process's own accounting. With --data DIR the
                   run is kept for 'certless --config DIR/bench.yaml report'
                   (the decision database stays); without, all is removed.
  embedded         the broker in this process on the in-process cluster and
                   SQLite (or --db); CPU is the whole process's.
  running          an already running broker on --kafka; keys, topic prefix
                   and agencies from the configuration.

Soak: --soak DURATION then sends a steady stream at half the saturation
rate (or --soak-rate R) for DURATION, signing each request as it falls
due, and every --soak-every (default 10 s or DURATION/60, whichever is
longer) samples the brokers' current RSS (/proc, VmRSS) and goroutines
(go_goroutines of their /metrics; summed over --instances), and the p99
latency and throughput of the requests answered in that interval; it
prints them as a table with a verdict per series. The verdict fits a
least-squares line through the samples after the first tenth (the
warm-up) and calls it a trend when the line's rise over the whole soak
reaches 10% of the series' mean for RSS and goroutines, 25% for p99, or
its fall 10% for throughput; fewer than three samples get no verdict.
A trend is reported, not an exit status. serve and embedded modes (in
embedded mode the figures are the whole process's).

Exits 1 if any request lacks a receipt or got two different ones, or a
sampled receipt does not verify. --json FILE writes the figures (with
--soak, the samples and the verdicts too); --output json prints them on
standard output instead of the summary, which then goes to standard error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := out.json()
			if err != nil {
				return err
			}
			if o.kafka == benchEmbedded && !cmd.Flags().Changed("mode") { // the old spelling
				o.mode, o.kafka = benchEmbedded, ""
			}
			switch {
			case o.requests <= 0:
				return usagef("--requests must be positive")
			case o.rate < 0 || math.IsInf(o.rate, 0) || math.IsNaN(o.rate):
				return usagef("--rate must be 0 (as fast as possible) or a positive rate")
			case o.inFlight < 0:
				return usagef("--in-flight must be 0 (no limit) or positive")
			case o.timeout <= 0:
				return usagef("--timeout must be positive")
			case o.mode != benchServe && o.mode != benchEmbedded && o.mode != benchRunning:
				return usagef("--mode: serve, embedded or running")
			case o.db != "" && o.mode != benchEmbedded:
				return usagef("--db sets the embedded broker's decision store; serve makes a fresh database, running uses the broker's")
			case o.mode == benchRunning && o.kafka == "":
				return usagef("--mode running needs --kafka host:port,... of the running broker's cluster")
			case o.persons < 1:
				return usagef("--persons must be positive")
			case o.instances < 1 || o.instances > 8:
				return usagef("--instances: 1 to 8")
			case o.instances > 1 && o.mode != benchServe:
				return usagef("--instances is for --mode serve")
			case o.soak < 0 || o.soakEvery < 0:
				return usagef("--soak and --soak-every must be positive durations")
			case o.soakRate < 0 || math.IsInf(o.soakRate, 0) || math.IsNaN(o.soakRate):
				return usagef("--soak-rate must be 0 (half the saturation rate) or a positive rate")
			case (o.soakEvery > 0 || o.soakRate > 0) && o.soak == 0:
				return usagef("--soak-every and --soak-rate shape a soak: give --soak DURATION")
			case o.soak > 0 && o.mode == benchRunning:
				return usagef("--soak is for --mode serve or embedded (it reads the broker's RSS and goroutines)")
			case o.soak > 0 && soakInterval(o.soak, o.soakEvery) > o.soak/2:
				return usagef("--soak-every must be at most half of --soak: a trend needs samples")
			}
			if o.mode == benchRunning && !cmd.Flags().Changed("persons") {
				o.persons = devPersons // the records a dev-configured broker reads
			}
			level := "warn"
			if o.verbose {
				level = "info"
			}
			if v := os.Getenv(config.EnvLogLevel); v != "" {
				level = v // as serve has it; the brokers of --mode serve inherit it
			}
			log, err := newLogger(config.Log{Level: level, Format: "console"}, g.stderr)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			rep, err := runBench(cmd.Context(), g, o, log)
			if rep != nil && asJSON { // the figures on stdout, the summary for people on stderr
				rep.print(g.stderr)
				if b, jerr := rep.jsonDoc(); jerr != nil {
					err = cmp.Or(err, jerr)
				} else if _, werr := g.stdout.Write(b); werr != nil {
					err = cmp.Or(err, werr)
				}
			} else if rep != nil {
				rep.print(g.stdout)
			}
			if rep != nil {
				if o.jsonOut != "" {
					if werr := rep.writeJSON(o.jsonOut); werr != nil && err == nil {
						err = werr
					}
				}
			}
			if err != nil {
				return err
			}
			return rep.err()
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.requests, "requests", 20000, "number of requests of the saturation run (the half-load run sends as many)")
	f.Float64Var(&o.rate, "rate", 0, "requests per second of the main run (0: as fast as the window allows)")
	f.StringSliceVar(&o.agencies, "agencies", nil, "comma-separated agency ids to send as (default: every configured agency)")
	f.IntVar(&o.inFlight, "in-flight", 1000, "most requests sent and not yet receipted (0: no limit)")
	f.StringVar(&o.mode, "mode", benchServe, "serve (certless serve in its own process on a real Kafka and PostgreSQL), embedded or running")
	f.StringVar(&o.kafka, "kafka", "", "host:port,... of the cluster (serve: default $CERTLESS_TEST_KAFKA; running: required)")
	f.StringVar(&o.postgres, "postgres", "", "serve: administrative postgres:// DSN where the bench creates its databases (default $CERTLESS_TEST_POSTGRES)")
	f.StringVar(&o.db, "db", "", "embedded: decision store DSN (default the data folder's SQLite file)")
	f.IntVar(&o.persons, "persons", 1000000, "serve: persons seeded in the SQL record source (its database is kept and reused)")
	f.IntVar(&o.instances, "instances", 1, "serve: broker processes in one consumer group on one database (scale-out)")
	f.StringVar(&o.serveBin, "serve-bin", "", "serve: the certless binary to run the broker with (default this one)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up when no request is sent and no receipt arrives for this long")
	f.IntVar(&o.verify, "verify", 100, "receipts verified offline against the broker JWKS after the run (a spread sample)")
	f.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of this process during the saturation run (embedded: broker, cluster and load generator)")
	f.StringVar(&o.jsonOut, "json", "", "write the figures to this JSON file")
	f.BoolVar(&o.halfLoad, "half-load", true, "also run paced at half the saturation rate, for latency (serve and embedded)")
	f.BoolVar(&o.ceiling, "ceiling", true, "also measure the bare echo through the same cluster")
	f.DurationVar(&o.soak, "soak", 0, "after the other runs, soak at half the saturation rate for this long, sampling RSS, goroutines, p99 and throughput (serve and embedded)")
	f.DurationVar(&o.soakEvery, "soak-every", 0, "the soak's sampling interval (default 10s or --soak/60, whichever is longer)")
	f.Float64Var(&o.soakRate, "soak-rate", 0, "the soak's rate in requests/s (default half the saturation rate)")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "show the broker's log (at info; $CERTLESS_LOG_LEVEL sets the level)")
	out = addOutputFlag(cmd)
	return cmd
}

// benchReport is what a bench measured.
type benchReport struct {
	Mode                 string
	Requests             int
	Agencies             []string
	Rate                 float64
	InFlight             int
	Kafka, Store         string
	Persons              int
	Instances            int           // broker processes (serve)
	Hint                 string        // what the run left behind, and how to report on it
	Pipeline             bench.Result  // the main run
	Half                 *bench.Result // paced at HalfRate
	HalfRate             float64
	Ceiling              *bench.Result
	FloorMicros          float64 // one verify plus one sign, µs
	CPUMicros            float64 // broker CPU per request of the main run, µs; 0 unknown
	CPUWhole             bool    // CPUMicros is the whole process's (embedded)
	RSSBytes             int64   // broker peak RSS; 0 unknown
	Verified             int
	VerifyFailed         int
	VerifyErrors         []string
	StoreRows, StoreTxns int64 // embedded broker only
	storeKnown           bool
	Stopped              string
	Soak                 *benchSoak
}

// benchSoak is what a soak measured.
type benchSoak struct {
	Rate            float64
	Duration, Every time.Duration
	Result          bench.SoakResult
	Trends          bench.SoakTrends
}

func (r *benchReport) err() error {
	p := r.Pipeline
	switch {
	case p.Answered < r.Requests:
		return fmt.Errorf("bench: %d of %d requests have no receipt (%d sent, %d lost)", r.Requests-p.Answered, r.Requests, p.Sent, p.Lost())
	case p.Conflicting > 0 || (r.Half != nil && r.Half.Conflicting > 0):
		return fmt.Errorf("bench: %d requests got two different receipts", p.Conflicting)
	case r.Half != nil && r.Half.Answered < r.Half.Requests:
		return fmt.Errorf("bench: the half-load run lost %d of %d requests", r.Half.Requests-r.Half.Answered, r.Half.Requests)
	case r.VerifyFailed > 0:
		return fmt.Errorf("bench: %d sampled receipts do not verify: %s", r.VerifyFailed, strings.Join(r.VerifyErrors, "; "))
	case r.Soak != nil && r.Soak.Result.Lost() > 0:
		return fmt.Errorf("bench: the soak lost %d of %d requests", r.Soak.Result.Lost(), r.Soak.Result.Sent)
	case r.Soak != nil && r.Soak.Result.Conflicting > 0:
		return fmt.Errorf("bench: %d soak requests got two different receipts", r.Soak.Result.Conflicting)
	case r.Soak != nil && len(r.Soak.Result.Samples) == 0:
		return fmt.Errorf("bench: the soak took no samples (%s)", orDash(r.Soak.Result.Stopped))
	}
	return nil
}

// benchSetup is what every mode hands the measuring: the cluster, the
// topics, the agencies and their keys, the subjects, and the broker.
type benchSetup struct {
	cfg      *config.Config
	kcfg     bkafka.Config
	topics   broker.Topics
	subjects benchSubjects
	// cpu and rss read the broker's accounting (nil: unknown); probe its
	// current RSS and goroutines, for a soak.
	cpu       func() (time.Duration, error)
	rss       func() (int64, error)
	probe     func(context.Context) (bench.Probe, error)
	cpuWhole  bool
	instances int
	store     func() (rows, txns int64) // embedded only
	label     string                    // Kafka, as printed
	hint      string                    // printed last: what was kept
	storeDSN  string
}

// runBench runs the bench. A report is returned whenever measuring began,
// also with an error, so that partial figures can be printed.
func runBench(ctx context.Context, g *globals, o benchOptions, log *zap.Logger) (*benchReport, error) {
	var (
		s       *benchSetup
		cleanup func()
		err     error
	)
	switch o.mode {
	case benchEmbedded:
		s, cleanup, err = benchEmbeddedSetup(ctx, g, o, log)
	case benchServe:
		s, cleanup, err = benchServeSetup(ctx, g, o, log)
	default:
		s, cleanup, err = benchRunningSetup(g, o)
	}
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		return nil, err
	}
	agencies, err := benchAgencies(s.cfg, o.agencies)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	signers := map[string]*keys.Private{}
	clients := map[string]*client.Client{}
	for _, a := range agencies {
		if signers[a.ID], err = keys.SigningKey(s.cfg.KeysDir, a.ID, now); err != nil {
			return nil, fmt.Errorf("signing key of %s: %w", a.ID, err)
		}
		// For its broker keys and decryption key: receipts are verified
		// offline after the run.
		if clients[a.ID], err = newAgencyClient(ctx, s.cfg, a.ID, ""); err != nil {
			return nil, err
		}
	}
	progress := func(what string) func(bench.Progress) {
		if !styled(g.stderr) { // a pipe or NO_COLOR: no carriage-return progress line
			return nil
		}
		return func(p bench.Progress) {
			fmt.Fprintf(g.stderr, "\r%-10s %6.1fs  sent %d/%d  receipts %d", what, p.Elapsed.Seconds(), p.Sent, p.Of, p.Answered)
			if p.Answered == p.Of {
				fmt.Fprintln(g.stderr)
			}
		}
	}
	// Sign everything before the clock starts: the run measures the
	// chain, not the load generator's signing.
	lifetime := benchLifetime(o, s.cfg.Limits.MaxLifetime.D())
	fmt.Fprintf(g.stderr, "signing %d requests\n", o.requests)
	plan, err := benchPlan(agencies, signers, s.topics, s.subjects, o.requests, now, lifetime, 0)
	if err != nil {
		return nil, err
	}
	warm, err := benchWarmups(agencies, signers, s.topics, s.subjects, now)
	if err != nil {
		return nil, err
	}
	rep := &benchReport{Mode: o.mode, Instances: s.instances, Hint: s.hint, Requests: o.requests, Rate: o.rate, InFlight: o.inFlight, Kafka: s.label, Store: s.storeDSN, Persons: len(s.subjects.persons)}
	if o.mode == benchServe {
		rep.Persons = o.persons
	}
	for _, a := range agencies {
		rep.Agencies = append(rep.Agencies, a.ID)
	}

	// The crypto floor, before any load.
	brokerKey, err := keys.SigningKey(s.cfg.KeysDir, s.cfg.BrokerID, now)
	if err != nil {
		return nil, fmt.Errorf("the broker's signing key (for the crypto floor): %w", err)
	}
	if rep.FloorMicros, err = cryptoFloor(plan, signers, brokerKey); err != nil {
		return nil, err
	}
	// The transport ceiling: the same messages through a bare echo.
	if o.ceiling {
		fmt.Fprintln(g.stderr, "transport ceiling: a bare echo through the same cluster")
		res, err := echoCeiling(ctx, s.kcfg, s.topics.Prefix, len(agencies)*max(s.cfg.Kafka.Partitions, 1), plan,
			bench.Options{InFlight: o.inFlight, Timeout: o.timeout, Progress: progress("ceiling")}, log)
		if err != nil {
			return nil, fmt.Errorf("transport ceiling: %w", err)
		}
		rep.Ceiling = &res
	}

	keep := map[int]bool{}
	if o.verify > 0 {
		step := max(1, o.requests/o.verify)
		for i := 0; i < o.requests && len(keep) < o.verify; i += step {
			keep[i] = true
		}
	}
	// connect feeds every agency's receipts to c and opens a producer;
	// stop ends the reading (the caller closes the producer).
	connect := func(c collector) (p benchProducer, stop func(), err error) {
		collectCtx, stopCollect := context.WithCancel(ctx)
		var collectors sync.WaitGroup
		var tails []*client.Tail
		stop = func() {
			stopCollect()
			for _, t := range tails {
				t.Close()
			}
			collectors.Wait()
		}
		for _, a := range agencies {
			t, err := client.TailTopic(ctx, s.kcfg, s.topics.Receipts(a.ID))
			if err != nil {
				stop()
				return p, nil, err
			}
			tails = append(tails, t)
			collectors.Add(1)
			go func() { defer collectors.Done(); c.Collect(collectCtx, receiptSource{t}) }()
		}
		producer, err := bkafka.NewProducer(s.kcfg, bkafka.ProducerOptions{Logger: log.Named("kafka")})
		if err != nil {
			stop()
			return p, nil, err
		}
		return benchProducer{producer}, stop, nil
	}
	run := func(reqs, warm []benchRequest, rate float64, what string, profile string) (bench.Result, string, time.Duration, error) {
		r := bench.New(benchRequests(reqs), benchRequests(warm), bench.Options{Rate: rate, InFlight: o.inFlight, Timeout: o.timeout,
			Keep: func(i int) bool { return keep[i] }, Progress: progress(what)})
		p, stop, err := connect(r)
		if err != nil {
			return bench.Result{}, "", 0, err
		}
		defer stop()
		defer p.p.Close()
		if len(warm) > 0 {
			// One request per agency answered before the clock starts, so
			// the group has its partitions and every connection is open.
			warmCtx, cancelWarm := context.WithTimeout(ctx, 60*time.Second+o.timeout)
			err = r.WarmUp(warmCtx, p)
			cancelWarm()
			if err != nil {
				return bench.Result{}, "", 0, fmt.Errorf("warm-up: the broker did not answer: %w", err)
			}
		}
		var cpu0 time.Duration
		if s.cpu != nil {
			if cpu0, err = s.cpu(); err != nil {
				return bench.Result{}, "", 0, err
			}
		}
		stopProfile := func() {}
		if profile != "" {
			if stopProfile, err = startCPUProfile(profile); err != nil {
				return bench.Result{}, "", 0, err
			}
		}
		why := r.Measure(ctx, p)
		stopProfile()
		var used time.Duration
		if s.cpu != nil {
			cpu1, err := s.cpu()
			if err != nil {
				return bench.Result{}, "", 0, err
			}
			used = cpu1 - cpu0
		}
		stop()
		return r.Result(), why, used, nil
	}

	var before [2]int64
	if s.store != nil {
		before[0], before[1] = s.store()
	}
	res, why, used, err := run(plan, warm, o.rate, "pipeline", o.profile)
	if err != nil {
		return nil, err
	}
	rep.Pipeline, rep.Stopped = res, why
	if s.store != nil {
		rows, txns := s.store()
		rep.StoreRows, rep.StoreTxns, rep.storeKnown = rows-before[0], txns-before[1], true
	}
	if s.cpu != nil && res.Answered > 0 {
		rep.CPUMicros, rep.CPUWhole = float64(used.Microseconds())/float64(res.Answered), s.cpuWhole
	}
	if ctx.Err() != nil || why != "" {
		return rep, nil // interrupted or stopped: report what was measured
	}
	verifySample(rep, plan, res, clients)

	if o.halfLoad && o.mode != benchRunning && res.Throughput() > 0 {
		rep.HalfRate = res.Throughput() / 2
		fmt.Fprintf(g.stderr, "half load: %.0f requests/s, signing %d requests\n", rep.HalfRate, o.requests)
		half, err := benchPlan(agencies, signers, s.topics, s.subjects, o.requests, time.Now(), lifetime, 1)
		if err != nil {
			return rep, err
		}
		hres, hwhy, _, err := run(half, nil, rep.HalfRate, "half load", "")
		if err != nil {
			return rep, err
		}
		rep.Half = &hres
		if hwhy != "" {
			rep.Stopped = "half load: " + hwhy
		}
	}
	if o.soak > 0 && rep.Stopped == "" && res.Throughput() > 0 {
		if rep.Soak, err = runSoak(ctx, g, o, s, res.Throughput()/2, agencies, signers, lifetime, connect); err != nil {
			return rep, err
		}
		if why := rep.Soak.Result.Stopped; why != "" {
			rep.Stopped = "soak: " + why
		}
	}
	if s.rss != nil {
		if rep.RSSBytes, err = s.rss(); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// collector is what reads receipts: a run or a soak.
type collector interface {
	Collect(ctx context.Context, src bench.Source)
}

// runSoak sends a steady stream at rate (or --soak-rate) for --soak,
// each request signed as it falls due, and samples the broker every
// --soak-every.
func runSoak(ctx context.Context, g *globals, o benchOptions, s *benchSetup, rate float64, agencies []config.Agency, signers map[string]*keys.Private,
	lifetime time.Duration, connect func(collector) (benchProducer, func(), error)) (*benchSoak, error) {
	if o.soakRate > 0 {
		rate = o.soakRate
	}
	every := soakInterval(o.soak, o.soakEvery)
	planner, err := newBenchPlanner(agencies, signers, s.topics, s.subjects, lifetime, 2)
	if err != nil {
		return nil, err
	}
	var probe func() (bench.Probe, error)
	if s.probe != nil {
		probe = func() (bench.Probe, error) {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			return s.probe(pctx)
		}
	}
	fmt.Fprintf(g.stderr, "soak: %.0f requests/s for %s, a sample every %s\n", rate, o.soak, every)
	sk := bench.NewSoak(func(i int) (bench.Request, error) {
		q, err := planner.request(planner.rng(uint64(i)), i, time.Now())
		if err != nil {
			return bench.Request{}, err
		}
		return benchRequests([]benchRequest{q})[0], nil
	}, bench.SoakOptions{Rate: rate, InFlight: o.inFlight, Duration: o.soak, Every: every, Timeout: o.timeout, Probe: probe,
		OnSample: func(smp bench.SoakSample) {
			fmt.Fprintf(g.stderr, "soak %8s  rss %6.1f MiB  goroutines %5d  p99 %8.1f ms  %6.0f msg/s\n", smp.At.Round(time.Second),
				float64(smp.RSS)/(1<<20), smp.Goroutines, float64(smp.P99)/float64(time.Millisecond), smp.Throughput)
		}})
	p, stop, err := connect(sk)
	if err != nil {
		return nil, err
	}
	defer stop()
	defer p.p.Close()
	res := sk.Run(ctx, p)
	out := &benchSoak{Rate: rate, Duration: o.soak, Every: every, Result: res}
	if len(res.Samples) > 0 {
		if out.Trends, err = bench.Trends(res.Samples); err != nil {
			return out, err
		}
	}
	return out, nil
}

// benchRequests turns the plan into the engine's requests.
func benchRequests(reqs []benchRequest) []bench.Request {
	out := make([]bench.Request, len(reqs))
	for i, q := range reqs {
		out[i] = bench.Request{ID: q.signed.Digest, Topic: q.msg.Topic, Key: q.msg.Key, Value: q.msg.Value}
	}
	return out
}

// benchProducer is a Kafka producer as the engine uses it.
type benchProducer struct{ p *bkafka.Producer }

func (b benchProducer) Produce(ctx context.Context, reqs ...bench.Request) error {
	msgs := make([]bkafka.Message, len(reqs))
	for i, r := range reqs {
		msgs[i] = bkafka.Message{Topic: r.Topic, Key: r.Key, Value: r.Value}
		for k, v := range r.Headers {
			msgs[i].Headers = append(msgs[i].Headers, bkafka.Header{Key: k, Value: []byte(v)})
		}
	}
	return b.p.Produce(ctx, msgs...)
}

// receiptSource reads a receipt topic as the engine's answers: the
// request digest and the decision from the broker's headers.
type receiptSource struct{ t *client.Tail }

func (r receiptSource) Next(ctx context.Context) (bench.Answer, error) {
	rec, err := r.t.Next(ctx)
	if err != nil {
		return bench.Answer{}, err
	}
	return bench.Answer{ID: rec.Headers["certless-request-digest"], Label: rec.Headers["certless-decision"], Value: rec.Value}, nil
}

// verifySample verifies the kept receipts offline, as an agency would.
func verifySample(rep *benchReport, plan []benchRequest, res bench.Result, clients map[string]*client.Client) {
	for _, i := range slices.Sorted(maps.Keys(res.Kept)) {
		q := plan[i]
		c := clients[q.agency]
		got, err := client.VerifyReceipt(res.Kept[i], c.Broker, client.Expect{RequestAgency: q.agency, RequestDigest: q.signed.Digest, Decrypt: c.Decrypt})
		if err == nil && got.Decision != res.Label[i] {
			err = fmt.Errorf("decision %s, header says %s", got.Decision, res.Label[i])
		}
		if err != nil {
			rep.VerifyFailed++
			if len(rep.VerifyErrors) < 3 {
				rep.VerifyErrors = append(rep.VerifyErrors, fmt.Sprintf("request %d: %v", i, err))
			}
			continue
		}
		rep.Verified++
	}
}

// benchEmbeddedSetup runs the broker in this process, as 'demo' does.
func benchEmbeddedSetup(ctx context.Context, g *globals, o benchOptions, log *zap.Logger) (*benchSetup, func(), error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	dataDir := g.dataDir
	temporary := dataDir == ""
	if temporary {
		tmp, err := os.MkdirTemp("", "certless-bench-")
		if err != nil {
			return nil, nil, err
		}
		cleanups = append(cleanups, func() { os.RemoveAll(tmp) })
		dataDir = tmp
	}
	cfg, err := ensureDevData(ctx, dataDir, log)
	if err != nil {
		return nil, cleanup, err
	}
	if o.db != "" {
		cfg.Store.DSN = o.db
	}
	svc, err := startService(ctx, cfg, log, serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"})
	if err != nil {
		return nil, cleanup, err
	}
	runCtx, stopBroker := context.WithCancel(ctx)
	brokerDone := make(chan error, 1)
	go func() { brokerDone <- svc.run(runCtx) }()
	cleanups = append(cleanups, func() {
		stopBroker()
		if err := <-brokerDone; err != nil {
			log.Error("embedded broker", zap.Error(err))
		}
	})
	store := cfg.Store.DSN
	if temporary && o.db == "" {
		store += " (temporary)"
	}
	s := &benchSetup{cfg: cfg, kcfg: svc.kafka, topics: svc.topics, subjects: sampleSubjects(devSeed, devPersons, 20000),
		cpu: processCPU(os.Getpid()), rss: processRSS(os.Getpid()), cpuWhole: true, probe: processProbe(os.Getpid()),
		store: func() (int64, int64) { st := svc.store.Stats(); return st.Rows, st.Batches },
		label: "embedded (in-process, " + strings.Join(svc.kafka.Brokers, ",") + ")", storeDSN: store}
	return s, cleanup, nil
}

// processProbe reads this process's current RSS and goroutines: the
// embedded broker's together with the load generator's.
func processProbe(pid int) func(context.Context) (bench.Probe, error) {
	return func(context.Context) (bench.Probe, error) {
		rss, err := processRSSNow(pid)()
		return bench.Probe{RSS: rss, Goroutines: runtime.NumGoroutine()}, err
	}
}

// benchRunningSetup targets an already running broker.
func benchRunningSetup(g *globals, o benchOptions) (*benchSetup, func(), error) {
	cfg, err := g.loadConfig(os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	cfg.Kafka.Brokers = strings.Split(o.kafka, ",")
	kcfg := kafkaConfig(cfg.Kafka)
	if err := kcfg.Validate(); err != nil {
		return nil, nil, usageError{fmt.Errorf("--kafka: %w", err)}
	}
	return &benchSetup{cfg: cfg, kcfg: kcfg, topics: broker.Topics{Prefix: cfg.Kafka.TopicPrefix},
		subjects: sampleSubjects(devSeed, o.persons, 20000), label: o.kafka}, nil, nil
}

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}

// benchAgencies resolves --agencies against the configuration.
func benchAgencies(cfg *config.Config, ids []string) ([]config.Agency, error) {
	if len(ids) == 0 {
		// The mix draws on each agency's allow entries: agencies without
		// any (docked, no agreement yet) have nothing to ask.
		var out []config.Agency
		for _, a := range cfg.Agencies {
			if len(a.Allow) > 0 {
				out = append(out, a)
			}
		}
		if len(out) == 0 {
			return nil, errors.New("no agencies with allowed queries configured")
		}
		return out, nil
	}
	var out []config.Agency
	for _, id := range ids {
		i := slices.IndexFunc(cfg.Agencies, func(a config.Agency) bool { return a.ID == id })
		if i < 0 {
			return nil, usagef("--agencies: %q is not a configured agency", id)
		}
		out = append(out, cfg.Agencies[i])
	}
	return out, nil
}

// benchLifetime keeps every request valid for the whole run: the expected
// duration twice over plus ten minutes, within the broker's limit.
func benchLifetime(o benchOptions, limit time.Duration) time.Duration {
	life := 10 * time.Minute
	if o.rate > 0 {
		life += 2 * time.Duration(float64(o.requests)/o.rate*float64(time.Second))
	} else {
		life += 2 * time.Duration(o.requests) * time.Millisecond
	}
	if limit > 0 && life > limit {
		life = limit
	}
	return life
}

// allQueries are the query types a request may carry.
var allQueries = []adapters.QueryType{
	adapters.QueryIdentity, adapters.QueryHousehold, adapters.QueryKinship, adapters.QueryFormerNames,
	adapters.QueryResidence, adapters.QueryHukouCancellation, adapters.QueryCriminalRecord,
}

// benchSubjects are the persons a plan asks about: a spread sample of the
// seeded persons, kinship pairs among them, and valid ID numbers of
// nobody.
type benchSubjects struct {
	persons []records.Person
	kin     [][2]records.Person
	unknown []string
}

// sampleSubjects streams the synthetic records of (seed, persons), as the
// record source was seeded, keeping about want persons and their kinship
// pairs, without holding the whole dataset.
func sampleSubjects(seed int64, persons, want int) benchSubjects {
	var s benchSubjects
	stride := max(1, persons/max(want, 1))
	g := records.NewGenerator(seed, persons)
	// unknownIDs needs the persons it could collide with: those of its
	// one county and birthday.
	taken := map[string]records.Person{}
	i := 0
	for {
		b, ok := g.Next()
		if !ok {
			break
		}
		byID := make(map[string]records.Person, len(b.Persons))
		for _, p := range b.Persons {
			byID[p.IDNumber] = p
			if strings.HasPrefix(p.IDNumber, "22240319850615") {
				taken[p.IDNumber] = p
			}
			if i%stride == 0 {
				s.persons = append(s.persons, p)
			}
			i++
		}
		if len(s.kin) < max(want/10, 1) {
			for _, k := range b.Kinship {
				a, okA := byID[k.PersonID]
				r, okR := byID[k.RelativeID]
				if okA && okR {
					s.kin = append(s.kin, [2]records.Person{a, r})
					break
				}
			}
		}
	}
	s.unknown = unknownIDs(taken, 64)
	return s
}

// benchPlan signs n requests, deterministically for (n, salt): each from a
// random agency; 85% one of its allowed queries about a seeded person
// (kinship about a seeded pair), 10% an allowed query about a person who
// does not exist, 5% a query outside its allow-list.
func benchPlan(agencies []config.Agency, signers map[string]*keys.Private, topics broker.Topics, subjects benchSubjects, n int, now time.Time, lifetime time.Duration, salt uint64) ([]benchRequest, error) {
	p, err := newBenchPlanner(agencies, signers, topics, subjects, lifetime, salt)
	if err != nil {
		return nil, err
	}
	rng := p.rng(uint64(n))
	out := make([]benchRequest, 0, n)
	for i := range n {
		q, err := p.request(rng, i, now)
		if err != nil {
			return nil, err
		}
		out = append(out, q)
	}
	return out, nil
}

// benchPlanner makes the requests of a plan one at a time: benchPlan
// draws them all from one generator; a soak, which cannot hold them all,
// uses one generator per request.
type benchPlanner struct {
	agencies []config.Agency
	signers  map[string]*keys.Private
	topics   broker.Topics
	subjects benchSubjects
	lifetime time.Duration
	salt     uint64
}

func newBenchPlanner(agencies []config.Agency, signers map[string]*keys.Private, topics broker.Topics, subjects benchSubjects, lifetime time.Duration, salt uint64) (*benchPlanner, error) {
	agencies = slices.DeleteFunc(slices.Clone(agencies), func(a config.Agency) bool { return len(a.Allow) == 0 })
	if len(agencies) == 0 {
		return nil, errors.New("no agencies with allowed queries")
	}
	if len(subjects.persons) == 0 {
		return nil, errors.New("no persons to ask about")
	}
	return &benchPlanner{agencies: agencies, signers: signers, topics: topics, subjects: subjects, lifetime: lifetime, salt: salt}, nil
}

// rng is the planner's generator for stream.
func (p *benchPlanner) rng(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(devSeed+p.salt, stream))
}

// request signs request i of the plan, drawing its choices from rng.
func (p *benchPlanner) request(rng *rand.Rand, i int, now time.Time) (benchRequest, error) {
	subj := func(p records.Person) schemas.Subject { return schemas.Subject{IDNumber: p.IDNumber, Name: p.Name} }
	subjects := p.subjects
	a := p.agencies[rng.IntN(len(p.agencies))]
	allow := a.Allow[rng.IntN(len(a.Allow))]
	r := client.Request{Query: allow.Query, Basis: "case-handling", CaseRef: fmt.Sprintf("BENCH-%d-%d", p.salt, i), Lifetime: p.lifetime}
	if len(allow.Purposes) > 0 {
		r.Basis = allow.Purposes[0]
	}
	r.Subject = subj(subjects.persons[rng.IntN(len(subjects.persons))])
	switch x := rng.Float64(); {
	case x < 0.05:
		if q, ok := notAllowed(a); ok {
			r.Query, r.Basis = string(q), "case-handling"
		}
	case x < 0.15:
		r.Subject = schemas.Subject{IDNumber: subjects.unknown[rng.IntN(len(subjects.unknown))], Name: "张三"}
	}
	if r.Query == string(adapters.QueryKinship) && len(subjects.kin) > 0 {
		k := subjects.kin[rng.IntN(len(subjects.kin))]
		r.Subject, r.Related = subj(k[0]), ptr(subj(k[1]))
	}
	s, err := client.Build(p.signers[a.ID], r, now)
	if err != nil {
		return benchRequest{}, err
	}
	return benchRequest{agency: a.ID, signed: s,
		msg: bkafka.Message{Topic: p.topics.Requests(a.ID), Key: []byte(s.ID), Value: s.Bytes}}, nil
}

// benchRequest is one pre-signed request of the run.
type benchRequest struct {
	agency string
	signed client.Signed
	msg    bkafka.Message
}

// benchWarmups signs one identity request per agency.
func benchWarmups(agencies []config.Agency, signers map[string]*keys.Private, topics broker.Topics, subjects benchSubjects, now time.Time) ([]benchRequest, error) {
	p := subjects.persons[0]
	var out []benchRequest
	for _, a := range agencies {
		s, err := client.Build(signers[a.ID], client.Request{Query: string(adapters.QueryIdentity),
			Subject: schemas.Subject{IDNumber: p.IDNumber, Name: p.Name}, Basis: "case-handling", CaseRef: "BENCH-WARMUP"}, now)
		if err != nil {
			return nil, err
		}
		out = append(out, benchRequest{agency: a.ID, signed: s,
			msg: bkafka.Message{Topic: topics.Requests(a.ID), Key: []byte(s.ID), Value: s.Bytes}})
	}
	return out, nil
}

func notAllowed(a config.Agency) (adapters.QueryType, bool) {
	for _, q := range allQueries {
		if !slices.ContainsFunc(a.Allow, func(x config.Allow) bool { return x.Query == string(q) }) {
			return q, true
		}
	}
	return "", false
}
