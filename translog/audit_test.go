package translog_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/translog"
)

const auditOrigin = "audit.example/log"

// auditLog is an in-memory log as a store keeps it: leaves, the stored
// hashes of the integrated tree and signed checkpoints.
type auditLog struct {
	signer   note.Signer
	verifier note.Verifier
	leaves   [][]byte
	hashes   map[int64]tlog.Hash
	cps      [][]byte
	// stop, when positive, makes ReadLeaves end there (a gap).
	stop int64
}

func auditLeaf(t testing.TB, i int) []byte {
	t.Helper()
	l := translog.Leaf{
		Kind: translog.KindDecision, Time: translog.FormatTime(time.Date(2026, 12, 1, 8, 0, 0, i*1000, time.UTC)),
		Agency: "court-220102", Type: "request", Query: "criminal_record", Outcome: "answered",
		Request: translog.Digest(fmt.Appendf(nil, "request %d", i)), Receipt: translog.Digest(fmt.Appendf(nil, "receipt %d", i)),
	}
	b, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newAuditLog builds a log of n leaves checkpointed at each of sizes.
func newAuditLog(t testing.TB, n int, sizes ...int64) *auditLog {
	t.Helper()
	skey, vkey, err := translog.NewLogKey(auditOrigin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	l := &auditLog{signer: s, verifier: v}
	for i := range n {
		l.leaves = append(l.leaves, auditLeaf(t, i))
	}
	l.hashes = l.rehash(t, sizes...)
	tree := newTreeOf(t, nil)
	for _, size := range sizes {
		for tree.Size() < size {
			if _, err := tree.Append(l.leaves[tree.Size()]); err != nil {
				t.Fatal(err)
			}
		}
		tree.Drain()
		root, err := tree.Root()
		if err != nil {
			t.Fatal(err)
		}
		l.cps = append(l.cps, l.sign(t, root))
	}
	return l
}

func newTreeOf(t testing.TB, leaves [][]byte) *translog.Tree {
	t.Helper()
	tree, err := translog.NewTree(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves {
		if _, err := tree.Append(l); err != nil {
			t.Fatal(err)
		}
	}
	return tree
}

func rootOf(t testing.TB, leaves [][]byte) tlog.Tree {
	t.Helper()
	r, err := newTreeOf(t, leaves).Root()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rehash recomputes the stored hashes of the leaves up to the largest
// size, as an attacker who rewrites them would.
func (l *auditLog) rehash(t testing.TB, sizes ...int64) map[int64]tlog.Hash {
	t.Helper()
	top := int64(0)
	for _, s := range sizes {
		top = max(top, s)
	}
	top = min(top, int64(len(l.leaves)))
	hs := map[int64]tlog.Hash{}
	for _, h := range newTreeOf(t, l.leaves[:top]).Drain() {
		hs[h.Index] = h.Hash
	}
	return hs
}

func (l *auditLog) sign(t testing.TB, root tlog.Tree, cosigners ...note.Signer) []byte {
	t.Helper()
	body := torchwood.Checkpoint{Origin: auditOrigin, Tree: root}.String()
	b, err := note.Sign(&note.Note{Text: body}, append([]note.Signer{l.signer}, cosigners...)...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (l *auditLog) source(withHashes bool) translog.AuditLog {
	src := translog.AuditLog{
		Size: int64(len(l.leaves)),
		ReadLeaves: func(_ context.Context, start int64, n int) ([][]byte, error) {
			end := min(start+int64(n), int64(len(l.leaves)))
			if l.stop > 0 {
				end = min(end, l.stop)
			}
			if start >= end {
				return nil, nil
			}
			return l.leaves[start:end], nil
		},
		Checkpoints: func(_ context.Context, fn func([]byte) error) error {
			for _, c := range l.cps {
				if err := fn(c); err != nil {
					return err
				}
			}
			return nil
		},
	}
	if withHashes {
		src.ReadHashes = func(_ context.Context, idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for k, x := range idx {
				h, ok := l.hashes[x]
				if !ok {
					return nil, errors.New("stored hash missing")
				}
				out[k] = h
			}
			return out, nil
		}
	}
	return src
}

func (l *auditLog) audit(t testing.TB, a translog.Auditor, withHashes bool) translog.Report {
	t.Helper()
	a.Policy.Origin, a.Policy.Log = auditOrigin, l.verifier
	a.Chunk = 7 // several chunks, ending mid-way between checkpoints
	r, err := a.Audit(context.Background(), l.source(withHashes))
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	return r
}

// wantProblem checks that the report names leaf (-1: none) and checkpoint
// (-1: none) and that its reason contains every one of words.
func wantProblem(t *testing.T, r translog.Report, leaf, checkpoint int64, words ...string) {
	t.Helper()
	p := r.Problem
	if p == nil {
		t.Fatalf("audit passed a tampered log: %+v", r)
	}
	t.Logf("problem: %v", p)
	if p.Leaf != leaf || p.Checkpoint != checkpoint {
		t.Errorf("problem names leaf %d checkpoint %d, want leaf %d checkpoint %d: %v", p.Leaf, p.Checkpoint, leaf, checkpoint, p)
	}
	for _, w := range words {
		if !strings.Contains(p.Error(), w) {
			t.Errorf("problem %q does not say %q", p.Error(), w)
		}
	}
	if !errors.Is(r.Err(), translog.ErrAudit) {
		t.Errorf("report error %v is not ErrAudit", r.Err())
	}
}

func TestAuditCleanLogPasses(t *testing.T) {
	l := newAuditLog(t, 40, 1, 8, 17, 32, 32, 38)
	var pairs []string
	for _, hashes := range []bool{true, false} {
		pairs = nil
		var progress int64
		r := l.audit(t, translog.Auditor{
			Consistent: func(old, new tlog.Tree) { pairs = append(pairs, fmt.Sprintf("%d->%d", old.N, new.N)) },
			Progress:   func(done, total int64) { progress = done },
		}, hashes)
		if r.Problem != nil {
			t.Fatalf("clean log (hashes %v): %v", hashes, r.Problem)
		}
		if r.Leaves != 40 || r.Checkpoints != 6 || r.Head.N != 38 || r.Unintegrated != 2 || r.Consistent != 4 || progress != 40 {
			t.Errorf("report %+v, progress %d", r, progress)
		}
		if r.Head != rootOf(t, l.leaves[:38]) {
			t.Errorf("head %v", r.Head)
		}
	}
	if got := strings.Join(pairs, " "); got != "1->8 8->17 17->32 32->38" {
		t.Errorf("consistent pairs %s", got)
	}
}

func TestAuditEmptyLogPasses(t *testing.T) {
	l := newAuditLog(t, 0)
	if r := l.audit(t, translog.Auditor{}, true); r.Problem != nil || r.Leaves != 0 {
		t.Fatalf("empty log: %+v", r)
	}
}

func TestAuditLeafAltered(t *testing.T) {
	// Altered in place, stored hashes left alone: the leaf is named at once.
	l := newAuditLog(t, 30, 10, 20, 30)
	l.leaves[13] = auditLeaf(t, 99)
	wantProblem(t, l.audit(t, translog.Auditor{}, true), 13, 20, "stored record hash", "not the one the log signed")

	// Stored hashes rewritten too: the checkpoint names the range.
	l.hashes = l.rehash(t, 30)
	r := l.audit(t, translog.Auditor{}, true)
	wantProblem(t, r, -1, 20, "leaves [10, 20)", "stored hashes rewritten")
	if r.Problem.From != 10 || r.Problem.To != 20 {
		t.Errorf("range [%d, %d)", r.Problem.From, r.Problem.To)
	}
	if r.Head.N != 10 {
		t.Errorf("head %d: the last good checkpoint is 10", r.Head.N)
	}

	// Other evidence (a decision) narrows the range to the leaf.
	compare := func(_ context.Context, start int64, leaves [][]byte, parsed []translog.Leaf) (*translog.Disagreement, error) {
		for k, p := range parsed {
			if p.Request != translog.Digest(fmt.Appendf(nil, "request %d", start+int64(k))) {
				return &translog.Disagreement{Index: start + int64(k), Reason: "its decision is another"}, nil
			}
		}
		return nil, nil
	}
	wantProblem(t, l.audit(t, translog.Auditor{Compare: compare}, true), 13, 20, "its decision is another", "not the one the log signed")
}

func TestAuditEvidenceChanged(t *testing.T) {
	// The leaf is intact; the record outside the log changed.
	l := newAuditLog(t, 30, 10, 20, 30)
	compare := func(_ context.Context, start int64, leaves [][]byte, _ []translog.Leaf) (*translog.Disagreement, error) {
		if start <= 24 && 24 < start+int64(len(leaves)) {
			return &translog.Disagreement{Index: 24, Reason: "decision says denied"}, nil
		}
		return nil, nil
	}
	wantProblem(t, l.audit(t, translog.Auditor{Compare: compare}, true), 24, -1, "decision says denied", "as the log signed it (checkpoint of size 30)", "changed after the leaf was logged")
}

func TestAuditLeafDeleted(t *testing.T) {
	// A gap: the log still counts 30 leaves, they stop at 12.
	l := newAuditLog(t, 30, 10, 20, 30)
	l.stop = 12
	wantProblem(t, l.audit(t, translog.Auditor{}, true), 12, -1, "missing", "deleted")

	// Compacted: the later leaves moved down one index.
	l = newAuditLog(t, 30, 10, 20, 30)
	l.leaves = append(l.leaves[:12:12], l.leaves[13:]...)
	wantProblem(t, l.audit(t, translog.Auditor{}, true), 12, 20, "stored record hash")
	r := l.audit(t, translog.Auditor{}, false)
	wantProblem(t, r, -1, 20, "leaves [10, 20)")

	// The last leaves deleted: a checkpoint goes beyond the log.
	l = newAuditLog(t, 30, 10, 20, 30)
	l.leaves = l.leaves[:25]
	wantProblem(t, l.audit(t, translog.Auditor{}, true), -1, 30, "beyond the log's 25 leaves")
}

func TestAuditLeafInserted(t *testing.T) {
	l := newAuditLog(t, 30, 10, 20, 30)
	l.leaves = append(l.leaves[:15:15], append([][]byte{auditLeaf(t, 77)}, l.leaves[15:]...)...)
	wantProblem(t, l.audit(t, translog.Auditor{}, true), 15, 20, "stored record hash")
	wantProblem(t, l.audit(t, translog.Auditor{}, false), -1, 20, "leaves [10, 20)")
}

func TestAuditLeavesReordered(t *testing.T) {
	l := newAuditLog(t, 30, 10, 20, 30)
	l.leaves[21], l.leaves[26] = l.leaves[26], l.leaves[21]
	wantProblem(t, l.audit(t, translog.Auditor{}, true), 21, 30, "stored record hash")
	l.hashes = l.rehash(t, 30)
	wantProblem(t, l.audit(t, translog.Auditor{}, true), -1, 30, "leaves [20, 30)")
}

func TestAuditNonCanonicalLeaf(t *testing.T) {
	l := newAuditLog(t, 30, 10, 20, 30)
	l.leaves[3] = append([]byte(" "), l.leaves[3]...)
	wantProblem(t, l.audit(t, translog.Auditor{}, false), 3, 10, "not a valid leaf", "canonical")
}

func TestAuditCheckpointAltered(t *testing.T) {
	l := newAuditLog(t, 30, 10, 20, 30)
	// The root of the checkpoint of size 20 replaced by another tree's,
	// keeping the log's signature.
	other := rootOf(t, [][]byte{auditLeaf(t, 5)})
	body, sig, _ := strings.Cut(string(l.cps[1]), "\n\n")
	lines := strings.Split(body, "\n")
	lines[2] = other.Hash.String()
	l.cps[1] = []byte(strings.Join(lines, "\n") + "\n\n" + sig)
	wantProblem(t, l.audit(t, translog.Auditor{}, true), -1, 20, "#2 does not verify", "signature")

	// A checkpoint signed by another key.
	l = newAuditLog(t, 30, 10, 20, 30)
	impostor := newAuditLog(t, 30, 20)
	l.cps[1] = impostor.cps[0]
	wantProblem(t, l.audit(t, translog.Auditor{}, true), -1, 20, "does not verify")
}

func TestAuditFork(t *testing.T) {
	l := newAuditLog(t, 30, 10, 20, 30)
	// The log signed a second tree of size 20, for another view.
	other := append(append([][]byte{}, l.leaves[:19]...), auditLeaf(t, 500))
	l.cps = append(l.cps, l.sign(t, rootOf(t, other)))
	wantProblem(t, l.audit(t, translog.Auditor{}, true), -1, 20, "fork", "#2 and #4", "equivocated")
}

func TestAuditWitnessQuorum(t *testing.T) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w, err := torchwood.NewCosignatureSigner("witness.example/w1", priv)
	if err != nil {
		t.Fatal(err)
	}
	pol := translog.Policy{Witnesses: []note.Verifier{w.Verifier()}, Quorum: 1}
	l := newAuditLog(t, 30, 10, 20, 30)
	// The head is not cosigned: the audit refuses it.
	wantProblem(t, l.audit(t, translog.Auditor{Policy: pol}, true), -1, 30, "1 required cosignatures", "witness.example/w1")
	// Cosigned head: older checkpoints need no cosignature.
	l.cps[2] = l.sign(t, rootOf(t, l.leaves), w)
	r := l.audit(t, translog.Auditor{Policy: pol}, true)
	if r.Problem != nil || len(r.Cosigned) != 1 || r.Cosigned[0] != "witness.example/w1" {
		t.Fatalf("cosigned head: %+v", r)
	}
	// Unless every checkpoint must be.
	wantProblem(t, l.audit(t, translog.Auditor{Policy: pol, EveryQuorum: true}, true), -1, 10, "required cosignatures")
	// A cosignature altered (its key hash kept) fails the checkpoint.
	prefix := "— witness.example/w1 "
	at := strings.Index(string(l.cps[2]), prefix) + len(prefix)
	end := at + strings.IndexByte(string(l.cps[2][at:]), '\n')
	sig, err := base64.StdEncoding.DecodeString(string(l.cps[2][at:end]))
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)-1] ^= 1
	l.cps[2] = []byte(string(l.cps[2][:at]) + base64.StdEncoding.EncodeToString(sig) + string(l.cps[2][end:]))
	wantProblem(t, l.audit(t, translog.Auditor{Policy: pol}, true), -1, 30, "does not verify")
	// A verifier that trusts no witness ignores the cosignature.
	if r := l.audit(t, translog.Auditor{}, true); r.Problem != nil || len(r.Cosigned) != 0 {
		t.Errorf("without witnesses: %+v", r)
	}
}

func TestAuditStoredHashMissing(t *testing.T) {
	l := newAuditLog(t, 30, 10, 20, 30)
	delete(l.hashes, tlog.StoredHashIndex(0, 17))
	wantProblem(t, l.audit(t, translog.Auditor{}, true), 17, -1, "stored record hash (stored-hash index 32) is missing", "as the log signed it")
}

func TestAuditNeedsALogKey(t *testing.T) {
	l := newAuditLog(t, 3, 3)
	if _, err := (&translog.Auditor{}).Audit(context.Background(), l.source(true)); err == nil {
		t.Fatal("audit without a log key ran")
	}
}

// BenchmarkAudit audits a log of 2^18 leaves with its stored hashes and a
// checkpoint every 1,000 leaves.
func BenchmarkAudit(b *testing.B) {
	const n = 1 << 18
	var sizes []int64
	for s := int64(1000); s < n; s += 1000 {
		sizes = append(sizes, s)
	}
	sizes = append(sizes, n)
	l := newAuditLog(b, n, sizes...)
	a := translog.Auditor{Policy: translog.Policy{Origin: auditOrigin, Log: l.verifier}}
	src := l.source(true)
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		r, err := a.Audit(context.Background(), src)
		if err != nil || r.Problem != nil || r.Leaves != n {
			b.Fatalf("audit: %v %v", err, r.Problem)
		}
	}
	perSec := float64(n) * float64(b.N) / time.Since(start).Seconds()
	b.ReportMetric(perSec, "leaves/s")
	b.ReportMetric(perSec*60, "leaves/min")
}
