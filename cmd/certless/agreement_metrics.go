package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certless/certless/policies"
)

// agreementMetrics are the gauges of the policies folder: agreements by
// status now, overdue proposals, and refused files by reason. Label values
// are fixed sets.
type agreementMetrics struct {
	byStatus *prometheus.GaugeVec
	overdue  prometheus.Gauge
	refused  *prometheus.GaugeVec
}

func newAgreementMetrics(reg prometheus.Registerer) *agreementMetrics {
	m := &agreementMetrics{
		byStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "certless", Name: "agreements",
			Help: "Agreement versions loaded from the policies folder, by status now (proposed, active, suspended, expired, terminated).",
		}, []string{"status"}),
		overdue: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "certless", Name: "agreements_overdue",
			Help: "Proposals whose review deadline has passed.",
		}),
		refused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "certless", Name: "agreement_files_refused",
			Help: "Files of the policies folder refused at the last load, by reason (unsigned, signature_invalid, wrong_party, ...).",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.byStatus, m.overdue, m.refused)
	return m
}

func (m *agreementMetrics) update(set *policies.Set, problems []policies.Problem, now time.Time) {
	counts := map[policies.Status]int{
		policies.StatusProposed: 0, policies.StatusActive: 0, policies.StatusSuspended: 0,
		policies.StatusExpired: 0, policies.StatusTerminated: 0,
	}
	overdue := 0
	for _, info := range set.Agreements() {
		st, _ := info.StatusAt(now)
		counts[st]++
		if a := info.Agreement; st == policies.StatusProposed && a.ReviewDeadline != nil && now.After(*a.ReviewDeadline) {
			overdue++
		}
	}
	for st, n := range counts {
		m.byStatus.WithLabelValues(string(st)).Set(float64(n))
	}
	m.overdue.Set(float64(overdue))
	m.refused.Reset()
	for _, p := range problems {
		m.refused.WithLabelValues(string(p.Reason)).Inc()
	}
}
