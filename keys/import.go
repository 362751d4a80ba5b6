package keys

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// MaxImportSize is the largest JWKS ValidateImport accepts, in bytes.
const MaxImportSize = 64 << 10

// privateMembers are the JWK members that carry private or symmetric key
// material (RFC 7518 section 6, and "priv" of RFC 9964 AKP keys).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "k", "oth", "priv"}

// ImportError is a key of an imported JWKS that was refused: its index in
// "keys", its kid when it has one, and why.
type ImportError struct {
	Index int
	KID   string
	Err   error
}

func (e *ImportError) Error() string {
	if e.KID == "" {
		return fmt.Sprintf("keys: import: key %d (no kid): %v", e.Index, e.Err)
	}
	return fmt.Sprintf("keys: import: key %d (kid %q): %v", e.Index, e.KID, e.Err)
}

func (e *ImportError) Unwrap() error { return e.Err }

// ValidateImport checks a JWKS made by an agency's own stack before it is
// installed for agency, and returns its keys. It is stricter than ParseJWKS:
// at most MaxImportSize bytes of one JSON object with a non-empty "keys"
// array and nothing after it; every key a public one (no member of
// privateMembers at all, whatever go-jose would make of it), with a kid
// "<agency>/<key-id>" of this agency, an "alg" of EdDSA, ES256 or
// ECDH-ES+A256KW that fits its material (Ed25519, P-256), a "use", if
// present, that fits the alg (sig, enc), an optional RFC 3339 "revoked_at",
// and a kid no other key has. A refused key is reported as an *ImportError.
func ValidateImport(agency string, jwks []byte) ([]Public, error) {
	if err := CheckAgency(agency); err != nil {
		return nil, err
	}
	if len(jwks) > MaxImportSize {
		return nil, fmt.Errorf("keys: import: the JWKS is larger than %d bytes", MaxImportSize)
	}
	var set map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(jwks))
	if err := dec.Decode(&set); err != nil {
		return nil, fmt.Errorf("keys: import: not a JWKS: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("keys: import: not a JWKS: data after the JSON object")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(set["keys"], &raws); set["keys"] == nil || err != nil {
		return nil, errors.New(`keys: import: not a JWKS: no "keys" array`)
	}
	if len(raws) == 0 {
		return nil, errors.New("keys: import: the JWKS has no keys")
	}
	out := make([]Public, 0, len(raws))
	first := map[string]int{}
	for i, raw := range raws {
		p, kid, err := validateImportKey(agency, raw)
		if err != nil {
			return nil, &ImportError{Index: i, KID: kid, Err: err}
		}
		if j, dup := first[kid]; dup {
			return nil, &ImportError{Index: i, KID: kid, Err: fmt.Errorf("duplicate kid, also key %d", j)}
		}
		first[kid] = i
		out = append(out, p)
	}
	return out, nil
}

