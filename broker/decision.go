package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/fault"
	"github.com/certless/certless/schemas"
)

// Decision is what the stages decided about one authenticated message. The
// stages fill it; the record step (Pipeline.record) seals it into a signed
// receipt, stores it durably and returns what to publish. It is the one
// value every message type's handler produces, so a new message type is a
// new handler, never a new parameter of the record step.
type Decision struct {
	// Request is the authenticated message decided.
	Request *envelope.Verified
	// Query is the query type; "" when it could not be read.
	Query string
	// Outcome is one of the schemas.Decision* values.
	Outcome string
	// Reason is the stable reason code; "" only when answered.
	Reason string
	// Detail explains a refusal to the requester; it never holds personal
	// data beyond what the requester sent.
	Detail string
	// Basis cites the agreement the decision rests on.
	Basis *schemas.AgreementRef
	// Answer is the minimised answer of an answered decision.
	Answer *adapters.Answer
	// RetryAfter is the hint of an unavailable decision.
	RetryAfter time.Duration
	// Dispute names the dispute a dispute message opened; Acknowledged what
	// an acknowledgement acknowledged.
	Dispute      *schemas.DisputeRef
	Acknowledged *schemas.AckRef
	// SubjectKey is the keyed digest of the query and subject of an
	// answered request (RequestHandler.SubjectKey): the store finds the
	// receipts of one subject's answer by it, to revoke them.
	SubjectKey string
}

// rejected is the decision for an authenticated message that can never
// succeed.
func rejected(v *envelope.Verified, query, reason, detail string) Decision {
	return Decision{Request: v, Query: query, Outcome: schemas.DecisionRejected, Reason: reason, Detail: truncate(detail, 512)}
}

// TypeHandler decides the verified messages of one type. It returns the
// decision, or an error classified with package fault: a permanent error
// becomes a signed rejection with the error's reason (the Decision returned
// beside it may carry the query type), a transient one is retried by the
// Retry middleware within its bound.
type TypeHandler interface {
	Decide(ctx context.Context, v *envelope.Verified) (Decision, error)
}

// Reasons of the record step.
const (
	// ReasonReplay is a known (agency, id) arriving with other bytes.
	ReasonReplay = string(envelope.ReasonReplay)
	// ReasonNoEncryptionKey: the receipt must be encrypted and the agency
	// has no usable encryption key; it goes to the dead-letter topic, the
	// only place a receipt that must not travel in clear can go.
	ReasonNoEncryptionKey = "no_encryption_key"
)

// receiptLifetime bounds a receipt that carries no answer.
const receiptLifetime = 30 * 24 * time.Hour

// record is the one record step: it seals d into a signed receipt, stores
// the decision durably and returns the receipt to publish — the stored one
// when a concurrent copy of the message won the race. Every outcome of
// every message type goes through here; it is where the transparency log
// will append, in the same durable write.
func (p *Pipeline) record(ctx context.Context, m Message, d Decision) (Result, error) {
	sealed, err := p.seal(ctx, d)
	if err != nil {
		switch {
		case !fault.IsPermanent(err):
			return Result{}, err
		case d.Answer != nil:
			// The answer cannot be represented as a receipt (it breaks the
			// receipt schema): the request is answered with a rejection,
			// never retried.
			return p.record(ctx, m, rejected(d.Request, d.Query, fault.ReasonOf(err), "the record source's answer cannot be represented: "+err.Error()))
		default:
			return p.deadLetter(m, d.Request.Agency, fault.ReasonOf(err), err.Error()), nil
		}
	}
	replay := d.Reason == ReasonReplay
	at := p.now()
	row := store.Decision{
		Digest: d.Request.Digest, Agency: d.Request.Agency, RequestID: d.Request.ID, QueryType: d.Query,
		Outcome: d.Outcome, Reason: d.Reason, Replay: replay, Receipt: sealed.Bytes, DecidedAt: at, Type: d.Request.Type,
		ReceiptID: sealed.ID, ReceiptDigest: sealed.JWSDigest, StatusIndex: sealed.StatusIndex, SubjectKey: d.SubjectKey,
		LatencyMicros: -1,
	}
	if !m.Time.IsZero() {
		// From the request's Kafka timestamp (its producer's clock: a
		// skewed one can put it after the decision).
		row.LatencyMicros = max(at.Sub(m.Time).Microseconds(), 0)
	}
	if d.Answer != nil {
		row.AnswerFields = slices.Sorted(maps.Keys(d.Answer.Fields))
	}
	if b := d.Basis; b != nil {
		row.AgreementID, row.AgreementVersion, row.AgreementDigest = b.ID, b.Version, b.Digest
	}
	if p.Gate != nil {
		if err := p.Gate.Open(); err != nil {
			return Result{}, err
		}
	}
	stored, err := p.Decisions.Save(ctx, row)
	switch {
	case errors.Is(err, store.ErrIDConflict) && !replay:
		// Another message with this id was decided first: this one is a
		// replay, whatever it asked.
		return p.record(ctx, m, rejected(d.Request, d.Query, ReasonReplay, "id already used by another message"))
	case fault.IsPermanent(err):
		// A decision the store refuses is a bug of the stages; losing the
		// message is worse than a dead letter an operator can look at.
		return p.deadLetter(m, d.Request.Agency, ReasonInternal, "decision refused by the store: "+err.Error()), nil
	case err != nil:
		return Result{}, fmt.Errorf("record decision: %w", err)
	}
	res := p.reemit(stored)
	res.Redelivery = !bytes.Equal(stored.Receipt, sealed.Bytes)
	return res, nil
}

