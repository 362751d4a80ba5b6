package main

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/feedback"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/policies/workdays"
)

// agreementTerms answers feedback.Terms from the agreements in force: the
// data owner a dispute goes to is the provider party of the agreement the
// disputed answer rests on, and its deadline the agreement's working days
// (China's public holidays skipped). An agreement no longer loaded falls
// back to the first configured data owner and the default days.
type agreementTerms struct {
	agreements interface{ Set() *policies.Set }
	owners     []string
	calendar   *workdays.Calendar
}

func (t agreementTerms) find(id string, version int) *policies.Agreement {
	if t.agreements == nil || id == "" {
		return nil
	}
	for _, in := range t.agreements.Set().Agreements() {
		if in.Ref.ID == id && in.Ref.Version == version {
			return in.Agreement
		}
	}
	return nil
}

func (t agreementTerms) Owner(id string, version int) string {
	if a := t.find(id, version); a != nil {
		return a.Parties.Provider
	}
	if len(t.owners) > 0 {
		return t.owners[0]
	}
	return policeOwner
}

func (t agreementTerms) Due(opened time.Time, id string, version int) time.Time {
	return t.calendar.Deadline(opened, t.find(id, version).DisputeDays())
}

// encryptNotice encrypts a dispute notice for an agency whose receipts are
// confidential.
func (s *service) encryptNotice(agency string, jws []byte, now time.Time) ([]byte, error) {
	if !s.docking.Confidential(agency) {
		return jws, nil
	}
	pub, err := s.docking.EncryptionKey(agency, now)
	if err != nil {
		return nil, err
	}
	return envelope.EncryptTo(jws, pub)
}

// disputeMetrics reports the disputes by status and the overdue ones by
// data owner, asked of the store at scrape time (at most every 5 s).
type disputeMetrics struct {
	store            *feedback.Store
	now              func() time.Time
	log              *zap.Logger
	owners           []string
	statusD, overdue *prometheus.Desc

	mu                sync.Mutex // one query for concurrent scrapes
	at                time.Time
	byStatus, byOwner map[string]int
}

func newDisputeMetrics(s *feedback.Store, owners []string, now func() time.Time, log *zap.Logger) *disputeMetrics {
	return &disputeMetrics{store: s, owners: owners, now: now, log: log,
		statusD: prometheus.NewDesc("certless_disputes", "Disputes by status.", []string{"status"}, nil),
		overdue: prometheus.NewDesc("certless_disputes_overdue", "Disputes whose data owner has not answered by the agreement's deadline, by data owner.", []string{"owner"}, nil),
	}
}

func (m *disputeMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.statusD; ch <- m.overdue }

func (m *disputeMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.at.IsZero() || time.Since(m.at) > 5*time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		byStatus, byOwner, err := m.store.Counts(ctx, m.now())
		cancel()
		if err != nil {
			m.log.Warn("dispute metrics: store unreadable", zap.Error(err))
			return
		}
		m.byStatus, m.byOwner, m.at = byStatus, byOwner, time.Now()
	}
	for _, st := range []string{"open", "forwarded", "confirmed", "corrected", "closed"} {
		ch <- prometheus.MustNewConstMetric(m.statusD, prometheus.GaugeValue, float64(m.byStatus[st]), st)
	}
	owners := slices.Clone(m.owners)
	for owner := range m.byOwner {
		if !slices.Contains(owners, owner) {
			owners = append(owners, owner)
		}
	}
	for _, owner := range owners {
		ch <- prometheus.MustNewConstMetric(m.overdue, prometheus.GaugeValue, float64(m.byOwner[owner]), owner)
	}
}

// ownerKey is the current signing key of a police data owner in the keys
// folder (the police side's `certless dispute resolve`).
func ownerKey(dir, owner string, now time.Time) (*keys.Private, error) {
	return keys.SigningKey(dir, owner, now)
}
