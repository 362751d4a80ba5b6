package broker

import (
	"context"
	"sync"
	"time"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/schemas"
)

// AgreementSet yields the set of agreements in force now; a
// policies.Watcher swaps it whole when the policies folder changes, so a
// request is never decided against a half-loaded set.
type AgreementSet interface {
	Set() *policies.Set
}

// Agreements authorises requests against the co-signed data-sharing
// agreements of the policies folder (policies.Set.Authorise), counting
// quotas in the decision store so every broker instance shares one budget.
//
// A request is authorised, and its quota counted, once: when its handling
// fails transiently after that and is retried, the retry reuses the first
// authorisation instead of counting the use again, unless the agreements
// in force changed meanwhile. The memory of that is
// per process and bounded (the last memoSize requests); a request
// redelivered to another instance after a crash may count twice.
type Agreements struct {
	Agreements AgreementSet
	Usage      policies.Usage

	mu   sync.Mutex
	memo map[string]Authorisation // by request digest and set digest
	ring []string                 // keys of memo, oldest first
}

// memoSize bounds the authorisations remembered for retries.
const memoSize = 1 << 14

// Authorise implements Authoriser.
func (a *Agreements) Authorise(ctx context.Context, r AuthRequest, now time.Time) (Authorisation, error) {
	set := a.Agreements.Set()
	if set == nil {
		set = policies.Empty()
	}
	// Remembered per set: after the agreements changed (a suspension, a
	// termination) a retry is decided afresh.
	key := r.Digest + " " + set.Digest()
	if r.Digest != "" {
		a.mu.Lock()
		prev, ok := a.memo[key]
		a.mu.Unlock()
		if ok {
			return prev, nil
		}
	}
	out, err := a.authorise(ctx, set, r, now)
	if err != nil || r.Digest == "" {
		return out, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.memo == nil {
		a.memo = make(map[string]Authorisation, memoSize)
	}
	if _, ok := a.memo[key]; !ok {
		if len(a.ring) == memoSize {
			delete(a.memo, a.ring[0])
			a.ring = a.ring[1:]
		}
		a.ring = append(a.ring, key)
	}
	a.memo[key] = out
	return out, nil
}

func (a *Agreements) authorise(ctx context.Context, set *policies.Set, r AuthRequest, now time.Time) (Authorisation, error) {
	d, err := set.Authorise(ctx, policies.Request{
		Agency: r.Agency, Query: r.Query, Purpose: r.Purpose, CaseRef: r.CaseRef, SubjectRegion: r.SubjectRegion,
		AgencyRegion: r.AgencyRegion,
	}, now, a.Usage)
	if err != nil {
		return Authorisation{}, err
	}
	out := Authorisation{Allowed: d.Allowed, Reason: d.Reason, Detail: d.Detail, Fields: d.Fields, AnswerMismatch: d.AnswerMismatch}
	if d.Agreement != nil {
		out.Basis = schemas.AgreementRef{ID: d.Agreement.ID, Version: d.Agreement.Version, Digest: d.Agreement.Digest}
	}
	return out, nil
}

// StoreUsage counts agreement quotas in the decision store.
//
// One budget per requester and agreement id, whatever the version: a new
// version (signed documents never change, so any amendment is one) takes
// over the uses counted under the previous one, with its own limits, rather
// than starting afresh. Uses are stored under QuotaVersion.
type StoreUsage struct{ Quotas store.Quotas }

// QuotaVersion is the agreement version quota uses are counted under: all
// versions of an agreement share one budget.
const QuotaVersion = 0

// Take implements policies.Usage.
func (u StoreUsage) Take(ctx context.Context, agency string, agreement policies.Ref, limits policies.Quotas, now time.Time) (bool, error) {
	return u.Quotas.Take(ctx, agency, agreement.ID, QuotaVersion, store.Limits{
		PerMinute: int(limits.PerMinute), PerDay: int(limits.PerDay), PerMonth: int(limits.PerMonth),
	}, now)
}

var (
	_ Authoriser     = (*Agreements)(nil)
	_ policies.Usage = StoreUsage{}
)
