package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/checkpoint"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/config"
	"github.com/certless/certless/directory"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/exchange"
	"github.com/certless/certless/feedback"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/policies/workdays"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/webauth"
)

// service is one running broker process, composed from the configuration.
// Shutdown order: stop consuming, drain in-flight work, close the producer
// and consumer, close the decision store (flushing its last batch), stop the
// HTTP endpoint, stop the embedded cluster.
type service struct {
	cfg      *config.Config
	log      *zap.Logger
	registry *prometheus.Registry
	topics   broker.Topics
	kafka    bkafka.Config
	embedded *bkafka.Embedded
	store    store.Store
	keys     *keys.Registry
	key      *brokerKey
	// subjectSecret keys decisions by subject (broker.SubjectKeyer).
	subjectSecret []byte
	// guard separates public, operator and auditor paths; httpScheme is
	// https when its web configuration file configures TLS.
	guard      *webauth.Guard
	httpScheme string
	// agreements holds the co-signed agreements of the policies folder in
	// force; agreementsGauge reports them by status, refused files apart.
	agreements *policies.Watcher
	agrMetrics *agreementMetrics
	sources    *sources
	// feedback keeps acknowledgements and disputes; notifier moves disputes
	// along and tells their parties.
	feedback *feedback.Store
	notifier *feedback.Notifier
	// batches are the periodic-exchange batches (acknowledged here);
	// scheduler runs the agreements' schedules (nil: exchange.disabled).
	batches        *exchange.Store
	scheduler      *exchange.Scheduler
	exchangeManual bool
	// dir is the docking directory, docking the broker's view of it; lag
	// follows its request topics.
	dir      *directory.Directory
	docking  *docking
	lag      *bkafka.LagCollector
	producer *bkafka.Producer
	// runner is the template of every consumer generation (consume): the
	// group is rejoined with a new consumer whenever the request topics
	// change.
	runner *broker.Runner
	http   *http.Server
	httpLn net.Listener
	// early serves /healthz and /readyz while the broker starts.
	early *startupHTTP
	// logKey signs checkpoints; checkpointer keeps the transparency log
	// checkpointed and gates the record step when it cannot.
	logKey       *logSigner
	logMetrics   *logMetrics
	checkpointer *checkpoint.Checkpointer
	// directoryPoll is how often the docking directory is polled.
	directoryPoll time.Duration
	// keysPoll is how often the keys folder is polled; keysWatching is
	// closed once SIGHUP is handled and the folder's state is known.
	keysPoll     time.Duration
	keysWatching chan struct{}
}

// serviceOptions are the knobs dev, demo and tests turn.
type serviceOptions struct {
	// embeddedPort overrides the embedded cluster's port (0: from config;
	// -1: any free port).
	embeddedPort int
	// httpAddr overrides cfg.HTTP.Addr when set.
	httpAddr string
	// keysPoll overrides how often the keys folder is polled (default
	// keysPollInterval).
	keysPoll time.Duration
	// feedbackClock, when set, is the clock of dispute handling (opening,
	// deadlines, notices); tests move it to see a deadline pass.
	feedbackClock func() time.Time
	// checkpointClock and checkpointInterval, when set, replace the
	// transparency log checkpointer's clock and interval (tests drive its
	// rounds themselves).
	checkpointClock    func() time.Time
	checkpointInterval time.Duration
	// directoryPoll overrides how often the docking directory is polled.
	directoryPoll time.Duration
	// exchangeClock, when set, is the periodic-exchange scheduler's clock,
	// and the broker runs no rounds of its own: the test calls
	// s.scheduler.Round after moving the clock.
	exchangeClock func() time.Time
	// launched, when set, is when the process started: the wait for Kafka
	// (kafka.startup_timeout) counts from then, so `certless serve` gives
	// up that long after it was launched, not after its own set-up.
	launched time.Time
}

func kafkaConfig(c config.Kafka) bkafka.Config {
	k := bkafka.Config{Brokers: c.Brokers, ClientID: "certless"}
	if c.TLS != nil {
		k.TLS = bkafka.TLS{Enabled: c.TLS.Enabled, CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile,
			KeyFile: c.TLS.KeyFile, ServerName: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify}
	}
	if c.SASL != nil {
		k.SASL = bkafka.SASL{Mechanism: c.SASL.Mechanism, Username: c.SASL.Username, Password: c.SASL.Password}
	}
	return k
}

