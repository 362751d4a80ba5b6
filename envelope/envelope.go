// Package envelope signs and verifies the messages agencies and the broker
// exchange: a compact JWS (RFC 7515) whose payload is a JSON Payload.
//
// What it promises:
//
//   - Bytes stay bytes until verified. Verify returns a *Verified only when
//     every check passed, in this fixed order: size → parse → algorithm
//     allowed → key found by kid → signature valid → key not revoked →
//     key's agency equals payload.agency → time window → JSON Schema of the
//     message type.
//   - Revocation has two rules. A key revoked at R never vouches for a
//     message whose issued_at is at or after R (Verify and VerifyOffline).
//     And the broker (Verify) takes nothing from the key it receives at or
//     after R, whatever issued_at claims, since a stolen key can backdate;
//     VerifyOffline keeps only the first rule, so what a key signed before
//     R (old receipts) stays verifiable after rotation.
//   - The protected header and payload are I-JSON (RFC 7493), checked
//     before anything decodes them, so every parser reads the same signed
//     members: a member name twice in one object (after unescaping), invalid
//     UTF-8, a lone surrogate escape or nesting deeper than MaxDepth is
//     malformed, and the Detail names the member and its JSON pointer.
//   - Every refusal is an *Error with a stable Reason code (the same strings
//     receipts, metrics and reports use). Any other error is transient: the
//     caller should retry, not reject.
//   - Only EdDSA (Ed25519) and ES256 signatures are accepted; "none", HMAC,
//     RSA and every other algorithm are refused from the protected header,
//     before any key is looked up. An ES256 signature must be low-S
//     (s ≤ n/2 of P-256), so a signed message has one encoding only; Sign
//     always writes that form.
//   - The header "kid" is "<agency-id>/<key-id>"; a key only vouches for
//     messages whose payload.agency is its agency.
//   - Verification keeps no state. ReasonReplay is defined here so every
//     reason code lives in one list, but it is the broker's decision store
//     that finds a known (agency, id) arriving with different bytes.
package envelope

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/certless/certless/keys"
)

// Purpose is the lawful basis of a message and the case it serves.
type Purpose struct {
	Basis   string `json:"basis"`
	CaseRef string `json:"case_ref"`
}

// Payload is the signed content of every message.
type Payload struct {
	Type      string          `json:"type"`
	ID        string          `json:"id"`     // ULID, unique per agency
	Agency    string          `json:"agency"` // sender; the broker id for receipts
	IssuedAt  time.Time       `json:"issued_at"`
	ExpiresAt time.Time       `json:"expires_at"`
	Purpose   Purpose         `json:"purpose"`
	Body      json.RawMessage `json:"body"`
}

// Verified is a message whose checks passed (or, inside an *Error with an
// authenticated reason, whose signature and sender were verified).
type Verified struct {
	Payload
	// Raw is the compact JWS exactly as received.
	Raw []byte
	// Digest is "sha256:<hex>" of Raw; receipts cite it.
	Digest string
	// KeyID is the full kid "<agency>/<key-id>" that signed Raw.
	KeyID string
	// Key is the public key that signed Raw.
	Key keys.Public
}

// DigestOf returns "sha256:<hex>" of raw.
func DigestOf(raw []byte) string {
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// KeyResolver finds public keys by kid. *keys.Registry implements it. The
// returned key may be revoked; the verifier checks that against issued_at
// and, in Verify, against the time of receipt.
type KeyResolver interface {
	Lookup(kid string) (keys.Public, bool)
}

// Reason is a stable code saying why a message was refused.
type Reason string

// The reason codes, in the order the checks run.
const (
	ReasonTooLarge         Reason = "too_large"         // more bytes than the limit
	ReasonMalformed        Reason = "malformed"         // not a compact JWS with an I-JSON object header and payload
	ReasonAlgNotAllowed    Reason = "alg_not_allowed"   // alg is not EdDSA or ES256
	ReasonUnknownKey       Reason = "unknown_key"       // no signing key with this kid
	ReasonSignatureInvalid Reason = "signature_invalid" // signature does not verify with the kid's key
	ReasonKeyRevoked       Reason = "key_revoked"       // key revoked at or before issued_at, or (Verify) before receipt
	ReasonAgencyMismatch   Reason = "agency_mismatch"   // payload.agency is not the key's agency
	ReasonNotYetValid      Reason = "not_yet_valid"     // issued_at in the future beyond the clock skew
	ReasonExpired          Reason = "expired"           // expires_at passed (beyond the clock skew)
	ReasonLifetime         Reason = "lifetime_invalid"  // expires_at not after issued_at, or lifetime above the maximum
	ReasonReplay           Reason = "replay"            // (agency, id) already used by a different message
	ReasonSchemaViolation  Reason = "schema_violation"  // payload breaks its JSON Schema; Pointer names the field
)

// Reasons lists every reason code in check order.
var Reasons = []Reason{
	ReasonTooLarge, ReasonMalformed, ReasonAlgNotAllowed, ReasonUnknownKey,
	ReasonSignatureInvalid, ReasonKeyRevoked, ReasonAgencyMismatch,
	ReasonNotYetValid, ReasonExpired, ReasonLifetime, ReasonReplay,
	ReasonSchemaViolation,
}

// Authenticated reports whether a refusal with this reason comes from an
// authenticated sender: true for not_yet_valid, expired, lifetime_invalid,
// replay and schema_violation (answer with a signed rejection receipt),
// false for the rest (dead letter: nobody to answer).
func (r Reason) Authenticated() bool {
	switch r {
	case ReasonNotYetValid, ReasonExpired, ReasonLifetime, ReasonReplay, ReasonSchemaViolation:
		return true
	}
	return false
}

// Error is a refusal. Reason is stable; Detail is for humans.
type Error struct {
	Reason Reason
	// Pointer is the JSON pointer (RFC 6901) into the payload of the first
	// offending field, for schema_violation; "" is the payload root.
	Pointer string
	Detail  string
	Err     error
	// Verified is set when Reason.Authenticated(): the signature, key and
	// sender checked out, so the caller can answer with a signed rejection
	// citing Verified.ID and Verified.Digest. Its Payload is decoded best
	// effort: fields that break the schema may be zero.
	Verified *Verified
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("envelope: ")
	b.WriteString(string(e.Reason))
	if e.Pointer != "" {
		b.WriteString(" at ")
		b.WriteString(e.Pointer)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the reason of the *Error in err's chain, or "" when err
// carries none (nil or transient).
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}
