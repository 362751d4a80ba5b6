package envelope

import (
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
)

// ECDSA signatures are malleable: if (r, s) is valid, so is (r, n−s). Two
// encodings of one signed message would have two digests, so the broker's
// decision store would see the same (agency, id) with other bytes. Certless
// therefore accepts only the low-S form (s ≤ n/2, as Bitcoin's BIP 62 and
// libsecp256k1 do), and Sign always writes it.

var (
	p256Order     = elliptic.P256().Params().N
	p256HalfOrder = new(big.Int).Rsh(p256Order, 1)
)

// highS reports whether sig, a JWS ES256 signature r||s of 32 bytes each,
// has s above n/2. Other lengths are left to the signature check.
func highS(sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	return new(big.Int).SetBytes(sig[32:]).Cmp(p256HalfOrder) > 0
}

// lowS rewrites the signature of an ES256 compact JWS to its low-S form;
// the signature stays valid for the same key and signing input.
func lowS(compact string) (string, error) {
	dot := strings.LastIndexByte(compact, '.')
	sig, err := base64.RawURLEncoding.DecodeString(compact[dot+1:])
	if err != nil || len(sig) != 64 {
		return "", errors.New("ES256 signature is not 64 bytes")
	}
	if !highS(sig) {
		return compact, nil
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(p256Order, s).FillBytes(sig[32:])
	return compact[:dot+1] + base64.RawURLEncoding.EncodeToString(sig), nil
}