// startService builds every part. On error it closes what it opened.
func startService(ctx context.Context, cfg *config.Config, log *zap.Logger, opts serviceOptions) (_ *service, err error) {
	s := &service{cfg: cfg, log: log, registry: prometheus.NewRegistry(), topics: broker.Topics{Prefix: cfg.Kafka.TopicPrefix},
		keysPoll: cmp.Or(opts.keysPoll, keysPollInterval), keysWatching: make(chan struct{}),
		directoryPoll: cmp.Or(opts.directoryPoll, cfg.Directory.Poll.D(), directory.DefaultFollowInterval)}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Keys: the agencies' public sets and the broker's signing key, both
	// reloaded while the broker runs (see watchKeys).
	if s.keys, err = keys.LoadDir(cfg.KeysDir); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	bk, err := keys.SigningKey(cfg.KeysDir, cfg.BrokerID, time.Now())
	switch {
	case errors.Is(err, keys.ErrKeyFilePerm):
		return nil, fmt.Errorf("broker signing key: %w", err)
	case err != nil:
		return nil, fmt.Errorf("broker signing key (run `certless keys generate --agency %s`): %w", cfg.BrokerID, err)
	}
	s.key = &brokerKey{}
	s.key.Store(bk)
	// The other secrets at rest, read later: a file others can read is
	// refused now, before anything starts (a missing one is dealt with
	// where it is read).
	for _, f := range []string{cfg.LogKeyFile(), filepath.Join(cfg.KeysDir, "subject.key")} {
		if _, err := keys.ReadSecret(f); errors.Is(err, keys.ErrKeyFilePerm) {
			return nil, err
		}
	}
	log.Info("keys loaded", zap.String("dir", cfg.KeysDir), zap.Strings("agencies", s.keys.Agencies()), zap.String("broker_kid", bk.KID()))

	// The HTTP address answers /healthz from here on, /readyz with what
	// the start-up waits for, until the broker's own endpoints take over.
	addr := cmp.Or(opts.httpAddr, cfg.HTTP.Addr)
	if s.early, err = listenStartup(cfg, addr, log); err != nil {
		return nil, err
	}

	// Kafka.
	s.kafka = kafkaConfig(cfg.Kafka)
	if cfg.Kafka.Embedded {
		port := opts.embeddedPort
		if port == 0 {
			if port, err = portOf(cfg.Kafka.Brokers); err != nil {
				return nil, err
			}
		}
		if port < 0 {
			port = 0
		}
		if s.embedded, err = bkafka.StartEmbedded(ctx, bkafka.EmbeddedOptions{Port: port, DefaultPartitions: cfg.Kafka.Partitions}); err != nil {
			return nil, err
		}
		s.kafka = s.embedded.Config()
		log.Info("embedded Kafka cluster started", zap.Strings("brokers", s.kafka.Brokers))
	}
	if err = s.awaitKafka(ctx, opts.launched); err != nil {
		return nil, err
	}
	// Decision store.
	if s.store, err = store.Open(ctx, cfg.Store.DSN, store.Options{BatchSize: cfg.Store.BatchSize, BatchWait: cfg.Store.BatchWait.D()}); err != nil {
		return nil, fmt.Errorf("decision store: %w", err)
	}
	log.Info("decision store open", zap.Bool("postgres", cfg.Store.IsPostgres()))

	// Docking directory: which agencies may ask, their keys and status,
	// followed while the broker runs (followDirectory); the configuration's
	// agencies are imported once, into an empty directory.
	if s.dir, err = openDirectory(ctx, cfg.Store.DSN, s.store, func(ctx context.Context, d *directory.Directory) ([]directory.Change, error) {
		return d.ImportConfig(ctx, cfg.Agencies, cfg.Adapters, s.keys, "config")
	}, log); err != nil {
		return nil, err
	}
	s.docking = newDocking(s.keys, s.topics.Requests)
	snap, err := s.dir.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("docking directory: %w", err)
	}
	s.applyDirectory(snap)
	// The first topic, bounded like the wait for Kafka: a cluster that
	// answers but never gives the topic a leader must not hang start-up.
	if err = s.ensureFirstTopic(ctx); err != nil {
		return nil, err
	}
	if err = s.ensureAgencyTopics(ctx); err != nil {
		return nil, err
	}
	requestTopics := s.docking.topics()
	if len(requestTopics) == 0 {
		log.Warn("no agency is docked: nothing to consume until one is (certless agency dock)")
	}

	// Transparency log: every decision's leaf is appended by the store in
	// the decision's own transaction; the checkpointer signs and serves it.
	s.logKey = &logSigner{cfg: cfg}
	s.logMetrics = newLogMetrics(s.registry, time.Now())
	if s.checkpointer, err = s.startCheckpointer(opts); err != nil {
		return nil, err
	}

	// Agreements: every request is decided against the co-signed
	// agreements of the policies folder, reloaded while the broker runs.
	s.agrMetrics = newAgreementMetrics(s.registry)
	var loaded policies.ReloadResult
	s.agreements, loaded = policies.NewWatcherFor(cfg.PoliciesDir, s.docking, cfg.DataOwners)
	s.agrMetrics.watch(s.agreements.Set, s.store)
	s.reportAgreements(loaded)

	// Record sources by jurisdiction, observed from outside.
	if s.sources, err = openSources(ctx, cfg, log, broker.NewSourceMetrics(s.registry)); err != nil {
		return nil, err
	}
	s.sources.route(s.docking.state().snap, log)

	set, err := schemas.Default()
	if err != nil {
		return nil, err
	}

	// Receipts are keyed by subject (a keyed digest) so that a corrected
	// answer's receipts can all be revoked.
	if s.subjectSecret, err = subjectSecret(cfg.KeysDir); err != nil {
		return nil, err
	}

	// Result feedback: acknowledgements and disputes, in the store's
	// database; disputes go to the data owners' topics.
	if s.feedback, err = feedback.Open(ctx, cfg.Store.DSN); err != nil {
		return nil, fmt.Errorf("feedback: %w", err)
	}
	fbClock := opts.feedbackClock
	if fbClock == nil {
		fbClock = time.Now
	}
	if s.batches, err = exchange.Open(ctx, cfg.Store.DSN); err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	fb := &feedback.Handlers{Receipts: s.store, Store: s.feedback, Now: fbClock, Batches: s.batches,
		Terms: agreementTerms{agreements: s.agreements, owners: cfg.DataOwners, calendar: workdays.Default()}}
	var ownerTopics []bkafka.TopicSpec
	for _, o := range cfg.DataOwners {
		ownerTopics = append(ownerTopics, bkafka.TopicSpec{Name: s.topics.Disputes(o), Partitions: 1, ReplicationFactor: cfg.Kafka.ReplicationFactor})
	}
	if len(ownerTopics) > 0 {
		if err = bkafka.EnsureTopics(ctx, s.kafka, ownerTopics...); err != nil {
			return nil, fmt.Errorf("create dispute topics: %w", err)
		}
	}
	s.registry.MustRegister(newDisputeMetrics(s.feedback, cfg.DataOwners, fbClock, log))
	pipeline := &broker.Pipeline{
		Topics:   s.topics,
		BrokerID: cfg.BrokerID,
		Verify: &envelope.Verifier{
			Keys: s.docking, Schemas: set, MaxBytes: cfg.Limits.MaxMessageBytes,
			ClockSkew: cfg.Limits.ClockSkew.D(), MaxLifetime: cfg.Limits.MaxLifetime.D(),
		},
		Handlers: map[string]broker.TypeHandler{
			schemas.TypeVerificationRequest: &broker.RequestHandler{
				Auth: &broker.Docked{Directory: s.docking,
					Next: &broker.Agreements{Agreements: s.agreements, Usage: broker.StoreUsage{Quotas: s.store}}},
				Records: s.sources, ClockSkew: cfg.Limits.ClockSkew.D(),
				SubjectKey: broker.SubjectKeyer{Secret: s.subjectSecret}.Key,
			},
			schemas.TypeAcknowledgement: fb.Acknowledgement(),
			schemas.TypeDispute:         fb.Dispute(),
		},
		// No schema check of each receipt on the hot path (see
		// broker.ReceiptSealer): the tests hold that guarantee.
		Seal:      &broker.ReceiptSealer{Keys: s.key, Confidential: s.docking.Confidential, Encryption: s.docking},
		Decisions: s.store,
		Leaves:    s.store,
		Gate:      s.checkpointer,
		Status:    &broker.StatusAllocator{Store: s.store, Base: s.statusBase},
		Log:       log,
	}
	metrics := broker.NewMetrics(s.registry)
	metrics.Init(dockedAgencies(s.docking.state().snap), requestTopics)
	// Consumer lag is asked of the cluster at scrape time, not measured in
	// the pipeline: it shows also when the pipeline is stalled.
	if s.lag, err = bkafka.NewLagCollector(s.kafka, cfg.Kafka.GroupID, requestTopics, bkafka.LagOptions{Logger: log.Named("kafka")}); err != nil {
		return nil, err
	}
	s.registry.MustRegister(s.lag)
	handler := broker.Chain(pipeline, s.middleware(pipeline, metrics)...)
	if s.producer, err = bkafka.NewProducer(s.kafka, bkafka.ProducerOptions{Logger: log.Named("kafka")}); err != nil {
		return nil, err
	}
	s.notifier = &feedback.Notifier{Store: s.feedback, Keys: s.key, Schemas: set, Leaves: s.store,
		Producer: producerAdapter{s.producer}, Topics: s.topics, BrokerID: cfg.BrokerID,
		Encrypt: s.encryptNotice, Now: fbClock, Log: log.Named("feedback"),
		Revoker: s.store, StatusBase: s.statusBase}
	if !cfg.Exchange.Disabled {
		s.scheduler = &exchange.Scheduler{Store: s.batches,
			Jobs: func(now time.Time) []exchange.Job { return exchangeJobs(s.agreements.Set(), now) },
			Build: (&batchBuilder{brokerID: cfg.BrokerID, feed: s.sources.feedFor, set: set,
				region: func(_ context.Context, agency string) (string, error) {
					if a, ok := s.docking.state().snap.Agency(agency); ok {
						return a.Region, nil
					}
					return "", fmt.Errorf("the recipient %s is not docked", agency)
				},
				key: func() (*keys.Private, error) { return s.key.SigningKey(), nil }}).build,
			Publish: (&batchPublisher{kafka: s.kafka, topics: s.topics, replication: cfg.Kafka.ReplicationFactor,
				producer: s.producer}).publish,
			Logged:      func(ctx context.Context, b exchange.Stored) error { return logBatch(ctx, s.store, b) },
			CatchUp:     cfg.Exchange.CatchUp.D(),
			AckDeadline: cfg.Exchange.AckDeadline.D(),
			MaxPerRound: cfg.Exchange.MaxBatchesPerRound,
			Now:         opts.exchangeClock,
			Log:         log.Named("exchange"),
			Metrics:     exchange.NewMetrics(s.registry),
		}
		s.exchangeManual = opts.exchangeClock != nil
	}
	s.runner = &broker.Runner{
		Producer: producerAdapter{s.producer},
		Handler:  handler,
		InFlight: cfg.Limits.InFlight,
		Log:      log,
	}

	// The HTTP address: public (JWKS, log, status lists), operators
	// (/metrics, /healthz, /readyz), auditors (/audit/); nothing else.
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certless_http_refused_total",
		Help: "Requests to the HTTP address refused: by the role the path needs (public, operator, auditor) and status (401 no or bad login, 403 without the role, 429 rate_limit)."},
		[]string{"role", "status"})
	s.registry.MustRegister(refused)
	if s.guard, err = webauth.New(webauth.Options{File: cfg.HTTP.WebConfigFile, Operators: cfg.HTTP.Operators,
		Auditors: cfg.HTTP.Auditors, Log: log.Named("http"), Realm: "certless " + cfg.BrokerID,
		Refused: func(role webauth.Role, status int) {
			refused.WithLabelValues(cmp.Or(string(role), "public"), strconv.Itoa(status)).Inc()
		}}); err != nil {
		return nil, err
	}
	tlsCfg, err := s.guard.TLS()
	if err != nil {
		return nil, err
	}
	s.httpLn = s.early.handOver()
	s.httpScheme = "http"
	if tlsCfg != nil {
		s.httpLn, s.httpScheme = tls.NewListener(s.httpLn, tlsCfg), "https"
	}
	if host, _, _ := net.SplitHostPort(addr); !s.guard.Configured(webauth.Operator) && !isLoopbackHost(host) {
		log.Warn("no operator login (http.web_config_file, http.operators): /metrics, /healthz and /readyz answer loopback clients only", zap.String("addr", addr))
	}
	checks := map[string]broker.Check{
		"kafka": func(ctx context.Context) error { return bkafka.Ping(ctx, s.kafka) },
		"store": func(ctx context.Context) error { _, err := s.store.Count(ctx); return err },
		// Checkpoints failing: not ready at once; answering stops after
		// the tolerance (checkpoint.Checkpointer.Open).
		"transparency_log": func(context.Context) error { return s.checkpointer.Ready() },
	}
	jwks := func() ([]byte, error) { return s.keys.JWKS(cfg.BrokerID) }
	ops := broker.OpsHandler(s.registry, checks, jwks)
	audit, err := s.newConsole()
	if err != nil {
		return nil, err
	}
	g := s.guard
	mux := http.NewServeMux()
	for _, p := range []string{"/metrics", "/healthz", "/readyz"} {
		mux.Handle(p, g.Require(webauth.Operator, ops))
	}
	mux.Handle("/.well-known/jwks.json", g.Public(ops))
	lh := logHandler(s.store, s.logKey.verifierKey)
	mux.Handle("/log/", g.Public(lh))
	mux.Handle("/.well-known/log-key", g.Public(lh))
	mux.Handle("/status/", g.Public(s.statusHandler()))
	mux.Handle("/audit/", g.Require(webauth.Auditor, audit))
	if cfg.HTTP.Pprof {
		pp := http.NewServeMux()
		pp.HandleFunc("/debug/pprof/", pprof.Index)
		pp.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		pp.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pp.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		pp.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.Handle("/debug/pprof/", g.Require(webauth.Operator, pp))
		log.Warn("profiling endpoints on: /debug/pprof/ (operators)")
	}
	mux.Handle("/", g.Public(http.NotFoundHandler()))
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 64 << 10,
		ErrorLog: zap.NewStdLog(log.Named("http"))}
	go func() {
		if err := s.http.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", zap.Error(err))
		}
	}()
	base := s.httpScheme + "://" + s.httpLn.Addr().String()
	log.Info("http endpoint", zap.String("metrics", base+"/metrics"), zap.String("health", base+"/healthz"),
		zap.String("jwks", base+"/.well-known/jwks.json"), zap.String("log", base+"/log/checkpoint"),
		zap.String("audit", base+"/audit/"), zap.Bool("operator_login", s.guard.Configured(webauth.Operator)),
		zap.Bool("auditor_login", s.guard.Configured(webauth.Auditor)))
	return s, nil
}

