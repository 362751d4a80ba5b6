// Package feedback is result feedback (结果反馈): what an agency says about
// the receipts it got. An acknowledgement says a receipt (or a dispute's
// resolution) reached it, or that a receipt served its purpose in a case; a
// dispute says an answer is wrong, goes to the police data owner whose
// agreement the answer rests on, and is answered by a deadline — confirmed
// (the record stands) or corrected (the record was fixed) — and closed when
// the agency acknowledges the resolution.
//
// Every feedback message is decided like a request: it has its own receipt
// and its own transparency-log leaf (broker.Pipeline's record step), and
// the same bytes again get the same receipt. The handlers here are the
// pipeline's TypeHandlers for acknowledgement and dispute; Notifier signs,
// logs and sends each later step of a dispute; Store keeps it all in the
// decision store's database.
//
// Refusals, each a signed rejected receipt with its reason: unknown_receipt
// (no receipt has that id), not_your_receipt (it was issued to another
// agency), receipt_digest_mismatch (the digest is not the receipt's),
// nothing_to_dispute (the receipt carries no answer), field_not_in_receipt
// (a disputed field the receipt does not carry), unknown_resolution,
// unknown_batch, and replay (a feedback id used by another message).
package feedback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/exchange"
	"github.com/certless/certless/fault"
	"github.com/certless/certless/schemas"
)

// Reasons of feedback refusals.
const (
	ReasonUnknownReceipt    = "unknown_receipt"
	ReasonNotYourReceipt    = "not_your_receipt"
	ReasonDigestMismatch    = "receipt_digest_mismatch"
	ReasonNothingToDispute  = "nothing_to_dispute"
	ReasonFieldNotInReceipt = "field_not_in_receipt"
	ReasonUnknownResolution = "unknown_resolution"
	ReasonUnknownBatch      = "unknown_batch"
	ReasonReplay            = "replay"
)

// Receipts finds a stored decision by its receipt's id; store.Store is one.
type Receipts interface {
	ByReceipt(ctx context.Context, receiptID string) (store.Decision, bool, error)
}

// Terms says, for the agreement a receipt rests on, who the police data
// owner is and how many working days it has to answer a dispute, and
// computes the deadline.
type Terms interface {
	// Owner is the data owner of the agreement (its provider party).
	Owner(agreementID string, version int) string
	// Due is the deadline of a dispute opened at opened.
	Due(opened time.Time, agreementID string, version int) time.Time
}

// Batches acknowledges periodic-exchange batches; exchange.Store is one.
type Batches interface {
	// Ack records agency's acknowledgement of batch id (its manifest's id)
	// whose manifest has digest; found false for no such batch, an error
	// when it is not the agency's or not that manifest.
	Ack(ctx context.Context, id, digest, agency string, at time.Time) (found bool, err error)
}

