// Package statuslist is the W3C Bitstring Status List v1.0 as Certless
// uses it for revocation: every receipt carries a BitstringStatusListEntry
// (statusPurpose "revocation") naming one bit of a list the broker
// publishes as a signed BitstringStatusListCredential (a W3C Verifiable
// Credential, Data Model 2.0, secured with JOSE as a vc+jwt); a set bit
// means the receipt is revoked.
//
// The list is a bitstring of Size bits (131,072, the specification's
// minimum of 16 KiB), bit 0 the most significant bit of the first byte;
// encodedList is "u" (multibase base64url) followed by the unpadded
// base64url of its GZIP compression. Receipt status index i is bit i mod
// Size of list i div Size. Besides the bits the list credential carries,
// for each revoked index, the reason, the dispute and the time
// (credentialSubject.revocations: terms of the issuer-dependent vocabulary
// of the VCDM 2.0 context), so an offline verifier can say why.
//
// The package has no broker imports: auditors and agencies use it.
package statuslist

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// Size is the number of entries of one list: the minimum the
// specification allows (16 KiB of bits), which keeps a receipt among at
// least that many (group privacy).
const Size = 131072

// maxDecoded bounds a decoded list (a zip bomb stops there).
const maxDecoded = 16 << 20

// Vocabulary of the specification.
const (
	EntryType      = "BitstringStatusListEntry"
	CredentialType = "BitstringStatusListCredential"
	ListType       = "BitstringStatusList"
	Revocation     = "revocation"
	// ContextV2 is the VCDM 2.0 context.
	ContextV2 = "https://www.w3.org/ns/credentials/v2"
	// MediaType is the typ header of a credential secured as a JWT.
	MediaType = "vc+jwt"
)

// Issuer is the issuer URI of credentials a broker signs:
// urn:certless:<broker id>.
func Issuer(brokerID string) string { return "urn:certless:" + brokerID }

// Entry is a receipt's credentialStatus.
type Entry = schemas.StatusEntry

// NewEntry is the entry of status index index, the lists being published
// under base (".../status"): list index/Size at base/<n>.
func NewEntry(base string, index int64) Entry {
	list := ListURL(base, index/Size)
	bit := index % Size
	return Entry{ID: list + "#" + strconv.FormatInt(bit, 10), Type: EntryType, StatusPurpose: Revocation,
		StatusListIndex: strconv.FormatInt(bit, 10), StatusListCredential: list}
}

// ListURL is the URL of list n under base.
func ListURL(base string, n int64) string {
	return strings.TrimRight(base, "/") + "/" + strconv.FormatInt(n, 10)
}

// Bit returns the entry's bit index and checks the entry's form.
func Bit(e Entry) (int, error) {
	if e.Type != EntryType || e.StatusPurpose != Revocation || e.StatusListCredential == "" {
		return 0, fmt.Errorf("statuslist: not a revocation %s: %+v", EntryType, e)
	}
	i, err := strconv.Atoi(e.StatusListIndex)
	if err != nil || i < 0 || i >= Size || strconv.Itoa(i) != e.StatusListIndex {
		return 0, fmt.Errorf("statuslist: statusListIndex %q is not an index of a list of %d", e.StatusListIndex, Size)
	}
	return i, nil
}

// Bits is one list's bitstring.
type Bits []byte

// NewBits is an all-clear list.
func NewBits() Bits { return make(Bits, Size/8) }

// Set sets bit i.
func (b Bits) Set(i int) { b[i/8] |= 0x80 >> (i % 8) }

// Get reports bit i.
func (b Bits) Get(i int) bool { return i >= 0 && i/8 < len(b) && b[i/8]&(0x80>>(i%8)) != 0 }

// Encode is the list's encodedList.
func (b Bits) Encode() string {
	var z bytes.Buffer
	w, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return "u" + base64.RawURLEncoding.EncodeToString(z.Bytes())
}

// Decode reads an encodedList; it refuses one of fewer than Size bits.
func Decode(encoded string) (Bits, error) {
	s, ok := strings.CutPrefix(encoded, "u")
	if !ok {
		return nil, errors.New("statuslist: encodedList is not multibase base64url (no \"u\" prefix)")
	}
	z, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("statuslist: encodedList: %w", err)
	}
	r, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, fmt.Errorf("statuslist: encodedList is not GZIP: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(r, maxDecoded+1))
	if err != nil {
		return nil, fmt.Errorf("statuslist: encodedList: %w", err)
	}
	if len(b) > maxDecoded || len(b) < Size/8 {
		return nil, fmt.Errorf("statuslist: a list of %d bits, want %d to %d", len(b)*8, Size, maxDecoded*8)
	}
	return Bits(b), nil
}

// Revoked is why one index of a list is set.
type Revoked struct {
	Index   int       `json:"statusListIndex"`
	Reason  string    `json:"reason"`
	Dispute string    `json:"dispute,omitempty"`
	At      time.Time `json:"revokedAt"`
}

// Credential is a BitstringStatusListCredential.
type Credential struct {
	Context           []string `json:"@context"`
	ID                string   `json:"id"`
	Type              []string `json:"type"`
	Issuer            string   `json:"issuer"`
	ValidFrom         string   `json:"validFrom"`
	CredentialSubject Subject  `json:"credentialSubject"`
}