// middleware is the chain around the pipeline, outermost first: metrics
// see every outcome (recovered panics and unavailable answers included);
// Retry bounds the attempts at one message and answers what outlives the
// bound; Recover answers a panic at once (a bug does not go away on retry);
// Timeout bounds each attempt.
func (s *service) middleware(p *broker.Pipeline, metrics *broker.Metrics) []broker.Middleware {
	lim := s.cfg.Limits
	// The answers of last resort are bounded like an attempt: a store that
	// hangs must not hold the partition from there either.
	exhausted := func(ctx context.Context, m broker.Message, attempts int, err error) (broker.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, answerTimeout(s.cfg))
		defer cancel()
		return p.Fail(ctx, m, schemas.DecisionUnavailable, broker.ReasonRetriesExhausted,
			fmt.Sprintf("a transient failure outlasted %d attempts; send a new request after the retry hint", attempts), lim.RetryAfter.D())
	}
	panicked := func(ctx context.Context, m broker.Message) (broker.Result, error) {
		ctx, cancel := context.WithTimeout(ctx, answerTimeout(s.cfg))
		defer cancel()
		return p.Fail(ctx, m, schemas.DecisionInternalError, broker.ReasonInternal,
			"the broker failed on a bug while handling this message; its operator has been alerted", 0)
	}
	return []broker.Middleware{
		metrics.Middleware(),
		// A dead letter of last resort is logged like any other.
		p.LogDeadLetters(),
		// Outside Retry too, for a panic while answering what outlived
		// the retries.
		broker.Recover(s.topics, panicked, s.log),
		broker.Log(s.log),
		broker.Retry(broker.RetryPolicy{MaxAttempts: lim.RetryAttempts, Window: lim.RetryWindow.D()}, exhausted, s.log, metrics.Failed),
		broker.Recover(s.topics, panicked, s.log),
		broker.Timeout(answerTimeout(s.cfg)),
	}
}

