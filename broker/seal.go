package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// EncryptionKeys finds an agency's current receipt encryption key.
type EncryptionKeys interface {
	EncryptionKey(agency string, now time.Time) (keys.Public, error)
}

// ReceiptSealer signs receipts with the broker's key, checks each against
// the receipt schema before it leaves (a receipt that breaks its own
// published contract is a bug, caught here rather than by an agency), and
// JWE-encrypts it for the agencies that asked for confidential receipts.
type ReceiptSealer struct {
	Key     *keys.Private
	Schemas *schemas.Set
	// Confidential lists the agencies whose receipts are encrypted.
	Confidential map[string]bool
	Encryption   EncryptionKeys
	Now          func() time.Time
}

// Seal implements Sealer.
func (s *ReceiptSealer) Seal(ctx context.Context, p envelope.Payload, to string) ([]byte, error) {
	doc, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode receipt: %w", err)
	}
	name, ok := schemas.SchemaName(p.Type)
	if !ok {
		return nil, fmt.Errorf("seal: unknown message type %q", p.Type)
	}
	if err := s.Schemas.Validate(name, doc); err != nil {
		return nil, fmt.Errorf("receipt breaks its schema: %w", err)
	}
	jws, err := envelope.Sign(s.Key, p)
	if err != nil {
		return nil, err
	}
	if !s.Confidential[to] {
		return jws, nil
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	pub, err := s.Encryption.EncryptionKey(to, now)
	if err != nil {
		return nil, fmt.Errorf("receipt for %s must be encrypted: %w", to, err)
	}
	return envelope.EncryptTo(jws, pub)
}

var _ Sealer = (*ReceiptSealer)(nil)
