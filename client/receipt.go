package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// The refusals of VerifyReceipt, besides envelope's *Error for the
// signature, key, revocation and schema checks (see envelope.ReasonOf).
// Each is wrapped with what was found, so test them with errors.Is.
var (
	// ErrNotBroker: the message is signed by a key that is not the
	// broker's, or its payload.agency is not the broker id. BrokerKeys
	// returns it too for a JWKS holding another agency's key.
	ErrNotBroker = errors.New("client: not the broker's")
	// ErrNotReceipt: the broker signed it, but it is not a receipt.
	ErrNotReceipt = errors.New("client: message is not a receipt")
	// ErrReceiptExpired: expires_at is not after Expect.Now.
	ErrReceiptExpired = errors.New("client: receipt expired")
	// ErrReceiptNotYetValid: issued_at is after Expect.Now plus
	// envelope.DefaultClockSkew.
	ErrReceiptNotYetValid = errors.New("client: receipt not yet valid")
	// ErrRequestMismatch: the receipt answers a request other than the one
	// expected (body.request_agency or body.request_digest differs).
	ErrRequestMismatch = errors.New("client: receipt answers another request")
	// ErrUndecryptable: the receipt is a JWE and Expect.Decrypt is nil or
	// does not open it.
	ErrUndecryptable = errors.New("client: receipt cannot be decrypted")
)

// Broker is the broker's identity as an agency trusts it: its id and its
// published signing keys. It is immutable and safe for concurrent use.
type Broker struct {
	// ID is the broker's agency id, the agency part of its kids and the
	// payload.agency of everything it signs.
	ID string
	// keys resolves kids; BrokerKeys fills it with the broker's keys only.
	keys envelope.KeyResolver
}

var _ envelope.KeyResolver = (*Broker)(nil)

// Lookup implements envelope.KeyResolver: it returns the broker's signing
// key called kid, revoked or not, and never a key of another agency.
func (b *Broker) Lookup(kid string) (keys.Public, bool) {
	if agency, _, ok := keys.SplitKID(kid); !ok || agency != b.ID || b.keys == nil {
		return keys.Public{}, false
	}
	p, ok := b.keys.Lookup(kid)
	if !ok || p.Agency != b.ID || p.Use() != keys.UseSig {
		return keys.Public{}, false
	}
	return p, true
}

// BrokerKeys parses the broker's JWKS; it refuses a set holding any key
// whose kid is not "<brokerID>/<key-id>" (ErrNotBroker) or that is not a
// signing key, and a set holding no key. Revoked keys are kept: they still
// verify what they signed before their revocation.
func BrokerKeys(brokerID string, jwks []byte) (*Broker, error) {
	if err := keys.CheckAgency(brokerID); err != nil {
		return nil, fmt.Errorf("client: broker id: %w", err)
	}
	pubs, err := keys.ParseJWKS(jwks)
	if err != nil {
		return nil, fmt.Errorf("client: broker JWKS: %w", err)
	}
	if len(pubs) == 0 {
		return nil, fmt.Errorf("client: broker JWKS of %s holds no key", brokerID)
	}
	for _, p := range pubs {
		if p.Agency != brokerID {
			return nil, fmt.Errorf("client: broker JWKS of %s: %w: key %s belongs to another agency", brokerID, ErrNotBroker, p.KID())
		}
		if p.Use() != keys.UseSig {
			return nil, fmt.Errorf("client: broker JWKS of %s: key %s is a %s key, not a signing key", brokerID, p.KID(), p.Alg)
		}
	}
	reg, err := keys.NewRegistry(pubs...)
	if err != nil {
		return nil, fmt.Errorf("client: broker JWKS of %s: %w", brokerID, err)
	}
	return &Broker{ID: brokerID, keys: reg}, nil
}

// maxJWKSBytes bounds the JWKS FetchBrokerKeys reads.
const maxJWKSBytes = 1 << 20

// FetchBrokerKeys reads the JWKS the broker serves at
// <base>/.well-known/jwks.json (at most 1 MiB) and parses it as BrokerKeys
// does.
func FetchBrokerKeys(ctx context.Context, base, brokerID string) (*Broker, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/.well-known/jwks.json", nil)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: fetch broker JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("client: fetch broker JWKS from %s: %s", base, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("client: fetch broker JWKS: %w", err)
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("client: fetch broker JWKS from %s: more than %d bytes", base, maxJWKSBytes)
	}
	return BrokerKeys(brokerID, b)
}

// Expect is what the caller knows about the receipt it is checking.
type Expect struct {
	// Now is the time to check expiry at; zero means time.Now(). Set it to
	// check an old receipt as of when it was used.
	Now time.Time
	// RequestAgency, when set, must equal body.request_agency: the agency
	// that sent the request.
	RequestAgency string
	// RequestDigest, when set, must equal body.request_digest: the digest of
	// the very request (Signed.Digest).
	RequestDigest string
	// Decrypt opens a JWE receipt: the agency's encryption key.
	Decrypt *keys.Private
}

