package translog

import (
	"fmt"

	"filippo.io/torchwood"
	"golang.org/x/mod/sumdb/tlog"
)

// StoredHash is one hash of the tree at its stored-hash index
// (tlog.StoredHashIndex).
type StoredHash struct {
	Index int64
	Hash  tlog.Hash
}

// Tree is an RFC 6962 tree that keeps only its right edge: enough to append
// leaves, learn every stored hash they add, and compute the root at each
// size. Appending costs about a microsecond a leaf and memory stays
// logarithmic in the size, so an audit can replay a log of any length.
type Tree struct {
	n      int64
	hashes map[int64]tlog.Hash
	// fresh collects the stored hashes of the leaves appended since the
	// last Drain.
	fresh []StoredHash
	since int64
}

// NewTree returns the tree of size n whose right edge is edge (the hashes
// at torchwood.RightEdge(n); none for n = 0).
func NewTree(n int64, edge []StoredHash) (*Tree, error) {
	t := &Tree{n: n, hashes: make(map[int64]tlog.Hash, len(edge))}
	for _, h := range edge {
		t.hashes[h.Index] = h.Hash
	}
	for _, i := range torchwood.RightEdge(n) {
		if _, ok := t.hashes[i]; !ok {
			return nil, fmt.Errorf("translog: tree of size %d lacks right-edge hash %d", n, i)
		}
	}
	return t, nil
}

// Size is the number of leaves.
func (t *Tree) Size() int64 { return t.n }

// ReadHashes implements tlog.HashReader for the hashes the tree holds.
func (t *Tree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := t.hashes[x]
		if !ok {
			return nil, fmt.Errorf("translog: hash %d is not on the right edge of size %d", x, t.n)
		}
		out[i] = h
	}
	return out, nil
}

// Append adds one leaf and returns its index.
func (t *Tree) Append(leaf []byte) (int64, error) {
	hs, err := tlog.StoredHashes(t.n, leaf, t)
	if err != nil {
		return 0, fmt.Errorf("translog: append leaf %d: %w", t.n, err)
	}
	base := tlog.StoredHashIndex(0, t.n)
	for i, h := range hs {
		t.hashes[base+int64(i)] = h
		t.fresh = append(t.fresh, StoredHash{base + int64(i), h})
	}
	idx := t.n
	t.n++
	// Forget what the right edge no longer needs, now and then.
	if t.n-t.since >= 1024 {
		t.prune()
	}
	return idx, nil
}

func (t *Tree) prune() {
	keep := make(map[int64]tlog.Hash, 64)
	for _, i := range torchwood.RightEdge(t.n) {
		keep[i] = t.hashes[i]
	}
	t.hashes, t.since = keep, t.n
}

// Drain returns the stored hashes added since the last Drain, in index
// order, and forgets them.
func (t *Tree) Drain() []StoredHash {
	out := t.fresh
	t.fresh = nil
	return out
}

// Edge returns the right edge of the tree, as NewTree takes it.
func (t *Tree) Edge() []StoredHash {
	idx := torchwood.RightEdge(t.n)
	out := make([]StoredHash, len(idx))
	for i, x := range idx {
		out[i] = StoredHash{x, t.hashes[x]}
	}
	return out
}

// Root is the tree hash at the current size.
func (t *Tree) Root() (tlog.Tree, error) {
	h, err := tlog.TreeHash(t.n, t)
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("translog: root of size %d: %w", t.n, err)
	}
	return tlog.Tree{N: t.n, Hash: h}, nil
}
