package envelope

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// fuzzKey is a fixed Ed25519 key so the seed corpus in
// testdata/fuzz/FuzzDecode stays verifiable across runs.
func fuzzKey() *keys.Private {
	priv := ed25519.NewKeyFromSeed([]byte("certless fuzz seed key, 32 bytes"))
	return &keys.Private{
		Public: keys.Public{Agency: "court-a", KeyID: "k1", Alg: keys.EdDSA, Key: priv.Public()},
		Signer: priv,
	}
}

// FuzzDecode feeds arbitrary bytes to Verify. It must never panic, always
// answer with a *Error (Verify keeps no state that could fail), return a message
// exactly when the reason is authenticated, and hand out only payloads that
// pass their schema and were signed by the fuzz key.
func FuzzDecode(f *testing.F) {
	k := fuzzKey()
	reg, err := keys.NewRegistry(k.Public)
	if err != nil {
		f.Fatal(err)
	}
	set, err := schemas.Default()
	if err != nil {
		f.Fatal(err)
	}
	v := &Verifier{Keys: reg, Schemas: set, Now: func() time.Time { return now }}

	valid := mustSign(f, k, request())
	f.Add(valid)
	bad := request()
	bad.Body = json.RawMessage(`{"query":"kinship","subject":{"id_number":"220102199003071235","name":"张伟"}}`)
	f.Add(mustSign(f, k, bad))
	f.Add(forge(`{"alg":"none","kid":"court-a/k1"}`, `{}`))
	f.Add(forge(`{"alg":"EdDSA","kid":"court-a/k1"}`, `{"agency":"court-a"}`))
	f.Add([]byte("..."))
	f.Add([]byte(""))

	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := v.Verify(context.Background(), raw)
		if err == nil {
			if got == nil || got.Digest != DigestOf(raw) || got.KeyID != "court-a/k1" || got.Agency != "court-a" {
				t.Fatalf("accepted with %+v", got)
			}
			b, _ := json.Marshal(got.Payload)
			name, _ := schemas.SchemaName(got.Type)
			if err := set.Validate(name, b); err != nil {
				t.Fatalf("accepted payload re-encodes invalid: %v", err)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("non-*Error from a stateless Verify: %v", err)
		}
		if e.Reason.Authenticated() != (got != nil) {
			t.Fatalf("%s returned message %v", e.Reason, got != nil)
		}
		_ = e.Error()
	})
}

// FuzzSignedPayload signs arbitrary payload bytes with a registered key and
// verifies them: this reaches the checks after the signature (sender, time
// window, schema, decoding) that random bytes never get past the signature
// to exercise.
func FuzzSignedPayload(f *testing.F) {
	k := fuzzKey()
	reg, err := keys.NewRegistry(k.Public)
	if err != nil {
		f.Fatal(err)
	}
	set, err := schemas.Default()
	if err != nil {
		f.Fatal(err)
	}
	v := &Verifier{Keys: reg, Schemas: set, Now: func() time.Time { return now }}
	for _, typ := range schemas.Types {
		m := loadExample(f, typ)
		m["agency"] = "court-a"
		m["issued_at"] = now.Add(-time.Minute).Format(time.RFC3339)
		m["expires_at"] = now.Add(time.Hour).Format(time.RFC3339)
		b, _ := json.Marshal(m)
		f.Add(b)
	}
	f.Add([]byte(`{"agency":"court-a","issued_at":"2026-11-18T09:30:00Z","expires_at":"2026-11-18T09:00:00Z"}`))
	f.Add([]byte(`{"agency":"court-a","Agency":"court-b","id":7}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"agency":"court-a","\u0061gency":"court-b"}`))
	f.Add([]byte(`{"agency":"court-a","body":{"x":[{"a":1,"a":2}]}}`))
	f.Add([]byte(`{"agency":"court-a","purpose":{"basis":"\ud800"}}`))

	f.Fuzz(func(t *testing.T, payload []byte) {
		raw, err := SignBytes(k, payload)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(context.Background(), raw)
		if err == nil {
			b, _ := json.Marshal(got.Payload)
			name, _ := schemas.SchemaName(got.Type)
			if err := set.Validate(name, b); err != nil {
				t.Fatalf("accepted payload re-encodes invalid: %v\n%s", err, payload)
			}
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("non-*Error: %v", err)
		}
		if checkIJSON(payload) != nil && e.Reason != ReasonMalformed {
			t.Fatalf("a payload that is not I-JSON refused with %s: %v", e.Reason, err)
		}
		switch e.Reason {
		case ReasonTooLarge, ReasonAlgNotAllowed, ReasonUnknownKey, ReasonSignatureInvalid, ReasonKeyRevoked:
			t.Fatalf("a well-signed message refused with %s: %v", e.Reason, err)
		}
		if e.Reason.Authenticated() {
			if got == nil || got.Agency != "court-a" || (got.ID != "" && !ulidRE.MatchString(got.ID)) {
				t.Fatalf("%s with message %+v", e.Reason, got)
			}
			if p := got.Purpose; p != (Purpose{}) && (!purposeText(p.Basis) || !purposeText(p.CaseRef)) {
				t.Fatalf("best-effort purpose breaks the schema: %+v", p)
			}
		}
	})
}

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzDecode from the seed generator")

// TestFuzzCorpusIsCurrent checks that the checked-in seed corpus of
// FuzzDecode (testdata/fuzz/FuzzDecode) is what the seed generator makes
// now, so the fuzzer starts from valid messages of every type; with
// -update-corpus it rewrites the files. The seeds are deterministic: a fixed
// key, clock and id, and Ed25519 signatures are deterministic too.
func TestFuzzCorpusIsCurrent(t *testing.T) {
	k := fuzzKey()
	p := request()
	seeds := map[string][]byte{"valid_request": mustSign(t, k, p)}
	for _, typ := range schemas.Types {
		m := loadExample(t, typ)
		m["agency"] = "court-a"
		b, _ := json.Marshal(m)
		raw, _ := SignBytes(k, b)
		seeds["example_"+typ] = raw
	}
	dup, _ := json.Marshal(request())
	dup = []byte(strings.Replace(string(dup), `"agency":"court-a",`, `"agency":"court-a","\u0061gency":"court-b",`, 1))
	seeds["duplicate_member"], _ = SignBytes(k, dup)
	lone, _ := json.Marshal(request())
	lone = []byte(strings.Replace(string(lone), `"basis":"notarisation"`, `"basis":"notarisation\ud800"`, 1))
	seeds["lone_surrogate"], _ = SignBytes(k, lone)
	p.ExpiresAt = now.Add(-time.Hour)
	seeds["expired"] = mustSign(t, k, p)
	seeds["alg_none"] = forge(`{"alg":"none","kid":"court-a/k1"}`, `{"agency":"court-a"}`)
	seeds["alg_hs256"] = forge(`{"alg":"HS256","kid":"court-a/k1"}`, `{"agency":"court-a"}`)
	seeds["unknown_kid"] = forge(`{"alg":"EdDSA","kid":"court-z/k9"}`, `{}`)
	seeds["bad_signature"] = forge(`{"alg":"EdDSA","kid":"court-a/k1"}`, `{"agency":"court-a"}`)
	seeds["four_parts"] = []byte("a.b.c.d")
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if *updateCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, raw := range seeds {
		doc := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", raw)
		path := filepath.Join(dir, name)
		if *updateCorpus {
			if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != doc {
			t.Errorf("seed %s is stale or missing (%v); run go test ./envelope -run TestFuzzCorpusIsCurrent -update-corpus", name, err)
		}
	}
}