// sealedReceipt is a sealed receipt with its payload id and status index
// (-1: none).
type sealedReceipt struct {
	Sealed
	ID          string
	StatusIndex int64
}

// seal builds the receipt of d and has the Sealer sign (and, for
// confidential agencies, encrypt) it.
func (p *Pipeline) seal(ctx context.Context, d Decision) (sealedReceipt, error) {
	v := d.Request
	now := p.now()
	body := schemas.Receipt{
		RequestID: v.ID, RequestDigest: v.Digest, RequestAgency: v.Agency, Query: d.Query,
		Decision: d.Outcome, Reason: d.Reason, Detail: d.Detail, Agreement: d.Basis, Dispute: d.Dispute,
		Acknowledged: d.Acknowledged,
	}
	if d.RetryAfter > 0 {
		body.RetryAfter = int(min(math.Ceil(d.RetryAfter.Seconds()), 86400))
	}
	statusIndex := int64(-1)
	if p.Status != nil {
		i, e, err := p.Status.Entry(ctx)
		if err != nil {
			return sealedReceipt{}, err
		}
		statusIndex, body.CredentialStatus = i, e
	}
	expires := now.Add(receiptLifetime)
	if ans := d.Answer; ans != nil {
		b, err := json.Marshal(ans.Fields)
		if err != nil {
			return sealedReceipt{}, fault.Permanentf(adapters.ReasonAnswerInvalid, "encode answer: %w", err)
		}
		body.Answer = b
		asOf, until := ans.AsOf.UTC(), ans.ValidUntil.UTC()
		body.AsOf, body.ValidUntil = &asOf, &until
		// The certificate never outlives what it certifies.
		if until.Before(expires) {
			expires = until
		}
		if !expires.After(now) {
			return sealedReceipt{}, fault.Permanentf(adapters.ReasonAnswerInvalid, "answer valid until %s, before it is given", until.Format(time.RFC3339))
		}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return sealedReceipt{}, fmt.Errorf("encode receipt: %w", err)
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
		return sealedReceipt{}, fmt.Errorf("seal receipt: %w", err)
	}
	return sealedReceipt{Sealed: out, ID: payload.ID, StatusIndex: statusIndex}, nil
}

// reemit publishes a stored decision's receipt as it was stored.
func (p *Pipeline) reemit(d store.Decision) Result {
	h := map[string]string{"certless-decision": d.Outcome, "certless-request-digest": d.Digest}
	if d.LeafIndex >= 0 {
		h[HeaderLogIndex] = strconv.FormatInt(d.LeafIndex, 10)
	}
	return Result{
		Outputs: []Output{{
			Topic: p.Topics.Receipts(d.Agency), Key: []byte(d.RequestID), Value: d.Receipt, Headers: h,
		}},
		Agency: d.Agency, Query: d.QueryType, Outcome: d.Outcome, Reason: d.Reason, Redelivery: true,
	}
}
