package broker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/schemas"
)

// Reasons the pipeline itself gives, beside the envelope's reason codes and
// the authorisation denials.
const (
	ReasonUnknownTopic    = "unknown_topic"
	ReasonTopicMismatch   = "topic_agency_mismatch"
	ReasonUnsupportedType = "unsupported_type"
	ReasonNoJurisdiction  = "no_jurisdiction"
	ReasonNoRecord        = "no_record"
	ReasonInternal        = "internal_error"
)

// Verifier authenticates and validates a signed message. On failure it
// returns an error carrying an envelope.Reason; for reasons whose sender is
// authenticated it also returns the verified envelope, so the rejection can
// be receipted to that sender. Any other error is transient.
type Verifier interface {
	Verify(ctx context.Context, raw []byte) (*envelope.Verified, error)
}

// Decisions is the idempotent decision store as the pipeline uses it.
type Decisions interface {
	// Get returns the decision stored for a request digest.
	Get(ctx context.Context, digest string) (store.Decision, bool, error)
	// Save stores d unless its digest is stored and returns what is stored;
	// it returns store.ErrIDConflict when another message holds d's id.
	Save(ctx context.Context, d store.Decision) (store.Decision, error)
}

// Sealer signs a receipt payload with the broker's key and, when the
// receiving agency asks for it, encrypts it to that agency.
type Sealer interface {
	Seal(ctx context.Context, p envelope.Payload, to string) ([]byte, error)
}