// VerifyReceipt checks a receipt offline and returns it only when it is the
// broker's answer to the expected request, still in force:
//
//   - a JWE is opened with e.Decrypt (else ErrUndecryptable);
//   - the JWS is signed by a signing key of b, not revoked at its issued_at,
//     and matches its schema (else envelope's *Error);
//   - the signing key's agency and payload.agency are b.ID (else
//     ErrNotBroker);
//   - payload.type is receipt (else ErrNotReceipt);
//   - payload.expires_at is after e.Now (else ErrReceiptExpired) and
//     issued_at is not after e.Now plus envelope.DefaultClockSkew (else
//     ErrReceiptNotYetValid);
//   - body.request_agency and body.request_digest equal e's when set (else
//     ErrRequestMismatch).
func VerifyReceipt(raw []byte, b *Broker, e Expect) (*Receipt, error) {
	return verifyReceipt(raw, b, e, true)
}

// verifyReceipt is VerifyReceipt, with the validity window checked only
// when inTime is set.
func verifyReceipt(raw []byte, b *Broker, e Expect, inTime bool) (*Receipt, error) {
	if b == nil || b.keys == nil {
		return nil, fmt.Errorf("%w: no broker keys to verify with", ErrNotBroker)
	}
	jws := raw
	if bytes.Count(raw, []byte(".")) == 4 { // compact JWE has five parts
		if e.Decrypt == nil {
			return nil, fmt.Errorf("%w: it is encrypted and no decryption key was given", ErrUndecryptable)
		}
		var err error
		if jws, err = envelope.Decrypt(raw, e.Decrypt); err != nil {
			return nil, fmt.Errorf("%w with %s: %w", ErrUndecryptable, e.Decrypt.KID(), err)
		}
	}
	set, err := schemas.Default()
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	// b.keys rather than b: a key of another agency in the set is reported
	// as ErrNotBroker below instead of as an unknown key.
	v, err := envelope.VerifyOffline(jws, b.keys, set)
	if err != nil {
		if envelope.ReasonOf(err) == envelope.ReasonAgencyMismatch {
			return nil, fmt.Errorf("client: receipt: %w (broker %s): %w", ErrNotBroker, b.ID, err)
		}
		return nil, fmt.Errorf("client: receipt: %w", err)
	}
	if v.Key.Agency != b.ID || v.Agency != b.ID {
		return nil, fmt.Errorf("%w: message %s from agency %q is signed by %s, not by broker %s", ErrNotBroker, v.ID, v.Agency, v.KeyID, b.ID)
	}
	if v.Type != schemas.TypeReceipt {
		return nil, fmt.Errorf("%w: message %s has type %q", ErrNotReceipt, v.ID, v.Type)
	}
	if inTime {
		if err := inWindow(v, e.Now); err != nil {
			return nil, err
		}
	}
	r := &Receipt{Envelope: v, Raw: raw}
	if err := json.Unmarshal(v.Body, &r.Receipt); err != nil {
		return nil, fmt.Errorf("%w: receipt %s body: %w", ErrNotReceipt, v.ID, err)
	}
	if e.RequestAgency != "" && r.RequestAgency != e.RequestAgency {
		return nil, fmt.Errorf("%w: receipt %s answers agency %q, want %q", ErrRequestMismatch, v.ID, r.RequestAgency, e.RequestAgency)
	}
	if e.RequestDigest != "" && r.RequestDigest != e.RequestDigest {
		return nil, fmt.Errorf("%w: receipt %s answers request %s, want %s", ErrRequestMismatch, v.ID, r.RequestDigest, e.RequestDigest)
	}
	return r, nil
}

// inWindow checks a verified receipt's validity window at now (time.Now
// when zero).
func inWindow(v *envelope.Verified, now time.Time) error {
	if now.IsZero() {
		now = time.Now()
	}
	if !v.ExpiresAt.After(now) {
		return fmt.Errorf("%w: receipt %s expired at %s (now %s)", ErrReceiptExpired, v.ID, fmtT(v.ExpiresAt), fmtT(now))
	}
	if v.IssuedAt.After(now.Add(envelope.DefaultClockSkew)) {
		return fmt.Errorf("%w: receipt %s issued at %s, after now %s plus %s skew", ErrReceiptNotYetValid, v.ID, fmtT(v.IssuedAt), fmtT(now), envelope.DefaultClockSkew)
	}
	return nil
}

func fmtT(t time.Time) string { return t.UTC().Format(time.RFC3339) }
