package envelope

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"

	"github.com/certless/certless/keys"
)

// Sign signs p with key as a compact JWS whose protected header is
// {"alg": key.Alg, "kid": key.KID()}. It does not validate p against its
// schema (see Verifier for what the receiving side checks); Body nil is
// encoded as JSON null. ES256 signatures are low-S, as Verify requires.
func Sign(key *keys.Private, p Payload) ([]byte, error) {
	if key == nil || key.Signer == nil {
		return nil, errors.New("envelope: sign: no key")
	}
	if key.Use() != keys.UseSig {
		return nil, fmt.Errorf("envelope: sign: %s is an encryption key", key.KID())
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("envelope: sign: %w", err)
	}
	return SignBytes(key, payload)
}

// SignBytes signs an already encoded payload, for callers (and tests) that
// need exact control over the JSON. ES256 signatures are always low-S
// (s ≤ n/2), the only form Verify accepts.
func SignBytes(key *keys.Private, payload []byte) ([]byte, error) {
	return SignTyped(key, "", payload)
}

// SignTyped is SignBytes with a typ header (RFC 7515 §4.1.9), such as
// "vc+jwt" for a Verifiable Credential secured with JOSE; "" sets none.
func SignTyped(key *keys.Private, typ string, payload []byte) ([]byte, error) {
	if key == nil || key.Signer == nil {
		return nil, errors.New("envelope: sign: no key")
	}
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), key.KID())
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Alg), Key: key.Signer}, opts)
	if err != nil {
		return nil, fmt.Errorf("envelope: sign: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("envelope: sign: %w", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("envelope: sign: %w", err)
	}
	if key.Alg == keys.ES256 {
		if s, err = lowS(s); err != nil {
			return nil, fmt.Errorf("envelope: sign: %w", err)
		}
	}
	return []byte(s), nil
}
