package credential_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/certless/certless/credential"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/statuslist"
)

func sample(t *testing.T) (envelope.Payload, schemas.Receipt) {
	t.Helper()
	issued := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	asOf := issued
	entry := statuslist.NewEntry("http://127.0.0.1:8080/status", 42)
	body := schemas.Receipt{RequestID: "01KREQUEST0000000000000001", RequestDigest: "sha256:" + string(bytes.Repeat([]byte("ab"), 32)),
		RequestAgency: "court-changchun", Query: "identity", Decision: schemas.DecisionAnswered,
		Answer: json.RawMessage(`{"as_of":"2026-12-01T09:00:00Z","id_name_match":true}`), AsOf: &asOf,
		Agreement:        &schemas.AgreementRef{ID: "court-changchun/records", Version: 1, Digest: "sha256:" + string(bytes.Repeat([]byte("cd"), 32))},
		CredentialStatus: &entry}
	raw, _ := json.Marshal(body)
	return envelope.Payload{Type: schemas.TypeReceipt, ID: "01KRECEIPT0000000000000001", Agency: "certless", IssuedAt: issued,
		ExpiresAt: issued.Add(30 * 24 * time.Hour), Purpose: envelope.Purpose{Basis: "litigation", CaseRef: "(2026)吉01刑初1号"}, Body: raw}, body
}

// TestCredentialCarriesTheDataModel: the exported credential has every
// property VCDM 2.0 requires (@context first the v2 context, type with
// VerifiableCredential, an issuer URL, a credentialSubject) and those a
// verifier of a Certless receipt needs (validity, status, the answer).
func TestCredentialCarriesTheDataModel(t *testing.T) {
	p, body := sample(t)
	c, err := credential.FromReceipt(p, body, "certless", "certless.local/certless", 12)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(c)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	ctx, _ := m["@context"].([]any)
	types, _ := m["type"].([]any)
	if len(ctx) == 0 || ctx[0] != "https://www.w3.org/ns/credentials/v2" || len(types) != 2 || types[0] != "VerifiableCredential" ||
		m["issuer"] != "urn:certless:certless" || m["credentialSubject"] == nil || m["validFrom"] != "2026-12-01T09:00:00Z" {
		t.Fatalf("credential %s", b)
	}
	st, _ := m["credentialStatus"].(map[string]any)
	if st["type"] != "BitstringStatusListEntry" || st["statusListIndex"] != "42" {
		t.Fatalf("credentialStatus %v", st)
	}
	if _, err := credential.FromReceipt(p, body, "another-broker", "", -1); err == nil {
		t.Error("a receipt of another broker became its credential")
	}
}

// TestInteropJoseVerifiesCredential: the npm jose library verifies the
// vc+jwt (EdDSA and ES256) and finds the data model's properties; one byte
// changed, it refuses.
func TestInteropJoseVerifiesCredential(t *testing.T) {
	dir := filepath.Join("testdata", "interop")
	nodeBin := testenv.Node(t, dir, "jose")
	p, body := sample(t)
	c, err := credential.FromReceipt(p, body, "certless", "certless.local/certless", 12)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []keys.Alg{keys.EdDSA, keys.ES256} {
		k, err := keys.Generate("certless", "k-"+string(alg), alg)
		if err != nil {
			t.Fatal(err)
		}
		jwt, err := credential.Sign(k, c)
		if err != nil {
			t.Fatal(err)
		}
		jwk, _ := json.Marshal(k.Public.JWK())
		run := func(jwt []byte) ([]byte, string, error) {
			in, _ := json.Marshal(map[string]any{"jwt": string(jwt), "jwk": json.RawMessage(jwk)})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, nodeBin, "verify.mjs")
			cmd.Dir = dir
			cmd.Stdin = bytes.NewReader(in)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			return out, stderr.String(), err
		}
		out, stderr, err := run(jwt)
		if err != nil {
			t.Fatalf("%s: jose refuses the credential: %v\n%s", alg, err, stderr)
		}
		var got struct{ Kid, Alg, Typ, ID, Issuer, Decision, Status string }
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got.Kid != k.KID() || got.Alg != string(alg) || got.Typ != "vc+jwt" || got.ID != c.ID || got.Decision != "answered" || got.Status != body.CredentialStatus.StatusListCredential {
			t.Fatalf("%s: jose saw %+v", alg, got)
		}
		tampered := append([]byte(nil), jwt...)
		i := bytes.IndexByte(tampered, '.') + 5
		tampered[i] ^= 1
		if _, _, err := run(tampered); err == nil {
			t.Fatalf("%s: jose accepts a changed credential", alg)
		}
	}
}
