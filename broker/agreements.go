package broker

import (
	"context"
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
type Agreements struct {
	Agreements AgreementSet
	Usage      policies.Usage
}

// Authorise implements Authoriser.
func (a *Agreements) Authorise(ctx context.Context, r AuthRequest, now time.Time) (Authorisation, error) {
	set := a.Agreements.Set()
	if set == nil {
		set = policies.Empty()
	}
	d, err := set.Authorise(ctx, policies.Request{
		Agency: r.Agency, Query: r.Query, Purpose: r.Purpose, CaseRef: r.CaseRef, SubjectRegion: r.SubjectRegion,
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
type StoreUsage struct{ Quotas store.Quotas }

// Take implements policies.Usage.
func (u StoreUsage) Take(ctx context.Context, agency string, agreement policies.Ref, limits policies.Quotas, now time.Time) (bool, error) {
	return u.Quotas.Take(ctx, agency, agreement.ID, agreement.Version, store.Limits{
		PerMinute: int(limits.PerMinute), PerDay: int(limits.PerDay), PerMonth: int(limits.PerMonth),
	}, now)
}

var (
	_ Authoriser     = (*Agreements)(nil)
	_ policies.Usage = StoreUsage{}
)