// Pipeline is the request-to-receipt chain. Its fields are its stages.
type Pipeline struct {
	Topics    Topics
	BrokerID  string
	Verify    Verifier
	Auth      Authoriser
	Records   RecordSource
	Seal      Sealer
	Decisions Decisions
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Handle implements Handler: one message in, its outputs out.
func (p *Pipeline) Handle(ctx context.Context, m Message) (Result, error) {
	topicAgency, ok := p.Topics.AgencyOfRequests(m.Topic)
	if !ok {
		return p.deadLetter(m, "", ReasonUnknownTopic, "message on a topic that is not a request topic"), nil
	}
	digest := Digest(m.Value)

	// Redelivery: the very same bytes were decided before; re-emit exactly
	// what is stored.
	if d, found, err := p.Decisions.Get(ctx, digest); err != nil {
		return Result{}, fmt.Errorf("look up decision: %w", err)
	} else if found {
		return p.reemit(d), nil
	}

	v, err := p.Verify.Verify(ctx, m.Value)
	if err != nil {
		reason := envelope.ReasonOf(err)
		var e *envelope.Error
		if errors.As(err, &e) {
			v = e.Verified
		}
		switch {
		case reason == "":
			return Result{}, fmt.Errorf("verify: %w", err)
		case !reason.Authenticated() || v == nil:
			return p.deadLetter(m, topicAgency, string(reason), err.Error()), nil
		case v.Agency != topicAgency:
			return p.deadLetter(m, topicAgency, ReasonTopicMismatch, "signed by "+v.Agency), nil
		}
		return p.decide(ctx, v, "", schemas.DecisionRejected, string(reason), detailOf(err), nil, nil)
	}
	if v.Agency != topicAgency {
		return p.deadLetter(m, topicAgency, ReasonTopicMismatch, "signed by "+v.Agency), nil
	}
	if v.Type != schemas.TypeVerificationRequest {
		return p.decide(ctx, v, "", schemas.DecisionRejected, ReasonUnsupportedType, v.Type+" is not accepted on a request topic", nil, nil)
	}
	var req schemas.VerificationRequest
	if err := json.Unmarshal(v.Body, &req); err != nil {
		// The schema accepted it, so this is a bug, not bad input.
		return p.decide(ctx, v, "", schemas.DecisionRejected, string(envelope.ReasonSchemaViolation), "body does not decode", nil, nil)
	}

	auth := p.Auth.Authorise(AuthRequest{Agency: v.Agency, Query: req.Query, Purpose: v.Purpose.Basis})
	if !auth.Allowed {
		return p.decide(ctx, v, req.Query, schemas.DecisionDenied, auth.Reason, "", &auth.Basis, nil)
	}

	q := adapters.Query{Type: adapters.QueryType(req.Query), Subject: adapters.Subject(req.Subject)}
	if req.RelatedSubject != nil {
		rs := adapters.Subject(*req.RelatedSubject)
		q.Related = &rs
	}
	if req.AsOf != nil {
		q.AsOf = *req.AsOf
	}
	ans, err := p.Records.Answer(ctx, q)
	switch {
	case errors.Is(err, ErrNoSource):
		return p.decide(ctx, v, req.Query, schemas.DecisionNotFound, ReasonNoJurisdiction, "", &auth.Basis, nil)
	case err != nil:
		return Result{}, fmt.Errorf("answer %s: %w", req.Query, err)
	case !ans.Found:
		return p.decide(ctx, v, req.Query, schemas.DecisionNotFound, ReasonNoRecord, "", &auth.Basis, nil)
	}
	ans.Fields = Minimise(ans.Fields, auth.Fields)
	return p.decide(ctx, v, req.Query, schemas.DecisionAnswered, "", "", &auth.Basis, &ans)
}

// decide seals a receipt, records the decision durably and returns the
// receipt to publish — the stored one if a concurrent copy won the race.
func (p *Pipeline) decide(ctx context.Context, v *envelope.Verified, query, decision, reason, detail string, basis *schemas.AgreementRef, ans *adapters.Answer) (Result, error) {
	replay := reason == string(envelope.ReasonReplay)
	receipt, err := p.seal(ctx, v, query, decision, reason, detail, basis, ans)
	if err != nil {
		return Result{}, err
	}
	d := store.Decision{
		Digest: v.Digest, Agency: v.Agency, RequestID: v.ID, QueryType: query,
		Outcome: decision, Reason: reason, Replay: replay, Receipt: receipt, DecidedAt: p.now(),
	}
	stored, err := p.Decisions.Save(ctx, d)
	if errors.Is(err, store.ErrIDConflict) && !replay {
		// Another message with this id was decided first: this one is a
		// replay, whatever it asked.
		return p.decide(ctx, v, query, schemas.DecisionRejected, string(envelope.ReasonReplay), "id already used by another message", nil, nil)
	}
	if err != nil {
		return Result{}, fmt.Errorf("record decision: %w", err)
	}
	res := p.reemit(stored)
	res.Redelivery = !bytes.Equal(stored.Receipt, receipt)
	return res, nil
}

func (p *Pipeline) seal(ctx context.Context, v *envelope.Verified, query, decision, reason, detail string, basis *schemas.AgreementRef, ans *adapters.Answer) ([]byte, error) {
	now := p.now()
	body := schemas.Receipt{
		RequestID: v.ID, RequestDigest: v.Digest, RequestAgency: v.Agency,
		Query: query, Decision: decision, Reason: reason, Detail: detail, Agreement: basis,
	}
	expires := now.Add(30 * 24 * time.Hour)
	if ans != nil {
		b, err := json.Marshal(ans.Fields)
		if err != nil {
			return nil, fmt.Errorf("encode answer: %w", err)
		}
		body.Answer = b
		asOf, until := ans.AsOf.UTC(), ans.ValidUntil.UTC()
		body.AsOf, body.ValidUntil = &asOf, &until
		if until.After(now) {
			expires = until
		}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode receipt: %w", err)
	}
	purpose := v.Purpose
	if purpose.Basis == "" || purpose.CaseRef == "" {
		purpose = envelope.Purpose{Basis: "receipt", CaseRef: v.Digest}
	}
	payload := envelope.Payload{
		Type: schemas.TypeReceipt, ID: ulid.Make().String(), Agency: p.BrokerID,
		IssuedAt: now, ExpiresAt: expires, Purpose: purpose, Body: raw,
	}
	out, err := p.Seal.Seal(ctx, payload, v.Agency)
	if err != nil {
		return nil, fmt.Errorf("seal receipt: %w", err)
	}
	return out, nil
}

func (p *Pipeline) reemit(d store.Decision) Result {
	return Result{
		Outputs: []Output{{
			Topic: p.Topics.Receipts(d.Agency), Key: []byte(d.RequestID), Value: d.Receipt,
			Headers: map[string]string{"certless-decision": d.Outcome, "certless-request-digest": d.Digest},
		}},
		Agency: d.Agency, Query: d.QueryType, Outcome: d.Outcome, Reason: d.Reason, Redelivery: true,
	}
}

// DeadLetter is the JSON value of a dead-letter record. It carries the
// original bytes only when they are within the size limit.
type DeadLetter struct {
	Reason     string    `json:"reason"`
	Detail     string    `json:"detail,omitempty"`
	Topic      string    `json:"topic"`
	Partition  int       `json:"partition"`
	Offset     int64     `json:"offset"`
	Digest     string    `json:"digest"`
	Size       int       `json:"size"`
	ReceivedAt time.Time `json:"received_at"`
	Message    []byte    `json:"message,omitempty"`
}

// maxDeadLetterCopy bounds how much of an unauthenticated message is copied.
const maxDeadLetterCopy = 256 << 10

func (p *Pipeline) deadLetter(m Message, agency, reason, detail string) Result {
	dl := DeadLetter{
		Reason: reason, Detail: truncate(detail, 512), Topic: m.Topic, Partition: m.Partition,
		Offset: m.Offset, Digest: Digest(m.Value), Size: len(m.Value), ReceivedAt: p.now(),
	}
	if len(m.Value) <= maxDeadLetterCopy {
		dl.Message = m.Value
	}
	b, _ := json.Marshal(dl) // plain struct: cannot fail
	return Result{
		Outputs: []Output{{Topic: p.Topics.DeadLetter(), Key: []byte(dl.Digest), Value: b,
			Headers: map[string]string{"certless-reason": reason}}},
		Agency: agency, Outcome: OutcomeDeadLetter, Reason: reason,
	}
}

func (p *Pipeline) now() time.Time {
	if p.Now != nil {
		return p.Now().UTC()
	}
	return time.Now().UTC()
}

// Digest is the request digest receipts cite: "sha256:" and the hex SHA-256
// of the signed bytes as received.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func detailOf(err error) string {
	var e *envelope.Error
	if errors.As(err, &e) {
		if e.Pointer != "" {
			return truncate(e.Pointer+": "+e.Detail, 512)
		}
		return truncate(e.Detail, 512)
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

var _ Handler = (*Pipeline)(nil)
