package client_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/client"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/translog"
)

// logged is a receipt of the broker "certless" logged as leaf index of a
// log of size leaves, with its bundle and what verifies it.
type logged struct {
	bundle client.Bundle
	broker *client.Broker
	policy translog.Policy
	now    time.Time
}

func newLogged(t testing.TB, size, index int) logged {
	t.Helper()
	now := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	bk, err := keys.Generate("certless", "b1", keys.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	digest := envelope.DigestOf([]byte("the signed request"))
	body, _ := json.Marshal(schemas.Receipt{
		RequestID: ulid.Make().String(), RequestDigest: digest, RequestAgency: "court-changchun",
		Query: "criminal_record", Decision: schemas.DecisionAnswered, Answer: json.RawMessage(`{"has_criminal_record":false}`),
		Agreement: &schemas.AgreementRef{ID: "court-criminal-record", Version: 1, Digest: envelope.DigestOf([]byte("agreement"))},
	})
	raw, err := envelope.Sign(bk, envelope.Payload{Type: schemas.TypeReceipt, ID: ulid.Make().String(), Agency: "certless",
		IssuedAt: now, ExpiresAt: now.Add(30 * 24 * time.Hour), Purpose: envelope.Purpose{Basis: "receipt", CaseRef: digest}, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := keys.MarshalJWKS([]keys.Public{bk.Public})
	b, err := client.BrokerKeys("certless", jwks)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := translog.Leaf{Kind: translog.KindDecision, Time: translog.FormatTime(now), Agency: "court-changchun",
		Type: schemas.TypeVerificationRequest, Query: "criminal_record", Outcome: "answered", Request: digest,
		Receipt: translog.Digest(raw), Agreement: envelope.DigestOf([]byte("agreement")), AgreementID: "court-criminal-record", AgreementVersion: 1}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tree, _ := translog.NewTree(0, nil)
	hashes := map[int64]tlog.Hash{}
	for i := 0; i < size; i++ {
		l := leaf
		if i != index {
			l = []byte(fmt.Sprintf("other leaf %d", i))
		}
		tree.Append(l)
		if i%4096 == 0 || i == size-1 {
			for _, h := range tree.Drain() {
				hashes[h.Index] = h.Hash
			}
		}
	}
	root, _ := tree.Root()
	skey, vkey, _ := translog.NewLogKey("certless.test/log")
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	cp, _ := translog.SignCheckpoint(s, "certless.test/log", root)
	proof, err := tlog.ProveRecord(int64(size), int64(index), hashReader(hashes))
	if err != nil {
		t.Fatal(err)
	}
	p := translog.Proof{Leaf: leaf, Index: int64(index), Hashes: proof, Checkpoint: cp}
	return logged{
		bundle: client.Bundle{Receipt: string(raw), Proof: string(p.Format())},
		broker: b, policy: translog.Policy{Origin: "certless.test/log", Log: v}, now: now.Add(time.Hour),
	}
}

type hashReader map[int64]tlog.Hash

func (h hashReader) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		var ok bool
		if out[i], ok = h[x]; !ok {
			return nil, fmt.Errorf("no hash %d", x)
		}
	}
	return out, nil
}

func failedChecks(checks []client.Check) []string {
	var out []string
	for _, c := range checks {
		if c.Err != nil {
			out = append(out, c.Name)
		}
	}
	return out
}

func TestVerifyBundle(t *testing.T) {
	l := newLogged(t, 1000, 617)
	checks, r := client.VerifyBundle(l.bundle, l.broker, l.policy, client.Expect{Now: l.now})
	if f := failedChecks(checks); len(f) != 0 || r == nil || r.Decision != "answered" {
		t.Fatalf("good bundle failed %v", checks)
	}
	// Each way a bundle can be wrong fails the check that should catch it.
	for _, c := range []struct {
		name string
		edit func(b *client.Bundle, e *client.Expect, p *translog.Policy)
		want []string
	}{
		{"answer edited", func(b *client.Bundle, _ *client.Expect, _ *translog.Policy) {
			b.Receipt = resign(t, b.Receipt)
		}, []string{client.CheckSignature, client.CheckLeaf, client.CheckValidity}},
		{"another index", func(b *client.Bundle, _ *client.Expect, _ *translog.Policy) {
			b.Proof = strings.Replace(b.Proof, "index 617\n", "index 616\n", 1)
		}, []string{client.CheckInclusion}},
		{"checkpoint size edited", func(b *client.Bundle, _ *client.Expect, _ *translog.Policy) {
			b.Proof = strings.Replace(b.Proof, "\n1000\n", "\n1001\n", 1)
		}, []string{client.CheckCheckpoint, client.CheckCosignature, client.CheckInclusion}},
		{"expired at --at", func(_ *client.Bundle, e *client.Expect, _ *translog.Policy) {
			e.Now = e.Now.Add(60 * 24 * time.Hour)
		}, []string{client.CheckValidity}},
		{"witness required", func(_ *client.Bundle, _ *client.Expect, p *translog.Policy) {
			_, wv, _ := note.GenerateKey(nil, "witness.test/w")
			v, _ := note.NewVerifier(wv)
			p.Witnesses, p.Quorum = []note.Verifier{v}, 1
		}, []string{client.CheckCosignature}},
	} {
		b, e, p := l.bundle, client.Expect{Now: l.now}, l.policy
		c.edit(&b, &e, &p)
		checks, _ := client.VerifyBundle(b, l.broker, p, e)
		if got := failedChecks(checks); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: failed %v, want %v", c.name, got, c.want)
		}
	}
}

// resign swaps the receipt's answer, keeping the signature.
func resign(t testing.TB, jws string) string {
	parts := strings.Split(jws, ".")
	p, _ := b64(parts[1])
	s := strings.Replace(string(p), `"has_criminal_record":false`, `"has_criminal_record":true`, 1)
	if s == string(p) {
		t.Fatal("answer not found in the payload")
	}
	parts[1] = b64e([]byte(s))
	return strings.Join(parts, ".")
}

// BenchmarkVerifyBundle checks one bundle offline (signature, leaf,
// checkpoint, inclusion in a log of a million leaves, validity); the issue
// asks for at most 1 ms.
//
//	go test ./client -run '^$' -bench VerifyBundle
func BenchmarkVerifyBundle(b *testing.B) {
	l := newLogged(b, 1<<20, 777777)
	b.ResetTimer()
	for b.Loop() {
		checks, _ := client.VerifyBundle(l.bundle, l.broker, l.policy, client.Expect{Now: l.now})
		if f := failedChecks(checks); len(f) != 0 {
			b.Fatal(f)
		}
	}
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
func b64e(b []byte) string         { return base64.RawURLEncoding.EncodeToString(b) }
