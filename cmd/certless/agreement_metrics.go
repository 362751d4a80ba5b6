package main

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/policies"
)

// agreementMetrics are the gauges of the policies folder: agreements by
// status now and overdue proposals (computed at each scrape, so a deadline
// or an expiry passing shows without a file changing), refused files by
// reason; and, once watch is called, each agreement's quota use (issue 8
// item 5), asked of the decision store at scrape time.
type agreementMetrics struct {
	status  *statusCollector
	refused *prometheus.GaugeVec
	quota   *quotaCollector
}

func newAgreementMetrics(reg prometheus.Registerer) *agreementMetrics {
	m := &agreementMetrics{
		status: &statusCollector{
			byStatus: prometheus.NewDesc("certless_agreements",
				"Agreement versions loaded from the policies folder, by status now (proposed, active, suspended, expired, terminated).", []string{"status"}, nil),
			overdue: prometheus.NewDesc("certless_agreements_overdue", "Proposals whose review deadline has passed.", nil, nil),
			now:     time.Now,
		},
		refused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "certless", Name: "agreement_files_refused",
			Help: "Files of the policies folder refused at the last load, by file (its name in the folder) and reason (unsigned, signature_invalid, wrong_party, ...).",
		}, []string{"file", "reason"}),
	}
	m.quota = newQuotaCollector()
	reg.MustRegister(m.status, m.refused, m.quota)
	return m
}

// watch makes the status gauges report on set() and the quota gauges, at
// each scrape, the use of every agreement version in force in set() that
// has quotas, as q counts it. Until it is called they report nothing.
func (m *agreementMetrics) watch(set func() *policies.Set, q store.Quotas) {
	m.status.mu.Lock()
	m.status.set = set
	m.status.mu.Unlock()
	m.quota.mu.Lock()
	defer m.quota.mu.Unlock()
	m.quota.set, m.quota.quotas = set, q
}

// update records the files refused at a (re)load.
func (m *agreementMetrics) update(_ *policies.Set, problems []policies.Problem, _ time.Time) {
	m.refused.Reset()
	for _, p := range problems {
		m.refused.WithLabelValues(filepath.Base(p.File), string(p.Reason)).Inc()
	}
}

// statusCollector counts the agreement versions of the set by their status
// at scrape time: lifecycle statements applied, and an active one past its
// validity counted as expired.
type statusCollector struct {
	byStatus, overdue *prometheus.Desc
	now               func() time.Time

	mu  sync.Mutex
	set func() *policies.Set
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byStatus
	ch <- c.overdue
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	set := c.set
	c.mu.Unlock()
	if set == nil {
		return
	}
	now := c.now()
	counts := map[policies.Status]int{
		policies.StatusProposed: 0, policies.StatusActive: 0, policies.StatusSuspended: 0,
		policies.StatusExpired: 0, policies.StatusTerminated: 0,
	}
	overdue := 0
	for _, info := range set().Agreements() {
		st, _ := info.StatusAt(now)
		a := info.Agreement
		if st == policies.StatusActive && !now.Before(a.Validity.Until) {
			st = policies.StatusExpired
		}
		counts[st]++
		if st == policies.StatusProposed && a.ReviewDeadline != nil && now.After(*a.ReviewDeadline) {
			overdue++
		}
	}
	for st, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.byStatus, prometheus.GaugeValue, float64(n), string(st))
	}
	ch <- prometheus.MustNewConstMetric(c.overdue, prometheus.GaugeValue, float64(overdue))
}

// quotaUsageTimeout bounds each Usage a scrape asks.
const quotaUsageTimeout = 2 * time.Second

// quotaCollector exports certless_quota_used and certless_quota_limit
// {agency, agreement, window}: for each agreement version in force with
// quotas, the count of the current calendar window (Beijing time) and its
// limit, for the windows that have a limit. The agency is the requester,
// whose budget the quota is; agreement ids come from the co-signed set,
// so label values are bounded. A Usage that fails is counted in
// certless_quota_scrape_errors_total and its gauges left out of that
// scrape.
type quotaCollector struct {
	used, limit *prometheus.Desc
	errors      prometheus.Counter
	now         func() time.Time

	mu     sync.Mutex
	set    func() *policies.Set
	quotas store.Quotas
}

func newQuotaCollector() *quotaCollector {
	labels := []string{"agency", "agreement", "window"}
	return &quotaCollector{
		used: prometheus.NewDesc("certless_quota_used",
			"Uses counted in the current calendar window (minute, day, month; Beijing time) of an agreement in force, by requesting agency.", labels, nil),
		limit: prometheus.NewDesc("certless_quota_limit",
			"Quota of an agreement in force per calendar window (minute, day, month), by requesting agency; only windows with a limit.", labels, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "certless", Name: "quota_scrape_errors_total",
			Help: "Quota usages the decision store failed to report at a scrape (those gauges were left out).",
		}),
		now: time.Now,
	}
}

func (c *quotaCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.used
	ch <- c.limit
	c.errors.Describe(ch)
}

func (c *quotaCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	set, q := c.set, c.quotas
	c.mu.Unlock()
	if set != nil && q != nil {
		now := c.now()
		for _, info := range set().InForce(now) {
			c.collectOne(ch, q, info, now)
		}
	}
	c.errors.Collect(ch)
}

func (c *quotaCollector) collectOne(ch chan<- prometheus.Metric, q store.Quotas, info policies.Info, now time.Time) {
	a := info.Agreement
	if !a.Quotas.Limited() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), quotaUsageTimeout)
	defer cancel()
	agency := a.Parties.Requester
	perMinute, perDay, perMonth, err := q.Usage(ctx, agency, info.Ref.ID, broker.QuotaVersion, now)
	if err != nil {
		c.errors.Inc()
		return
	}
	for _, w := range []struct {
		window      string
		used, limit int64
	}{
		{"minute", int64(perMinute), a.Quotas.PerMinute},
		{"day", int64(perDay), a.Quotas.PerDay},
		{"month", int64(perMonth), a.Quotas.PerMonth},
	} {
		if w.limit <= 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(w.used), agency, info.Ref.ID, w.window)
		ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(w.limit), agency, info.Ref.ID, w.window)
	}
}
