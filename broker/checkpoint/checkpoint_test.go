package checkpoint_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/broker/checkpoint"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/broker/store/storetest"
	"github.com/certless/certless/translog"
)

const origin = "certless.test/checkpoint"

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// fakeWitness checks each submission's consistency proof against the tree
// it last cosigned, like a witness, and answers a first submission from
// the wrong size with its own size (HTTP 409 in tlog-witness).
type fakeWitness struct {
	t        *testing.T
	verifier note.Verifier
	known    tlog.Tree
	calls    []int64 // old sizes submitted
	conflict bool
}

type conflictErr struct{ size int64 }

func (c conflictErr) Error() string    { return fmt.Sprintf("conflict: witness at %d", c.size) }
func (c conflictErr) KnownSize() int64 { return c.size }

func (w *fakeWitness) Name() string { return "witness.test/fake" }

func (w *fakeWitness) AddCheckpoint(ctx context.Context, old int64, proof tlog.TreeProof, signed []byte) ([]byte, error) {
	w.calls = append(w.calls, old)
	if old != w.known.N {
		return nil, conflictErr{w.known.N}
	}
	c, err := translog.OpenCheckpoint(signed, origin, w.verifier)
	if err != nil {
		return nil, err
	}
	if old > 0 {
		if err := tlog.CheckTree(proof, c.N, c.Hash, old, w.known.Hash); err != nil {
			return nil, fmt.Errorf("inconsistent: %w", err)
		}
	}
	w.known = c.Tree
	return []byte("— witness.test/fake AAAA\n"), nil
}

func newLog(t *testing.T) (store.Store, note.Signer, note.Verifier) {
	t.Helper()
	s, err := store.Open(context.Background(), ":memory:", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	skey, vkey, _ := translog.NewLogKey(origin)
	signer, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	return s, signer, v
}

func appendLeaves(t *testing.T, s store.Store, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := s.AppendLeaf(context.Background(), fmt.Sprintf("k%d", i), storetest.DeadLetterLeaf(t, i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoundsCheckpointAndCosign(t *testing.T) {
	ctx := context.Background()
	s, signer, v := newLog(t)
	w := &fakeWitness{t: t, verifier: v}
	c := &checkpoint.Checkpointer{Store: s, Origin: origin, Signer: func() (note.Signer, error) { return signer, nil },
		Witnesses: []checkpoint.Witness{w}}
	appendLeaves(t, s, 0, 10)
	if err := c.Round(ctx); err != nil {
		t.Fatal(err)
	}
	appendLeaves(t, s, 10, 300)
	if err := c.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if w.known.N != 310 {
		t.Fatalf("witness cosigned size %d, want 310", w.known.N)
	}
	// The witness was asked from 0, then from 10 with a proof it accepted.
	if fmt.Sprint(w.calls) != "[0 10]" {
		t.Fatalf("witness calls from sizes %v", w.calls)
	}
	latest, _ := s.LatestCheckpoint(ctx)
	if cp, err := translog.ParseCheckpointBody(latest); err != nil || cp.N != 310 {
		t.Fatalf("latest %v %v", cp, err)
	}
	// A witness that knows another size is asked again from that size.
	w2 := &fakeWitness{t: t, verifier: v, known: w.known}
	c2 := &checkpoint.Checkpointer{Store: s, Origin: origin, Signer: func() (note.Signer, error) { return signer, nil },
		Witnesses: []checkpoint.Witness{w2}}
	appendLeaves(t, s, 310, 5)
	if err := c2.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(w2.calls) != "[0 310]" || w2.known.N != 315 {
		t.Fatalf("after a conflict: calls %v, witness at %d", w2.calls, w2.known.N)
	}
}

func TestOpenFailsClosedAfterTolerance(t *testing.T) {
	ctx := context.Background()
	s, signer, _ := newLog(t)
	clk := &clock{now: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
	key := signer
	c := &checkpoint.Checkpointer{Store: s, Origin: origin, Tolerance: 30 * time.Second, Now: clk.Now,
		Signer: func() (note.Signer, error) {
			if key == nil {
				return nil, errors.New("log key missing")
			}
			return key, nil
		}}
	appendLeaves(t, s, 0, 3)
	if err := c.Round(ctx); err != nil || c.Open() != nil || c.Ready() != nil {
		t.Fatalf("healthy round: %v, open %v, ready %v", err, c.Open(), c.Ready())
	}
	key = nil
	appendLeaves(t, s, 3, 2)
	if err := c.Round(ctx); err == nil {
		t.Fatal("a round without the log key succeeded")
	}
	if c.Ready() == nil {
		t.Fatal("ready while checkpoints fail")
	}
	clk.now = clk.now.Add(30 * time.Second)
	if err := c.Open(); err != nil {
		t.Fatalf("closed within the tolerance: %v", err)
	}
	clk.now = clk.now.Add(time.Second)
	if err := c.Open(); !errors.Is(err, checkpoint.ErrStale) {
		t.Fatalf("open past the tolerance: %v", err)
	}
	key = signer
	if err := c.Round(ctx); err != nil || c.Open() != nil || c.Ready() != nil {
		t.Fatalf("after recovery: %v, open %v, ready %v", err, c.Open(), c.Ready())
	}
	latest, _ := s.LatestCheckpoint(ctx)
	if cp, err := translog.ParseCheckpointBody(latest); err != nil || cp.N != 5 {
		t.Fatalf("after recovery the checkpoint covers %d leaves (%v), want 5", cp.N, err)
	}
}

// TestRoundDetectsAlteredTree: stored hashes changed under the
// checkpointer make its next round fail as an audit failure instead of
// signing a checkpoint over the altered tree.
func TestRoundDetectsAlteredTree(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "decisions.db")
	s, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	skey, _, _ := translog.NewLogKey(origin)
	signer, _ := note.NewSigner(skey)
	m := &metrics{}
	c := &checkpoint.Checkpointer{Store: s, Origin: origin, Metrics: m, Signer: func() (note.Signer, error) { return signer, nil }}
	appendLeaves(t, s, 0, 4)
	if err := c.Round(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE tlog_hashes SET hash = zeroblob(32)`); err != nil {
		t.Fatal(err)
	}
	appendLeaves(t, s, 4, 1)
	if err := c.Round(ctx); !errors.Is(err, checkpoint.ErrInconsistent) {
		t.Fatalf("round over an altered tree: %v", err)
	}
	if m.failed[checkpoint.StageAudit] != 1 {
		t.Fatalf("failures by stage %v, want one audit failure", m.failed)
	}
	latest, _ := s.LatestCheckpoint(ctx)
	if cp, _ := translog.ParseCheckpointBody(latest); cp.N != 4 {
		t.Fatalf("a checkpoint of %d leaves was signed over the altered tree", cp.N)
	}
}

type metrics struct{ failed map[string]int }

func (m *metrics) Checkpointed(int64, time.Time) {}
func (m *metrics) Cosigned(string, bool)         {}
func (m *metrics) Refused()                      {}
func (m *metrics) Failed(stage string) {
	if m.failed == nil {
		m.failed = map[string]int{}
	}
	m.failed[stage]++
}
