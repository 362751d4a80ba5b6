package broker

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certless/certless/adapters"
)

// SourceMetrics observe record sources from outside: answers by source and
// outcome, and their latency. Labels are source names and fixed outcomes.
type SourceMetrics struct {
	answers *prometheus.CounterVec
	latency *prometheus.HistogramVec
	circuit *prometheus.GaugeVec
}

// NewSourceMetrics registers the record-source metrics with reg.
func NewSourceMetrics(reg prometheus.Registerer) *SourceMetrics {
	m := &SourceMetrics{
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "certless", Name: "source_answers_total",
			Help: "Record source calls, by source and outcome (found, not_found, unavailable, error).",
		}, []string{"source", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "certless", Name: "source_answer_seconds",
			Help:    "Latency of record source calls.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"source"}),
		circuit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "certless", Name: "source_circuit_open",
			Help: "1 while a source's circuit breaker is open (calls fail fast), 0.5 half-open, 0 closed.",
		}, []string{"source"}),
	}
	reg.MustRegister(m.answers, m.latency, m.circuit)
	return m
}

// CircuitChanged records a circuit breaker state change of a source.
func (m *SourceMetrics) CircuitChanged(source, to string) {
	v := 0.0
	switch to {
	case "open":
		v = 1
	case "half-open":
		v = 0.5
	}
	m.circuit.WithLabelValues(source).Set(v)
}

// Wrap returns src observed under name. Its series exist from now on, at
// 0: the answers by outcome, the latency and the circuit (closed).
func (m *SourceMetrics) Wrap(name string, src RecordSource) RecordSource {
	for _, o := range []string{"found", "not_found", "unavailable", "error"} {
		m.answers.WithLabelValues(name, o)
	}
	m.latency.WithLabelValues(name)
	m.circuit.WithLabelValues(name)
	return observedSource{name: name, src: src, m: m}
}

type observedSource struct {
	name string
	src  RecordSource
	m    *SourceMetrics
}

func (o observedSource) Answer(ctx context.Context, q adapters.Query) (adapters.Answer, error) {
	start := time.Now()
	a, err := o.src.Answer(ctx, q)
	o.m.latency.WithLabelValues(o.name).Observe(time.Since(start).Seconds())
	outcome := "found"
	switch {
	case errors.Is(err, adapters.ErrUnavailable):
		outcome = "unavailable"
	case err != nil:
		outcome = "error"
	case !a.Found:
		outcome = "not_found"
	}
	o.m.answers.WithLabelValues(o.name, outcome).Inc()
	return a, err
}