// run consumes until ctx ends, then shuts down in order. Meanwhile it
// keeps the keys current: the keys folder is polled, and SIGHUP reloads it
// at once.
func (s *service) run(ctx context.Context) error {
	s.log.Info("broker consuming", zap.Int("agencies", len(s.docking.topics())), zap.String("group", s.cfg.Kafka.GroupID))
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() { defer close(watched); s.watchKeys(watchCtx) }()
	agreementsWatched := make(chan struct{})
	go func() {
		defer close(agreementsWatched)
		s.agreements.Run(watchCtx, s.keysPoll, s.reportAgreements)
	}()
	cpCtx, stopCheckpoints := context.WithCancel(context.WithoutCancel(ctx))
	checkpointed := make(chan struct{})
	go func() {
		defer close(checkpointed)
		// On return it has made its last round: every leaf of the
		// decisions made is under a checkpoint.
		_ = s.checkpointer.Run(cpCtx)
	}()
	dirWatched := make(chan struct{})
	go func() { defer close(dirWatched); s.followDirectory(watchCtx) }()
	notified := make(chan struct{})
	go func() { defer close(notified); s.notifier.Run(watchCtx, s.directoryPoll) }()
	scheduled := make(chan struct{})
	go func() {
		defer close(scheduled)
		if s.scheduler != nil && !s.exchangeManual {
			s.scheduler.Run(watchCtx, exchange.DefaultPoll)
		}
	}()
	err := s.consume(ctx)
	stopWatch()
	<-dirWatched
	<-notified
	<-scheduled
	<-watched
	<-agreementsWatched
	stopCheckpoints()
	<-checkpointed
	s.log.Info("broker stopped consuming; shutting down")
	s.close()
	if err == nil {
		s.log.Info("stopped") // the last line of a clean shutdown
	}
	return err
}

