package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/translog"
)

// checkLog checks the transparency log of a service after the scenarios:
// the checkpoint served at /log/checkpoint verifies with the published log
// key; a tile client that is not ours (torchwood's) reads every entry
// through /log/tile/... and proves it against that checkpoint; every
// receipt of the scenarios has its leaf; a receipt bundle verifies
// offline, and fails once the receipt's answer is edited.
func checkLog(ctx context.Context, t *testing.T, cfg *config.Config, svc *service, rep *scenarioReport) {
	t.Helper()
	if err := svc.checkpointer.Round(ctx); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	base := "http://" + svc.httpAddr()
	vkey := strings.TrimSpace(get(t, base+"/.well-known/log-key"))
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatalf("published log key %q: %v", vkey, err)
	}
	resp, err := http.Get(base + "/log/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	signed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/log/checkpoint: %s %s", resp.Status, ct)
	}
	pol := translog.Policy{Origin: cfg.LogOrigin(), Log: v}
	cp, _, err := pol.VerifyCheckpoint(signed)
	if err != nil {
		t.Fatalf("served checkpoint:\n%s\n%v", signed, err)
	}
	// Every decided message and dead letter of the scenarios is a leaf.
	if min := int64(rep.receipts + rep.dead - 1); cp.N < min {
		t.Fatalf("checkpoint of %d leaves for %d receipts and %d dead letters", cp.N, rep.receipts, rep.dead)
	}

	fetcher, err := torchwood.NewTileFetcher(base + "/log")
	if err != nil {
		t.Fatal(err)
	}
	tc, err := torchwood.NewClient(fetcher)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	var n int64
	for i, e := range tc.Entries(ctx, cp.Tree, 0) {
		if i != n {
			t.Fatalf("entry %d after %d", i, n)
		}
		l, err := translog.ParseLeaf(e)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		kinds[l.Kind]++
		n++
	}
	if err := tc.Err(); err != nil || n != cp.N {
		t.Fatalf("torchwood read %d of %d entries: %v", n, cp.N, err)
	}
	if kinds[translog.KindDeadLetter] != rep.dead || kinds[translog.KindDecision] == 0 {
		t.Fatalf("leaf kinds %v, want %d dead letters", kinds, rep.dead)
	}
	if _, proof, err := tc.Entry(ctx, cp.Tree, cp.N-1); err != nil || len(proof) == 0 && cp.N > 1 {
		t.Fatalf("torchwood inclusion proof of the last entry: %v", err)
	}

	// A bundle of an answered receipt verifies offline, and not once edited.
	var answered *demoCase
	for _, c := range rep.cases {
		if c.ok && strings.HasPrefix(c.want, "answered") {
			answered = c
			break
		}
	}
	if answered == nil {
		t.Fatal("no answered scenario")
	}
	b, err := receiptBundle(ctx, svc.store, answered.signed.Digest, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := os.ReadFile(keys.JWKSPath(cfg.KeysDir, cfg.BrokerID))
	if err != nil {
		t.Fatal(err)
	}
	bk, err := client.BrokerKeys(cfg.BrokerID, jwks)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range verifyBundle(t, b, bk, pol) {
		if c.Err != nil {
			t.Fatalf("bundle check %s: %v", c.Name, c.Err)
		}
	}
	edited := b
	edited.Receipt = editAnswer(t, b.Receipt)
	failed := map[string]bool{}
	for _, c := range verifyBundle(t, edited, bk, pol) {
		failed[c.Name] = c.Err != nil
	}
	if !failed[client.CheckSignature] || !failed[client.CheckLeaf] || failed[client.CheckInclusion] {
		t.Fatalf("edited receipt: failed checks %v, want the signature and the leaf", failed)
	}
}

func verifyBundle(t *testing.T, b client.Bundle, bk *client.Broker, pol translog.Policy) []client.Check {
	t.Helper()
	raw, _ := json.Marshal(b)
	back, err := client.ParseBundle(raw)
	if err != nil {
		t.Fatal(err)
	}
	checks, _ := client.VerifyBundle(back, bk, pol, client.Expect{})
	if len(checks) != 6 {
		t.Fatalf("%d checks", len(checks))
	}
	return checks
}

// editAnswer changes the first answer field of a compact JWS receipt,
// keeping its signature.
func editAnswer(t *testing.T, jws string) string {
	t.Helper()
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("receipt is not a compact JWS: %d parts", len(parts))
	}
	p, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var payload map[string]any
	if err := json.Unmarshal(p, &payload); err != nil {
		t.Fatal(err)
	}
	body, _ := payload["body"].(map[string]any)
	answer, _ := body["answer"].(map[string]any)
	if len(answer) == 0 {
		t.Fatal(errors.New("receipt has no answer to edit"))
	}
	for k, v := range answer {
		if s, ok := v.(string); ok {
			answer[k] = s + "x"
			break
		}
		answer[k] = "edited"
		break
	}
	p, _ = json.Marshal(payload)
	parts[1] = base64.RawURLEncoding.EncodeToString(p)
	return strings.Join(parts, ".")
}

// auditStore checks the log in the store of cfg after the broker stopped:
// every published receipt (by request digest) has its leaf, at the index
// its record carried (index, by receipt bytes), recording exactly those
// bytes; the newest checkpoint covers every sequenced leaf, verifies with
// the log key, and the leaves reproduce its root.
func auditStore(ctx context.Context, t *testing.T, cfg *config.Config, published map[string][]byte, index map[string]string) {
	t.Helper()
	s, err := store.Open(ctx, cfg.Store.DSN, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for digest, receipt := range published {
		idx, leaf, ok, err := s.Leaf(ctx, digest)
		if !ok || err != nil {
			t.Fatalf("receipt of %s has no leaf (%v)", digest, err)
		}
		l, err := translog.ParseLeaf(leaf)
		if err != nil || l.Receipt != translog.Digest(receipt) || l.Request != digest {
			t.Fatalf("leaf %d of %s does not record the published receipt: %+v %v", idx, digest, l, err)
		}
		if want := index[string(receipt)]; want != strconv.FormatInt(idx, 10) {
			t.Fatalf("receipt of %s carried log index %q, its leaf is %d", digest, want, idx)
		}
	}
	n, err := s.Sequenced(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cpb, err := s.LatestCheckpoint(ctx)
	if err != nil || cpb == nil {
		t.Fatalf("no checkpoint: %v", err)
	}
	vb, err := os.ReadFile(logVerifierFile(cfg))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(vb)))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := translog.OpenCheckpoint(cpb, cfg.LogOrigin(), v)
	if err != nil {
		t.Fatal(err)
	}
	if cp.N != n {
		t.Fatalf("after a clean stop the newest checkpoint covers %d of %d leaves", cp.N, n)
	}
	tree, _ := translog.NewTree(0, nil)
	for start := int64(0); start < n; {
		ls, err := s.ReadLeaves(ctx, start, 1<<14)
		if err != nil || len(ls) == 0 {
			t.Fatalf("read leaves from %d: %d %v", start, len(ls), err)
		}
		for _, l := range ls {
			if _, err := tree.Append(l); err != nil {
				t.Fatal(err)
			}
		}
		start += int64(len(ls))
	}
	root, _ := tree.Root()
	if root != cp.Tree {
		t.Fatalf("the leaves give %v, the checkpoint says %v", root, cp.Tree)
	}
	if un, err := s.Unlogged(ctx, 10); err != nil || len(un) > 0 {
		t.Fatalf("decisions without a leaf: %v %v", un, err)
	}
}
