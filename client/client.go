// Package client is what an agency system imports to use Certless: build and
// sign a verification request, send it, await its receipt, and verify a
// receipt offline against the broker's published JWKS.
//
// Its promises: a Receipt returned by this package has a valid broker
// signature (checked against the JWKS, also for keys rotated since), matches
// the receipt schema, and cites the digest of the very request it answers.
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

// ErrNotReceipt is returned for a verified message that is not a receipt.
var ErrNotReceipt = errors.New("client: message is not a receipt")

// VerifyReceipt checks a receipt offline: decrypts it when it is a JWE
// (decrypt must then be the agency's encryption key), verifies the broker
// signature against brokerKeys, validates the receipt schema and decodes
// the body.
func VerifyReceipt(raw []byte, brokerKeys envelope.KeyResolver, decrypt *keys.Private) (*Receipt, error) {
	jws := raw
	if bytes.Count(raw, []byte(".")) == 4 { // compact JWE has five parts
		if decrypt == nil {
			return nil, errors.New("client: receipt is encrypted and no decryption key was given")
		}
		var err error
		if jws, err = envelope.Decrypt(raw, decrypt); err != nil {
			return nil, fmt.Errorf("client: decrypt receipt: %w", err)
		}
	}
	set, err := schemas.Default()
	if err != nil {
		return nil, err
	}
	v, err := envelope.VerifyOffline(jws, brokerKeys, set)
	if err != nil {
		return nil, fmt.Errorf("client: receipt: %w", err)
	}
	if v.Type != schemas.TypeReceipt {
		return nil, fmt.Errorf("%w (type %q)", ErrNotReceipt, v.Type)
	}
	r := &Receipt{Envelope: v, Raw: raw}
	if err := json.Unmarshal(v.Body, &r.Receipt); err != nil {
		return nil, fmt.Errorf("client: receipt body: %w", err)
	}
	return r, nil
}

// BrokerKeys parses the broker's published JWKS into a key resolver.
func BrokerKeys(jwks []byte) (envelope.KeyResolver, error) {
	pubs, err := keys.ParseJWKS(jwks)
	if err != nil {
		return nil, fmt.Errorf("client: broker JWKS: %w", err)
	}
	reg, err := keys.NewRegistry(pubs...)
	if err != nil {
		return nil, fmt.Errorf("client: broker JWKS: %w", err)
	}
	return reg, nil
}

// FetchBrokerKeys reads the JWKS the broker serves at
// <base>/.well-known/jwks.json.
func FetchBrokerKeys(ctx context.Context, base string) (envelope.KeyResolver, error) {
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
		return nil, fmt.Errorf("client: fetch broker JWKS: %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("client: fetch broker JWKS: %w", err)
	}
	return BrokerKeys(b)
}

const defaultMaxWait = 250 * time.Millisecond