// Handlers decides acknowledgements and disputes.
type Handlers struct {
	Receipts Receipts
	Store    *Store
	Terms    Terms
	// Batches, when set, takes acknowledgements of batches.
	Batches Batches
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (h *Handlers) now() time.Time {
	if h.Now != nil {
		return h.Now().UTC()
	}
	return time.Now().UTC()
}

// Acknowledgement is the TypeHandler of acknowledgement messages.
func (h *Handlers) Acknowledgement() broker.TypeHandler { return ackHandler{h} }

// Dispute is the TypeHandler of dispute messages.
func (h *Handlers) Dispute() broker.TypeHandler { return disputeHandler{h} }

// receipt finds the receipt ref names and checks it was issued to agency.
func (h *Handlers) receipt(ctx context.Context, agency string, ref schemas.MessageRef) (store.Decision, error) {
	d, ok, err := h.Receipts.ByReceipt(ctx, ref.ID)
	switch {
	case err != nil:
		return d, fmt.Errorf("look up receipt: %w", err) // transient
	case !ok:
		return d, fault.Permanentf(ReasonUnknownReceipt, "no receipt has id %s", ref.ID)
	case d.Agency != agency:
		return d, fault.Permanentf(ReasonNotYourReceipt, "receipt %s was not issued to %s", ref.ID, agency)
	case d.ReceiptDigest != ref.Digest:
		return d, fault.Permanentf(ReasonDigestMismatch, "receipt %s has digest %s", ref.ID, d.ReceiptDigest)
	}
	return d, nil
}

type ackHandler struct{ h *Handlers }

func (a ackHandler) Decide(ctx context.Context, v *envelope.Verified) (broker.Decision, error) {
	var body schemas.Acknowledgement
	if err := json.Unmarshal(v.Body, &body); err != nil {
		return broker.Decision{}, fault.Permanentf(string(envelope.ReasonSchemaViolation), "body does not decode: %w", err)
	}
	kind := body.Kind
	if kind == "" {
		kind = schemas.AckReceived
	}
	ack := Ack{Digest: v.Digest, Agency: v.Agency, RefType: body.RefType, RefID: body.Ref.ID, Kind: kind, CaseRef: v.Purpose.CaseRef, At: a.h.now()}
	switch body.RefType {
	case "receipt":
		if _, err := a.h.receipt(ctx, v.Agency, body.Ref); err != nil {
			return broker.Decision{}, err
		}
	case schemas.TypeDisputeResolution:
		d, ok, err := a.h.Store.ByResolution(ctx, body.Ref.ID)
		switch {
		case err != nil:
			return broker.Decision{}, err
		case !ok:
			return broker.Decision{}, fault.Permanentf(ReasonUnknownResolution, "no dispute resolution has id %s", body.Ref.ID)
		case d.Agency != v.Agency:
			return broker.Decision{}, fault.Permanentf(ReasonNotYourReceipt, "resolution %s answers another agency's dispute", body.Ref.ID)
		case d.ResolutionRef.Digest != body.Ref.Digest:
			return broker.Decision{}, fault.Permanentf(ReasonDigestMismatch, "resolution %s has digest %s", body.Ref.ID, d.ResolutionRef.Digest)
		}
		// The agency has the answer: the dispute is closed.
		if _, err := a.h.Store.Transition(ctx, d.ID, []string{schemas.DisputeConfirmed, schemas.DisputeCorrected}, schemas.DisputeClosed,
			v.Agency, "resolution acknowledged", a.h.now(), nil); err != nil {
			return broker.Decision{}, err
		}
	default: // batch_manifest
		found := false
		var err error
		if a.h.Batches != nil {
			found, err = a.h.Batches.Ack(ctx, body.Ref.ID, body.Ref.Digest, v.Agency, a.h.now())
		}
		switch {
		case !found && err == nil:
			return broker.Decision{}, fault.Permanentf(ReasonUnknownBatch, "no batch has id %s", body.Ref.ID)
		case errors.Is(err, exchange.ErrNotRecipient):
			return broker.Decision{}, fault.Permanentf(ReasonNotYourReceipt, "%v", err)
		case errors.Is(err, exchange.ErrDigest):
			return broker.Decision{}, fault.Permanentf(ReasonDigestMismatch, "%v", err)
		case err != nil:
			return broker.Decision{}, err
		}
	}
	if err := a.h.Store.RecordAck(ctx, ack); err != nil {
		return broker.Decision{}, err
	}
	return broker.Decision{Outcome: schemas.DecisionAnswered,
		Acknowledged: &schemas.AckRef{RefType: body.RefType, Ref: body.Ref, Kind: kind}}, nil
}

type disputeHandler struct{ h *Handlers }

func (dh disputeHandler) Decide(ctx context.Context, v *envelope.Verified) (broker.Decision, error) {
	h := dh.h
	var body schemas.Dispute
	if err := json.Unmarshal(v.Body, &body); err != nil {
		return broker.Decision{}, fault.Permanentf(string(envelope.ReasonSchemaViolation), "body does not decode: %w", err)
	}
	rec, err := h.receipt(ctx, v.Agency, body.Receipt)
	if err != nil {
		return broker.Decision{}, err
	}
	if rec.Outcome != store.Answered || len(rec.AnswerFields) == 0 {
		return broker.Decision{}, fault.Permanentf(ReasonNothingToDispute, "receipt %s is %s and carries no answer", body.Receipt.ID, rec.Outcome)
	}
	var missing []string
	for _, f := range body.Fields {
		if !slices.Contains(rec.AnswerFields, f) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return broker.Decision{}, fault.Permanentf(ReasonFieldNotInReceipt, "receipt %s carries no %s (it carries %s)",
			body.Receipt.ID, strings.Join(missing, ", "), strings.Join(rec.AnswerFields, ", "))
	}
	opened := h.now()
	d, _, err := h.Store.OpenDispute(ctx, Dispute{
		ID: v.ID, Digest: v.Digest, Agency: v.Agency, Message: v.Raw, Receipt: body.Receipt,
		RequestDigest: rec.Digest, Query: rec.QueryType, Fields: body.Fields, Statement: body.Statement,
		EvidenceRef: body.EvidenceRef, Owner: h.Terms.Owner(rec.AgreementID, rec.AgreementVersion),
		OpenedAt: opened, Due: h.Terms.Due(opened, rec.AgreementID, rec.AgreementVersion),
	})
	if errors.Is(err, ErrConflict) {
		return broker.Decision{}, fault.Permanentf(ReasonReplay, "dispute id %s is used by another message", v.ID)
	}
	if err != nil {
		return broker.Decision{}, err
	}
	due := d.Due
	return broker.Decision{Outcome: schemas.DecisionAnswered, Basis: agreementRef(rec),
		Dispute: &schemas.DisputeRef{ID: d.ID, Status: schemas.DisputeOpen, Due: &due}}, nil
}

// agreementRef cites the agreement of the disputed answer.
func agreementRef(d store.Decision) *schemas.AgreementRef {
	if d.AgreementID == "" {
		return nil
	}
	return &schemas.AgreementRef{ID: d.AgreementID, Version: d.AgreementVersion, Digest: d.AgreementDigest}
}
