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
	TypeDisputeStatus       = "dispute_status"
	TypeReceiptRevocation   = "receipt_revocation"
	TypeBatchManifest       = "batch_manifest"
	TypeBatchRecord         = "batch_record"
	TypeAgreement           = "agreement"
)

// Types lists every message type, in a stable order.
var Types = []string{
	TypeVerificationRequest, TypeReceipt, TypeAcknowledgement, TypeDispute,
	TypeDisputeResolution, TypeBatchManifest, TypeBatchRecord, TypeAgreement, TypeDisputeStatus,
	TypeReceiptRevocation,
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
	// Dispute is set on the receipt of a dispute: the dispute opened.
	Dispute *DisputeRef `json:"dispute,omitempty"`
	// Acknowledged is set on the receipt of an acknowledgement.
	Acknowledged *AckRef `json:"acknowledged,omitempty"`
	// CredentialStatus is the receipt's entry in the broker's revocation
	// status list (W3C Bitstring Status List v1.0).
	CredentialStatus *StatusEntry `json:"credentialStatus,omitempty"`
}

// StatusEntry is a W3C BitstringStatusListEntry (package statuslist).
type StatusEntry struct {
	ID                   string `json:"id"`
	Type                 string `json:"type"`
	StatusPurpose        string `json:"statusPurpose"`
	StatusListIndex      string `json:"statusListIndex"`
	StatusListCredential string `json:"statusListCredential"`
}

// AckRef says, on the receipt of an acknowledgement, what was
// acknowledged and how.
type AckRef struct {
	RefType string     `json:"ref_type"`
	Ref     MessageRef `json:"ref"`
	Kind    string     `json:"kind"`
}

// DisputeRef names a dispute and its state, on the receipt of the dispute.
type DisputeRef struct {
	ID     string     `json:"id"`
	Status string     `json:"status"`
	Due    *time.Time `json:"due,omitempty"`
}

// MessageRef names a signed message by its id and digest.
type MessageRef struct {
	ID     string `json:"id"`
	Digest string `json:"digest"`
}

// Acknowledgement is the body of an acknowledgement.
type Acknowledgement struct {
	RefType string     `json:"ref_type"`
	Ref     MessageRef `json:"ref"`
	Kind    string     `json:"kind,omitempty"`
	Note    string     `json:"note,omitempty"`
}

// Kinds of acknowledgement.
const (
	AckReceived = "received"
	AckUsed     = "used"
)

// Dispute is the body of a dispute.
type Dispute struct {
	Receipt     MessageRef `json:"receipt"`
	Fields      []string   `json:"fields"`
	Statement   string     `json:"statement"`
	EvidenceRef string     `json:"evidence_ref,omitempty"`
}

// DisputeResolution is the body of a dispute_resolution.
type DisputeResolution struct {
	Dispute         MessageRef      `json:"dispute"`
	Receipt         MessageRef      `json:"receipt"`
	Outcome         string          `json:"outcome"`
	Explanation     string          `json:"explanation"`
	CorrectedAnswer json.RawMessage `json:"corrected_answer,omitempty"`
	ResolvedAt      *time.Time      `json:"resolved_at,omitempty"`
}

// DisputeStatus is the body of a dispute_status notice.
type DisputeStatus struct {
	Dispute    MessageRef `json:"dispute"`
	Disputant  string     `json:"disputant"`
	Receipt    MessageRef `json:"receipt"`
	Status     string     `json:"status"`
	At         time.Time  `json:"at"`
	Due        *time.Time `json:"due,omitempty"`
	Owner      string     `json:"owner"`
	Resolution string     `json:"resolution,omitempty"`
}

// Dispute states.
const (
	DisputeOpen      = "open"
	DisputeForwarded = "forwarded"
	DisputeConfirmed = "confirmed"
	DisputeCorrected = "corrected"
	DisputeClosed    = "closed"
)

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

// ReceiptRevocation is the body of a receipt_revocation notice.
type ReceiptRevocation struct {
	Receipt              MessageRef  `json:"receipt"`
	Holder               string      `json:"holder"`
	Reason               string      `json:"reason"`
	Dispute              *MessageRef `json:"dispute,omitempty"`
	RevokedAt            time.Time   `json:"revoked_at"`
	StatusListCredential string      `json:"status_list_credential"`
	StatusListIndex      string      `json:"status_list_index"`
}