// validateImportKey checks one member of "keys" and returns it with its kid
// (as far as it could be read, for the error).
func validateImportKey(agency string, raw json.RawMessage) (Public, string, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return Public{}, "", errors.New("not a JSON object")
	}
	var kid string
	if v, ok := m["kid"]; ok {
		if err := json.Unmarshal(v, &kid); err != nil {
			return Public{}, "", errors.New(`"kid" is not a string`)
		}
	}
	for _, name := range privateMembers {
		if _, ok := m[name]; ok {
			return Public{}, kid, fmt.Errorf("has the private member %q: import public keys only, the private key stays with the agency", name)
		}
	}
	if kid == "" {
		return Public{}, kid, fmt.Errorf(`no "kid"; want "%s/<key-id>"`, agency)
	}
	a, _, ok := SplitKID(kid)
	if !ok {
		return Public{}, kid, fmt.Errorf(`kid is not "%s/<key-id>" (key ids match %s)`, agency, keyIDRE)
	}
	if a != agency {
		return Public{}, kid, fmt.Errorf("kid belongs to agency %q, not %q", a, agency)
	}
	var alg, use string
	if err := stringMember(m, "alg", &alg); err != nil {
		return Public{}, kid, err
	}
	if alg == "" {
		return Public{}, kid, errors.New(`no "alg"; want EdDSA, ES256 or ECDH-ES+A256KW`)
	}
	if !Alg(alg).Valid() {
		return Public{}, kid, fmt.Errorf("alg %q: want EdDSA, ES256 or ECDH-ES+A256KW", alg)
	}
	if err := stringMember(m, "use", &use); err != nil {
		return Public{}, kid, err
	}
	if _, present := m["use"]; present && use != Alg(alg).Use() {
		return Public{}, kid, fmt.Errorf("use %q does not fit alg %s (want %q)", use, alg, Alg(alg).Use())
	}
	var revokedAt time.Time
	if v, ok := m["revoked_at"]; ok {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return Public{}, kid, errors.New(`"revoked_at" is not a string`)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return Public{}, kid, fmt.Errorf("revoked_at %q is not an RFC 3339 time", s)
		}
		revokedAt = t.UTC()
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return Public{}, kid, fmt.Errorf("key material: %v", err)
	}
	if !jwk.IsPublic() {
		return Public{}, kid, errors.New("holds a private key: import public keys only")
	}
	if err := checkMaterial(Alg(alg), jwk.Key); err != nil {
		return Public{}, kid, fmt.Errorf("alg %s does not fit the key material (%s); want %s", alg, material(jwk.Key), wantMaterial(Alg(alg)))
	}
	p, err := fromJWK(jwk)
	if err != nil {
		return Public{}, kid, err
	}
	p.RevokedAt = revokedAt
	return p, kid, nil
}

func stringMember(m map[string]json.RawMessage, name string, dst *string) error {
	v, ok := m[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("%q is not a string", name)
	}
	return nil
}

func material(key any) string {
	switch k := key.(type) {
	case ed25519.PublicKey:
		return "Ed25519"
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	case nil:
		return "none go-jose knows"
	default:
		return fmt.Sprintf("%T", key)
	}
}

func wantMaterial(alg Alg) string {
	if alg == EdDSA {
		return "Ed25519 (kty OKP, crv Ed25519)"
	}
	return "P-256 (kty EC, crv P-256)"
}

// ImportPublic merges pubs, all keys of agency (see ValidateImport), into
// the agency's JWKS in dir, creating it as needed, and returns what changed,
// sorted by KID: KeyAdded for a new kid, KeyRevoked for a kid already there
// that pubs revokes, or revokes earlier. A kid already there with the same
// material is otherwise left as is, so importing twice changes nothing; a
// revocation in dir is never withdrawn by an import. A kid already there
// with other material or another alg refuses the whole import with
// ErrKeyConflict, and nothing is written.
func ImportPublic(dir, agency string, pubs []Public) ([]Change, error) {
	if err := CheckAgency(agency); err != nil {
		return nil, err
	}
	path := JWKSPath(dir, agency)
	have, err := readJWKS(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	at := map[string]int{}
	for i, p := range have {
		at[p.KID()] = i
	}
	var changes []Change
	seen := map[string]bool{}
	for _, p := range pubs {
		if p.Agency != agency {
			return nil, fmt.Errorf("keys: import: %s is not a key of %s", p.KID(), agency)
		}
		if err := checkMaterial(p.Alg, p.Key); err != nil {
			return nil, fmt.Errorf("keys: import: %s: %w", p.KID(), err)
		}
		if seen[p.KID()] {
			return nil, fmt.Errorf("keys: import: duplicate kid %q", p.KID())
		}
		seen[p.KID()] = true
		i, ok := at[p.KID()]
		if !ok {
			have = append(have, p)
			changes = append(changes, change(KeyAdded, p))
			continue
		}
		if !sameKey(have[i], p) {
			return nil, fmt.Errorf("%w: %s is already in %s with other key material or alg; give the new key a new key id", ErrKeyConflict, p.KID(), path)
		}
		if p.Revoked() && (!have[i].Revoked() || p.RevokedAt.Before(have[i].RevokedAt)) {
			have[i].RevokedAt = p.RevokedAt.UTC()
			changes = append(changes, change(KeyRevoked, have[i]))
		}
	}
	if len(changes) == 0 {
		return nil, nil
	}
	if err := writeJWKS(dir, agency, have); err != nil {
		return nil, err
	}
	sort.Slice(changes, func(i, j int) bool { return changes[i].KID < changes[j].KID })
	return changes, nil
}
