package envelope

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"

	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// Defaults used when the Verifier fields are zero.
const (
	DefaultMaxBytes    = 256 << 10
	DefaultClockSkew   = 2 * time.Minute
	DefaultMaxLifetime = 24 * time.Hour
)

// AllowedAlgs are the signature algorithms Certless accepts.
var AllowedAlgs = []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256}

// Verifier runs the ordered checks on incoming messages. Its fields are read
// only; a Verifier is safe for concurrent use.
type Verifier struct {
	Keys KeyResolver
	// Schemas validates the payload; nil means schemas.Default().
	Schemas *schemas.Set
	// MaxBytes limits the raw message; 0 means DefaultMaxBytes.
	MaxBytes int
	// ClockSkew is tolerated on issued_at and expires_at; 0 means
	// DefaultClockSkew.
	ClockSkew time.Duration
	// MaxLifetime bounds expires_at - issued_at; 0 means DefaultMaxLifetime.
	MaxLifetime time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verify runs every check on raw in order and returns the verified message.
// It is the broker's check of what it receives, at v.Now(): a key revoked at
// R verifies nothing received at or after R, whatever issued_at claims, and
// nothing that claims an issued_at at or after R.
//
// A refusal is an *Error. For reasons whose sender is authenticated
// (Reason.Authenticated) Verify returns the signed message too, both as the
// first result and in Error.Verified, so the caller can answer with a signed
// rejection; for the others the first result is nil. Verify keeps no server
// state: replay detection (a known agency and id with other bytes) is the
// job of whoever stores decisions, the broker's decision store.
func (v *Verifier) Verify(ctx context.Context, raw []byte) (*Verified, error) {
	out, err := v.verify(ctx, raw)
	var e *Error
	if errors.As(err, &e) && e.Verified != nil {
		return e.Verified, err
	}
	return out, err
}

func (v *Verifier) verify(ctx context.Context, raw []byte) (*Verified, error) {
	maxBytes := v.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	m, err := authenticate(raw, maxBytes, v.Keys, now)
	if err != nil {
		return nil, err
	}
	out := m.verified()

	// Time window. Unparseable times are left to the schema step, which
	// names the field.
	skew := orDefault(v.ClockSkew, DefaultClockSkew)
	maxLife := orDefault(v.MaxLifetime, DefaultMaxLifetime)
	if m.issuedOK {
		if m.issued.After(now.Add(skew)) {
			return nil, authErr(ReasonNotYetValid, out, fmt.Sprintf("issued_at %s is after now %s plus skew %s", fmtT(m.issued), fmtT(now), skew))
		}
	}
	if m.expiresOK {
		if !now.Before(m.expires.Add(skew)) {
			return nil, authErr(ReasonExpired, out, fmt.Sprintf("expires_at %s is before now %s minus skew %s", fmtT(m.expires), fmtT(now), skew))
		}
	}
	if m.issuedOK && m.expiresOK {
		if !m.expires.After(m.issued) {
			return nil, authErr(ReasonLifetime, out, "expires_at is not after issued_at")
		}
		if life := m.expires.Sub(m.issued); life > maxLife {
			return nil, authErr(ReasonLifetime, out, fmt.Sprintf("lifetime %s is above the maximum %s", life, maxLife))
		}
	}

	if err := validate(v.Schemas, m, out); err != nil {
		return nil, err
	}
	return out, nil
}

// VerifyOffline checks what an agency can check on its own with a published
// JWKS, for instance on a receipt long after it was issued: size (default
// limit), parse, algorithm, key, signature, the key not revoked at
// issued_at, the key's agency equal to payload.agency, and the schema (nil
// means schemas.Default()). It does not check expiry or replay.
//
// Of the two revocation rules of Verify it keeps only the issued-at one: a
// key revoked at R still vouches for what was issued before R, so receipts
// stay verifiable after their key is rotated out and revoked.
func VerifyOffline(raw []byte, resolver KeyResolver, s *schemas.Set) (*Verified, error) {
	m, err := authenticate(raw, DefaultMaxBytes, resolver, time.Time{})
	if err != nil {
		return nil, err
	}
	out := m.verified()
	if err := validate(s, m, out); err != nil {
		return nil, err
	}
	return out, nil
}

// message is what authenticate learnt about raw.
type message struct {
	raw     []byte
	key     keys.Public
	payload []byte
	fields  map[string]json.RawMessage
	best    Payload // best-effort decode
	issued  time.Time
	expires time.Time
	// issuedOK and expiresOK say whether the times parsed; when not, the
	// time checks are left to the schema step, which names the field.
	issuedOK, expiresOK bool
}

func (m *message) verified() *Verified {
	return &Verified{Payload: m.best, Raw: m.raw, Digest: DigestOf(m.raw), KeyID: m.key.KID(), Key: m.key}
}

// header is the part of the protected header Certless reads.
type header struct {
	Alg  *string
	Kid  *string
	Crit json.RawMessage
	B64  json.RawMessage
}

// parseHeader reads the protected header by exact member names, as JOSE
// libraries do: encoding/json matches struct fields ignoring case, so a
// header with both "kid" and "Kid" would name one key to Certless and
// another to everyone else. A member whose name differs from one of
// Certless' only in case is refused.
func parseHeader(b []byte) (header, error) {
	var m map[string]json.RawMessage
	if err := strictObject(b, &m); err != nil {
		return header{}, err
	}
	var h header
	str := func(name string) (*string, error) {
		raw, ok := m[name]
		if !ok {
			return nil, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("%s is not a string", name)
		}
		return &s, nil
	}
	var err error
	if h.Alg, err = str("alg"); err != nil {
		return header{}, err
	}
	if h.Kid, err = str("kid"); err != nil {
		return header{}, err
	}
	h.Crit, h.B64 = m["crit"], m["b64"]
	for name := range m {
		for _, known := range []string{"alg", "kid", "crit", "b64"} {
			if name != known && strings.EqualFold(name, known) {
				return header{}, fmt.Errorf("member %q differs from %q only in case", name, known)
			}
		}
	}
	return h, nil
}

// isBase64URL reports whether r is in the unpadded base64url alphabet.
func isBase64URL(r rune) bool {
	return r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// authenticate runs the checks up to and including agency_mismatch.
// received is when the broker received raw, for its revocation rule; zero
// (VerifyOffline) applies the issued-at rule only.
func authenticate(raw []byte, maxBytes int, resolver KeyResolver, received time.Time) (*message, error) {
	// 1. size
	if len(raw) > maxBytes {
		return nil, &Error{Reason: ReasonTooLarge, Detail: fmt.Sprintf("%d bytes, limit %d", len(raw), maxBytes)}
	}
	// 2. parse: three base64url parts, a JSON-object header and payload.
	parts := bytes.Split(raw, []byte{'.'})
	if len(parts) != 3 {
		return nil, &Error{Reason: ReasonMalformed, Detail: fmt.Sprintf("compact JWS has 3 parts, got %d", len(parts))}
	}
	// Only the base64url alphabet: Go's decoder skips CR and LF even in
	// strict mode, and a copy with a newline inserted would verify under a
	// digest of its own — two encodings of one signed message.
	for i, part := range parts {
		if j := bytes.IndexFunc(part, func(r rune) bool { return !isBase64URL(r) }); j >= 0 {
			return nil, &Error{Reason: ReasonMalformed, Detail: fmt.Sprintf("part %d has a byte outside base64url at %d", i+1, j)}
		}
	}
	hdrJSON, err := b64(parts[0])
	if err != nil {
		return nil, &Error{Reason: ReasonMalformed, Detail: "protected header is not base64url", Err: err}
	}
	payload, err := b64(parts[1])
	if err != nil {
		return nil, &Error{Reason: ReasonMalformed, Detail: "payload is not base64url", Err: err}
	}
	sig, err := b64(parts[2])
	if err != nil {
		return nil, &Error{Reason: ReasonMalformed, Detail: "signature is not base64url", Err: err}
	}
	// I-JSON first, so every parser after this one reads the same members.
	if err := checkIJSON(hdrJSON); err != nil {
		return nil, notIJSON("protected header", err)
	}
	if err := checkIJSON(payload); err != nil {
		return nil, notIJSON("payload", err)
	}
	h, err := parseHeader(hdrJSON)
	if err != nil {
		return nil, &Error{Reason: ReasonMalformed, Detail: "protected header is not a JSON object", Err: err}
	}
	if h.Alg == nil {
		return nil, &Error{Reason: ReasonMalformed, Detail: "protected header has no alg"}
	}
	if h.Crit != nil || h.B64 != nil {
		return nil, &Error{Reason: ReasonMalformed, Detail: "crit and b64 header parameters are not supported"}
	}
	fields := map[string]json.RawMessage{}
	if err := strictObject(payload, &fields); err != nil {
		return nil, &Error{Reason: ReasonMalformed, Detail: "payload is not a JSON object", Err: err}
	}
	// 3. algorithm, before any key lookup
	alg := jose.SignatureAlgorithm(*h.Alg)
	if !algAllowed(alg) {
		return nil, &Error{Reason: ReasonAlgNotAllowed, Detail: fmt.Sprintf("alg %q (allowed: EdDSA, ES256)", *h.Alg)}
	}
	// 4. key
	if h.Kid == nil || *h.Kid == "" {
		return nil, &Error{Reason: ReasonUnknownKey, Detail: "protected header has no kid"}
	}
	if resolver == nil {
		return nil, &Error{Reason: ReasonUnknownKey, Detail: "no key resolver"}
	}
	key, ok := resolver.Lookup(*h.Kid)
	if !ok || key.Use() != keys.UseSig {
		return nil, &Error{Reason: ReasonUnknownKey, Detail: fmt.Sprintf("no signing key %q", *h.Kid)}
	}
	// 5. signature
	if string(key.Alg) != string(alg) {
		return nil, &Error{Reason: ReasonSignatureInvalid, Detail: fmt.Sprintf("key %s is for %s, message says %s", key.KID(), key.Alg, alg)}
	}
	if len(sig) == 0 {
		return nil, &Error{Reason: ReasonSignatureInvalid, Detail: "empty signature"}
	}
	jws, err := jose.ParseSignedCompact(string(raw), []jose.SignatureAlgorithm{alg})
	if err != nil {
		return nil, &Error{Reason: ReasonMalformed, Detail: "JWS", Err: err}
	}
	if _, err := jws.Verify(key.Key); err != nil {
		return nil, &Error{Reason: ReasonSignatureInvalid, Detail: "with key " + key.KID(), Err: err}
	}
	if alg == jose.ES256 && highS(sig) {
		return nil, &Error{Reason: ReasonSignatureInvalid, Detail: "ES256 signature is not low-S (s > n/2), key " + key.KID()}
	}
	m := &message{raw: raw, key: key, payload: payload, fields: fields}
	m.decodeBestEffort()
	// 6. revocation: a revoked key vouches only for what was issued before,
	// and the broker takes nothing from it once revoked, whatever issued_at
	// says: a stolen key could otherwise sign with a past issued_at.
	if key.Revoked() && (!m.issuedOK || !key.ValidAt(m.issued)) {
		return nil, &Error{Reason: ReasonKeyRevoked, Detail: fmt.Sprintf("key %s revoked at %s, at or before issued_at", key.KID(), fmtT(key.RevokedAt))}
	}
	if key.Revoked() && !received.IsZero() && !received.Before(key.RevokedAt) {
		return nil, &Error{Reason: ReasonKeyRevoked, Detail: fmt.Sprintf("key %s revoked at %s, received at %s", key.KID(), fmtT(key.RevokedAt), fmtT(received))}
	}
	// 7. sender
	if agency, ok := str(fields["agency"]); !ok || agency != key.Agency {
		return nil, &Error{Reason: ReasonAgencyMismatch, Detail: fmt.Sprintf("payload agency %s, key agency %q", fields["agency"], key.Agency)}
	}
	return m, nil
}

// validate is the schema step, then the strict decode into Payload.
func validate(s *schemas.Set, m *message, out *Verified) error {
	if s == nil {
		var err error
		if s, err = schemas.Default(); err != nil {
			return fmt.Errorf("envelope: schemas: %w", err)
		}
	}
	name, ok := schemas.SchemaName(out.Type)
	if !ok {
		return authErrAt(ReasonSchemaViolation, out, "/type", fmt.Sprintf("unknown message type %s", m.fields["type"]), nil)
	}
	if err := s.Validate(name, m.payload); err != nil {
		var ve *schemas.ValidationError
		if errors.As(err, &ve) {
			return authErrAt(ReasonSchemaViolation, out, ve.Pointer, ve.Reason, err)
		}
		return authErrAt(ReasonSchemaViolation, out, "/type", "no schema for the type", err)
	}
	var p Payload
	if err := json.Unmarshal(m.payload, &p); err != nil {
		return authErrAt(ReasonSchemaViolation, out, "", "payload does not decode", err)
	}
	out.Payload = p
	return nil
}

// decodeBestEffort fills m.best field by field, exact member names only,
// keeping only values that have the shape the schemas require (so a
// rejection receipt citing them is itself valid).
func (m *message) decodeBestEffort() {
	f := m.fields
	if s, ok := str(f["type"]); ok {
		if _, known := schemas.SchemaName(s); known {
			m.best.Type = s
		}
	}
	if s, ok := str(f["id"]); ok && ulidRE.MatchString(s) {
		m.best.ID = s
	}
	m.best.Agency, _ = str(f["agency"])
	if s, ok := str(f["issued_at"]); ok {
		m.issued, m.issuedOK = parseTime(s)
		m.best.IssuedAt = m.issued
	}
	if s, ok := str(f["expires_at"]); ok {
		m.expires, m.expiresOK = parseTime(s)
		m.best.ExpiresAt = m.expires
	}
	var pf map[string]json.RawMessage
	if json.Unmarshal(f["purpose"], &pf) == nil {
		basis, ok1 := str(pf["basis"])
		ref, ok2 := str(pf["case_ref"])
		if ok1 && ok2 && purposeText(basis) && purposeText(ref) {
			m.best.Purpose = Purpose{Basis: basis, CaseRef: ref}
		}
	}
	m.best.Body = f["body"]
}

var ulidRE = regexp.MustCompile(`^[0-7][0-9A-HJKMNP-TV-Z]{25}$`)

// purposeText mirrors the schema's bounded text: 1-128 characters, no
// control characters.
func purposeText(s string) bool {
	if s == "" || utf8.RuneCountInString(s) > 128 || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

func parseTime(s string) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

func str(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// strictObject decodes a single JSON object with nothing after it.
func strictObject(b []byte, v any) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return errors.New("not a JSON object")
	}
	// json.Unmarshal refuses data after the value, as a Decoder would be
	// asked to, without a Decoder's buffer per call.
	return json.Unmarshal(b, v)
}

// notIJSON is the malformed refusal of a protected header or payload that
// checkIJSON refused.
func notIJSON(part string, err error) error {
	var ie *ijsonError
	if errors.As(err, &ie) {
		return &Error{Reason: ReasonMalformed, Detail: part + " is not I-JSON: " + ie.Error()}
	}
	return &Error{Reason: ReasonMalformed, Detail: part + " is not a JSON object", Err: err}
}

func b64(p []byte) ([]byte, error) {
	out := make([]byte, base64.RawURLEncoding.DecodedLen(len(p)))
	n, err := base64.RawURLEncoding.Strict().Decode(out, p)
	return out[:n], err
}

func algAllowed(alg jose.SignatureAlgorithm) bool {
	for _, a := range AllowedAlgs {
		if a == alg {
			return true
		}
	}
	return false
}

func authErr(r Reason, v *Verified, detail string) error {
	return &Error{Reason: r, Detail: detail, Verified: v}
}

func authErrAt(r Reason, v *Verified, ptr, detail string, err error) error {
	return &Error{Reason: r, Pointer: ptr, Detail: detail, Err: err, Verified: v}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func fmtT(t time.Time) string { return t.UTC().Format(time.RFC3339) }
