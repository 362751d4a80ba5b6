package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"github.com/certless/certless/config"
	"github.com/certless/certless/schemas"
)

// Denial reasons of the authorisation stage.
const (
	ReasonUnknownAgency     = "unknown_agency"
	ReasonQueryNotAllowed   = "query_not_allowed"
	ReasonPurposeNotAllowed = "purpose_not_allowed"
)

// Authorisation is the authorisation stage's answer for one request.
type Authorisation struct {
	Allowed bool
	// Reason is the stable denial code when !Allowed; Detail explains it.
	Reason, Detail string
	// Fields the answer may carry; nil means every documented field of the
	// query type.
	Fields []string
	// AnswerMismatch allows an identity answer to say that the ID number
	// exists under another name; without it that is not_found, the same
	// answer as an unknown ID number.
	AnswerMismatch bool
	// Basis cites what the decision rests on (agreement id and digest).
	Basis schemas.AgreementRef
}

// AuthRequest is what authorisation looks at: verified, typed facts only.
type AuthRequest struct {
	Agency  string
	Query   string
	Purpose string
	// CaseRef is the request's purpose.case_ref.
	CaseRef string
	// SubjectRegion is the GB/T 2260 code of the subject's ID number.
	SubjectRegion string
	// AgencyRegion is the requester's region in the docking directory (set
	// by Docked); see policies.Request.
	AgencyRegion string
	// Digest is the request's digest: an Authoriser may remember its
	// answer for a retry of the same request.
	Digest string
}

// Authoriser decides whether an agency may ask a query for a purpose at
// now. It is the seam where co-signed agreements plug in; AllowList is the
// minimal configuration-based implementation. An error is classified with
// package fault (a quota store that cannot be reached is transient).
type Authoriser interface {
	Authorise(ctx context.Context, r AuthRequest, now time.Time) (Authorisation, error)
}

// AllowList authorises from the agencies' allow entries in the configuration.
type AllowList struct {
	entries map[string]map[string]config.Allow
	digests map[string]string
}

// NewAllowList builds the allow-list of agencies.
func NewAllowList(agencies []config.Agency) *AllowList {
	a := &AllowList{entries: map[string]map[string]config.Allow{}, digests: map[string]string{}}
	for _, ag := range agencies {
		m := map[string]config.Allow{}
		for _, al := range ag.Allow {
			m[al.Query] = al
		}
		a.entries[ag.ID] = m
		b, _ := json.Marshal(ag.Allow)
		sum := sha256.Sum256(b)
		a.digests[ag.ID] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return a
}

// Authorise implements Authoriser.
func (a *AllowList) Authorise(_ context.Context, r AuthRequest, _ time.Time) (Authorisation, error) {
	return a.authorise(r), nil
}

func (a *AllowList) authorise(r AuthRequest) Authorisation {
	m, ok := a.entries[r.Agency]
	if !ok {
		return Authorisation{Reason: ReasonUnknownAgency}
	}
	basis := schemas.AgreementRef{ID: "allowlist/" + r.Agency, Digest: a.digests[r.Agency]}
	al, ok := m[r.Query]
	if !ok {
		return Authorisation{Reason: ReasonQueryNotAllowed, Basis: basis}
	}
	if len(al.Purposes) > 0 && !slices.Contains(al.Purposes, r.Purpose) {
		return Authorisation{Reason: ReasonPurposeNotAllowed, Basis: basis}
	}
	fields := al.Fields
	if len(fields) == 0 {
		fields = nil // no list: every field of the query type
	}
	return Authorisation{Allowed: true, Fields: fields, AnswerMismatch: al.AnswerMismatch, Basis: basis}
}

var _ Authoriser = (*AllowList)(nil)
