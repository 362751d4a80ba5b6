package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/translog"
	"github.com/certless/certless/translog/witness"
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
	// torchwood leaves a trailing partial tile to a call that starts in it.
	for pass := 0; pass < 2 && n < cp.N; pass++ {
		for i, e := range tc.Entries(ctx, cp.Tree, n) {
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
	bk := brokerKeysOf(t, cfg)
	if f := failedNames(verifyBundle(t, b, bk, pol)); len(f) != 0 {
		t.Fatalf("bundle checks failed: %v", f)
	}
	// A confidential receipt (JWE, the education bureau's) verifies with
	// the bureau's decryption key; without it only its digest can be.
	confidential := false
	for _, c := range rep.cases {
		if c.ok && c.agency == "edu-jian" && strings.HasPrefix(c.want, "answered") {
			eb, err := receiptBundle(ctx, svc.store, c.signed.Digest, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			key, err := encryptionPrivate(cfg.KeysDir, "edu-jian", time.Now())
			if err != nil || key == nil {
				t.Fatalf("the bureau's decryption key: %v", err)
			}
			raw, _ := json.Marshal(eb)
			back, _ := client.ParseBundle(raw)
			checks, _ := client.VerifyBundle(back, bk, pol, client.Expect{Decrypt: key})
			if f := failedNames(checks); len(f) != 0 {
				t.Fatalf("confidential bundle with the key: failed %v", checks)
			}
			checks, _ = client.VerifyBundle(back, bk, pol, client.Expect{})
			if f := failedNames(checks); strings.Join(f, ",") != client.CheckSignature+","+client.CheckValidity {
				t.Fatalf("confidential bundle without the key: failed %v", f)
			}
			confidential = true
			break
		}
	}
	if !confidential {
		t.Fatal("no answered confidential receipt in the scenarios")
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

// brokerKeysOf is the broker's published keys from cfg's keys folder.
func brokerKeysOf(t *testing.T, cfg *config.Config) *client.Broker {
	t.Helper()
	jwks, err := os.ReadFile(keys.JWKSPath(cfg.KeysDir, cfg.BrokerID))
	if err != nil {
		t.Fatal(err)
	}
	bk, err := client.BrokerKeys(cfg.BrokerID, jwks)
	if err != nil {
		t.Fatal(err)
	}
	return bk
}

func failedNames(checks []client.Check) []string {
	var out []string
	for _, c := range checks {
		if c.Err != nil {
			out = append(out, c.Name)
		}
	}
	return out
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

// TestLogCosignedByLitewitness: a broker configured with the real witness
// (litewitness, written by others) gets its checkpoints cosigned, stores
// the cosignatures, and a receipt bundle that requires that witness
// verifies offline.
func TestLogCosignedByLitewitness(t *testing.T) {
	rw := testenv.RealWitness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := ensureDevData(ctx, t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	// A log of its own, so reruns against the witness's database never
	// collide: a new origin and key.
	cfg.Transparency.Origin = "certless.test/broker-" + testenv.Random(8)
	cfg.Transparency.KeyFile = filepath.Join(t.TempDir(), "log.key")
	if err := ensureLogKey(cfg, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	vb, _ := os.ReadFile(logVerifierFile(cfg))
	rw.Register(t, cfg.LogOrigin(), strings.TrimSpace(string(vb)))
	cfg.Transparency.Witnesses = []config.Witness{{URL: rw.URL, VKey: rw.VKey}}
	cfg.Transparency.Quorum = 1

	svc := startTestService(ctx, t, cfg, serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"})
	rep, err := runScenarios(ctx, cfg, svc)
	if err != nil || rep.failed() > 0 {
		t.Fatalf("scenarios: %d failed, %v", rep.failed(), err)
	}
	if err := svc.checkpointer.Round(ctx); err != nil {
		t.Fatal(err)
	}
	// Once more, now that the witness knows the previous size: the
	// consistency proof from it must be accepted too.
	if _, err := runScenarios(ctx, cfg, svc); err != nil {
		t.Fatal(err)
	}
	if err := svc.checkpointer.Round(ctx); err != nil {
		t.Fatal(err)
	}
	logV, _ := note.NewVerifier(strings.TrimSpace(string(vb)))
	wv, err := witness.NewCosignatureVerifier(rw.VKey)
	if err != nil {
		t.Fatal(err)
	}
	pol := translog.Policy{Origin: cfg.LogOrigin(), Log: logV, Witnesses: []note.Verifier{wv}, Quorum: 1}
	latest, err := svc.store.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, cosigned, err := pol.VerifyCheckpoint(latest)
	if err != nil || len(cosigned) != 1 {
		t.Fatalf("newest checkpoint is not cosigned by %s:\n%s\n%v", wv.Name(), latest, err)
	}
	t.Logf("checkpoint of %d leaves cosigned by %v", cp.N, cosigned)
	// The second round's checkpoint extends the first; both cosigned.
	cosignedSizes := 0
	svc.store.Checkpoints(ctx, func(b []byte) error {
		if _, ws, err := pol.VerifyCheckpoint(b); err == nil && len(ws) == 1 {
			cosignedSizes++
		}
		return nil
	})
	if cosignedSizes < 2 {
		t.Fatalf("%d cosigned checkpoints, want one per round", cosignedSizes)
	}
	var digest string
	for _, c := range rep.cases {
		if c.ok && strings.HasPrefix(c.want, "answered") {
			digest = c.signed.Digest
			break
		}
	}
	b, err := receiptBundle(ctx, svc.store, digest, "", 1)
	if err != nil {
		t.Fatal(err)
	}
	bk := brokerKeysOf(t, cfg)
	if f := failedNames(verifyBundle(t, b, bk, pol)); len(f) != 0 {
		t.Fatalf("bundle checks failed: %v", f)
	}
	// Requiring a witness that did not cosign fails, naming it.
	_, other, _ := note.GenerateKey(nil, "witness.test/absent")
	ov, _ := note.NewVerifier(other)
	strict := pol
	strict.Witnesses, strict.Quorum = append(strict.Witnesses, ov), 2
	var cosigFail error
	for _, c := range verifyBundle(t, b, bk, strict) {
		if c.Name == client.CheckCosignature {
			cosigFail = c.Err
		}
	}
	if cosigFail == nil || !strings.Contains(cosigFail.Error(), "witness.test/absent") {
		t.Fatalf("a missing required cosignature: %v", cosigFail)
	}
}
