package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/feedback"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/policies/workdays"
	"github.com/certless/certless/statuslist"
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

// statusBase is the URL the revocation status lists are published under.
func (s *service) statusBase() string {
	base := s.cfg.HTTP.PublicURL
	if base == "" {
		base = s.httpBase()
	}
	return strings.TrimRight(base, "/") + "/status"
}

// subjectSecret reads the deployment's secret for subject keys
// (<keys_dir>/subject.key, 32 random bytes in hex), creating it on first
// start. Every broker of a deployment must share it (the keys folder).
func subjectSecret(keysDir string) ([]byte, error) {
	path := filepath.Join(keysDir, "subject.key")
	b, err := keys.ReadSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret := make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(keysDir, 0o700); err != nil {
			return nil, err
		}
		enc := []byte(hex.EncodeToString(secret) + "\n")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return subjectSecret(keysDir) // another broker made it first
		}
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(enc); err != nil {
			f.Close()
			return nil, err
		}
		return secret, f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("subject key secret: %w", err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(secret) < 32 {
		return nil, fmt.Errorf("subject key secret %s: want 32 bytes in hex", path)
	}
	return secret, nil
}

// statusHandler serves GET /status/<n>: revocation status list n as a
// BitstringStatusListCredential secured as a vc+jwt, signed now by the
// broker's key, with every revocation of the list and why.
func (s *service) statusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/status/"), 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64/statuslist.Size-1 {
			http.Error(w, "no such status list", http.StatusNotFound)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		jwt, err := signedStatusList(ctx, s.store, statuslist.ListURL(s.statusBase(), n), s.cfg.BrokerID, s.key.SigningKey(), n)
		if err == nil {
			w.Header().Set("Content-Type", "application/vc+jwt")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write(jwt)
			return
		}
		s.log.Error("status list", zap.Int64("list", n), zap.Error(err))
		http.Error(w, "status list unavailable", http.StatusInternalServerError)
	})
}

// revocationReader reads the revocations of a range of status indexes;
// store.Store is one.
type revocationReader interface {
	Revocations(ctx context.Context, from, to int64) ([]store.Revocation, error)
}

// signedStatusList is status list n, published at url, as a
// BitstringStatusListCredential vc+jwt valid from now, with why each bit
// is set.
func signedStatusList(ctx context.Context, s revocationReader, url, brokerID string, key *keys.Private, n int64) ([]byte, error) {
	revs, err := s.Revocations(ctx, n*statuslist.Size, (n+1)*statuslist.Size)
	if err != nil {
		return nil, err
	}
	rs := make([]statuslist.Revoked, len(revs))
	for i, rv := range revs {
		rs[i] = statuslist.Revoked{Index: int(rv.StatusIndex % statuslist.Size), Reason: rv.Reason, Dispute: rv.DisputeID, At: rv.At}
	}
	c, err := statuslist.NewCredential(url, statuslist.Issuer(brokerID), time.Now(), rs)
	if err != nil {
		return nil, err
	}
	return statuslist.Sign(key, c)
}
