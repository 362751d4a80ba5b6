package envelope

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// interopDir holds the JavaScript agency: package.json pins the npm `jose`
// library, agency.mjs uses nothing else.
var interopDir = filepath.Join("testdata", "interop")

// node returns the node binary with the interop packages installed, or
// skips (fails under CI=true) when Node.js or npm is missing.
func node(t *testing.T) string {
	t.Helper()
	return testenv.Node(t, interopDir, "jose")
}

func runAgency(t *testing.T, nodeBin, mode string, in any) []byte {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, "agency.mjs", mode)
	cmd.Dir = interopDir
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node agency.mjs %s: %v\n%s", mode, err, stderr.String())
	}
	return out
}

// TestInteropJavaScript: an agency using only the npm jose library signs a
// request with a key `certless keys generate` made, and Certless verifies
// it; the agency verifies a Certless receipt with the published JWKS, and
// opens a confidential (JWE) one.
func TestInteropJavaScript(t *testing.T) {
	nodeBin := node(t)
	dir := t.TempDir()
	agencyKey, err := keys.GenerateInDir(dir, "court-a", "k1", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	encKey, err := keys.GenerateInDir(dir, "court-a", "e1", keys.ECDHES)
	if err != nil {
		t.Fatal(err)
	}
	brokerKey, err := keys.GenerateInDir(dir, "certless", "r1", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := keys.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	privateJWK := func(k *keys.Private) json.RawMessage {
		b, err := os.ReadFile(keys.PrivatePath(dir, k.Agency, k.KeyID))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// JavaScript → Certless.
	subject := map[string]string{"id_number": "220102199003071235", "name": "张伟"}
	raw := runAgency(t, nodeBin, "sign", map[string]any{"jwk": privateJWK(agencyKey), "agency": "court-a", "subject": subject})
	v := &Verifier{Keys: reg}
	got, err := v.Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("Certless refuses the JavaScript request: %v\n%s", err, raw)
	}
	if got.Type != schemas.TypeVerificationRequest || got.Agency != "court-a" || got.KeyID != "court-a/k1" || !strings.Contains(string(got.Body), "220102199003071235") {
		t.Fatalf("verified %+v", got)
	}

	// Certless → JavaScript, with the JWKS the broker publishes.
	p := receipt(t, raw)
	p.IssuedAt, p.ExpiresAt = time.Now().UTC(), time.Now().UTC().Add(time.Hour)
	rcpt := mustSign(t, brokerKey, p)
	jwks, err := reg.JWKS("certless")
	if err != nil {
		t.Fatal(err)
	}
	var seen map[string]any
	out := runAgency(t, nodeBin, "verify", map[string]any{"jwks": json.RawMessage(jwks), "jws": string(rcpt)})
	if err := json.Unmarshal(out, &seen); err != nil || seen["id"] != p.ID || seen["agency"] != "certless" {
		t.Fatalf("JavaScript saw %s (%v)", out, err)
	}

	// A tampered receipt must fail in JavaScript too.
	bad := []byte(string(rcpt[:len(rcpt)-4]) + "AAAA")
	cmd := exec.Command(nodeBin, "agency.mjs", "verify")
	cmd.Dir = interopDir
	in, _ := json.Marshal(map[string]any{"jwks": json.RawMessage(jwks), "jws": string(bad)})
	cmd.Stdin = bytes.NewReader(in)
	if err := cmd.Run(); err == nil {
		t.Fatal("JavaScript accepted a tampered receipt")
	}

	// Confidential receipt: Certless encrypts to the agency's P-256 key.
	sealed, err := EncryptTo(rcpt, encKey.Public)
	if err != nil {
		t.Fatal(err)
	}
	out = runAgency(t, nodeBin, "decrypt", map[string]any{"jwk": privateJWK(encKey), "jwks": json.RawMessage(jwks), "jwe": string(sealed)})
	if err := json.Unmarshal(out, &seen); err != nil || seen["id"] != p.ID {
		t.Fatalf("JavaScript decrypted %s (%v)", out, err)
	}
}
