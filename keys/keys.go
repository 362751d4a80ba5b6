// Package keys holds the public and private keys of agencies and of the
// broker itself, in the JWK formats agencies already know.
//
// What it promises:
//
//   - A key is named "<agency-id>/<key-id>" (its kid); the agency part is the
//     only thing that binds a key to an agency.
//   - Each agency has one public JWK Set on disk, <dir>/<agency>.jwks.json,
//     which may hold several active signing keys (rotation) and revoked keys
//     carrying "revoked_at". A revoked key verifies nothing issued at or after
//     its revocation time and keeps verifying what was issued before it, so
//     receipts stay verifiable offline after rotation.
//   - Private keys are single JWK files, <dir>/<agency>.<key-id>.key.json,
//     written with mode 0600 and never overwritten.
//   - Only Ed25519 (EdDSA, the default) and P-256 (ES256) signing keys and
//     P-256 encryption keys (ECDH-ES+A256KW) exist; anything else is refused
//     when a set is parsed.
//   - A kid names one key material for life: Reload and ImportPublic refuse
//     a known kid with other material, and never withdraw a revocation.
//   - A Registry follows its folder while the broker runs (Reload,
//     WatchDir); a folder it cannot load leaves the keys it had in force.
//   - A JWKS made by an agency's own stack is installed only through
//     ValidateImport, which refuses any private member outright.
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Alg is the algorithm a key is for, as written in the JWK "alg" member.
type Alg string

// The algorithms a key may have.
const (
	EdDSA  Alg = "EdDSA"          // Ed25519 signatures, the default
	ES256  Alg = "ES256"          // ECDSA P-256 SHA-256 signatures
	ECDHES Alg = "ECDH-ES+A256KW" // P-256 key agreement for confidential receipts
)

// Use is the JWK "use" member.
const (
	UseSig = "sig"
	UseEnc = "enc"
)

// Use returns the JWK "use" of keys of this algorithm: "enc" for ECDHES and
// "sig" otherwise.
func (a Alg) Use() string {
	if a == ECDHES {
		return UseEnc
	}
	return UseSig
}

// Valid reports whether a is one of EdDSA, ES256 or ECDHES.
func (a Alg) Valid() bool { return a == EdDSA || a == ES256 || a == ECDHES }

