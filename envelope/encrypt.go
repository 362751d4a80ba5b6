package envelope

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"

	"github.com/certless/certless/keys"
)

// MaxEncryptedBytes bounds what Decrypt accepts.
const MaxEncryptedBytes = 2 * DefaultMaxBytes

// Encrypt wraps a signed message (a compact JWS, typically a receipt) in a
// compact JWE for one recipient: ECDH-ES+A256KW key agreement on P-256 and
// A256GCM content encryption, with cty "JWS" and the recipient's kid in the
// header. The signature inside is unchanged, so after Decrypt the receipt
// verifies exactly as an unencrypted one.
func Encrypt(jws []byte, to *jose.JSONWebKey) ([]byte, error) {
	if to == nil {
		return nil, errors.New("envelope: encrypt: no recipient key")
	}
	pub, ok := to.Key.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("envelope: encrypt: recipient key must be a P-256 public key, got %T", to.Key)
	}
	opts := (&jose.EncrypterOptions{}).WithContentType("JWS")
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: pub, KeyID: to.KeyID}, opts)
	if err != nil {
		return nil, fmt.Errorf("envelope: encrypt: %w", err)
	}
	obj, err := enc.Encrypt(jws)
	if err != nil {
		return nil, fmt.Errorf("envelope: encrypt: %w", err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("envelope: encrypt: %w", err)
	}
	return []byte(s), nil
}

// EncryptTo is Encrypt to a registered encryption key (keys.ECDHES).
func EncryptTo(jws []byte, to keys.Public) ([]byte, error) {
	if to.Alg != keys.ECDHES {
		return nil, fmt.Errorf("envelope: encrypt: %s is not an encryption key", to.KID())
	}
	jwk := to.JWK()
	return Encrypt(jws, &jwk)
}

// Decrypt opens a compact JWE made by Encrypt with the recipient's private
// P-256 key and returns the JWS inside (still to be verified). Only
// ECDH-ES+A256KW with A256GCM and no compression is accepted.
func Decrypt(jwe []byte, key *keys.Private) ([]byte, error) {
	if key == nil || key.Signer == nil {
		return nil, errors.New("envelope: decrypt: no key")
	}
	priv, ok := key.Signer.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("envelope: decrypt: key %s is not a P-256 key", key.KID())
	}
	if len(jwe) > MaxEncryptedBytes {
		return nil, fmt.Errorf("envelope: decrypt: %d bytes, limit %d", len(jwe), MaxEncryptedBytes)
	}
	obj, err := jose.ParseEncryptedCompact(string(jwe), []jose.KeyAlgorithm{jose.ECDH_ES_A256KW}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return nil, fmt.Errorf("envelope: decrypt: %w", err)
	}
	if _, zip := obj.Header.ExtraHeaders[jose.HeaderKey("zip")]; zip {
		return nil, errors.New("envelope: decrypt: compressed JWE refused")
	}
	out, err := obj.Decrypt(priv)
	if err != nil {
		return nil, fmt.Errorf("envelope: decrypt: %w", err)
	}
	return out, nil
}
