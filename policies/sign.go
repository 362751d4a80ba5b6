package policies

import (
	"bytes"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
)

// Suffixes of the files beside an agreement document <name>.yaml.
const (
	SignaturesSuffix = ".jws.json"   // the co-signatures
	StatusSuffix     = ".status.jws" // the lifecycle statements
)

// Digest returns "sha256:<hex>" of the document's exact bytes, what
// receipts and the decision store cite.
func Digest(doc []byte) string {
	sum := sha256.Sum256(doc)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// general is RFC 7515 §7.2.1 JSON General Serialization without payload
// (detached, Appendix F) and without unprotected headers.
type general struct {
	Signatures []signature `json:"signatures"`
}

type signature struct {
	Protected string `json:"protected"`
	Signature string `json:"signature"`
}

// protected is the whole protected header of an agreement signature.
type protected struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Iat int64  `json:"iat"`
}

// maxSignatures bounds the signatures of one agreement: two parties, and
// room to name a stray third as wrong_party rather than as malformed.
const maxSignatures = 8

// Sign adds key's signature over doc to sigs (nil or empty for the first
// one) and returns the new .jws.json content; a signature already there from
// the same agency (any of its keys) is replaced, in place. The protected
// header is {"alg", "kid", "iat": now}. ES256 signatures are low-S. Sign
// does not check that key's agency is a party: Verify does.
func Sign(doc, sigs []byte, key *keys.Private, now time.Time) ([]byte, error) {
	if key == nil || key.Signer == nil {
		return nil, errors.New("policies: sign: no key")
	}
	if key.Alg != keys.EdDSA && key.Alg != keys.ES256 {
		return nil, fmt.Errorf("policies: sign: %s is not a signing key", key.KID())
	}
	var g general
	if len(bytes.TrimSpace(sigs)) > 0 {
		var err error
		if g, err = parseGeneral(sigs); err != nil {
			return nil, fmt.Errorf("policies: sign: existing signatures: %w", err)
		}
	}
	opts := (&jose.SignerOptions{}).
		WithHeader(jose.HeaderKey("kid"), key.KID()).
		WithHeader(jose.HeaderKey("iat"), now.Unix())
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Alg), Key: key.Signer}, opts)
	if err != nil {
		return nil, fmt.Errorf("policies: sign: %w", err)
	}
	obj, err := signer.Sign(doc)
	if err != nil {
		return nil, fmt.Errorf("policies: sign: %w", err)
	}
	var flat struct {
		Protected string `json:"protected"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal([]byte(obj.FullSerialize()), &flat); err != nil {
		return nil, fmt.Errorf("policies: sign: %w", err)
	}
	if key.Alg == keys.ES256 {
		if flat.Signature, err = lowS(flat.Signature); err != nil {
			return nil, fmt.Errorf("policies: sign: %w", err)
		}
	}
	mine := signature{Protected: flat.Protected, Signature: flat.Signature}
	replaced := false
	for i, s := range g.Signatures {
		if h, err := decodeProtected(s.Protected); err == nil {
			if agency, _, ok := keys.SplitKID(h.Kid); ok && agency == key.Agency {
				g.Signatures[i], replaced = mine, true
				break
			}
		}
	}
	if !replaced {
		if len(g.Signatures) >= maxSignatures {
			return nil, fmt.Errorf("policies: sign: already %d signatures", maxSignatures)
		}
		g.Signatures = append(g.Signatures, mine)
	}
	out, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("policies: sign: %w", err)
	}
	return append(out, '\n'), nil
}

// parseGeneral reads a .jws.json strictly: I-JSON, only "signatures" (a
// "payload" member means it is not detached), each with only "protected"
// and "signature".
func parseGeneral(b []byte) (general, error) {
	var g general
	if len(b) > MaxSignaturesBytes {
		return g, fmt.Errorf("%d bytes, limit %d", len(b), MaxSignaturesBytes)
	}
	if err := strictDecode(b, &g); err != nil {
		return g, fmt.Errorf("not a detached JWS in JSON General Serialization with protected headers only: %w", err)
	}
	if len(g.Signatures) > maxSignatures {
		return g, fmt.Errorf("%d signatures, limit %d", len(g.Signatures), maxSignatures)
	}
	return g, nil
}

func decodeProtected(s string) (protected, error) {
	var h protected
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return h, fmt.Errorf("protected header is not base64url: %w", err)
	}
	var fields map[string]json.RawMessage
	if err := strictDecode(raw, &fields); err != nil {
		return h, fmt.Errorf("protected header: %w", err)
	}
	for k := range fields {
		if k != "alg" && k != "kid" && k != "iat" {
			return h, fmt.Errorf("protected header member %q is not allowed (only alg, kid, iat)", k)
		}
	}
	if len(fields) != 3 {
		return h, errors.New("protected header needs alg, kid and iat")
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return h, fmt.Errorf("protected header: %w", err)
	}
	return h, nil
}

// Signer is one verified signature of an agreement.
type Signer struct {
	Party    string    // the party's agency id
	KID      string    // "<party>/<key-id>"
	SignedAt time.Time // the protected iat
}

// Verify checks that sigs holds exactly one valid signature of each party of
// a (Parse(doc) when a is nil) over exactly doc. A refusal is an *Error;
// the checks of each signature run in this order: header and algorithm
// (signature_invalid), unknown_key, signature_invalid, key_revoked,
// wrong_party (not a party, or a party twice); then missing_party. A key
// revoked at R keeps vouching for signatures whose iat is before R, so an
// agreement stays in force across its signers' key rotation.
func Verify(doc, sigs []byte, resolver envelope.KeyResolver, a *Agreement) error {
	_, err := verifySigners(doc, sigs, resolver, a, true)
	return err
}

// VerifySigners is Verify returning who signed; with requireBoth false an
// absent party is not an error (a proposal being signed), a bad signature
// still is.
func VerifySigners(doc, sigs []byte, resolver envelope.KeyResolver, a *Agreement, requireBoth bool) ([]Signer, error) {
	return verifySigners(doc, sigs, resolver, a, requireBoth)
}

func verifySigners(doc, sigs []byte, resolver envelope.KeyResolver, a *Agreement, requireBoth bool) ([]Signer, error) {
	if a == nil {
		var err error
		if a, err = Parse(doc); err != nil {
			return nil, &Error{Reason: ReasonInvalidAgreement, Err: err}
		}
	}
	if len(bytes.TrimSpace(sigs)) == 0 {
		if !requireBoth {
			return nil, nil
		}
		return nil, refuse(ReasonUnsigned, "no signatures")
	}
	g, err := parseGeneral(sigs)
	if err != nil {
		return nil, &Error{Reason: ReasonSignatureInvalid, Err: err}
	}
	if len(g.Signatures) == 0 && requireBoth {
		return nil, refuse(ReasonUnsigned, "no signatures")
	}
	var out []Signer
	for i, s := range g.Signatures {
		sg, err := verifyOne(doc, s, resolver)
		if err != nil {
			err.Detail = fmt.Sprintf("signature %d: %s", i, err.Detail)
			return nil, err
		}
		if !a.Party(sg.Party) {
			return nil, refuse(ReasonWrongParty, "signature %d: %s is not a party (requester %s, provider %s)", i, sg.KID, a.Parties.Requester, a.Parties.Provider)
		}
		for _, o := range out {
			if o.Party == sg.Party {
				return nil, refuse(ReasonWrongParty, "signature %d: %s signed twice", i, sg.Party)
			}
		}
		out = append(out, sg)
	}
	if requireBoth {
		for _, p := range []string{a.Parties.Requester, a.Parties.Provider} {
			if !signedBy(out, p) {
				return nil, refuse(ReasonMissingParty, "no signature of %s", p)
			}
		}
	}
	return out, nil
}

func signedBy(ss []Signer, party string) bool {
	for _, s := range ss {
		if s.Party == party {
			return true
		}
	}
	return false
}

// verifyOne checks one signature over doc; the signature itself is checked
// by go-jose, on a flattened JWS built from that one entry.
func verifyOne(doc []byte, s signature, resolver envelope.KeyResolver) (Signer, *Error) {
	h, err := decodeProtected(s.Protected)
	if err != nil {
		return Signer{}, &Error{Reason: ReasonSignatureInvalid, Err: err}
	}
	alg := jose.SignatureAlgorithm(h.Alg)
	if alg != jose.EdDSA && alg != jose.ES256 {
		return Signer{}, refuse(ReasonSignatureInvalid, "alg %q (allowed: EdDSA, ES256)", h.Alg)
	}
	if h.Iat <= 0 {
		return Signer{}, refuse(ReasonSignatureInvalid, "iat %d", h.Iat)
	}
	party, _, ok := keys.SplitKID(h.Kid)
	if !ok || resolver == nil {
		return Signer{}, refuse(ReasonUnknownKey, "kid %q", h.Kid)
	}
	key, ok := resolver.Lookup(h.Kid)
	if !ok || key.Use() != keys.UseSig {
		return Signer{}, refuse(ReasonUnknownKey, "no signing key %q", h.Kid)
	}
	if string(key.Alg) != h.Alg {
		return Signer{}, refuse(ReasonSignatureInvalid, "key %s is for %s, header says %s", h.Kid, key.Alg, h.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(s.Signature)
	if err != nil || len(sig) == 0 {
		return Signer{}, refuse(ReasonSignatureInvalid, "signature is not base64url")
	}
	// go-jose wants a payload member even for a detached payload; an
	// empty one is what RFC 7515 Appendix F leaves after detaching.
	flat, _ := json.Marshal(struct {
		Payload string `json:"payload"`
		signature
	}{"", s})
	obj, err := jose.ParseSignedJSON(string(flat), []jose.SignatureAlgorithm{alg})
	if err != nil {
		return Signer{}, &Error{Reason: ReasonSignatureInvalid, Detail: h.Kid, Err: err}
	}
	if err := obj.DetachedVerify(doc, key.Key); err != nil {
		return Signer{}, &Error{Reason: ReasonSignatureInvalid, Detail: "does not verify over these bytes with " + h.Kid, Err: err}
	}
	if alg == jose.ES256 && highS(sig) {
		return Signer{}, refuse(ReasonSignatureInvalid, "ES256 signature of %s is not low-S", h.Kid)
	}
	iat := time.Unix(h.Iat, 0).UTC()
	if !key.ValidAt(iat) {
		return Signer{}, refuse(ReasonKeyRevoked, "key %s revoked at %s, signed at %s", h.Kid, key.RevokedAt.UTC().Format(time.RFC3339), iat.Format(time.RFC3339))
	}
	return Signer{Party: party, KID: h.Kid, SignedAt: iat}, nil
}

// Low-S ES256, as envelope requires of messages (see envelope/lows.go): an
// ECDSA signature (r, s) has a twin (r, n−s), so only s ≤ n/2 is accepted
// and written, and a signed agreement has one encoding.
var (
	p256Order     = elliptic.P256().Params().N
	p256HalfOrder = new(big.Int).Rsh(p256Order, 1)
)

func highS(sig []byte) bool {
	return len(sig) == 64 && new(big.Int).SetBytes(sig[32:]).Cmp(p256HalfOrder) > 0
}

// lowS returns the base64url ES256 signature b64 in its low-S form.
func lowS(b64 string) (string, error) {
	sig, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil || len(sig) != 64 {
		return "", errors.New("ES256 signature is not 64 bytes")
	}
	if !highS(sig) {
		return b64, nil
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(p256Order, s).FillBytes(sig[32:])
	return base64.RawURLEncoding.EncodeToString(sig), nil
}
