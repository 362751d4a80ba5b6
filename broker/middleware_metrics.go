package broker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certless/certless/schemas"
)

// Metrics are the pipeline's Prometheus metrics. Label values are bounded:
// agency ids come from the registry, query types and outcomes from fixed
// sets, reasons from stable codes — never a subject.
type Metrics struct {
	decisions *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	failures  *prometheus.CounterVec
	inflight  prometheus.Gauge
}

// NewMetrics registers the pipeline metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "certless", Name: "decisions_total",
			Help: "Messages handled, by agency, query type, outcome (answered, not_found, denied, rejected, unavailable, internal_error, dead_letter) and reason.",
		}, []string{"agency", "query", "outcome", "reason", "redelivery"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "certless", Name: "handle_seconds",
			Help:    "Time to handle one message, from fetch to outputs ready.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "certless", Name: "transient_failures_total",
			Help: "Handling attempts that failed (transiently, or permanently where a stage did not answer itself); retried within the bound, then answered unavailable.",
		}, []string{"topic"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "certless", Name: "in_flight_messages",
			Help: "Messages being handled now.",
		}),
	}
	reg.MustRegister(m.decisions, m.latency, m.failures, m.inflight)
	return m
}

// Outcomes are the values of the outcome label, dead_letter included.
var Outcomes = []string{schemas.DecisionAnswered, schemas.DecisionNotFound, schemas.DecisionDenied, schemas.DecisionRejected,
	schemas.DecisionUnavailable, schemas.DecisionInternalError, OutcomeDeadLetter}

// Init creates the series known at start at 0, so that dashboards show 0
// rather than no data and increase() sees a first event: each agency's
// decisions by outcome (query and reason "none", not a redelivery), the
// latency by outcome and the transient failures of each request topic.
func (mt *Metrics) Init(agencies, topics []string) {
	for _, o := range Outcomes {
		mt.latency.WithLabelValues(o)
		for _, a := range agencies {
			mt.decisions.WithLabelValues(label(a), "none", o, "none", "false")
		}
	}
	for _, t := range topics {
		mt.failures.WithLabelValues(t)
	}
}

// Failed counts one failed handling attempt of m; Retry calls it.
func (mt *Metrics) Failed(m Message, _ error) { mt.failures.WithLabelValues(m.Topic).Inc() }

// Middleware records outcome counts and latency of next; its failed
// attempts are counted by Failed, where they are retried.
func (mt *Metrics) Middleware() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, m Message) (Result, error) {
			mt.inflight.Inc()
			defer mt.inflight.Dec()
			start := time.Now()
			res, err := next.Handle(ctx, m)
			if err != nil {
				return res, err
			}
			redelivery := "false"
			if res.Redelivery {
				redelivery = "true"
			}
			mt.decisions.WithLabelValues(label(res.Agency), label(res.Query), res.Outcome, res.Reason, redelivery).Inc()
			mt.latency.WithLabelValues(res.Outcome).Observe(time.Since(start).Seconds())
			return res, nil
		})
	}
}

func label(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
