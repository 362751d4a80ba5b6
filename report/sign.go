package report

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
)

// SignDetached signs a report file's exact bytes with the broker's key: a
// compact JWS with a detached payload (RFC 7515 appendix F:
// "<header>..<signature>"), to keep beside the file as FILE.jws.
func SignDetached(key *keys.Private, file []byte) ([]byte, error) {
	jws, err := envelope.SignBytes(key, file)
	if err != nil {
		return nil, fmt.Errorf("report: sign: %w", err)
	}
	parts := bytes.Split(jws, []byte("."))
	return bytes.Join([][]byte{parts[0], nil, parts[2]}, []byte(".")), nil
}

// ErrSignature is wrapped by every failed VerifyDetached.
var ErrSignature = errors.New("report: the signature does not verify")

// VerifyDetached checks a detached JWS over file by a key resolver gives
// (the broker's), EdDSA or ES256 only, and returns the signing kid.
func VerifyDetached(sig, file []byte, resolver envelope.KeyResolver) (string, error) {
	parts := bytes.Split(bytes.TrimSpace(sig), []byte("."))
	if len(parts) != 3 || len(parts[1]) != 0 {
		return "", fmt.Errorf("%w: not a detached compact JWS", ErrSignature)
	}
	hb, err := base64.RawURLEncoding.DecodeString(string(parts[0]))
	if err != nil {
		return "", fmt.Errorf("%w: header: %v", ErrSignature, err)
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(hb, &h); err != nil || h.Kid == "" {
		return "", fmt.Errorf("%w: header without a kid", ErrSignature)
	}
	pub, ok := resolver.Lookup(h.Kid)
	if !ok {
		return "", fmt.Errorf("%w: unknown key %s", ErrSignature, h.Kid)
	}
	obj, err := jose.ParseDetached(string(bytes.TrimSpace(sig)), file, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256})
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrSignature, err)
	}
	if _, err := obj.Verify(pub.Key); err != nil {
		return "", fmt.Errorf("%w: by %s: the file was changed after it was signed, or another key signed it", ErrSignature, h.Kid)
	}
	return h.Kid, nil
}