var (
	agencyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,62}$`)
	keyIDRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
)

// ErrBadName is returned for an agency or key id outside the allowed shape:
// agency ids match ^[a-z0-9][a-z0-9-]{1,62}$ and key ids
// ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$ (no dots or slashes, so both fit in file
// names and in a kid unambiguously).
var ErrBadName = errors.New("keys: bad agency or key id")

// CheckAgency returns ErrBadName when agency is not a valid agency id.
func CheckAgency(agency string) error {
	if !agencyRE.MatchString(agency) {
		return fmt.Errorf("%w: agency %q", ErrBadName, agency)
	}
	return nil
}

// CheckKeyID returns ErrBadName when id is not a valid key id.
func CheckKeyID(id string) error {
	if !keyIDRE.MatchString(id) {
		return fmt.Errorf("%w: key id %q", ErrBadName, id)
	}
	return nil
}

// KID joins an agency and a key id into a kid.
func KID(agency, keyID string) string { return agency + "/" + keyID }

// SplitKID splits a kid into agency and key id. ok is false when kid is not
// of the form "<agency>/<key-id>" with valid parts.
func SplitKID(kid string) (agency, keyID string, ok bool) {
	agency, keyID, ok = strings.Cut(kid, "/")
	if !ok || CheckAgency(agency) != nil || CheckKeyID(keyID) != nil {
		return "", "", false
	}
	return agency, keyID, true
}

// Public is one public key of an agency. It is a value: copies are
// independent except for the shared, immutable key material.
type Public struct {
	Agency string
	KeyID  string
	Alg    Alg
	// Key is ed25519.PublicKey or *ecdsa.PublicKey (P-256).
	Key crypto.PublicKey
	// RevokedAt is the revocation time; zero when the key is not revoked.
	RevokedAt time.Time
}

// KID returns "<agency>/<key-id>".
func (p Public) KID() string { return KID(p.Agency, p.KeyID) }

// Use returns "sig" or "enc".
func (p Public) Use() string { return p.Alg.Use() }

// Revoked reports whether the key has a revocation time.
func (p Public) Revoked() bool { return !p.RevokedAt.IsZero() }

// ValidAt reports whether the key may vouch for something issued at t: true
// unless the key was revoked at or before t.
func (p Public) ValidAt(t time.Time) bool {
	return p.RevokedAt.IsZero() || t.Before(p.RevokedAt)
}

// JWK returns the key as a public JWK (without revoked_at; see MarshalJWKS).
func (p Public) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: p.Key, KeyID: p.KID(), Algorithm: string(p.Alg), Use: p.Use()}
}

// Private is a private key together with its public half.
type Private struct {
	Public
	// Signer is ed25519.PrivateKey or *ecdsa.PrivateKey.
	Signer crypto.Signer
}

// JWK returns the private key as a JWK, for the 0600 key file and for
// handing a generated key to an agency's own tooling.
func (k *Private) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Signer, KeyID: k.KID(), Algorithm: string(k.Alg), Use: k.Use()}
}

// Generate creates a fresh key for agency with the given key id and
// algorithm. An empty keyID is replaced by one made of the UTC creation
// time, to the second, and random bits (e.g. "k20261201T081544Z-3fa9c2"), so
// that generated keys sort by age (see SigningKey); an empty alg means EdDSA.
func Generate(agency, keyID string, alg Alg) (*Private, error) {
	if alg == "" {
		alg = EdDSA
	}
	if !alg.Valid() {
		return nil, fmt.Errorf("keys: unsupported algorithm %q (want EdDSA, ES256 or ECDH-ES+A256KW)", alg)
	}
	if keyID == "" {
		id, err := newKeyID(time.Now(), rand.Reader)
		if err != nil {
			return nil, err
		}
		keyID = id
	}
	if err := CheckAgency(agency); err != nil {
		return nil, err
	}
	if err := CheckKeyID(keyID); err != nil {
		return nil, err
	}
	k := &Private{Public: Public{Agency: agency, KeyID: keyID, Alg: alg}}
	switch alg {
	case EdDSA:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("keys: generate: %w", err)
		}
		k.Key, k.Signer = pub, priv
	default:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("keys: generate: %w", err)
		}
		k.Key, k.Signer = &priv.PublicKey, priv
	}
	return k, nil
}

// keyIDTime is the layout of the creation time in a generated key id.
const keyIDTime = "20060102T150405Z"

// newKeyID returns "k" + now in UTC as keyIDTime + "-" + 6 hex digits read
// from rnd.
func newKeyID(now time.Time, rnd io.Reader) (string, error) {
	var b [3]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return "", fmt.Errorf("keys: key id: %w", err)
	}
	return fmt.Sprintf("k%s-%x", now.UTC().Format(keyIDTime), b), nil
}

// newestFirst sorts pubs by key id, descending, which puts the most recently
// generated key first: a generated id starts with its creation time
// ("k20261201T081544Z-3fa9c2"), so byte order is creation order to the
// second, and ties fall to the random part. The date-only ids generated
// before ("k20261118-3fa9c2") still sort right: before every id of a later
// day, and before the time-stamped ids of their own day, as '-' sorts before
// 'T'.
func newestFirst(pubs []Public) {
	sort.SliceStable(pubs, func(i, j int) bool { return pubs[i].KeyID > pubs[j].KeyID })
}

// checkMaterial verifies that key matches alg: Ed25519 for EdDSA, P-256 for
// ES256 and ECDHES.
func checkMaterial(alg Alg, key any) error {
	switch k := key.(type) {
	case ed25519.PublicKey:
		if alg == EdDSA && len(k) == ed25519.PublicKeySize {
			return nil
		}
	case ed25519.PrivateKey:
		if alg == EdDSA && len(k) == ed25519.PrivateKeySize {
			return nil
		}
	case *ecdsa.PublicKey:
		if (alg == ES256 || alg == ECDHES) && k.Curve == elliptic.P256() {
			return nil
		}
	case *ecdsa.PrivateKey:
		if (alg == ES256 || alg == ECDHES) && k.Curve == elliptic.P256() {
			return nil
		}
	}
	return fmt.Errorf("keys: key material %T does not fit algorithm %q", key, alg)
}
