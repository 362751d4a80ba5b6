package main

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"

	"github.com/certless/certless/broker/checkpoint"
	"github.com/certless/certless/config"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/translog"
)

// logVerifierFile is where the log's public (verifier) key sits beside its
// signer key.
func logVerifierFile(cfg *config.Config) string {
	return strings.TrimSuffix(cfg.LogKeyFile(), ".key") + ".vkey"
}

// ensureLogKey creates the log key pair for dev and demo when it is
// missing.
func ensureLogKey(cfg *config.Config, log *zap.Logger) error {
	if _, err := os.Stat(cfg.LogKeyFile()); err == nil {
		return nil
	}
	skey, vkey, err := translog.NewLogKey(cfg.LogOrigin())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.LogKeyFile()), 0o700); err != nil {
		return fmt.Errorf("log key: %w", err)
	}
	if err := os.WriteFile(logVerifierFile(cfg), []byte(vkey+"\n"), 0o644); err != nil {
		return fmt.Errorf("log key: %w", err)
	}
	if err := os.WriteFile(cfg.LogKeyFile(), []byte(skey+"\n"), 0o600); err != nil {
		return fmt.Errorf("log key: %w", err)
	}
	log.Info("generated transparency log key", zap.String("origin", cfg.LogOrigin()), zap.String("verifier", logVerifierFile(cfg)))
	return nil
}

// logSigner reads the log key on first use and keeps it; until it can be
// read, every checkpoint round fails (and the broker fails closed after
// the tolerance).
type logSigner struct {
	cfg *config.Config
	mu  sync.Mutex
	s   note.Signer
	v   string
}

func (l *logSigner) signer() (note.Signer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s != nil {
		return l.s, nil
	}
	b, err := keys.ReadSecret(l.cfg.LogKeyFile())
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w (create it with `certless log keygen`)", err)
	case err != nil:
		return nil, err
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("log key %s: %w", l.cfg.LogKeyFile(), err)
	}
	if s.Name() != l.cfg.LogOrigin() {
		return nil, fmt.Errorf("log key %s is named %q, but the log's origin is %q", l.cfg.LogKeyFile(), s.Name(), l.cfg.LogOrigin())
	}
	l.s = s
	return s, nil
}

// verifierKey is the published verifier key, read from the .vkey file.
func (l *logSigner) verifierKey() (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.v != "" {
		return l.v, nil
	}
	b, err := os.ReadFile(logVerifierFile(l.cfg))
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if _, err := note.NewVerifier(v); err != nil {
		return "", fmt.Errorf("log verifier key %s: %w", logVerifierFile(l.cfg), err)
	}
	l.v = v
	return v, nil
}

// logMetrics are the transparency log's metrics.
type logMetrics struct {
	lastUnix   atomic.Int64
	size       prometheus.Gauge
	last       prometheus.Gauge
	failures   *prometheus.CounterVec
	cosigs     *prometheus.CounterVec
	auditFails prometheus.Counter
	refused    prometheus.Counter
}

func newLogMetrics(reg prometheus.Registerer, started time.Time) *logMetrics {
	m := &logMetrics{
		size: prometheus.NewGauge(prometheus.GaugeOpts{Name: "certless_log_size",
			Help: "Leaves in the transparency log's newest checkpoint."}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{Name: "certless_log_last_checkpoint_timestamp_seconds",
			Help: "Unix time of the newest checkpoint this broker signed, or of its start before the first."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certless_log_failures_total",
			Help: "Checkpoint rounds that failed (log key missing, store failing), by stage."}, []string{"stage"}),
		cosigs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certless_log_cosignatures_total",
			Help: "Cosignature requests to witnesses, by witness and result (ok, failed)."}, []string{"witness", "result"}),
		auditFails: prometheus.NewCounter(prometheus.CounterOpts{Name: "certless_log_audit_failures_total",
			Help: "Inconsistencies the broker found in its own log (a stored tree that no longer matches its checkpoint)."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "certless_log_refusals_total",
			Help: "Decisions and dead letters held back (retried, not published) because the log has not checkpointed within its tolerance."}),
	}
	for _, stage := range []string{checkpoint.StageCheckpoint, checkpoint.StageAudit} {
		m.failures.WithLabelValues(stage)
	}
	m.last.Set(float64(started.Unix()))
	m.lastUnix.Store(started.UnixNano())
	age := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "certless_log_checkpoint_age_seconds",
		Help: "Seconds since the newest checkpoint this broker signed (since its start before the first)."},
		func() float64 { return time.Since(time.Unix(0, m.lastUnix.Load())).Seconds() })
	reg.MustRegister(m.size, m.last, m.failures, m.cosigs, m.auditFails, m.refused, age)
	return m
}

