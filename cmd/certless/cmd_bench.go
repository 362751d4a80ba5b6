package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// benchOptions are the flags of `certless bench`.
type benchOptions struct {
	requests int
	rate     float64       // msg/s; 0: as fast as the window allows
	agencies []string      // send as these agencies; empty: every configured one
	inFlight int           // most requests sent and not yet receipted; 0: no limit
	kafka    string        // "embedded" or a comma-separated broker list
	db       string        // decision store DSN of the embedded broker
	timeout  time.Duration // give up after this long without progress
	verify   int           // receipts verified offline after the run
	profile  string        // CPU profile of the measured phase, when set
	verbose  bool
}

const benchEmbedded = "embedded"

func newBenchCmd(g *globals) *cobra.Command {
	o := benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test the whole chain: signed requests in, receipts out; throughput and end-to-end latency",
		Long: `Pre-sign --requests verification requests (a mix of the agencies' allowed
query types over the seeded synthetic persons, with some unknown subjects
and some queries outside the allow-list), produce them at --rate, read the
receipt topics and time each request from the moment it is handed to the
producer until its receipt is read back (matched by the
certless-request-digest header). Prints throughput, latency percentiles and
the decision mix; a sample of receipts is verified offline against the
broker's JWKS afterwards. Exits 1 if any request lacks a receipt.

--kafka embedded (default) runs the broker in this process, as 'demo' does:
an in-process Kafka-protocol cluster on a free loopback port, the dev keys
and synthetic records, and an SQLite decision store (or --db). Its data
folder is a fresh temporary one, removed afterwards, unless --data names
one; the bench then reuses and adds to it. The broker, the cluster and the
load generator share this machine's CPUs.

--kafka host:port,... targets an already running broker ('certless serve')
on that cluster instead; keys, topic prefix and agencies come from the
configuration (--config / --data). Its mix assumes the dev synthetic records.

--in-flight bounds the requests sent and not yet receipted: when the broker
falls behind, sending waits, so the offered rate drops below --rate
(reported) and latency stays a measure of the broker, not of a backlog.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.requests <= 0 {
				return usagef("--requests must be positive")
			}
			if o.rate < 0 || math.IsInf(o.rate, 0) || math.IsNaN(o.rate) {
				return usagef("--rate must be 0 (as fast as possible) or a positive rate")
			}
			if o.inFlight < 0 {
				return usagef("--in-flight must be 0 (no limit) or positive")
			}
			if o.timeout <= 0 {
				return usagef("--timeout must be positive")
			}
			if o.kafka == "" {
				return usagef("--kafka needs %q or a broker list", benchEmbedded)
			}
			if o.db != "" && o.kafka != benchEmbedded {
				return usagef("--db sets the embedded broker's decision store; with --kafka %s the running broker's own store is used", o.kafka)
			}
			level := "warn"
			if o.verbose {
				level = "info"
			}
			log, err := newLogger(config.Log{Level: level, Format: "console"}, g.stderr)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			rep, err := runBench(cmd.Context(), g, o, log)
			if rep != nil {
				rep.print(g.stdout)
			}
			if err != nil {
				return err
			}
			return rep.err()
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.requests, "requests", 5000, "number of requests to send")
	f.Float64Var(&o.rate, "rate", 0, "requests per second (0: as fast as possible)")
	f.StringSliceVar(&o.agencies, "agencies", nil, "comma-separated agency ids to send as (default: every configured agency)")
	f.IntVar(&o.inFlight, "in-flight", 1000, "most requests sent and not yet receipted (0: no limit)")
	f.StringVar(&o.kafka, "kafka", benchEmbedded, `"embedded" (run a broker in this process) or host:port,... of a cluster with a running broker`)
	f.StringVar(&o.db, "db", "", "decision store DSN of the embedded broker (postgres://... or an SQLite path; default: the data folder's SQLite file)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up when no request is sent and no receipt arrives for this long")
	f.IntVar(&o.verify, "verify", 100, "receipts verified offline against the broker JWKS after the run (a spread sample)")
	f.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of this process (with --kafka embedded: broker, cluster and load generator) during the measured phase")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "show the embedded broker's log")
	return cmd
}

// benchRequest is one pre-signed request of the run.
type benchRequest struct {
	agency string
	signed client.Signed
	msg    bkafka.Message
}

// benchReport is what a run measured.
type benchReport struct {
	Requests, Sent, Receipts         int
	Duplicates, Conflicting, Foreign int
	Verified, VerifyFailed           int
	Agencies                         []string
	Rate                             float64
	InFlight                         int
	Kafka, Store                     string
	SendSpan, Span                   time.Duration // first send → last send; first send → last receipt
	Latencies                        []time.Duration
	Decisions                        map[string]int
	// WarmUp are the decisions of the warm-up requests, one per agency,
	// answered before the clock starts: not in the figures above, but
	// decisions all the same (a report of the period counts them).
	WarmUp               map[string]int
	StoreRows, StoreTxns int64  // embedded broker only
	Stopped              string // why the run ended early, if it did
	VerifyErrors         []string
	storeKnown           bool
}

// Lost is the number of requests sent that have no receipt.
func (r *benchReport) Lost() int { return r.Sent - r.Receipts }

func (r *benchReport) err() error {
	switch {
	case r.Receipts < r.Requests:
		return fmt.Errorf("bench: %d of %d requests have no receipt (%d sent, %d lost)", r.Requests-r.Receipts, r.Requests, r.Sent, r.Lost())
	case r.Conflicting > 0:
		return fmt.Errorf("bench: %d requests got two different receipts", r.Conflicting)
	case r.VerifyFailed > 0:
		return fmt.Errorf("bench: %d sampled receipts do not verify: %s", r.VerifyFailed, strings.Join(r.VerifyErrors, "; "))
	}
	return nil
}

// runBench runs the load test. A report is returned whenever the run
// started, also with an error, so that partial figures can be printed.
func runBench(ctx context.Context, g *globals, o benchOptions, log *zap.Logger) (*benchReport, error) {
	var (
		cfg    *config.Config
		kcfg   bkafka.Config
		topics broker.Topics
		svc    *service
		err    error
		// temporary: the embedded broker's data folder is removed afterwards.
		temporary bool
	)
	if o.kafka == benchEmbedded {
		dataDir := g.dataDir
		if temporary = dataDir == ""; temporary {
			tmp, err := os.MkdirTemp("", "certless-bench-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(tmp)
			dataDir = tmp
		}
		if cfg, err = ensureDevData(ctx, dataDir, log); err != nil {
			return nil, err
		}
		if o.db != "" {
			cfg.Store.DSN = o.db
		}
		if svc, err = startService(ctx, cfg, log, serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"}); err != nil {
			return nil, err
		}
		runCtx, stopBroker := context.WithCancel(ctx)
		brokerDone := make(chan error, 1)
		go func() { brokerDone <- svc.run(runCtx) }()
		defer func() {
			stopBroker()
			if err := <-brokerDone; err != nil {
				log.Error("embedded broker", zap.Error(err))
			}
		}()
		kcfg, topics = svc.kafka, svc.topics
	} else {
		if cfg, err = g.loadConfig(os.Getenv); err != nil {
			return nil, err
		}
		cfg.Kafka.Brokers = strings.Split(o.kafka, ",")
		kcfg = kafkaConfig(cfg.Kafka)
		if err := kcfg.Validate(); err != nil {
			return nil, usageError{fmt.Errorf("--kafka: %w", err)}
		}
		topics = broker.Topics{Prefix: cfg.Kafka.TopicPrefix}
	}

	agencies, err := benchAgencies(cfg, o.agencies)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	signers := map[string]*keys.Private{}
	clients := map[string]*client.Client{}
	for _, a := range agencies {
		if signers[a.ID], err = keys.SigningKey(cfg.KeysDir, a.ID, now); err != nil {
			return nil, fmt.Errorf("signing key of %s: %w", a.ID, err)
		}
		// Only for its broker keys and decryption key: receipts are
		// verified offline after the run.
		if clients[a.ID], err = newAgencyClient(ctx, cfg, a.ID, ""); err != nil {
			return nil, err
		}
	}

	// Sign everything before the clock starts: the run measures the chain,
	// not the load generator's signing.
	lifetime := benchLifetime(o, cfg.Limits.MaxLifetime.D())
	reqs, err := benchPlan(agencies, signers, topics, o.requests, now, lifetime)
	if err != nil {
		return nil, err
	}
	warm, err := benchWarmups(agencies, signers, topics, now)
	if err != nil {
		return nil, err
	}

	rep := &benchReport{Requests: o.requests, Rate: o.rate, InFlight: o.inFlight, Kafka: o.kafka, Decisions: map[string]int{}}
	for _, a := range agencies {
		rep.Agencies = append(rep.Agencies, a.ID)
	}
	if svc != nil {
		rep.Kafka = "embedded (in-process, " + strings.Join(kcfg.Brokers, ",") + ")"
		rep.Store = cfg.Store.DSN
		if temporary && o.db == "" {
			rep.Store += " (temporary)"
		}
	}

	run := newBenchRun(reqs, warm, o)
	var tails []*client.Tail
	defer func() {
		for _, t := range tails {
			t.Close()
		}
	}()
	collectCtx, stopCollect := context.WithCancel(ctx)
	defer stopCollect()
	var collectors sync.WaitGroup
	defer collectors.Wait()
	defer stopCollect()
	for _, a := range agencies {
		t, err := client.TailTopic(ctx, kcfg, topics.Receipts(a.ID))
		if err != nil {
			return nil, err
		}
		tails = append(tails, t)
		collectors.Add(1)
		go func() {
			defer collectors.Done()
			run.collect(collectCtx, t)
		}()
	}
	producer, err := bkafka.NewProducer(kcfg, bkafka.ProducerOptions{Logger: log.Named("kafka")})
	if err != nil {
		return nil, err
	}
	defer producer.Close()

	// Warm up: one request per agency, answered before the clock starts, so
	// the consumer group has its partitions and every connection is open.
	warmCtx, cancelWarm := context.WithTimeout(ctx, 60*time.Second+o.timeout)
	err = run.warmUp(warmCtx, producer)
	cancelWarm()
	if err != nil {
		return nil, fmt.Errorf("warm-up: the broker did not answer: %w", err)
	}
	var before [2]int64
	if svc != nil {
		st := svc.store.Stats()
		before = [2]int64{st.Rows, st.Batches}
	}

	stopProfile := func() {}
	if o.profile != "" {
		if stopProfile, err = startCPUProfile(o.profile); err != nil {
			return nil, err
		}
		defer stopProfile()
	}
	rep.Stopped = run.measure(ctx, producer)
	stopProfile()

	if svc != nil {
		st := svc.store.Stats()
		rep.StoreRows, rep.StoreTxns, rep.storeKnown = st.Rows-before[0], st.Batches-before[1], true
	}
	stopCollect()
	for _, t := range tails {
		t.Close()
	}
	tails = nil
	collectors.Wait()
	run.fill(rep)
	if ctx.Err() != nil {
		return rep, nil // interrupted: report what was measured
	}
	run.verifySample(rep, clients)
	return rep, nil
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

// benchPlan signs n requests, deterministically: each from a random agency;
// 85% one of its allowed queries about a seeded person (kinship about a
// seeded pair), 10% an allowed query about a person who does not exist,
// 5% a query outside its allow-list.
func benchPlan(agencies []config.Agency, signers map[string]*keys.Private, topics broker.Topics, n int, now time.Time, lifetime time.Duration) ([]benchRequest, error) {
	agencies = slices.DeleteFunc(slices.Clone(agencies), func(a config.Agency) bool { return len(a.Allow) == 0 })
	if len(agencies) == 0 {
		return nil, errors.New("no agencies with allowed queries")
	}
	ds := records.Generate(devSeed, devPersons)
	byID := make(map[string]records.Person, len(ds.Persons))
	for _, p := range ds.Persons {
		byID[p.IDNumber] = p
	}
	unknown := unknownIDs(byID, 64)
	subj := func(p records.Person) schemas.Subject { return schemas.Subject{IDNumber: p.IDNumber, Name: p.Name} }
	rng := rand.New(rand.NewPCG(devSeed, uint64(n)))
	out := make([]benchRequest, 0, n)
	for i := range n {
		a := agencies[rng.IntN(len(agencies))]
		allow := a.Allow[rng.IntN(len(a.Allow))]
		r := client.Request{Query: allow.Query, Basis: "case-handling", CaseRef: fmt.Sprintf("BENCH-%d", i), Lifetime: lifetime}
		if len(allow.Purposes) > 0 {
			r.Basis = allow.Purposes[0]
		}
		p := ds.Persons[rng.IntN(len(ds.Persons))]
		r.Subject = subj(p)
		switch x := rng.Float64(); {
		case x < 0.05:
			if q, ok := notAllowed(a); ok {
				r.Query, r.Basis = string(q), "case-handling"
			}
		case x < 0.15:
			r.Subject = schemas.Subject{IDNumber: unknown[rng.IntN(len(unknown))], Name: "张三"}
		}
		if r.Query == string(adapters.QueryKinship) && len(ds.Kinship) > 0 {
			k := ds.Kinship[rng.IntN(len(ds.Kinship))]
			r.Subject, r.Related = subj(byID[k.PersonID]), ptr(subj(byID[k.RelativeID]))
		}
		s, err := client.Build(signers[a.ID], r, now)
		if err != nil {
			return nil, err
		}
		out = append(out, benchRequest{agency: a.ID, signed: s,
			msg: bkafka.Message{Topic: topics.Requests(a.ID), Key: []byte(s.ID), Value: s.Bytes}})
	}
	return out, nil
}

// benchWarmups signs one identity request per agency.
func benchWarmups(agencies []config.Agency, signers map[string]*keys.Private, topics broker.Topics, now time.Time) ([]benchRequest, error) {
	p := records.Generate(devSeed, 1).Persons[0]
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

// benchRun is the state of one measured run. Requests are numbered: the
// measured ones first, then the warm-ups.
type benchRun struct {
	o     benchOptions
	reqs  []benchRequest // measured, then warm-ups
	n     int            // measured requests
	index map[string]int // request digest → number; read-only once built
	// sample marks the requests whose receipt bytes are kept for the
	// offline verification.
	sample map[int]bool

	// Times are durations since base, taken when the run is built, before
	// any goroutine reads them.
	base     time.Time
	t0       atomic.Int64   // the clock starts: the first send
	sentAt   []atomic.Int64 // +1; 0: not sent
	sent     atomic.Int64
	progress atomic.Int64  // the last send or receipt
	window   chan struct{} // in-flight tokens; nil: no limit

	mu         sync.Mutex
	seenAt     []time.Duration // 0: no receipt yet
	sums       [][32]byte
	decision   []string
	raw        map[int][]byte
	received   int // measured requests with a receipt
	warmLeft   int
	dups       int
	conflicts  int
	foreign    int
	lastSent   time.Duration
	allIn      chan struct{} // closed when every measured request has a receipt
	warmIn     chan struct{} // closed when every warm-up has a receipt
	readFailed chan error
}

func newBenchRun(reqs, warm []benchRequest, o benchOptions) *benchRun {
	all := append(reqs[:len(reqs):len(reqs)], warm...)
	r := &benchRun{
		o: o, base: time.Now(), reqs: all, n: len(reqs), index: make(map[string]int, len(all)), sample: map[int]bool{},
		sentAt: make([]atomic.Int64, len(all)), seenAt: make([]time.Duration, len(all)),
		sums: make([][32]byte, len(all)), decision: make([]string, len(all)), raw: map[int][]byte{},
		warmLeft: len(warm), allIn: make(chan struct{}), warmIn: make(chan struct{}), readFailed: make(chan error, 1),
	}
	for i, q := range all {
		r.index[q.signed.Digest] = i
	}
	if o.verify > 0 {
		step := max(1, r.n/o.verify)
		for i := 0; i < r.n && len(r.sample) < o.verify; i += step {
			r.sample[i] = true
		}
	}
	if o.inFlight > 0 {
		r.window = make(chan struct{}, o.inFlight)
	}
	if len(warm) == 0 {
		close(r.warmIn)
	}
	return r
}

func (r *benchRun) since() time.Duration { return time.Since(r.base) }

// collect reads one receipt topic until ctx ends.
func (r *benchRun) collect(ctx context.Context, t *client.Tail) {
	for {
		rec, err := t.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				select {
				case r.readFailed <- err:
				default:
				}
			}
			return
		}
		r.receipt(rec)
	}
}

func (r *benchRun) receipt(rec client.Record) {
	at := r.since()
	i, ok := r.index[rec.Headers["certless-request-digest"]]
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok {
		r.foreign++ // another client's receipt on a shared topic
		return
	}
	sum := sha256.Sum256(rec.Value)
	if r.decision[i] != "" {
		r.dups++
		if sum != r.sums[i] {
			r.conflicts++
		}
		return
	}
	r.decision[i], r.sums[i] = rec.Headers["certless-decision"], sum
	if r.decision[i] == "" {
		r.decision[i] = "(no decision header)"
	}
	if i >= r.n {
		if r.warmLeft--; r.warmLeft == 0 {
			close(r.warmIn)
		}
		return
	}
	r.seenAt[i] = max(at, 1)
	r.progress.Store(int64(at))
	if r.sample[i] {
		r.raw[i] = rec.Value
	}
	if r.window != nil {
		select {
		case <-r.window:
		default:
		}
	}
	if r.received++; r.received == r.n {
		close(r.allIn)
	}
}

func (r *benchRun) warmUp(ctx context.Context, p *bkafka.Producer) error {
	var msgs []bkafka.Message
	for _, q := range r.reqs[r.n:] {
		msgs = append(msgs, q.msg)
	}
	if err := p.Produce(ctx, msgs...); err != nil {
		return err
	}
	select {
	case <-r.warmIn:
		return nil
	case err := <-r.readFailed:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// benchWorkers is how many Produce calls run at once; kafka-go batches
// concurrent calls together.
const benchWorkers = 8

// benchChunk is the most requests handed to one Produce call.
const benchChunk = 100

// measure sends the measured requests and waits for their receipts. It
// returns why it stopped early, or "".
func (r *benchRun) measure(ctx context.Context, p *bkafka.Producer) string {
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	chunks := make(chan []int, benchWorkers)
	sendFailed := make(chan error, 1)
	var senders sync.WaitGroup
	t0 := r.since()
	r.t0.Store(int64(t0))
	r.progress.Store(int64(t0))
	for range benchWorkers {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for c := range chunks {
				msgs := make([]bkafka.Message, len(c))
				at := r.since()
				for j, i := range c {
					msgs[j] = r.reqs[i].msg
					r.sentAt[i].Store(int64(at) + 1)
				}
				r.progress.Store(int64(at))
				if err := p.Produce(sendCtx, msgs...); err != nil {
					if sendCtx.Err() == nil {
						select {
						case sendFailed <- err:
						default:
						}
					}
					stopSending()
					return
				}
				r.sent.Add(int64(len(c)))
				r.mu.Lock()
				r.lastSent = max(r.lastSent, r.since())
				r.mu.Unlock()
			}
		}()
	}
	senders.Add(1)
	go func() {
		defer senders.Done()
		defer close(chunks)
		r.pace(sendCtx, chunks)
	}()
	defer senders.Wait()

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.allIn:
			return ""
		case err := <-sendFailed:
			return "send failed: " + err.Error()
		case err := <-r.readFailed:
			return "reading receipts failed: " + err.Error()
		case <-ctx.Done():
			return "interrupted"
		case <-tick.C:
			if idle := r.since() - time.Duration(r.progress.Load()); idle > r.o.timeout {
				return fmt.Sprintf("no progress for %s (--timeout)", idle.Round(time.Millisecond))
			}
		}
	}
}

// pace hands out chunks of request numbers at the configured rate, each
// request first taking an in-flight token.
func (r *benchRun) pace(ctx context.Context, chunks chan<- []int) {
	var tick <-chan time.Time
	if r.o.rate > 0 {
		t := time.NewTicker(max(time.Duration(float64(time.Second)/r.o.rate), time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	next := 0
	for next < r.n {
		due := r.n
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return
			}
			due = min(r.n, int(r.o.rate*(r.since()-time.Duration(r.t0.Load())).Seconds()))
		}
		for next < due {
			c := make([]int, 0, min(due-next, benchChunk))
			for len(c) < cap(c) {
				if r.window == nil {
					c = append(c, next)
					next++
					continue
				}
				if len(c) > 0 { // send what has a token rather than wait
					select {
					case r.window <- struct{}{}:
						c = append(c, next)
						next++
						continue
					default:
					}
					break
				}
				select {
				case r.window <- struct{}{}:
					c = append(c, next)
					next++
				case <-ctx.Done():
					return
				}
			}
			select {
			case chunks <- c:
			case <-ctx.Done():
				return
			}
		}
	}
}

// fill copies the measurements into rep.
func (r *benchRun) fill(rep *benchReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep.Sent = int(r.sent.Load())
	rep.Receipts, rep.Duplicates, rep.Conflicting, rep.Foreign = r.received, r.dups, r.conflicts, r.foreign
	var last time.Duration
	for i := range r.n {
		if r.seenAt[i] == 0 {
			continue
		}
		sent := time.Duration(r.sentAt[i].Load() - 1)
		rep.Latencies = append(rep.Latencies, r.seenAt[i]-sent)
		rep.Decisions[r.decision[i]]++
		last = max(last, r.seenAt[i])
	}
	rep.WarmUp = map[string]int{}
	for i := r.n; i < len(r.reqs); i++ {
		if r.decision[i] != "" {
			rep.WarmUp[r.decision[i]]++
		}
	}
	slices.Sort(rep.Latencies)
	t0 := time.Duration(r.t0.Load())
	rep.SendSpan, rep.Span = max(r.lastSent-t0, 0), max(last-t0, 0)
}

// verifySample verifies the kept receipts offline, as an agency would.
func (r *benchRun) verifySample(rep *benchReport, clients map[string]*client.Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]int, 0, len(r.raw))
	for i := range r.raw {
		ids = append(ids, i)
	}
	sort.Ints(ids)
	for _, i := range ids {
		q := r.reqs[i]
		c := clients[q.agency]
		got, err := client.VerifyReceipt(r.raw[i], c.Broker, client.Expect{RequestAgency: q.agency, RequestDigest: q.signed.Digest, Decrypt: c.Decrypt})
		switch {
		case err != nil:
		case got.Decision != r.decision[i]:
			err = fmt.Errorf("decision %s, header says %s", got.Decision, r.decision[i])
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

// Percentile returns the p-th percentile (0 < p ≤ 1, nearest rank) of the
// latencies.
func (r *benchReport) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(r.Latencies)))) - 1
	return r.Latencies[min(max(i, 0), len(r.Latencies)-1)]
}

// Throughput is receipts per second from the first send to the last
// receipt.
func (r *benchReport) Throughput() float64 {
	if r.Span <= 0 {
		return 0
	}
	return float64(r.Receipts) / r.Span.Seconds()
}

func (r *benchReport) print(w io.Writer) {
	rate := "as fast as possible"
	if r.Rate > 0 {
		rate = fmt.Sprintf("%g msg/s", r.Rate)
	}
	window := "no limit"
	if r.InFlight > 0 {
		window = fmt.Sprintf("≤ %d", r.InFlight)
	}
	fmt.Fprintf(w, "certless bench: %d requests as %s; rate %s; in flight %s\n", r.Requests, strings.Join(r.Agencies, ", "), rate, window)
	fmt.Fprintf(w, "  kafka %s", r.Kafka)
	if r.Store != "" {
		fmt.Fprintf(w, "; decision store %s", r.Store)
	}
	fmt.Fprintln(w)
	if r.Stopped != "" {
		fmt.Fprintf(w, "STOPPED EARLY: %s\n", r.Stopped)
	}
	offered := 0.0
	if r.SendSpan > 0 {
		offered = float64(r.Sent) / r.SendSpan.Seconds()
	}
	fmt.Fprintf(w, "requests    %d sent of %d, in %s (offered %.0f msg/s)\n", r.Sent, r.Requests, r.SendSpan.Round(time.Millisecond), offered)
	fmt.Fprintf(w, "receipts    %d   lost %d   duplicate copies %d   conflicting %d\n", r.Receipts, r.Lost(), r.Duplicates, r.Conflicting)
	fmt.Fprintf(w, "throughput  %.0f msg/s (first send to last receipt: %s)\n", r.Throughput(), r.Span.Round(time.Millisecond))
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(w, "latency     p50 %s   p90 %s   p99 %s   max %s\n", ms(r.Percentile(0.50)), ms(r.Percentile(0.90)), ms(r.Percentile(0.99)), ms(r.Percentile(1)))
	names := make([]string, 0, len(r.Decisions))
	for k := range r.Decisions {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool { return r.Decisions[names[i]] > r.Decisions[names[j]] })
	var mix []string
	for _, k := range names {
		mix = append(mix, fmt.Sprintf("%s %d (%.1f%%)", k, r.Decisions[k], 100*float64(r.Decisions[k])/float64(max(r.Receipts, 1))))
	}
	fmt.Fprintf(w, "decisions   %s\n", orDash(strings.Join(mix, "   ")))
	if len(r.WarmUp) > 0 {
		var warm []string
		n := 0
		for _, k := range slices.Sorted(maps.Keys(r.WarmUp)) {
			warm = append(warm, fmt.Sprintf("%s %d", k, r.WarmUp[k]))
			n += r.WarmUp[k]
		}
		fmt.Fprintf(w, "warm-up     %d requests before the clock: %s (not in the figures above; a report counts them)\n", n, strings.Join(warm, "   "))
	}
	if r.Verified+r.VerifyFailed > 0 {
		fmt.Fprintf(w, "verified    %d of %d sampled receipts against the broker JWKS\n", r.Verified, r.Verified+r.VerifyFailed)
	}
	if r.storeKnown && r.StoreTxns > 0 {
		fmt.Fprintf(w, "store       %d decisions in %d transactions (%.1f per transaction)\n", r.StoreRows, r.StoreTxns, float64(r.StoreRows)/float64(r.StoreTxns))
	}
	if r.Foreign > 0 {
		fmt.Fprintf(w, "ignored     %d receipts of other clients' requests\n", r.Foreign)
	}
}