// keysPollInterval is how often the keys folder is polled for changes.
const keysPollInterval = 2 * time.Second

// watchKeys reloads the keys folder when it changes or on SIGHUP, logs
// each change (kid, agency, added/revoked — never key material) and keeps
// the broker's own signing key current, until ctx ends.
func (s *service) watchKeys(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var report func([]keys.Change, error)
	reload := func() {
		changes, err := s.keys.Reload(s.cfg.KeysDir)
		if err != nil || len(changes) > 0 {
			report(changes, err)
		}
	}
	report = func(changes []keys.Change, err error) {
		if err != nil {
			s.log.Error("keys folder not reloaded; the keys loaded before stay in force", zap.String("dir", s.cfg.KeysDir), zap.Error(err))
			return
		}
		for _, c := range changes {
			f := []zap.Field{zap.String("kid", c.KID), zap.String("agency", c.Agency), zap.String("change", string(c.Kind))}
			if !c.RevokedAt.IsZero() {
				f = append(f, zap.Time("revoked_at", c.RevokedAt))
			}
			s.log.Info("key changed", f...)
		}
		s.refreshSigningKey()
		// A key revoked or removed may refuse an agreement it signed.
		s.reportAgreements(s.agreements.Reload())
	}
	// What changed between start-up and now counts before the watch.
	reload()
	close(s.keysWatching)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				s.log.Info("SIGHUP: reloading the keys and policies folders", zap.String("keys", s.cfg.KeysDir), zap.String("policies", s.cfg.PoliciesDir))
				reload()
				s.reportAgreements(s.agreements.Reload())
			}
		}
	}()
	s.keys.WatchDir(ctx, s.cfg.KeysDir, s.keysPoll, report)
}

