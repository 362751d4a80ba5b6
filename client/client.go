// Package client is what an agency system imports to use Certless: build and
// sign a verification request, send it, await its receipt, and verify a
// receipt offline against the broker's published JWKS.
//
// Its promises, for every Receipt it returns (from VerifyReceipt, and so
// from Watcher.Await and Client.Request):
//
//   - Only the broker's: the receipt is signed by a signing key of the
//     Broker (kid "<broker-id>/<key-id>", also a key rotated or revoked
//     since, provided it was not revoked at issued_at) and its
//     payload.agency is the broker id. A receipt-shaped message signed by
//     any other agency's key is refused, whatever key set it is checked
//     against; BrokerKeys refuses a JWKS holding a key of another agency.
//   - In force: it has not expired at the time checked (Expect.Now) and was
//     not issued beyond the clock skew in the future.
//   - For the very request: it matches the receipt schema and, when the
//     caller says which, cites the request's agency and digest
//     (Watcher.Await always checks the digest it waits for, and the agency
//     when Client.Agency is set).
//   - Every refusal is a distinct error (ErrNotBroker, ErrReceiptExpired,
//     ErrRequestMismatch, ... or an envelope *Error) to test with errors.Is.
//   - Watcher.Await is not stopped by a bad record on the receipt topic: a
//     record that does not verify is logged at warn (never its payload) and
//     skipped. Besides a read error or the context, only two different
//     verified receipts for one request, which break the broker's
//     exactly-one-answer promise, end it (ErrConflictingReceipts).
package client

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// Request is what an agency asks.
type Request struct {
	Query   string
	Subject schemas.Subject
	// Related is the second person of a kinship query.
	Related *schemas.Subject
	// Basis is the lawful basis (for example "criminal-proceedings" or
	// "school-admission"), CaseRef the agency's case reference.
	Basis, CaseRef string
	// Lifetime is how long the request stays valid (default 10 minutes).
	Lifetime time.Duration
}

// Signed is a signed request ready to send.
type Signed struct {
	ID     string
	Digest string
	Bytes  []byte
}

// Build signs r as agency key.Agency at now.
func Build(key *keys.Private, r Request, now time.Time) (Signed, error) {
	body := schemas.VerificationRequest{Query: r.Query, Subject: r.Subject, RelatedSubject: r.Related}
	b, err := json.Marshal(body)
	if err != nil {
		return Signed{}, fmt.Errorf("client: encode body: %w", err)
	}
	life := r.Lifetime
	if life <= 0 {
		life = 10 * time.Minute
	}
	now = now.UTC().Truncate(time.Second)
	p := envelope.Payload{
		Type: schemas.TypeVerificationRequest, ID: ulid.Make().String(), Agency: key.Agency,
		IssuedAt: now, ExpiresAt: now.Add(life),
		Purpose: envelope.Purpose{Basis: r.Basis, CaseRef: r.CaseRef}, Body: b,
	}
	raw, err := envelope.Sign(key, p)
	if err != nil {
		return Signed{}, fmt.Errorf("client: %w", err)
	}
	return Signed{ID: p.ID, Digest: envelope.DigestOf(raw), Bytes: raw}, nil
}

// Receipt is a verified receipt.
type Receipt struct {
	schemas.Receipt
	// Envelope is the signed receipt's verified envelope (issuer, key, times).
	Envelope *envelope.Verified
	// Raw is the receipt as received (JWS, or JWE when confidential).
	Raw []byte
}

// Answer decodes the minimised answer into a map.
func (r *Receipt) Answer() (map[string]any, error) {
	if len(r.Receipt.Answer) == 0 {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(r.Receipt.Answer, &m); err != nil {
		return nil, fmt.Errorf("client: receipt answer: %w", err)
	}
	return m, nil
}

const defaultMaxWait = 250 * time.Millisecond