// Subject is the credential's subject: the list.
type Subject struct {
	ID            string    `json:"id"`
	Type          string    `json:"type"`
	StatusPurpose string    `json:"statusPurpose"`
	EncodedList   string    `json:"encodedList"`
	Revocations   []Revoked `json:"revocations,omitempty"`
}

// NewCredential is list listURL's credential, issued by issuer at
// validFrom, with the revoked indexes set.
func NewCredential(listURL, issuer string, validFrom time.Time, revoked []Revoked) (Credential, error) {
	bits := NewBits()
	rs := append([]Revoked(nil), revoked...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Index < rs[j].Index })
	for i, r := range rs {
		if r.Index < 0 || r.Index >= Size {
			return Credential{}, fmt.Errorf("statuslist: index %d outside the list", r.Index)
		}
		bits.Set(r.Index)
		rs[i].At = r.At.UTC().Truncate(time.Second)
	}
	return Credential{
		Context: []string{ContextV2}, ID: listURL, Type: []string{"VerifiableCredential", CredentialType},
		Issuer: issuer, ValidFrom: validFrom.UTC().Format(time.RFC3339),
		CredentialSubject: Subject{ID: listURL + "#list", Type: ListType, StatusPurpose: Revocation, EncodedList: bits.Encode(), Revocations: rs},
	}, nil
}

// Check is what a credential says of one entry.
type Check struct {
	Revoked bool
	// Why is set when Revoked: the reason, dispute and time the issuer gave.
	Why Revoked
	// AsOf is the credential's validFrom.
	AsOf time.Time
}

// Check reads the entry's bit in c, which must be the entry's list.
func (c Credential) Check(e Entry) (Check, error) {
	bit, err := Bit(e)
	if err != nil {
		return Check{}, err
	}
	if c.ID != e.StatusListCredential {
		return Check{}, fmt.Errorf("statuslist: the list given is %s, the entry's is %s", c.ID, e.StatusListCredential)
	}
	if !containsType(c.Type, CredentialType) || c.CredentialSubject.StatusPurpose != Revocation {
		return Check{}, fmt.Errorf("statuslist: %s is not a revocation %s", c.ID, CredentialType)
	}
	bits, err := Decode(c.CredentialSubject.EncodedList)
	if err != nil {
		return Check{}, err
	}
	asOf, err := time.Parse(time.RFC3339, c.ValidFrom)
	if err != nil {
		return Check{}, fmt.Errorf("statuslist: validFrom: %w", err)
	}
	out := Check{Revoked: bits.Get(bit), AsOf: asOf}
	if out.Revoked {
		out.Why = Revoked{Index: bit, Reason: "revoked (no reason given)"}
		for _, r := range c.CredentialSubject.Revocations {
			if r.Index == bit {
				out.Why = r
			}
		}
	}
	return out, nil
}

func containsType(ts []string, t string) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// Marshal is the credential's JSON, the payload of its vc+jwt.
func (c Credential) Marshal() ([]byte, error) { return json.Marshal(c) }

// KeyResolver finds the issuer's public keys by kid; *keys.Registry is one.
type KeyResolver interface {
	Lookup(kid string) (keys.Public, bool)
}

// Sign secures c as a vc+jwt with the issuer's key.
func Sign(key *keys.Private, c Credential) ([]byte, error) {
	b, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	return envelope.SignTyped(key, MediaType, b)
}

// Open verifies a list credential secured as a vc+jwt (EdDSA or ES256, typ
// vc+jwt, kid of the issuer's key, not revoked at validFrom) and returns it.
func Open(jwt []byte, keys KeyResolver) (Credential, error) {
	if len(jwt) > maxDecoded {
		return Credential{}, errors.New("statuslist: credential too large")
	}
	jws, err := jose.ParseSigned(string(jwt), []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256})
	if err != nil {
		return Credential{}, fmt.Errorf("statuslist: not a compact JWS: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return Credential{}, errors.New("statuslist: want one signature")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != MediaType {
		return Credential{}, fmt.Errorf("statuslist: typ %q, want %s", typ, MediaType)
	}
	pub, ok := keys.Lookup(h.KeyID)
	if !ok {
		return Credential{}, fmt.Errorf("statuslist: unknown key %q", h.KeyID)
	}
	payload, err := jws.Verify(pub.Key)
	if err != nil {
		return Credential{}, fmt.Errorf("statuslist: signature: %w", err)
	}
	var c Credential
	if err := json.Unmarshal(payload, &c); err != nil {
		return Credential{}, fmt.Errorf("statuslist: credential: %w", err)
	}
	if !containsType(c.Type, CredentialType) || c.CredentialSubject.Type != ListType || c.CredentialSubject.StatusPurpose != Revocation {
		return Credential{}, fmt.Errorf("statuslist: not a revocation %s (type %v)", CredentialType, c.Type)
	}
	if c.Issuer != Issuer(pub.Agency) {
		return Credential{}, fmt.Errorf("statuslist: issued by %q, signed by %s", c.Issuer, h.KeyID)
	}
	if at, err := time.Parse(time.RFC3339, c.ValidFrom); err != nil || !pub.ValidAt(at) {
		return Credential{}, fmt.Errorf("statuslist: key %s not valid at validFrom %s", h.KeyID, c.ValidFrom)
	}
	return c, nil
}
