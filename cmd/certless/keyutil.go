package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/certless/certless/keys"
)

// encryptionPrivate returns the agency's current receipt-decryption key from
// dir, or nil when the agency has none.
func encryptionPrivate(dir, agency string, now time.Time) (*keys.Private, error) {
	reg, err := keys.LoadDir(dir)
	if err != nil {
		return nil, err
	}
	pub, err := reg.EncryptionKey(agency, now)
	if errors.Is(err, keys.ErrNoKey) {
		return nil, nil // no encryption key: receipts arrive signed only
	}
	if err != nil {
		return nil, err
	}
	k, err := keys.LoadPrivate(dir, agency, pub.KeyID)
	if err != nil {
		return nil, fmt.Errorf("decryption key of %s: %w", agency, err)
	}
	return k, nil
}
