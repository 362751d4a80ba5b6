package schemas

import (
	"encoding/json"
	"time"
)

// Message types: the "type" field of every signed payload. The schema of a
// type is named "<type>.v1".
const (
	TypeVerificationRequest = "verification_request"
	TypeReceipt             = "receipt"
	TypeAcknowledgement     = "acknowledgement"
	TypeDispute             = "dispute"
	TypeDisputeResolution   = "dispute_resolution"
	TypeBatchManifest       = "batch_manifest"
	TypeBatchRecord         = "batch_record"
	TypeAgreement           = "agreement"
)

// Types lists every message type, in a stable order.
var Types = []string{
	TypeVerificationRequest, TypeReceipt, TypeAcknowledgement, TypeDispute,
	TypeDisputeResolution, TypeBatchManifest, TypeBatchRecord, TypeAgreement,
}

// SchemaName returns the schema name of a message type ("<type>.v1") and
// whether the type is known.
func SchemaName(messageType string) (string, bool) {
	for _, t := range Types {
		if t == messageType {
			return t + ".v1", true
		}
	}
	return "", false
}

// Decisions a receipt carries.
const (
	DecisionAnswered = "answered"
	DecisionNotFound = "not_found"
	DecisionDenied   = "denied"
	DecisionRejected = "rejected"
	// DecisionUnavailable: a transient failure outlasted its bounded
	// retries; the receipt carries RetryAfter. Never a false not_found.
	DecisionUnavailable = "unavailable"
	// DecisionInternalError: a stage failed on a bug (a recovered panic).
	DecisionInternalError = "internal_error"
)

// Subject is a person named by resident ID number and name.
type Subject struct {
	IDNumber string `json:"id_number"`
	Name     string `json:"name"`
}

// VerificationRequest is the body of a verification_request.
type VerificationRequest struct {
	Query          string     `json:"query"`
	Subject        Subject    `json:"subject"`
	RelatedSubject *Subject   `json:"related_subject,omitempty"`
	AsOf           *time.Time `json:"as_of,omitempty"`
}

// Receipt is the body of a receipt: the digital certificate an agency keeps.
type Receipt struct {
	RequestID     string          `json:"request_id"`
	RequestDigest string          `json:"request_digest"`
	RequestAgency string          `json:"request_agency"`
	Query         string          `json:"query,omitempty"`
	Decision      string          `json:"decision"`
	Reason        string          `json:"reason,omitempty"`
	Detail        string          `json:"detail,omitempty"`
	RetryAfter    int             `json:"retry_after,omitempty"` // seconds; for unavailable
	Answer        json.RawMessage `json:"answer,omitempty"`
	AsOf          *time.Time      `json:"as_of,omitempty"`
	ValidUntil    *time.Time      `json:"valid_until,omitempty"`
	Agreement     *AgreementRef   `json:"agreement,omitempty"`
	Log           *LogRef         `json:"log,omitempty"`
}

// AgreementRef cites the agreement (or allow-list entry) a decision rests on.
type AgreementRef struct {
	ID      string `json:"id"`
	Version int    `json:"version,omitempty"`
	Digest  string `json:"digest"`
}

// LogRef places a decision in the transparency log.
type LogRef struct {
	Index      int64  `json:"index"`
	Checkpoint string `json:"checkpoint,omitempty"`
}
