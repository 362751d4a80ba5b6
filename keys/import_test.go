package keys

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// jwk returns the public JWK of k as a JSON object with the members in set
// added (or, for a nil value, removed), for building hostile imports.
func jwk(t *testing.T, k *Private, set map[string]any) string {
	t.Helper()
	return jwkOf(t, k.Public, set)
}

func jwkOf(t *testing.T, p Public, set map[string]any) string {
	t.Helper()
	b, err := marshalPublic(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range set {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func set(keys ...string) string { return `{"keys":[` + strings.Join(keys, ",") + `]}` }

func TestValidateImport(t *testing.T) {
	ed, _ := Generate("court-a", "k1", EdDSA)
	es, _ := Generate("court-a", "k2", ES256)
	enc, _ := Generate("court-a", "e1", ECDHES)
	other, _ := Generate("court-b", "k1", EdDSA)
	edPriv, _ := MarshalPrivate(ed)
	esPriv, _ := MarshalPrivate(es)

	ok := []struct {
		name string
		doc  string
		want []string // kids
	}{
		{"three algs", set(jwk(t, ed, nil), jwk(t, es, nil), jwk(t, enc, nil)), []string{"court-a/k1", "court-a/k2", "court-a/e1"}},
		{"no use", set(jwk(t, ed, map[string]any{"use": nil}), jwk(t, enc, map[string]any{"use": nil})), []string{"court-a/k1", "court-a/e1"}},
		{"extra members", `{"keys":[` + jwk(t, ed, map[string]any{"key_ops": []string{"verify"}, "x-vendor": 1}) + `],"issuer":"court-a"}`, []string{"court-a/k1"}},
		{"revoked", set(jwk(t, ed, map[string]any{"revoked_at": "2026-12-01T16:00:00+08:00"})), []string{"court-a/k1"}},
		{"exactly the size limit", func() string { d := set(jwk(t, ed, nil)); return d + strings.Repeat(" ", MaxImportSize-len(d)) }(), []string{"court-a/k1"}},
		{"MarshalJWKS output", func() string { b, _ := MarshalJWKS([]Public{ed.Public, enc.Public}); return string(b) }(), []string{"court-a/e1", "court-a/k1"}},
	}
	for _, c := range ok {
		pubs, err := ValidateImport("court-a", []byte(c.doc))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		var kids []string
		for _, p := range pubs {
			kids = append(kids, p.KID())
		}
		if !slices.Equal(kids, c.want) {
			t.Errorf("%s: kids %v, want %v", c.name, kids, c.want)
		}
	}
	pubs, _ := ValidateImport("court-a", []byte(set(jwk(t, ed, map[string]any{"revoked_at": "2026-12-01T16:00:00+08:00"}))))
	if want := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC); !pubs[0].RevokedAt.Equal(want) || pubs[0].RevokedAt.Location() != time.UTC {
		t.Errorf("revoked_at %v", pubs[0].RevokedAt)
	}

	bad := []struct {
		name  string
		doc   string
		index int    // -1: a refusal of the whole set
		kid   string // of the refused key
		want  string // in the message
	}{
		{"not JSON", `{"keys":[`, -1, "", "not a JWKS"},
		{"trailing data", set(jwk(t, ed, nil)) + `{}`, -1, "", "after the JSON object"},
		{"no keys member", `{"Keys":[]}`, -1, "", `no "keys" array`},
		{"keys not an array", `{"keys":{}}`, -1, "", `no "keys" array`},
		{"empty set", `{"keys":[]}`, -1, "", "no keys"},
		{"too large", `{"keys":[` + strings.Repeat(" ", MaxImportSize) + `]}`, -1, "", "larger than 65536"},
		{"not an object", set(`"x"`), 0, "", "not a JSON object"},
		{"ed25519 private d", set(string(edPriv)), 0, "court-a/k1", `private member "d"`},
		{"ec private d", set(jwk(t, ed, nil), string(esPriv)), 1, "court-a/k2", `private member "d"`},
		{"empty d", set(jwk(t, es, map[string]any{"d": ""})), 0, "court-a/k2", `private member "d"`},
		{"null d", set(strings.TrimSuffix(jwk(t, es, nil), "}") + `,"d":null}`), 0, "court-a/k2", `private member "d"`},
		{"rsa p", set(jwk(t, es, map[string]any{"p": "AQAB"})), 0, "court-a/k2", `private member "p"`},
		{"rsa dp", set(jwk(t, es, map[string]any{"dp": "AQAB"})), 0, "court-a/k2", `private member "dp"`},
		{"rsa dq", set(jwk(t, es, map[string]any{"dq": "AQAB"})), 0, "court-a/k2", `private member "dq"`},
		{"rsa qi", set(jwk(t, es, map[string]any{"qi": "AQAB"})), 0, "court-a/k2", `private member "qi"`},
		{"rsa q", set(jwk(t, es, map[string]any{"q": "AQAB"})), 0, "court-a/k2", `private member "q"`},
		{"rsa oth", set(jwk(t, es, map[string]any{"oth": []any{}})), 0, "court-a/k2", `private member "oth"`},
		{"symmetric k", set(`{"kty":"oct","k":"c2VjcmV0","kid":"court-a/k1","alg":"HS256"}`), 0, "court-a/k1", `private member "k"`},
		{"no kid", set(jwk(t, ed, map[string]any{"kid": nil})), 0, "", `no "kid"`},
		{"kid not a string", set(jwk(t, ed, map[string]any{"kid": 7})), 0, "", `"kid" is not a string`},
		{"bare key id", set(jwk(t, ed, map[string]any{"kid": "k1"})), 0, "k1", "<key-id>"},
		{"bad key id", set(jwk(t, ed, map[string]any{"kid": "court-a/k.1"})), 0, "court-a/k.1", "<key-id>"},
		{"other agency", set(jwk(t, ed, nil), jwk(t, other, nil)), 1, "court-b/k1", `agency "court-b", not "court-a"`},
		{"no alg", set(jwk(t, ed, map[string]any{"alg": nil})), 0, "court-a/k1", `no "alg"`},
		{"alg not a string", set(jwk(t, ed, map[string]any{"alg": true})), 0, "court-a/k1", `"alg" is not a string`},
		{"unsupported alg", set(jwk(t, ed, map[string]any{"alg": "RS256"})), 0, "court-a/k1", `alg "RS256"`},
		{"ed25519 as ES256", set(jwk(t, ed, map[string]any{"alg": "ES256", "use": nil})), 0, "court-a/k1", "does not fit the key material (Ed25519)"},
		{"p-256 as EdDSA", set(jwk(t, es, map[string]any{"alg": "EdDSA"})), 0, "court-a/k2", "does not fit the key material (EC P-256)"},
		{"use enc on a signing key", set(jwk(t, ed, map[string]any{"use": "enc"})), 0, "court-a/k1", `use "enc" does not fit alg EdDSA`},
		{"use sig on an encryption key", set(jwk(t, enc, map[string]any{"use": "sig"})), 0, "court-a/e1", `use "sig" does not fit`},
		{"empty use", set(jwk(t, ed, map[string]any{"use": ""})), 0, "court-a/k1", `use "" does not fit`},
		{"bad revoked_at", set(jwk(t, ed, map[string]any{"revoked_at": "yesterday"})), 0, "court-a/k1", "revoked_at"},
		{"bad material", set(jwk(t, es, map[string]any{"x": "AAAA"})), 0, "court-a/k2", "key material"},
		{"duplicate kid", set(jwk(t, ed, nil), jwk(t, es, map[string]any{"kid": "court-a/k1"})), 1, "court-a/k1", "duplicate kid, also key 0"},
	}
	for _, c := range bad {
		_, err := ValidateImport("court-a", []byte(c.doc))
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %q lacks %q", c.name, err, c.want)
		}
		var ie *ImportError
		switch {
		case c.index < 0 && errors.As(err, &ie):
			t.Errorf("%s: %v names a key", c.name, err)
		case c.index >= 0 && !errors.As(err, &ie):
			t.Errorf("%s: %v is not an *ImportError", c.name, err)
		case c.index >= 0 && (ie.Index != c.index || ie.KID != c.kid):
			t.Errorf("%s: key %d kid %q, want %d %q", c.name, ie.Index, ie.KID, c.index, c.kid)
		}
	}
	if _, err := ValidateImport("Court A", []byte(set(jwk(t, ed, nil)))); !errors.Is(err, ErrBadName) {
		t.Errorf("bad agency: %v", err)
	}
}

func TestImportPublic(t *testing.T) {
	dir := t.TempDir()
	local, err := GenerateInDir(dir, "court-a", "k0", EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := Generate("court-a", "k1", EdDSA)
	k2, _ := Generate("court-a", "k2", ECDHES)
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

	ch, err := ImportPublic(dir, "court-a", []Public{k2.Public, k1.Public})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Change{{Kind: KeyAdded, KID: "court-a/k1", Agency: "court-a", Alg: EdDSA}, {Kind: KeyAdded, KID: "court-a/k2", Agency: "court-a", Alg: ECDHES}}; !slices.Equal(ch, want) {
		t.Fatalf("first import %v", ch)
	}
	before, _ := os.ReadFile(JWKSPath(dir, "court-a"))

	// Again: nothing changes, not even the file.
	if ch, err := ImportPublic(dir, "court-a", []Public{k1.Public, k2.Public, local.Public}); err != nil || ch != nil {
		t.Fatalf("second import %v, %v", ch, err)
	}
	if after, _ := os.ReadFile(JWKSPath(dir, "court-a")); string(after) != string(before) {
		t.Fatal("an idempotent import rewrote the set")
	}

	// Revocations in the import are honoured, an earlier one moves
	// revoked_at, a later one or none does not withdraw it.
	r1 := k1.Public
	r1.RevokedAt = at
	if ch, err := ImportPublic(dir, "court-a", []Public{r1}); err != nil || !slices.Equal(ch, []Change{{Kind: KeyRevoked, KID: "court-a/k1", Agency: "court-a", Alg: EdDSA, RevokedAt: at}}) {
		t.Fatalf("revoking import %v, %v", ch, err)
	}
	r1.RevokedAt = at.Add(time.Hour)
	for _, p := range []Public{r1, k1.Public} {
		if ch, err := ImportPublic(dir, "court-a", []Public{p}); err != nil || ch != nil {
			t.Fatalf("later or no revocation %v, %v", ch, err)
		}
	}
	r1.RevokedAt = at.Add(-time.Hour)
	if ch, err := ImportPublic(dir, "court-a", []Public{r1}); err != nil || len(ch) != 1 || !ch[0].RevokedAt.Equal(r1.RevokedAt) {
		t.Fatalf("earlier revocation %v, %v", ch, err)
	}

	// A kid already there with other material refuses the whole import.
	reused, _ := Generate("court-a", "k1", EdDSA)
	k3, _ := Generate("court-a", "k3", EdDSA)
	before, _ = os.ReadFile(JWKSPath(dir, "court-a"))
	if _, err := ImportPublic(dir, "court-a", []Public{k3.Public, reused.Public}); !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("reused kid: %v", err)
	}
	asES, _ := Generate("court-a", "k2", ES256) // same kid, other alg
	if _, err := ImportPublic(dir, "court-a", []Public{asES.Public}); !errors.Is(err, ErrKeyConflict) {
		t.Fatalf("other alg: %v", err)
	}
	if after, _ := os.ReadFile(JWKSPath(dir, "court-a")); string(after) != string(before) {
		t.Fatal("a refused import changed the set")
	}

	// Keys of another agency, or a bad agency, are refused.
	other, _ := Generate("court-b", "k1", EdDSA)
	if _, err := ImportPublic(dir, "court-a", []Public{other.Public}); err == nil {
		t.Fatal("a court-b key imported into court-a")
	}
	if _, err := ImportPublic(dir, "../etc", []Public{k1.Public}); !errors.Is(err, ErrBadName) {
		t.Fatalf("bad agency: %v", err)
	}

	// The result loads, and the local private key still works.
	reg, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(reg.Agency("court-a")); got != 3 {
		t.Fatalf("%d keys", got)
	}
	if _, err := LoadPrivate(dir, "court-a", "k0"); err != nil {
		t.Fatal(err)
	}
}