// reportAgreements logs a (re)load of the policies folder: each refused
// file loudly, with its reason, and the set now in force; and updates the
// agreement metrics.
func (s *service) reportAgreements(r policies.ReloadResult) {
	if r.Err != nil {
		s.log.Error("policies folder not reloaded; the agreements loaded before stay in force", zap.String("dir", s.cfg.PoliciesDir), zap.Error(r.Err))
	}
	for _, p := range r.Problems {
		s.log.Error("agreement refused", zap.String("file", p.File), zap.String("reason", string(p.Reason)),
			zap.Bool("last_good_version_kept", p.Kept), zap.Error(p.Err))
	}
	set := s.agreements.Set()
	if r.Swapped || r.Set != nil {
		s.log.Info("agreements in force", zap.String("dir", s.cfg.PoliciesDir), zap.Int("agreements", set.Len()),
			zap.String("set_digest", set.Digest()), zap.Int("refused", len(r.Problems)))
	}
	s.agrMetrics.update(set, r.Problems, time.Now())
}

// refreshSigningKey switches receipts to the newest usable broker key.
func (s *service) refreshSigningKey() {
	k, err := keys.SigningKey(s.cfg.KeysDir, s.cfg.BrokerID, time.Now())
	if err != nil {
		s.log.Error("no usable broker signing key in the keys folder; receipts stay signed with the last one", zap.String("kid", s.key.Load().KID()), zap.Error(err))
		return
	}
	if old := s.key.Swap(k); old.KID() != k.KID() {
		s.log.Info("broker signing key rotated", zap.String("from", old.KID()), zap.String("to", k.KID()))
	}
}