func (m *logMetrics) Checkpointed(size int64, at time.Time) {
	m.size.Set(float64(size))
	m.last.Set(float64(at.Unix()))
	m.lastUnix.Store(at.UnixNano())
}

func (m *logMetrics) Failed(stage string) {
	m.failures.WithLabelValues(stage).Inc()
	if stage == checkpoint.StageAudit {
		m.auditFails.Inc()
	}
}

func (m *logMetrics) Refused() { m.refused.Inc() }

func (m *logMetrics) Cosigned(witness string, ok bool) {
	r := "ok"
	if !ok {
		r = "failed"
	}
	m.cosigs.WithLabelValues(witness, r).Inc()
}

// logHandler serves the log as C2SP tlog-tiles under /log/ and the log's
// verifier key at /.well-known/log-key, beside the JWKS.
func logHandler(src translog.Source, vkey func() (string, error)) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/log/", http.StripPrefix("/log", translog.Handler(src)))
	mux.HandleFunc("GET /.well-known/log-key", func(w http.ResponseWriter, r *http.Request) {
		v, err := vkey()
		if err != nil {
			http.Error(w, "log key unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=300")
		fmt.Fprintln(w, v)
	})
	return mux
}

// startCheckpointer builds the checkpointer of the service's log.
func (s *service) startCheckpointer(opts serviceOptions) (*checkpoint.Checkpointer, error) {
	tc := s.cfg.Transparency
	var ws []checkpoint.Witness
	for _, w := range tc.Witnesses {
		wt, err := newWitness(w)
		if err != nil {
			return nil, fmt.Errorf("transparency witness %s: %w", w.URL, err)
		}
		ws = append(ws, wt)
	}
	c := &checkpoint.Checkpointer{
		Store: s.store, Origin: s.cfg.LogOrigin(), Signer: s.logKey.signer, Witnesses: ws,
		Interval: cmp.Or(opts.checkpointInterval, tc.Interval.D()), Tolerance: tc.Tolerance.D(),
		Log: s.log.Named("translog"), Metrics: s.logMetrics, Now: opts.checkpointClock,
	}
	if _, err := s.logKey.signer(); err != nil {
		s.log.Error("transparency log key unusable: no checkpoint can be signed; the broker stops answering after the tolerance",
			zap.String("file", s.cfg.LogKeyFile()), zap.Duration("tolerance", tc.Tolerance.D()), zap.Error(err))
	}
	return c, nil
}

func newLogCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "log",
		Short: "The transparency log's key",
		Args:  cobra.NoArgs,
	}
	keygen := &cobra.Command{
		Use:   "keygen",
		Short: "Create the log's Ed25519 note key pair (transparency.key_file and its .vkey) unless it exists",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.loadConfig(os.Getenv)
			if err != nil {
				return err
			}
			if _, err := os.Stat(cfg.LogKeyFile()); err == nil {
				return fmt.Errorf("%s exists; the log key is never replaced (a new key is a new log)", cfg.LogKeyFile())
			}
			if err := ensureLogKey(cfg, zap.NewNop()); err != nil {
				return err
			}
			v, _ := os.ReadFile(logVerifierFile(cfg))
			fmt.Fprintf(g.stdout, "log key for origin %s in %s; publish %s:\n%s", cfg.LogOrigin(), cfg.LogKeyFile(), logVerifierFile(cfg), v)
			return nil
		},
	}
	cmd.AddCommand(keygen)
	return cmd
}
