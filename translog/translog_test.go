package translog_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/translog"
)

// The RFC 6962 reference leaves and tree heads (the test vectors of
// Certificate Transparency's Merkle tree implementations).
var (
	rfcLeaves = []string{"", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"}
	rfcRoots  = []string{
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	// Inclusion proof of leaf 0 in the tree of 8.
	rfcProof0 = []string{
		"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
		"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
		"6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
	}
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// memory keeps every stored hash, for proofs in tests.
type memory map[int64]tlog.Hash

func (m memory) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		h, ok := m[x]
		if !ok {
			return nil, errors.New("missing hash")
		}
		out[i] = h
	}
	return out, nil
}

func TestTreeMatchesRFC6962Vectors(t *testing.T) {
	tree, err := translog.NewTree(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	all := memory{}
	for n := 0; n <= len(rfcLeaves); n++ {
		root, err := tree.Root()
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(root.Hash[:]); got != rfcRoots[n] || root.N != int64(n) {
			t.Fatalf("size %d: root %s, RFC 6962 says %s", n, got, rfcRoots[n])
		}
		if n == len(rfcLeaves) {
			break
		}
		if _, err := tree.Append(unhex(t, rfcLeaves[n])); err != nil {
			t.Fatal(err)
		}
		for _, h := range tree.Drain() {
			all[h.Index] = h.Hash
		}
	}
	proof, err := tlog.ProveRecord(8, 0, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(proof) != len(rfcProof0) {
		t.Fatalf("proof of %d hashes, want %d", len(proof), len(rfcProof0))
	}
	for i, h := range proof {
		if hex.EncodeToString(h[:]) != rfcProof0[i] {
			t.Errorf("proof hash %d: %x, want %s", i, h, rfcProof0[i])
		}
	}
}

// A tree rebuilt from its right edge goes on exactly as the one that kept
// growing, for every size across several tile boundaries.
func TestTreeResumesFromItsRightEdge(t *testing.T) {
	whole, _ := translog.NewTree(0, nil)
	for n := 0; n < 1300; n++ {
		resumed, err := translog.NewTree(whole.Size(), whole.Edge())
		if err != nil {
			t.Fatalf("size %d: %v", n, err)
		}
		leaf := []byte{byte(n), byte(n >> 8)}
		whole.Append(leaf)
		resumed.Append(leaf)
		a, _ := whole.Root()
		b, _ := resumed.Root()
		if a != b {
			t.Fatalf("size %d: resumed root %v, whole %v", n+1, b, a)
		}
		ref, err := tlog.TreeHash(whole.Size(), whole)
		if err != nil || ref != a.Hash {
			t.Fatalf("size %d: tlog.TreeHash %v %v, tree %v", n+1, ref, err, a.Hash)
		}
	}
	if _, err := translog.NewTree(5, nil); err == nil {
		t.Fatal("a tree of 5 without its right edge was accepted")
	}
}

func sampleLeaf() translog.Leaf {
	return translog.Leaf{
		Kind: translog.KindDecision, Time: translog.FormatTime(time.Date(2026, 12, 1, 8, 0, 0, 123456789, time.UTC)),
		Agency: "court-changchun", Type: "verification_request", Query: "criminal_record", Outcome: "answered",
		Request:   "sha256:" + strings.Repeat("ab", 32),
		Receipt:   "sha256:" + strings.Repeat("cd", 32),
		Agreement: "sha256:" + strings.Repeat("ef", 32), AgreementID: "court-criminal-record", AgreementVersion: 2,
	}
}

func TestLeafEncodingIsCanonical(t *testing.T) {
	b, err := sampleLeaf().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"agency":"court-changchun","agreement":"sha256:` + strings.Repeat("ef", 32) +
		`","agreement_id":"court-criminal-record","agreement_version":2,"kind":"decision","outcome":"answered","query":"criminal_record","receipt":"sha256:` +
		strings.Repeat("cd", 32) + `","request":"sha256:` + strings.Repeat("ab", 32) +
		`","time":"2026-12-01T08:00:00.123456Z","type":"verification_request","v":1}`
	if string(b) != want {
		t.Fatalf("leaf\n%s\nwant (RFC 8785 member order, no white space)\n%s", b, want)
	}
	l, err := translog.ParseLeaf(b)
	if err != nil || l.Query != "criminal_record" || l.V != 1 {
		t.Fatalf("parse: %+v %v", l, err)
	}
	for name, bad := range map[string]string{
		"white space":     strings.Replace(string(b), `,"kind"`, `, "kind"`, 1),
		"members swapped": strings.Replace(strings.Replace(string(b), `"outcome":"answered","query":"criminal_record"`, `"query":"criminal_record","outcome":"answered"`, 1), "", "", 1),
		"unknown member":  strings.Replace(string(b), `"v":1}`, `"v":1,"name":"x"}`, 1),
		"version 2":       strings.Replace(string(b), `"v":1}`, `"v":2}`, 1),
		"short digest":    strings.Replace(string(b), strings.Repeat("ab", 32), "ab", 1),
	} {
		if _, err := translog.ParseLeaf([]byte(bad)); !errors.Is(err, translog.ErrLeaf) {
			t.Errorf("%s: parsed, err %v", name, err)
		}
	}
	// A code outside the token set is logged as its digest, never verbatim.
	l = sampleLeaf()
	l.Query = "刑事记录 <script>"
	if _, err := l.Marshal(); !errors.Is(err, translog.ErrLeaf) {
		t.Fatalf("a query with spaces and markup was encoded: %v", err)
	}
	if tok := translog.Token("刑事记录 <script>"); !strings.HasPrefix(tok, "sha256:") || translog.Token("criminal_record") != "criminal_record" {
		t.Fatalf("Token: %q", tok)
	}
}

func TestCheckpointAndProofRoundTrip(t *testing.T) {
	const origin = "certless.test/log"
	skey, vkey, err := translog.NewLogKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	tree, _ := translog.NewTree(0, nil)
	all := memory{}
	var leaves [][]byte
	for i := 0; i < 300; i++ {
		l := sampleLeaf()
		l.Request = translog.Digest([]byte{byte(i), byte(i >> 8)})
		b, _ := l.Marshal()
		leaves = append(leaves, b)
		tree.Append(b)
	}
	for _, h := range tree.Drain() {
		all[h.Index] = h.Hash
	}
	root, _ := tree.Root()
	cp, err := translog.SignCheckpoint(signer, origin, root)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(cp, []byte(origin+"\n300\n")) {
		t.Fatalf("checkpoint body:\n%s", cp)
	}
	pol := translog.Policy{Origin: origin, Log: verifier}
	c, _, err := pol.VerifyCheckpoint(cp)
	if err != nil || c.N != 300 || c.Hash != root.Hash {
		t.Fatalf("verify checkpoint: %+v %v", c, err)
	}
	rp, err := tlog.ProveRecord(300, 257, all)
	if err != nil {
		t.Fatal(err)
	}
	p := translog.Proof{Leaf: leaves[257], Index: 257, Hashes: rp, Checkpoint: cp}
	text := p.Format()
	if !bytes.HasPrefix(text, []byte("c2sp.org/tlog-proof@v1\nextra ")) {
		t.Fatalf("proof:\n%s", text)
	}
	back, err := translog.ParseProof(text)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.VerifyInclusion(c); err != nil {
		t.Fatalf("inclusion: %v", err)
	}
	back.Leaf = leaves[256] // another leaf at that index
	if err := back.VerifyInclusion(c); !errors.Is(err, translog.ErrProof) {
		t.Fatalf("a wrong leaf verified: %v", err)
	}
	// Another origin, another key, a body edited: refused.
	if _, _, err := (translog.Policy{Origin: "other", Log: verifier}).VerifyCheckpoint(cp); !errors.Is(err, translog.ErrCheckpoint) {
		t.Errorf("other origin: %v", err)
	}
	edited := bytes.Replace(cp, []byte("\n300\n"), []byte("\n301\n"), 1)
	if _, _, err := pol.VerifyCheckpoint(edited); !errors.Is(err, translog.ErrCheckpoint) {
		t.Errorf("edited size: %v", err)
	}
	_, otherV, _ := translog.NewLogKey(origin)
	ov, _ := note.NewVerifier(otherV)
	if _, _, err := (translog.Policy{Origin: origin, Log: ov}).VerifyCheckpoint(cp); !errors.Is(err, translog.ErrCheckpoint) {
		t.Errorf("other key: %v", err)
	}
	// A quorum of one witness that did not cosign.
	_, wv, _ := note.GenerateKey(nil, "witness.test/w1")
	w, _ := note.NewVerifier(wv)
	if _, _, err := (translog.Policy{Origin: origin, Log: verifier, Witnesses: []note.Verifier{w}, Quorum: 1}).VerifyCheckpoint(cp); err == nil ||
		!strings.Contains(err.Error(), "witness.test/w1") {
		t.Errorf("missing cosignature: %v", err)
	}
}
