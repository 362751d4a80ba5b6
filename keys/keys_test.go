package keys

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGenerateInDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	for _, alg := range []Alg{EdDSA, ES256, ECDHES} {
		k, err := GenerateInDir(dir, "court-a", "k-"+strings.ToLower(string(alg[:2])), alg)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(PrivatePath(dir, "court-a", k.KeyID))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("private key mode %v", fi.Mode().Perm())
		}
		back, err := LoadPrivate(dir, "court-a", k.KeyID)
		if err != nil {
			t.Fatal(err)
		}
		if back.KID() != k.KID() || back.Alg != alg {
			t.Fatalf("loaded %+v", back.Public)
		}
	}
	if _, err := GenerateInDir(dir, "court-a", "k-ed", EdDSA); err == nil {
		t.Fatal("generating over an existing key must fail")
	}
	reg, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(reg.Agency("court-a")); got != 3 {
		t.Fatalf("%d keys", got)
	}
	if _, ok := reg.Lookup("court-a/k-ed"); !ok {
		t.Fatal("lookup")
	}
	if _, err := reg.EncryptionKey("court-a", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.EncryptionKey("court-b", time.Now()); !errors.Is(err, ErrNoKey) {
		t.Fatal(err)
	}
	// The published set holds no private material.
	b, err := ReadJWKS(dir, "court-a")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"d"`) {
		t.Fatal("private key material in the JWKS")
	}
}

func TestGenerateDefaults(t *testing.T) {
	k, err := Generate("court-a", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if k.Alg != EdDSA || CheckKeyID(k.KeyID) != nil {
		t.Fatalf("%+v", k.Public)
	}
	for _, bad := range [][2]string{{"Court", "k1"}, {"court-a", "a/b"}, {"court-a", "a.b"}, {"x", "k1"}} {
		if _, err := Generate(bad[0], bad[1], EdDSA); !errors.Is(err, ErrBadName) {
			t.Errorf("%v: %v", bad, err)
		}
	}
	if _, err := Generate("court-a", "k1", "HS256"); err == nil {
		t.Error("HS256 must be refused")
	}
}

func TestJWKSRoundTripAndRevocation(t *testing.T) {
	a, _ := Generate("court-a", "k1", EdDSA)
	b, _ := Generate("court-a", "k2", ES256)
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	a.RevokedAt = at
	raw, err := MarshalJWKS([]Public{b.Public, a.Public})
	if err != nil {
		t.Fatal(err)
	}
	var generic struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	if generic.Keys[0]["kid"] != "court-a/k1" || generic.Keys[0]["revoked_at"] != "2026-11-01T00:00:00Z" || generic.Keys[0]["use"] != "sig" {
		t.Fatalf("%v", generic.Keys[0])
	}
	pubs, err := ParseJWKS(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(pubs) != 2 || !pubs[0].RevokedAt.Equal(at) || pubs[1].Revoked() {
		t.Fatalf("%+v", pubs)
	}
	if pubs[0].ValidAt(at) || !pubs[0].ValidAt(at.Add(-time.Nanosecond)) || !pubs[1].ValidAt(at.Add(time.Hour)) {
		t.Fatal("ValidAt")
	}
}

func TestRevokeInDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := GenerateInDir(dir, "certless", "r1", EdDSA); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateInDir(dir, "certless", "r2", EdDSA); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	k, err := SigningKey(dir, "certless", now)
	if err != nil || k.KeyID != "r2" {
		t.Fatalf("SigningKey = %v, %v", k, err)
	}
	if err := Revoke(dir, "certless/r2", now.Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := Revoke(dir, "certless/r2", now); err != nil { // later time: keep the earlier
		t.Fatal(err)
	}
	k, err = SigningKey(dir, "certless", now)
	if err != nil || k.KeyID != "r1" {
		t.Fatalf("after revocation SigningKey = %v, %v", k, err)
	}
	reg, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := reg.Lookup("certless/r2")
	if !p.RevokedAt.Equal(now.Add(-time.Minute).UTC()) {
		t.Fatalf("revoked_at %v", p.RevokedAt)
	}
	if err := Revoke(dir, "certless/zz", now); err == nil {
		t.Fatal("revoking an unknown key must fail")
	}
}

func TestReadPrivateRefusesOpenPermissions(t *testing.T) {
	dir := t.TempDir()
	k, err := GenerateInDir(dir, "court-a", "k1", EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	path := PrivatePath(dir, "court-a", k.KeyID)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivate(path); !errors.Is(err, ErrKeyFilePerm) {
		t.Fatalf("got %v", err)
	}
}

func TestLoadDirRefusesForeignKeys(t *testing.T) {
	dir := t.TempDir()
	k, _ := Generate("court-b", "k1", EdDSA)
	b, _ := MarshalJWKS([]Public{k.Public})
	if err := os.WriteFile(JWKSPath(dir, "court-a"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir); err == nil {
		t.Fatal("court-a.jwks.json holding a court-b key must be refused")
	}
}

func TestParseJWKSRefusals(t *testing.T) {
	k, _ := Generate("court-a", "k1", EdDSA)
	priv, _ := MarshalPrivate(k)
	for name, doc := range map[string]string{
		"private key":   `{"keys":[` + string(priv) + `]}`,
		"no keys":       `{}`,
		"bad kid":       `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1","alg":"EdDSA"}]}`,
		"alg mismatch":  `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"court-a/k1","alg":"ES256"}]}`,
		"hmac key":      `{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"court-a/k1","alg":"HS256"}]}`,
		"use mismatch":  `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"court-a/k1","alg":"EdDSA","use":"enc"}]}`,
		"duplicate kid": `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"court-a/k1","alg":"EdDSA"},{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"court-a/k1","alg":"EdDSA"}]}`,
	} {
		if _, err := ParseJWKS([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
