package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/fault"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// EncryptionKeys finds an agency's current receipt encryption key.
type EncryptionKeys interface {
	EncryptionKey(agency string, now time.Time) (keys.Public, error)
}

// SigningKeys yields the broker's current signing key; it may change while
// the broker runs (rotation).
type SigningKeys interface {
	SigningKey() *keys.Private
}

// StaticKey is SigningKeys that never changes.
type StaticKey struct{ Key *keys.Private }

// SigningKey implements SigningKeys.
func (k StaticKey) SigningKey() *keys.Private { return k.Key }

// ReceiptSealer signs receipts with the broker's current key and
// JWE-encrypts them for the agencies that asked for confidential receipts.
//
// With Schemas set it also checks each receipt against its schema before
// it leaves (a receipt that breaks its own published contract is refused
// here rather than by an agency). The broker leaves it nil: a receipt is
// built from typed values whose shapes the code fixes and the sources'
// answers are checked where they arrive (adapters), so the check costs a
// fifth of the broker's CPU to find nothing; the tests keep the guarantee
// instead — every receipt of every scenario is verified against its schema
// by the agencies' client (client.VerifyReceipt), and the pipeline's unit
// tests seal with Schemas set.
//
// Its errors are classified: a receipt that breaks its schema is permanent
// (answer_invalid: the answer cannot be represented), a confidential agency
// without a usable encryption key is permanent (no_encryption_key); the
// rest are transient.
type ReceiptSealer struct {
	Keys SigningKeys
	// Schemas, when set, checks every receipt before it is signed.
	Schemas *schemas.Set
	// Confidential reports whether an agency's receipts are encrypted (it
	// follows the docking directory); nil: none are.
	Confidential func(agency string) bool
	Encryption   EncryptionKeys
	Now          func() time.Time
}

// Seal implements Sealer.
func (s *ReceiptSealer) Seal(ctx context.Context, p envelope.Payload, to string) (Sealed, error) {
	jws, err := s.sign(p)
	if err != nil {
		return Sealed{}, err
	}
	out := Sealed{Bytes: jws, JWSDigest: Digest(jws)}
	if s.Confidential == nil || !s.Confidential(to) {
		return out, nil
	}
	now := s.now()
	pub, err := s.Encryption.EncryptionKey(to, now)
	if err != nil {
		return Sealed{}, fault.Permanentf(ReasonNoEncryptionKey, "receipt for %s must be encrypted: %w", to, err)
	}
	if out.Bytes, err = envelope.EncryptTo(jws, pub); err != nil {
		return Sealed{}, err
	}
	return out, nil
}

func (s *ReceiptSealer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// sign encodes p, checks it against its schema when Schemas is set, and
// signs it.
func (s *ReceiptSealer) sign(p envelope.Payload) ([]byte, error) {
	doc, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode receipt: %w", err)
	}
	if s.Schemas != nil {
		name, ok := schemas.SchemaName(p.Type)
		if !ok {
			return nil, fault.Permanentf(ReasonInternal, "seal: unknown message type %q", p.Type)
		}
		if err := s.Schemas.Validate(name, doc); err != nil {
			return nil, fault.Permanentf(adapters.ReasonAnswerInvalid, "receipt breaks its schema: %w", err)
		}
	}
	now := s.now()
	key := s.Keys.SigningKey()
	if !key.ValidAt(now) {
		// Every verifier would refuse it: wait (transiently) for the
		// rotated key rather than store a receipt nobody accepts.
		return nil, fmt.Errorf("seal: the broker's signing key %s was revoked at %s and no newer one is in the keys folder", key.KID(), key.RevokedAt.Format(time.RFC3339))
	}
	if key.Use() != keys.UseSig {
		return nil, fmt.Errorf("seal: %s is an encryption key", key.KID())
	}
	// The bytes encoded above are the ones signed: encoded once.
	jws, err := envelope.SignBytes(key, doc)
	if err != nil {
		return nil, err
	}
	// An agency's verifier reads at most envelope.DefaultMaxBytes.
	if len(jws) > envelope.DefaultMaxBytes {
		return nil, fault.Permanentf(adapters.ReasonAnswerInvalid, "the signed receipt is %d bytes, over the %d an agency verifies", len(jws), envelope.DefaultMaxBytes)
	}
	return jws, nil
}

var _ Sealer = (*ReceiptSealer)(nil)
