package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/config"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/webauth"
)

// startupReportBudget is kept from kafka.startup_timeout for naming the
// cause and exiting, so serve's error is out within the timeout.
const startupReportBudget = 500 * time.Millisecond

// defaultKafkaStartup bounds the wait for Kafka when the configuration
// sets no kafka.startup_timeout (a configuration built in code).
const defaultKafkaStartup = 15 * time.Second

// awaitKafka waits, within kafka.startup_timeout, until a broker of
// s.kafka answers: it logs where it connects and each failed attempt, and
// says on /readyz what it waits for. Its error names the addresses and
// the likely cause (kafka.Await).
func (s *service) awaitKafka(ctx context.Context, launched time.Time) error {
	addrs := strings.Join(s.kafka.Brokers, ", ")
	within := cmp.Or(s.cfg.Kafka.StartupTimeout.D(), defaultKafkaStartup)
	var deadline time.Time
	if !launched.IsZero() {
		// The error is out within the timeout of the launch: what the
		// command spent before (configuration, keys) counts, and half a
		// second is kept for the diagnosis and the exit; a second at
		// least is left for Kafka to answer.
		deadline = launched.Add(within - startupReportBudget)
		if floor := time.Now().Add(time.Second); deadline.Before(floor) {
			deadline = floor
		}
	}
	s.log.Info("connecting to Kafka at "+addrs, zap.Strings("brokers", s.kafka.Brokers), zap.Duration("startup_timeout", within))
	s.early.waitingFor("Kafka at "+addrs, nil)
	start := time.Now()
	err := bkafka.Await(ctx, s.kafka, bkafka.AwaitOptions{Within: within, Deadline: deadline,
		Retrying: func(attempt int, elapsed time.Duration, err error) {
			s.early.waitingFor("Kafka at "+addrs, err)
			s.log.Warn("Kafka not reachable yet; retrying", zap.Strings("brokers", s.kafka.Brokers), zap.Int("attempt", attempt),
				zap.Duration("elapsed", elapsed.Round(time.Millisecond)), zap.Duration("gives_up_after", within),
				zap.String("cause", bkafka.Cause(err)), zap.Error(err))
		}})
	if err != nil {
		return err
	}
	s.log.Info("Kafka reachable", zap.Strings("brokers", s.kafka.Brokers), zap.Duration("after", time.Since(start).Round(time.Millisecond)))
	s.early.waitingFor("the rest of the start-up (decision store, topics, record sources)", nil)
	return nil
}

// startupHTTP holds the HTTP address while the broker starts: /healthz
// answers at once, /readyz says what the start-up waits for, anything else
// is 503 — behind the same logins as later. handOver gives the listening
// socket to the broker's own server, so no connection is refused between
// the two.
type startupHTTP struct {
	ln     *handoffListener
	srv    *http.Server
	served chan struct{}
	state  atomic.Pointer[startupState]
	once   sync.Once
}

type startupState struct {
	waitingFor string
	last       string
}

// listenStartup binds addr and serves the start-up endpoints on it.
func listenStartup(cfg *config.Config, addr string, log *zap.Logger) (*startupHTTP, error) {
	guard, err := webauth.New(webauth.Options{File: cfg.HTTP.WebConfigFile, Operators: cfg.HTTP.Operators,
		Auditors: cfg.HTTP.Auditors, Log: log.Named("http"), Realm: "certless " + cfg.BrokerID})
	if err != nil {
		return nil, err
	}
	tlsCfg, err := guard.TLS()
	if err != nil {
		return nil, err
	}
	raw, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http: %w", err)
	}
	tcp, ok := raw.(*net.TCPListener)
	if !ok {
		raw.Close()
		return nil, fmt.Errorf("http: %s is not a TCP address", addr)
	}
	h := &startupHTTP{ln: &handoffListener{TCPListener: tcp}, served: make(chan struct{})}
	h.state.Store(&startupState{waitingFor: "the start-up"})
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", guard.Require(webauth.Operator, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})))
	mux.Handle("GET /readyz", guard.Require(webauth.Operator, http.HandlerFunc(h.readyz)))
	mux.Handle("/", guard.Public(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "certless is starting", http.StatusServiceUnavailable)
	})))
	var ln net.Listener = h.ln
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	h.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(log.Named("http"))}
	go func() {
		defer close(h.served)
		_ = h.srv.Serve(ln)
	}()
	return h, nil
}

func (h *startupHTTP) readyz(w http.ResponseWriter, _ *http.Request) {
	st := h.state.Load()
	body := map[string]any{"ready": false, "starting": true, "waiting_for": st.waitingFor}
	if st.last != "" {
		body["last_error"] = st.last
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(body)
}

// waitingFor sets what /readyz says the start-up waits for, and the last
// failure to get it. A nil h does nothing.
func (h *startupHTTP) waitingFor(what string, last error) {
	if h == nil {
		return
	}
	st := &startupState{waitingFor: what}
	if last != nil {
		st.last = last.Error()
	}
	h.state.Store(st)
}

// handOver stops serving the start-up endpoints (letting requests in
// progress finish) and returns the listening socket, still open.
func (h *startupHTTP) handOver() net.Listener {
	h.stop()
	_ = h.ln.TCPListener.SetDeadline(time.Time{})
	return h.ln.TCPListener
}

// close stops serving and closes the socket, if it was not handed over.
func (h *startupHTTP) close() {
	if h == nil {
		return
	}
	if h.stop() {
		_ = h.ln.TCPListener.Close()
	}
}

// stop ends the start-up server once; it reports whether this call did.
func (h *startupHTTP) stop() bool {
	did := false
	h.once.Do(func() {
		did = true
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
		<-h.served
	})
	return did
}

// handoffListener is a TCP listener whose Close stops Accept without
// closing the socket, so that the socket can be served again.
type handoffListener struct {
	*net.TCPListener
	stopped atomic.Bool
}

func (l *handoffListener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if err != nil && l.stopped.Load() {
		return nil, net.ErrClosed
	}
	return c, err
}

func (l *handoffListener) Close() error {
	l.stopped.Store(true)
	return l.TCPListener.SetDeadline(time.Now())
}

// ensureFirstTopic creates the dead-letter topic, within the start-up
// timeout.
func (s *service) ensureFirstTopic(ctx context.Context) error {
	within := cmp.Or(s.cfg.Kafka.StartupTimeout.D(), defaultKafkaStartup)
	tctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	spec := bkafka.TopicSpec{Name: s.topics.DeadLetter(), Partitions: 1, ReplicationFactor: s.cfg.Kafka.ReplicationFactor}
	if err := bkafka.EnsureTopics(tctx, s.kafka, spec); err != nil {
		return fmt.Errorf("create topics (kafka.startup_timeout %s): %w", within, bkafka.Explain(ctx, s.kafka, err))
	}
	return nil
}
