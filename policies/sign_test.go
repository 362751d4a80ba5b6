package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/keys"
)

func reasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func TestVerifyRefusals(t *testing.T) {
	w := defaultWorld(t)
	doc := []byte(sampleDoc)
	a, err := Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	good := w.cosign(doc, t0, "court-changchun", "police-jilin")
	if err := Verify(doc, good, w.reg, a); err != nil {
		t.Fatalf("%v\n%s", err, good)
	}
	if err := Verify(doc, good, w.reg, nil); err != nil {
		t.Fatalf("with a nil agreement: %v", err)
	}

	// Keys of the parties under other ids, one of them revoked before
	// signing, and one unknown to the registry.
	revoked, err := keys.GenerateInDir(w.dir, "police-jilin", "old", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := keys.Generate("police-jilin", "ghost", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	revokeInDir(t, w.dir, "police-jilin", "old", t0.Add(-time.Hour))
	w.load()

	tampered := bytes.Replace(doc, []byte("per_day: 1000"), []byte("per_day: 9000"), 1)
	oneByte := append([]byte(nil), doc...)
	oneByte[len(oneByte)-2] ^= 0x01 // "active" → "activd"... still one byte
	otherDoc := bytes.Replace(doc, []byte("version: 1"), []byte("version: 2"), 1)
	otherSigs := w.cosign(otherDoc, t0, "court-changchun", "police-jilin")
	sign := func(d []byte, sigs []byte, k *keys.Private) []byte {
		out, err := Sign(d, sigs, k, t0)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	var g, og general
	_ = json.Unmarshal(good, &g)
	_ = json.Unmarshal(otherSigs, &og)
	swapped, _ := json.Marshal(general{Signatures: []signature{g.Signatures[0], og.Signatures[1]}})
	strangerCopy := sign(doc, w.cosign(doc, t0, "court-changchun"), w.keys["stranger"])
	twice, _ := json.Marshal(general{Signatures: []signature{g.Signatures[0], g.Signatures[1], g.Signatures[1]}})
	withPayload := bytes.Replace(good, []byte(`"signatures"`), []byte(`"payload":"","signatures"`), 1)
	dupMember := bytes.Replace(good, []byte(`"signatures"`), []byte(`"signatures":[],"signatures"`), 1)

	for _, c := range []struct {
		name string
		doc  []byte
		sigs []byte
		want Reason
	}{
		{"no file", doc, nil, ReasonUnsigned},
		{"no signatures", doc, []byte(`{"signatures":[]}`), ReasonUnsigned},
		{"a clause changed after signing", tampered, good, ReasonSignatureInvalid},
		{"one byte changed", oneByte, good, ReasonSignatureInvalid},
		{"a trailing newline added", append(append([]byte(nil), doc...), '\n'), good, ReasonSignatureInvalid},
		{"signatures of another version", doc, otherSigs, ReasonSignatureInvalid},
		{"one signature swapped for another document's", doc, swapped, ReasonSignatureInvalid},
		{"a copy re-signed by a stranger", doc, strangerCopy, ReasonWrongParty},
		{"a party twice", doc, twice, ReasonWrongParty},
		{"provider missing", doc, w.cosign(doc, t0, "court-changchun"), ReasonMissingParty},
		{"requester missing", doc, w.cosign(doc, t0, "police-jilin"), ReasonMissingParty},
		{"unknown key", doc, sign(doc, w.cosign(doc, t0, "court-changchun"), unknown), ReasonUnknownKey},
		{"key revoked before iat", doc, sign(doc, w.cosign(doc, t0, "court-changchun"), revoked), ReasonKeyRevoked},
		{"payload not detached", doc, withPayload, ReasonSignatureInvalid},
		{"duplicate member", doc, dupMember, ReasonSignatureInvalid},
		{"not JSON", doc, []byte("eyJ.x.y"), ReasonSignatureInvalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := reasonOf(Verify(c.doc, c.sigs, w.reg, a)); got != c.want {
				t.Fatalf("reason %q, want %q (%v)", got, c.want, Verify(c.doc, c.sigs, w.reg, a))
			}
		})
	}

	// A key revoked after signing keeps vouching for what it signed.
	revokeInDir(t, w.dir, "court-changchun", "k1", t0.Add(time.Hour))
	w.load()
	if err := Verify(doc, good, w.reg, a); err != nil {
		t.Fatalf("key revoked after iat: %v", err)
	}
}

func TestSignReplacesTheParty(t *testing.T) {
	w := defaultWorld(t)
	doc := []byte(sampleDoc)
	sigs := w.cosign(doc, t0, "court-changchun", "police-jilin", "court-changchun")
	var g general
	if err := json.Unmarshal(sigs, &g); err != nil || len(g.Signatures) != 2 {
		t.Fatalf("%d signatures: %v\n%s", len(g.Signatures), err, sigs)
	}
	signers, err := VerifySigners(doc, sigs, w.reg, nil, true)
	if err != nil || len(signers) != 2 || signers[0].Party != "court-changchun" || !signers[0].SignedAt.Equal(t0) {
		t.Fatalf("%+v %v", signers, err)
	}
}

func TestES256SignaturesAreLowS(t *testing.T) {
	w := defaultWorld(t)
	doc := []byte(sampleDoc)
	for i := 0; i < 32; i++ {
		sigs := w.cosign(doc, t0.Add(time.Duration(i)*time.Second), "police-jilin")
		var g general
		_ = json.Unmarshal(sigs, &g)
		sig := mustB64(t, g.Signatures[0].Signature)
		if highS(sig) {
			t.Fatal("high-S signature written")
		}
	}
	// The high-S twin of a valid signature is refused.
	sigs := w.cosign(doc, t0, "court-changchun", "police-jilin")
	var g general
	_ = json.Unmarshal(sigs, &g)
	g.Signatures[1].Signature = highTwin(t, g.Signatures[1].Signature)
	twin, _ := json.Marshal(g)
	if got := reasonOf(Verify(doc, twin, w.reg, nil)); got != ReasonSignatureInvalid {
		t.Fatalf("high-S twin: %q", got)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range []struct{ name, from, to string }{
		{"unknown member", "status: active\n", "status: active\ncolour: red\n"},
		{"duplicate key", "status: active\n", "status: active\nstatus: active\n"},
		{"undocumented field", "fields: [as_of, has_criminal_record]", "fields: [as_of, salary]"},
		{"unknown region", `scope: ["220100"]`, `scope: ["229999"]`},
		{"from not before until", "until: 2027-11-01T00:00:00+08:00", "until: 2026-11-01T00:00:00+08:00"},
		{"a date without time", "until: 2027-11-01T00:00:00+08:00", "until: 2027-11-01"},
		{"bad cron", `cron: "0 2 * * *"`, `cron: "0 25 * * *"`},
		{"six-field cron", `cron: "0 2 * * *"`, `cron: "0 0 2 * * *"`},
		{"same parties", "provider: police-jilin", "provider: court-changchun"},
		{"query twice", "  - query: identity", "  - query: criminal_record"},
		{"service hours reversed", `to: "18:00"`, `to: "07:00"`},
		{"anchor", "status: active\n", "status: &s active\n"},
		{"octal-looking integer", "version: 1", "version: 0x1"},
		{"proposal without deadline", "status: active", "status: proposed"},
		{"second document", "status: active\n", "status: active\n---\nx: 1\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := strings.Replace(sampleDoc, c.from, c.to, 1)
			if doc == sampleDoc {
				t.Fatal("case does not change the sample")
			}
			if _, err := Parse([]byte(doc)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("accepted: %v", err)
			}
		})
	}
	if _, err := Parse(bytes.Repeat([]byte(" "), MaxDocumentBytes+1)); !errors.Is(err, ErrInvalid) {
		t.Fatal("oversized accepted")
	}
	// JSON is accepted too.
	a, _ := Parse([]byte(sampleDoc))
	js, _ := json.Marshal(a)
	if b, err := Parse(js); err != nil || b.ID != a.ID || len(b.Queries) != 2 {
		t.Fatalf("JSON form: %v", err)
	}
}

// revokeInDir marks agency's key id revoked at at in its JWKS file.
func revokeInDir(t *testing.T, dir, agency, keyID string, at time.Time) {
	t.Helper()
	path := filepath.Join(dir, agency+".jwks.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		if k["kid"] == keys.KID(agency, keyID) {
			k["revoked_at"] = at.UTC().Format(time.RFC3339)
		}
	}
	out, _ := json.Marshal(set)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
