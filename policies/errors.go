package policies

import "fmt"

// Reason is a stable code saying why a signature, a lifecycle statement or
// a file was refused: the same strings appear in log lines and metrics.
type Reason string

// Reasons of Verify, in the order its checks run.
const (
	ReasonUnsigned          Reason = "unsigned"            // no .jws.json, or no signature in it
	ReasonSignatureInvalid  Reason = "signature_invalid"   // malformed, bad alg or header, high-S, or does not verify over these bytes
	ReasonUnknownKey        Reason = "unknown_key"         // the kid names no signing key
	ReasonWrongParty        Reason = "wrong_party"         // signed by an agency that is not a party, or a party twice
	ReasonKeyRevoked        Reason = "key_revoked"         // the key was revoked at or before the signature's iat
	ReasonMissingParty      Reason = "missing_party"       // one party has not signed
	ReasonInvalidAgreement  Reason = "invalid_agreement"   // Parse refused the document
	ReasonStatementInvalid  Reason = "statement_invalid"   // a lifecycle statement is malformed, for other bytes, or not allowed
	ReasonDuplicate         Reason = "duplicate"           // two files hold one id and version
	ReasonUnreadable        Reason = "unreadable"          // the file or folder could not be read, or is too large
	ReasonTooManyAgreements Reason = "too_many_agreements" // the folder holds more than MaxFiles agreements
)

// Error is a refusal with its stable Reason.
type Error struct {
	Reason Reason
	Detail string
	Err    error
}

func (e *Error) Error() string {
	s := "policies: " + string(e.Reason)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func refuse(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}
