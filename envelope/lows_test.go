package envelope

import (
	"context"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// sOf returns the s half of a compact ES256 JWS's signature.
func sOf(t testing.TB, raw []byte) *big.Int {
	t.Helper()
	sig, err := base64.RawURLEncoding.DecodeString(string(raw[strings.LastIndexByte(string(raw), '.')+1:]))
	if err != nil || len(sig) != 64 {
		t.Fatalf("ES256 signature of %d bytes (%v)", len(sig), err)
	}
	return new(big.Int).SetBytes(sig[32:])
}

// withS returns raw with the s half of its ES256 signature replaced.
func withS(raw []byte, s *big.Int) []byte {
	dot := strings.LastIndexByte(string(raw), '.')
	sig, _ := base64.RawURLEncoding.DecodeString(string(raw[dot+1:]))
	s.FillBytes(sig[32:])
	return []byte(string(raw[:dot+1]) + base64.RawURLEncoding.EncodeToString(sig))
}

// TestES256HighSRefused: the high-S twin n−s of a valid signature is a valid
// ECDSA signature, and go-jose accepts it, but Certless does not.
func TestES256HighSRefused(t *testing.T) {
	w := newWorld(t)
	raw := mustSign(t, w.es, request())
	high := withS(raw, new(big.Int).Sub(p256Order, sOf(t, raw)))
	if sOf(t, high).Cmp(p256HalfOrder) <= 0 {
		t.Fatal("n−s of a low s must be high")
	}
	jws, err := jose.ParseSignedCompact(string(high), []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(w.es.Key); err != nil {
		t.Fatalf("go-jose refuses the high-S twin, so this test proves nothing: %v", err)
	}
	if _, err := w.verifier().Verify(context.Background(), raw); err != nil {
		t.Fatalf("the low-S original: %v", err)
	}
	_, online := w.verifier().Verify(context.Background(), high)
	_, offline := VerifyOffline(high, w.reg, nil)
	for name, err := range map[string]error{"Verify": online, "VerifyOffline": offline} {
		var e *Error
		if !errors.As(err, &e) || e.Reason != ReasonSignatureInvalid || e.Verified != nil {
			t.Fatalf("%s: want signature_invalid, got %v", name, err)
		}
		if !strings.Contains(e.Detail, "ES256 signature is not low-S") {
			t.Fatalf("%s: detail %q", name, e.Detail)
		}
	}
}

// TestSignES256IsLowS: Sign writes low-S signatures only, although about
// half of what go-jose signs is high-S.
func TestSignES256IsLowS(t *testing.T) {
	w := newWorld(t)
	p := request()
	for i := range 200 {
		p.Purpose.CaseRef = strings.Repeat("x", i%100+1)
		raw := mustSign(t, w.es, p)
		if sOf(t, raw).Cmp(p256HalfOrder) > 0 {
			t.Fatalf("signature %d is high-S", i)
		}
		if _, err := w.verifier().Verify(context.Background(), raw); err != nil {
			t.Fatalf("signature %d: %v", i, err)
		}
	}

	// lowS turns every high-S go-jose signature into a valid low-S one.
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: w.es.Signer}, nil)
	if err != nil {
		t.Fatal(err)
	}
	high := 0
	for i := range 200 {
		jws, err := signer.Sign([]byte(strings.Repeat("y", i)))
		if err != nil {
			t.Fatal(err)
		}
		compact, _ := jws.CompactSerialize()
		if sOf(t, []byte(compact)).Cmp(p256HalfOrder) <= 0 {
			continue
		}
		high++
		low, err := lowS(compact)
		if err != nil {
			t.Fatal(err)
		}
		if sOf(t, []byte(low)).Cmp(p256HalfOrder) > 0 {
			t.Fatal("lowS left s high")
		}
		parsed, err := jose.ParseSignedCompact(low, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parsed.Verify(w.es.Key); err != nil {
			t.Fatalf("the low-S form does not verify: %v", err)
		}
	}
	if high == 0 {
		t.Fatal("no high-S signature from go-jose in 200: the normalisation was never exercised")
	}
}
