package witness_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/certless/certless/fault"
	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/translog/witness"
)

// realWitness returns the litewitness that scripts/witness.sh runs, and a
// function registering a log (origin, Ed25519 note verifier key) with it.
// Without one it skips, or fails under CI=true.
func realWitness(t *testing.T) (*witness.Witness, func(origin, vkey string)) {
	t.Helper()
	rw := testenv.RealWitness(t)
	w, err := witness.New(rw.VKey, rw.URL)
	if err != nil {
		t.Fatalf("CERTLESS_TEST_WITNESS_VKEY / _URL: %v", err)
	}
	t.Logf("witness %s", w.Name)
	return w, func(origin, vkey string) { rw.Register(t, origin, vkey) }
}

func uniqueOrigin(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "certless.test/witness-it/" + hex.EncodeToString(b)
}

// TestLitewitness runs the tlog-witness protocol against litewitness
// (filippo.io/torchwood v0.6.1), a witness written by others.
func TestLitewitness(t *testing.T) {
	w, register := realWitness(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	origin := uniqueOrigin(t)
	logS, logV, logVkey := newLog(t, origin)
	register(origin, logVkey)
	const n, m = 5, 13
	tr := newTree(t, "leaf", m)

	// First checkpoint: old size 0 and, as the spec requires, no proof.
	start := time.Now().Add(-2 * time.Second)
	cp5 := tr.checkpoint(t, logS, n)
	cs, err := w.AddCheckpoint(ctx, 0, nil, cp5)
	if err != nil {
		t.Fatalf("0 → %d: %v", n, err)
	}
	cosigned, err := witness.AppendCosignatures(cp5, cs...)
	if err != nil {
		t.Fatal(err)
	}
	v, err := witness.Verify(cosigned, logV, []note.Verifier{w.Verifier}, 1)
	if err != nil {
		t.Fatalf("verify size %d: %v", n, err)
	}
	if got := v.Witnesses(); len(got) != 1 || got[0] != w.Name || v.Tree.N != n || v.Origin != origin {
		t.Fatalf("verified %+v", v)
	}
	if c := v.Cosignatures[0]; c.Time.Before(start) || c.Time.After(time.Now().Add(2*time.Second)) {
		t.Errorf("cosignature time %v, not about now", c.Time)
	}

	// A stale old size: 409 with the witness's size.
	cp13 := tr.checkpoint(t, logS, m)
	_, err = w.AddCheckpoint(ctx, 0, nil, cp13)
	var ce *witness.ConflictError
	if !errors.As(err, &ce) || ce.Size != n {
		t.Fatalf("old size 0 after %d: got %v, want a conflict at %d", n, err, n)
	}

	// The retry with the witness's size and a consistency proof.
	cs, err = w.AddCheckpoint(ctx, ce.Size, tr.proof(t, ce.Size, m), cp13)
	if err != nil {
		t.Fatalf("%d → %d: %v", n, m, err)
	}
	cosigned, err = witness.AppendCosignatures(cp13, cs...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := witness.Verify(cosigned, logV, []note.Verifier{w.Verifier}, 1); err != nil {
		t.Fatalf("verify size %d: %v", m, err)
	}
	// Its cosignature does not carry over to the older checkpoint.
	stale, _ := witness.AppendCosignatures(cp5, cs...)
	var me *witness.MissingCosignaturesError
	if _, err := witness.Verify(stale, logV, []note.Verifier{w.Verifier}, 1); !errors.As(err, &me) || len(me.Invalid) != 1 {
		t.Fatalf("size-%d cosignature on the size-%d checkpoint: %v", m, n, err)
	}

	// A fork at the same size (different root): refused. The spec says 409;
	// litewitness v0.6.1 answers 422 (its consistency check fails).
	fork := newTree(t, "fork", m)
	_, err = w.AddCheckpoint(ctx, m, nil, fork.checkpoint(t, logS, m))
	switch {
	case errors.As(err, &ce) && ce.Size == m:
		t.Logf("same-size fork: 409 conflict at %d", ce.Size)
	case fault.ReasonOf(err) == "witness_inconsistent":
		t.Logf("same-size fork: %v", err)
	default:
		t.Fatalf("same-size fork: got %v, want a refusal (409 at %d or 422)", err, m)
	}
	// A fork further on, with a proof from the forked tree: 422.
	fork.grow(t, "fork", m+3)
	_, err = w.AddCheckpoint(ctx, m, fork.proof(t, m, m+3), fork.checkpoint(t, logS, m+3))
	if fault.ReasonOf(err) != "witness_inconsistent" {
		t.Fatalf("fork with a proof: got %v (reason %q), want witness_inconsistent", err, fault.ReasonOf(err))
	}
	// The witness kept the honest size.
	if _, err := w.AddCheckpoint(ctx, 0, nil, cp13); !errors.As(err, &ce) || ce.Size != m {
		t.Fatalf("after the forks: %v, want a conflict at %d", err, m)
	}

	// A checkpoint signed by a key the witness does not trust for the origin,
	// and an origin it does not know: refused for good (403, or 404 per spec).
	otherS, _, _ := newLog(t, origin)
	if _, err := w.AddCheckpoint(ctx, m, nil, tr.checkpoint(t, otherS, m)); fault.ReasonOf(err) != "witness_forbidden" {
		t.Fatalf("untrusted log key: %v", err)
	}
	unknownS, _, _ := newLog(t, uniqueOrigin(t))
	_, err = w.AddCheckpoint(ctx, 0, nil, tr.checkpoint(t, unknownS, m))
	if r := fault.ReasonOf(err); r != "witness_forbidden" && r != "witness_unknown_log" {
		t.Fatalf("unknown origin: %v", err)
	}
}

// TestLitewitnessQuorum requires two witnesses, the real one and an
// in-process one, and names the one whose cosignature is missing.
func TestLitewitnessQuorum(t *testing.T) {
	w, register := realWitness(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	origin := uniqueOrigin(t)
	logS, logV, logVkey := newLog(t, origin)
	register(origin, logVkey)
	fw := newFakeWitness(t, "witness.example/in-process")
	fw.addLog(logV)
	local := fw.client(t)

	tr := newTree(t, "q", 4)
	cp := tr.checkpoint(t, logS, 4)
	cs, err := w.AddCheckpoint(ctx, 0, nil, cp)
	if err != nil {
		t.Fatal(err)
	}
	cosigned, _ := witness.AppendCosignatures(cp, cs...)
	both := []note.Verifier{w.Verifier, local.Verifier}
	_, err = witness.Verify(cosigned, logV, both, 2)
	var me *witness.MissingCosignaturesError
	if !errors.As(err, &me) || len(me.Missing) != 1 || me.Missing[0] != local.Name {
		t.Fatalf("2 of 2 with one: %v", err)
	}
	t.Log(err)

	cs, err = local.AddCheckpoint(ctx, 0, nil, cp)
	if err != nil {
		t.Fatal(err)
	}
	cosigned, _ = witness.AppendCosignatures(cosigned, cs...)
	v, err := witness.Verify(cosigned, logV, both, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Witnesses(); len(got) != 2 || got[0] != w.Name || got[1] != local.Name {
		t.Fatalf("verified %v", got)
	}
}