// brokerKey holds the broker's current signing key.
type brokerKey struct{ atomic.Pointer[keys.Private] }

// SigningKey implements broker.SigningKeys.
func (k *brokerKey) SigningKey() *keys.Private { return k.Load() }

// httpAddr is the bound operations address.
func (s *service) httpAddr() string { return s.httpLn.Addr().String() }

// httpBase is the URL of the HTTP address as bound.
func (s *service) httpBase() string { return s.httpScheme + "://" + s.httpAddr() }

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *service) close() {
	if s.producer != nil {
		_ = s.producer.Close()
	}
	if s.dir != nil {
		_ = s.dir.Close()
	}
	if s.feedback != nil {
		_ = s.feedback.Close()
	}
	if s.batches != nil {
		_ = s.batches.Close()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.log.Error("close decision store", zap.Error(err))
		}
	}
	if s.sources != nil {
		s.sources.close()
	}
	s.early.close()
	if s.http == nil && s.httpLn != nil {
		_ = s.httpLn.Close() // handed over, never served
	}
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	}
	if s.embedded != nil {
		s.embedded.Close()
	}
}

// answerTimeout is the per-message budget: every attempt of a source call
// plus the store and the seal.
func answerTimeout(cfg *config.Config) time.Duration {
	return 2*cfg.Limits.AnswerTimeout.D() + time.Second
}

func portOf(brokers []string) (int, error) {
	if len(brokers) == 0 {
		return 0, errors.New("/kafka/brokers: the embedded cluster needs an address to listen on")
	}
	_, p, err := net.SplitHostPort(brokers[0])
	if err != nil {
		return 0, fmt.Errorf("/kafka/brokers/0: %w", err)
	}
	return strconv.Atoi(p)
}

// consumerAdapter and producerAdapter translate between the broker's
// transport-neutral messages and the Kafka package's.
type consumerAdapter struct{ c *bkafka.Consumer }

func (a consumerAdapter) Fetch(ctx context.Context) (broker.Message, error) {
	m, err := a.c.Fetch(ctx)
	if err != nil {
		return broker.Message{}, err
	}
	return broker.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value, Time: m.Time}, nil
}

func (a consumerAdapter) Commit(ctx context.Context, msgs ...broker.Message) error {
	out := make([]bkafka.Message, len(msgs))
	for i, m := range msgs {
		out[i] = bkafka.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	}
	return a.c.Commit(ctx, out...)
}

type producerAdapter struct{ p *bkafka.Producer }

func (a producerAdapter) Produce(ctx context.Context, outs ...broker.Output) error {
	if len(outs) == 0 {
		return nil
	}
	msgs := make([]bkafka.Message, len(outs))
	for i, o := range outs {
		m := bkafka.Message{Topic: o.Topic, Key: o.Key, Value: o.Value}
		for k, v := range o.Headers {
			m.Headers = append(m.Headers, bkafka.Header{Key: k, Value: []byte(v)})
		}
		msgs[i] = m
	}
	return a.p.Produce(ctx, msgs...)
}
