package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/fault"
	"github.com/certless/certless/schemas"
)

// EarliestAsOf is the floor of a request's body.as_of: 1 January 1984
// (Beijing time), when resident identity cards were introduced. No record
// source speaks for an earlier instant, so asking for one is invalid.
var EarliestAsOf = time.Date(1984, 1, 1, 0, 0, 0, 0, time.FixedZone("CST", 8*3600))

// RequestHandler decides verification requests:
//
//	validate → authorise → route and answer → privacy → minimise
//
// It is the TypeHandler of schemas.TypeVerificationRequest.
type RequestHandler struct {
	Auth    Authoriser
	Records RecordSource
	// ClockSkew is how far in the future body.as_of may lie; 0 means
	// envelope.DefaultClockSkew.
	ClockSkew time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// SubjectKey, when set, keys an answered decision by its query and
	// subject (a keyed digest: the store never holds the subject), so that
	// the receipts of an answer later corrected can be found and revoked.
	SubjectKey func(q adapters.Query) string
}

// Decide implements TypeHandler.
func (h *RequestHandler) Decide(ctx context.Context, v *envelope.Verified) (Decision, error) {
	var req schemas.VerificationRequest
	if err := json.Unmarshal(v.Body, &req); err != nil {
		// The schema accepted it, so this is a bug, not bad input.
		return Decision{}, fault.Permanentf(string(envelope.ReasonSchemaViolation), "body does not decode: %w", err)
	}
	d := Decision{Request: v, Query: req.Query}
	q := adapters.Query{Type: adapters.QueryType(req.Query), Subject: adapters.Subject(req.Subject)}
	if req.RelatedSubject != nil {
		rs := adapters.Subject(*req.RelatedSubject)
		q.Related = &rs
	}
	if req.AsOf != nil {
		q.AsOf = *req.AsOf
	}
	if err := h.validate(q, req.AsOf != nil); err != nil {
		return d, err
	}

	auth, err := h.Auth.Authorise(ctx, AuthRequest{
		Agency: v.Agency, Query: req.Query, Purpose: v.Purpose.Basis, CaseRef: v.Purpose.CaseRef,
		SubjectRegion: q.Subject.IDNumber[:6], Digest: v.Digest,
	}, h.now())
	if err != nil {
		return d, fmt.Errorf("authorise: %w", err)
	}
	if auth.Basis.ID != "" {
		d.Basis = &auth.Basis
	}
	if !auth.Allowed {
		d.Outcome, d.Reason, d.Detail = schemas.DecisionDenied, auth.Reason, auth.Detail
		return d, nil
	}

	ans, err := h.Records.Answer(ctx, q)
	switch {
	case errors.Is(err, ErrNoSource):
		d.Outcome, d.Reason = schemas.DecisionNotFound, ReasonNoJurisdiction
		return d, nil
	case err != nil:
		return d, fmt.Errorf("answer %s: %w", req.Query, err)
	case !ans.Found, nameMismatch(q.Type, ans) && !auth.AnswerMismatch:
		// "No such ID number" and "the ID exists under another name" are
		// the same answer unless the agreement allows telling them apart.
		d.Outcome, d.Reason = schemas.DecisionNotFound, ReasonNoRecord
		return d, nil
	}
	ans.Fields = Minimise(q.Type, ans.Fields, auth.Fields)
	d.Outcome, d.Answer = schemas.DecisionAnswered, &ans
	if h.SubjectKey != nil {
		d.SubjectKey = h.SubjectKey(q)
	}
	return d, nil
}

// validate is what the schema cannot say about a request; each failure is
// permanent (invalid_query) and names the field. asOf says whether the
// request gave body.as_of: q.AsOf zero means "now" to the sources, so an
// as_of of 0001-01-01T00:00:00Z (the zero time.Time) must be checked by
// presence, not by IsZero, or it would be answered as of now.
func (h *RequestHandler) validate(q adapters.Query, asOf bool) error {
	if asOf {
		skew := h.ClockSkew
		if skew <= 0 {
			skew = envelope.DefaultClockSkew
		}
		now := h.now()
		switch {
		case q.AsOf.After(now.Add(skew)):
			return fault.Permanentf(adapters.ReasonInvalidQuery, "/body/as_of: %s is in the future (now %s, clock skew %s)",
				q.AsOf.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), skew)
		case q.AsOf.Before(EarliestAsOf):
			return fault.Permanentf(adapters.ReasonInvalidQuery, "/body/as_of: %s is before the earliest instant records speak for, %s",
				q.AsOf.UTC().Format(time.RFC3339), EarliestAsOf.Format(time.RFC3339))
		}
	}
	if err := q.Validate(); err != nil {
		if q.Related != nil && q.Related.IDNumber == q.Subject.IDNumber {
			return fmt.Errorf("/body/related_subject: %w", err)
		}
		return err
	}
	return nil
}

func (h *RequestHandler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// nameMismatch reports an identity answer saying the ID number exists but
// the name given is not its holder's.
func nameMismatch(t adapters.QueryType, a adapters.Answer) bool {
	if t != adapters.QueryIdentity {
		return false
	}
	match, ok := a.Fields[adapters.FieldIDNameMatch].(bool)
	return ok && !match
}

var _ TypeHandler = (*RequestHandler)(nil)
