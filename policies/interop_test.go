package policies

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/certless/certless/internal/testenv"
)

// interopDir holds the JavaScript verifier: package.json pins the npm
// `jose` library, verify.mjs uses nothing else.
var interopDir = filepath.Join("testdata", "interop")

// node returns the node binary with the interop packages installed, or
// skips (fails under CI=true) when Node.js or npm is missing.
func node(t *testing.T) string {
	t.Helper()
	return testenv.Node(t, interopDir, "jose")
}

// TestInteropJoseVerifiesCoSignatures: the npm jose library verifies both
// parties' signatures (EdDSA and ES256) over the agreement file's exact
// bytes, and refuses them over the file with one byte changed.
func TestInteropJoseVerifiesCoSignatures(t *testing.T) {
	nodeBin := node(t)
	w := defaultWorld(t) // court-changchun EdDSA, police-jilin ES256
	doc := []byte(sampleDoc)
	sigs := w.cosign(doc, t0, "court-changchun", "police-jilin")
	if err := Verify(doc, sigs, w.reg, nil); err != nil {
		t.Fatal(err)
	}
	var jwks []json.RawMessage
	for _, party := range []string{"court-changchun", "police-jilin"} {
		b, err := w.reg.JWKS(party)
		if err != nil {
			t.Fatal(err)
		}
		jwks = append(jwks, b)
	}
	run := func(doc []byte) ([]byte, string, error) {
		in, _ := json.Marshal(map[string]any{"doc": doc, "sigs": json.RawMessage(sigs), "jwks": jwks})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, nodeBin, "verify.mjs")
		cmd.Dir = interopDir
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		return out, stderr.String(), err
	}
	out, stderr, err := run(doc)
	if err != nil {
		t.Fatalf("jose refuses the co-signed agreement: %v\n%s", err, stderr)
	}
	var got []struct {
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		Iat int64  `json:"iat"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(got) != 2 || got[0].Kid != "court-changchun/k1" || got[0].Alg != "EdDSA" || got[1].Kid != "police-jilin/k1" || got[1].Alg != "ES256" || got[1].Iat != t0.Unix() {
		t.Fatalf("jose saw %+v", got)
	}
	tampered := append([]byte(nil), doc...)
	tampered[0] ^= 0x20
	if _, _, err := run(tampered); err == nil {
		t.Fatal("jose accepts the signatures over a changed file")
	}
}
