package envelope

import (
	"strings"
	"testing"

	"github.com/certless/certless/keys"
)

func TestEncryptDecryptRoundTrip(t *testing.T) {
	w := newWorld(t)
	req := mustSign(t, w.ed, request())
	rcpt := mustSign(t, w.broker, receipt(t, req))

	sealed, err := EncryptTo(rcpt, w.enc.Public)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(sealed), ".") != 4 {
		t.Fatalf("not a compact JWE: %.60s", sealed)
	}
	if strings.Contains(string(sealed), string(rcpt[:20])) {
		t.Fatal("receipt visible in the JWE")
	}
	opened, err := Decrypt(sealed, w.enc)
	if err != nil {
		t.Fatal(err)
	}
	if string(opened) != string(rcpt) {
		t.Fatal("decrypted bytes differ")
	}
	if _, err := VerifyOffline(opened, w.reg, nil); err != nil {
		t.Fatalf("decrypted receipt does not verify: %v", err)
	}
}

func TestDecryptRefusals(t *testing.T) {
	w := newWorld(t)
	sealed, err := EncryptTo([]byte("a.b.c"), w.enc.Public)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := keys.Generate("court-a", "e2", keys.ECDHES)
	if _, err := Decrypt(sealed, other); err == nil {
		t.Fatal("decrypt with another key must fail")
	}
	if _, err := Decrypt(sealed, w.ed); err == nil {
		t.Fatal("decrypt with an Ed25519 key must fail")
	}
	tampered := []byte(string(sealed[:len(sealed)-2]) + "AA")
	if _, err := Decrypt(tampered, w.enc); err == nil {
		t.Fatal("tampered JWE must fail")
	}
	if _, err := EncryptTo([]byte("x"), w.ed.Public); err == nil {
		t.Fatal("encrypting to a signing key must fail")
	}
	jwk := w.ed.Public.JWK()
	if _, err := Encrypt([]byte("x"), &jwk); err == nil {
		t.Fatal("encrypting to an Ed25519 key must fail")
	}
	if _, err := Decrypt(make([]byte, MaxEncryptedBytes+1), w.enc); err == nil {
		t.Fatal("oversized JWE must fail")
	}
}
