package storetest

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/broker/checkpoint"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/translog"
)

// LogKey is a log signer for tests.
func LogKey(t testing.TB, origin string) note.Signer {
	t.Helper()
	skey, vkey, err := translog.NewLogKey(origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	verifiers.Store(s, vkey)
	return s
}

// Integrator is the IntegrateFunc of a checkpointer signing with s.
func Integrator(s note.Signer, origin string) store.IntegrateFunc {
	return func(size int64, edge []translog.StoredHash, leaves [][]byte) ([]translog.StoredHash, []byte, error) {
		return checkpoint.Extend(s, origin, size, edge, leaves)
	}
}

// DeadLetterLeaf is a valid dead-letter leaf for n.
func DeadLetterLeaf(t testing.TB, n int) []byte {
	t.Helper()
	b, err := translog.Leaf{Kind: translog.KindDeadLetter, Time: "2026-12-01T08:00:00.000000Z", Outcome: "dead_letter",
		Reason: "signature_invalid", Request: translog.Digest([]byte(fmt.Sprint(n)))}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// CheckLog checks that the log of stores holds exactly want leaves at
// indexes 0..want-1, that every decision in ds has its own leaf equal to
// store.DecisionLeaf, and that integrating it (concurrently from every
// store) ends with one checkpoint of the whole tree whose root the leaves
// reproduce.
func CheckLog(t *testing.T, ds []store.Decision, want int64, stores ...store.Store) {
	t.Helper()
	ctx := context.Background()
	s := stores[0]
	if n, err := s.Sequenced(ctx); n != want || err != nil {
		t.Fatalf("sequenced %d %v, want %d", n, err, want)
	}
	leaves, err := s.ReadLeaves(ctx, 0, int(want)+10)
	if err != nil || int64(len(leaves)) != want {
		t.Fatalf("read %d leaves %v, want %d", len(leaves), err, want)
	}
	seen := map[int64]string{}
	for _, d := range ds {
		got, ok, err := s.Get(ctx, d.Digest)
		if !ok || err != nil {
			t.Fatalf("get %s: %v %v", d.Digest, ok, err)
		}
		if got.LeafIndex < 0 || got.LeafIndex >= want {
			t.Fatalf("%s: leaf index %d of %d", d.Digest, got.LeafIndex, want)
		}
		if other, dup := seen[got.LeafIndex]; dup {
			t.Fatalf("leaf %d used by %s and %s", got.LeafIndex, other, d.Digest)
		}
		seen[got.LeafIndex] = d.Digest
		wantLeaf, err := store.DecisionLeaf(got)
		if err != nil || !bytes.Equal(leaves[got.LeafIndex], wantLeaf) || !bytes.Equal(got.Leaf, wantLeaf) {
			t.Fatalf("%s: leaf %d is\n%s\nwant\n%s (%v)", d.Digest, got.LeafIndex, leaves[got.LeafIndex], wantLeaf, err)
		}
	}
	const origin = "certless.test/log"
	signer := LogKey(t, origin)
	var wg sync.WaitGroup
	errs := make([]error, len(stores))
	for i, st := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				before, err := st.Sequenced(ctx)
				if err != nil {
					errs[i] = err
					return
				}
				n, err := st.Integrate(ctx, 7, Integrator(signer, origin)) // small steps: many rounds race
				if err != nil {
					errs[i] = err
					return
				}
				if n >= before {
					return
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("integrate on store %d: %v", i, err)
		}
	}
	tree, _ := translog.NewTree(0, nil)
	for _, l := range leaves {
		tree.Append(l)
	}
	root, _ := tree.Root()
	v, _ := note.NewVerifier(verifierOf(t, signer))
	cpb, err := s.LatestCheckpoint(ctx)
	if err != nil || cpb == nil {
		t.Fatalf("latest checkpoint: %v", err)
	}
	cp, err := translog.OpenCheckpoint(cpb, origin, v)
	if err != nil || cp.Tree != root {
		t.Fatalf("latest checkpoint %v %v, leaves give %v", cp.Tree, err, root)
	}
	// Sizes grow and never repeat: one integration at a time.
	var sizes []int64
	if err := s.Checkpoints(ctx, func(b []byte) error {
		c, err := translog.ParseCheckpointBody(b)
		sizes = append(sizes, c.N)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !sort.SliceIsSorted(sizes, func(i, j int) bool { return sizes[i] < sizes[j] }) || len(sizes) == 0 || sizes[len(sizes)-1] != want {
		t.Fatalf("checkpoint sizes %v", sizes)
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] == sizes[i-1] {
			t.Fatalf("two checkpoints of size %d", sizes[i])
		}
	}
	// The newest few, newest first, as the console lists them.
	recent, err := s.RecentCheckpoints(ctx, 2)
	if err != nil || len(recent) != min(2, len(sizes)) {
		t.Fatalf("recent checkpoints: %d %v", len(recent), err)
	}
	for i, b := range recent {
		if c, err := translog.ParseCheckpointBody(b); err != nil || c.N != sizes[len(sizes)-1-i] {
			t.Fatalf("recent checkpoint %d: size %d %v, want %d", i, c.N, err, sizes[len(sizes)-1-i])
		}
	}
	if _, err := s.RecentCheckpoints(ctx, 0); err == nil {
		t.Fatal("0 recent checkpoints asked and no error")
	}
	// Every leaf proves into the final tree from the stored hashes.
	for i := int64(0); i < want; i += max(1, want/17) {
		p, err := tlog.ProveRecord(want, i, translog.HashReader(ctx, s))
		if err != nil {
			t.Fatalf("prove %d: %v", i, err)
		}
		if err := tlog.CheckRecord(p, want, root.Hash, i, tlog.RecordHash(leaves[i])); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
}

var verifiers sync.Map

func verifierOf(t *testing.T, s note.Signer) string {
	t.Helper()
	if v, ok := verifiers.Load(s); ok {
		return v.(string)
	}
	t.Fatal("signer not made by LogKey")
	return ""
}

func testLog(t *testing.T, h Harness) {
	ctx := context.Background()
	s := open(t, h.Fresh(t), store.Options{})
	ds := decisions(60, "log")
	saved, errs := saveAll(ctx, s, ds)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
	}
	// A redelivered decision keeps its leaf; nothing is appended twice.
	again := save(t, s, ds[3])
	if again.LeafIndex != saved[3].LeafIndex || again.LeafIndex < 0 {
		t.Fatalf("redelivery leaf %d, first %d", again.LeafIndex, saved[3].LeafIndex)
	}
	// Dead letters: a key appended twice keeps its index.
	for i := 0; i < 5; i++ {
		a, err := s.AppendLeaf(ctx, fmt.Sprintf("dead_letter:t:0:%d", i), DeadLetterLeaf(t, i))
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.AppendLeaf(ctx, fmt.Sprintf("dead_letter:t:0:%d", i), DeadLetterLeaf(t, i))
		if err != nil || a != b {
			t.Fatalf("dead letter %d: %d then %d (%v)", i, a, b, err)
		}
	}
	if _, err := s.AppendLeaf(ctx, "k", []byte("not a leaf")); err == nil {
		t.Fatal("a malformed leaf was appended")
	}
	CheckLog(t, ds, 65, s)
	// More leaves after a checkpoint extend the same tree.
	var more []store.Decision
	for i := range 9 {
		more = append(more, Decision("notary-222403", fmt.Sprintf("more-%d", i), "log"))
	}
	if _, errs := saveAll(ctx, s, more); errs[0] != nil {
		t.Fatal(errs[0])
	}
	CheckLog(t, append(ds, more...), 74, s)
}
