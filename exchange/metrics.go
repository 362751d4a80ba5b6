package exchange

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the scheduler's: batches and records built, offers made
// again, failed rounds per schedule, and per schedule the batches waiting
// for their acknowledgement and those past the deadline.
type Metrics struct {
	batches, records, failures *prometheus.CounterVec
	reoffers                   prometheus.Counter
	unacked, overdue, last     *prometheus.GaugeVec
}

// NewMetrics registers the scheduler's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certless_exchange_batches_built_total",
			Help: "Periodic-exchange batches this broker built, by schedule (<agreement>/<schedule>)."}, []string{"schedule"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certless_exchange_records_built_total",
			Help: "Records in the batches this broker built, by schedule."}, []string{"schedule"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "certless_exchange_failures_total",
			Help: "Periodic-exchange steps that failed (retried next round), by schedule or batch."}, []string{"schedule"}),
		reoffers: prometheus.NewCounter(prometheus.CounterOpts{Name: "certless_exchange_reoffers_total",
			Help: "Batches offered again because their acknowledgement was overdue."}),
		unacked: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "certless_exchange_unacknowledged",
			Help: "Published batches not yet acknowledged, by schedule."}, []string{"schedule", "recipient"}),
		overdue: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "certless_exchange_overdue",
			Help: "Published batches unacknowledged past the acknowledgement deadline, by schedule."}, []string{"schedule", "recipient"}),
		last: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "certless_exchange_last_sequence",
			Help: "The highest batch sequence built, by schedule."}, []string{"schedule", "recipient"}),
	}
	reg.MustRegister(m.batches, m.records, m.failures, m.reoffers, m.unacked, m.overdue, m.last)
	return m
}

func (m *Metrics) built(job string, records int) {
	if m != nil {
		m.batches.WithLabelValues(job).Inc()
		m.records.WithLabelValues(job).Add(float64(records))
	}
}

func (m *Metrics) failed(job string) {
	if m != nil {
		m.failures.WithLabelValues(job).Inc()
	}
}

func (m *Metrics) reoffered() {
	if m != nil {
		m.reoffers.Inc()
	}
}

// known makes each job's counters exist at 0, so a rate over them (an
// alert) sees the first failure.
func (m *Metrics) known(jobs []Job) {
	if m == nil {
		return
	}
	for _, j := range jobs {
		m.failures.WithLabelValues(j.Key())
		m.batches.WithLabelValues(j.Key())
		m.records.WithLabelValues(j.Key())
	}
}

func (m *Metrics) set(sums []Summary) {
	for _, s := range sums {
		job := s.AgreementID + "/" + s.Schedule
		m.unacked.WithLabelValues(job, s.Recipient).Set(float64(s.Unacknowledged))
		m.overdue.WithLabelValues(job, s.Recipient).Set(float64(s.Overdue))
		m.last.WithLabelValues(job, s.Recipient).Set(float64(s.Last))
	}
}
