package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// MarshalJWKS returns the public JWK Set of pubs, sorted by kid, as
// indented JSON: {"keys":[{"kty":..,"kid":"agency/key",..,"revoked_at":..}]}.
// Revoked keys stay in the set with "revoked_at" (RFC 3339, UTC) so receipts
// signed before the revocation remain verifiable offline; generic JOSE
// libraries ignore the extra member.
func MarshalJWKS(pubs []Public) ([]byte, error) {
	sorted := append([]Public(nil), pubs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].KID() < sorted[j].KID() })
	out := struct {
		Keys []json.RawMessage `json:"keys"`
	}{Keys: []json.RawMessage{}}
	for _, p := range sorted {
		b, err := marshalPublic(p)
		if err != nil {
			return nil, err
		}
		out.Keys = append(out.Keys, b)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keys: marshal jwks: %w", err)
	}
	return append(b, '\n'), nil
}

func marshalPublic(p Public) (json.RawMessage, error) {
	if err := checkMaterial(p.Alg, p.Key); err != nil {
		return nil, err
	}
	b, err := p.JWK().MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("keys: marshal %s: %w", p.KID(), err)
	}
	if p.RevokedAt.IsZero() {
		return b, nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("keys: marshal %s: %w", p.KID(), err)
	}
	m["revoked_at"] = p.RevokedAt.UTC().Format(time.RFC3339Nano)
	return json.Marshal(m)
}

// ParseJWKS parses a public JWK Set written by MarshalJWKS or by any JOSE
// library, provided each key has a kid "<agency>/<key-id>", an "alg" of
// EdDSA, ES256 or ECDH-ES+A256KW matching its material, and no private part.
func ParseJWKS(b []byte) ([]Public, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&set); err != nil {
		return nil, fmt.Errorf("keys: parse jwks: %w", err)
	}
	if set.Keys == nil {
		return nil, fmt.Errorf("keys: parse jwks: no \"keys\" member")
	}
	out := make([]Public, 0, len(set.Keys))
	seen := map[string]bool{}
	for i, raw := range set.Keys {
		p, err := parsePublic(raw)
		if err != nil {
			return nil, fmt.Errorf("keys: parse jwks: key %d: %w", i, err)
		}
		if seen[p.KID()] {
			return nil, fmt.Errorf("keys: parse jwks: duplicate kid %q", p.KID())
		}
		seen[p.KID()] = true
		out = append(out, p)
	}
	return out, nil
}

func parsePublic(raw []byte) (Public, error) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return Public{}, err
	}
	if !jwk.IsPublic() {
		return Public{}, fmt.Errorf("%q holds a private key; a JWKS must be public", jwk.KeyID)
	}
	var extra struct {
		RevokedAt *time.Time `json:"revoked_at"`
	}
	if err := json.Unmarshal(raw, &extra); err != nil {
		return Public{}, fmt.Errorf("%q: revoked_at: %w", jwk.KeyID, err)
	}
	p, err := fromJWK(jwk)
	if err != nil {
		return Public{}, err
	}
	if extra.RevokedAt != nil {
		p.RevokedAt = extra.RevokedAt.UTC()
	}
	return p, nil
}

func fromJWK(jwk jose.JSONWebKey) (Public, error) {
	agency, keyID, ok := SplitKID(jwk.KeyID)
	if !ok {
		return Public{}, fmt.Errorf("%w: kid %q is not <agency>/<key-id>", ErrBadName, jwk.KeyID)
	}
	alg := Alg(jwk.Algorithm)
	if !alg.Valid() {
		return Public{}, fmt.Errorf("%q: unsupported alg %q", jwk.KeyID, jwk.Algorithm)
	}
	if jwk.Use != "" && jwk.Use != alg.Use() {
		return Public{}, fmt.Errorf("%q: use %q does not fit alg %q", jwk.KeyID, jwk.Use, alg)
	}
	pub := jwk.Public()
	if err := checkMaterial(alg, pub.Key); err != nil {
		return Public{}, fmt.Errorf("%q: %w", jwk.KeyID, err)
	}
	return Public{Agency: agency, KeyID: keyID, Alg: alg, Key: pub.Key}, nil
}

// MarshalPrivate returns the private JWK of k as indented JSON.
func MarshalPrivate(k *Private) ([]byte, error) {
	if err := checkMaterial(k.Alg, k.Signer); err != nil {
		return nil, err
	}
	jwk := k.JWK()
	b, err := json.MarshalIndent(&jwk, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("keys: marshal private %s: %w", k.KID(), err)
	}
	return append(b, '\n'), nil
}

// ParsePrivate parses a private JWK with a kid "<agency>/<key-id>" and an
// alg of EdDSA, ES256 or ECDH-ES+A256KW.
func ParsePrivate(b []byte) (*Private, error) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("keys: parse private key: %w", err)
	}
	if jwk.IsPublic() {
		return nil, fmt.Errorf("keys: parse private key: %q is a public key", jwk.KeyID)
	}
	p, err := fromJWK(jwk)
	if err != nil {
		return nil, fmt.Errorf("keys: parse private key: %w", err)
	}
	k := &Private{Public: p}
	switch s := jwk.Key.(type) {
	case ed25519.PrivateKey:
		k.Signer = s
	case *ecdsa.PrivateKey:
		k.Signer = s
	default:
		return nil, fmt.Errorf("keys: parse private key: unsupported %T", jwk.Key)
	}
	if err := checkMaterial(k.Alg, k.Signer); err != nil {
		return nil, err
	}
	return k, nil
}
