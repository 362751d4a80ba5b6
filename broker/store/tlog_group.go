package store

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/translog"
)

// logBackend is the log part of a backend; see Log for the contract.
type logBackend interface {
	appendLeaf(ctx context.Context, key string, leaf []byte) (int64, error)
	sequenced(ctx context.Context) (int64, error)
	integrate(ctx context.Context, max int, fn IntegrateFunc) (int64, error)
	latestCheckpoint(ctx context.Context) ([]byte, error)
	checkpointCovering(ctx context.Context, index int64, quorum int) ([]byte, error)
	checkpoints(ctx context.Context, fn func([]byte) error) error
	recentCheckpoints(ctx context.Context, n int) ([][]byte, error)
	saveCosignature(ctx context.Context, size int64, witness string, line []byte) error
	readHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	readLeaves(ctx context.Context, start int64, n int) ([][]byte, error)
	leaf(ctx context.Context, key string) (int64, []byte, bool, error)
	unlogged(ctx context.Context, limit int) ([]string, error)
}

// maxReadLeaves bounds one ReadLeaves call; maxReadHashes one ReadHashes.
const (
	maxReadLeaves = 1 << 16
	maxReadHashes = 1 << 16
)

func (g *group) AppendLeaf(ctx context.Context, key string, leaf []byte) (int64, error) {
	if err := checkLeaf(key, leaf); err != nil {
		return 0, err
	}
	if _, err := translog.ParseLeaf(leaf); err != nil {
		return 0, fmt.Errorf("store: %w: %v", ErrInvalid, err)
	}
	leave, err := g.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	i, err := g.b.appendLeaf(ctx, key, leaf)
	if err != nil {
		return 0, fmt.Errorf("store: append leaf: %w", err)
	}
	return i, nil
}

func (g *group) Sequenced(ctx context.Context) (int64, error) {
	leave, err := g.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	n, err := g.b.sequenced(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: log size: %w", err)
	}
	return n, nil
}

func (g *group) Integrate(ctx context.Context, max int, fn IntegrateFunc) (int64, error) {
	if max <= 0 || max > maxReadLeaves {
		max = maxReadLeaves
	}
	leave, err := g.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	n, err := g.b.integrate(ctx, max, fn)
	if err != nil {
		return 0, fmt.Errorf("store: integrate log: %w", err)
	}
	return n, nil
}

func (g *group) LatestCheckpoint(ctx context.Context) ([]byte, error) {
	leave, err := g.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	b, err := g.b.latestCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: latest checkpoint: %w", err)
	}
	return b, nil
}

func (g *group) CheckpointCovering(ctx context.Context, index int64, quorum int) ([]byte, error) {
	leave, err := g.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	b, err := g.b.checkpointCovering(ctx, index, quorum)
	if err != nil {
		return nil, fmt.Errorf("store: checkpoint covering %d: %w", index, err)
	}
	return b, nil
}

func (g *group) Checkpoints(ctx context.Context, fn func([]byte) error) error {
	leave, err := g.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := g.b.checkpoints(ctx, fn); err != nil {
		return fmt.Errorf("store: checkpoints: %w", err)
	}
	return nil
}

func (g *group) RecentCheckpoints(ctx context.Context, n int) ([][]byte, error) {
	if n <= 0 || n > 1000 {
		return nil, fmt.Errorf("store: %w: %d recent checkpoints (1..1000)", ErrInvalid, n)
	}
	leave, err := g.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	cps, err := g.b.recentCheckpoints(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("store: recent checkpoints: %w", err)
	}
	return cps, nil
}

func (g *group) SaveCosignature(ctx context.Context, size int64, witness string, line []byte) error {
	if size < 0 || witness == "" || len(witness) > 256 || len(line) == 0 || len(line) > 4096 {
		return fmt.Errorf("store: %w: cosignature of size %d by %q (%d bytes)", ErrInvalid, size, witness, len(line))
	}
	leave, err := g.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := g.b.saveCosignature(ctx, size, witness, line); err != nil {
		return fmt.Errorf("store: save cosignature: %w", err)
	}
	return nil
}

func (g *group) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) > maxReadHashes {
		return nil, fmt.Errorf("store: %w: %d hashes in one read", ErrInvalid, len(indexes))
	}
	leave, err := g.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	hs, err := g.b.readHashes(ctx, indexes)
	if err != nil {
		return nil, fmt.Errorf("store: read hashes: %w", err)
	}
	return hs, nil
}

func (g *group) ReadLeaves(ctx context.Context, start int64, n int) ([][]byte, error) {
	if start < 0 || n < 0 || n > maxReadLeaves {
		return nil, fmt.Errorf("store: %w: leaves [%d, +%d)", ErrInvalid, start, n)
	}
	leave, err := g.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	ls, err := g.b.readLeaves(ctx, start, n)
	if err != nil {
		return nil, fmt.Errorf("store: read leaves: %w", err)
	}
	return ls, nil
}

func (g *group) Leaf(ctx context.Context, key string) (int64, []byte, bool, error) {
	leave, err := g.enter()
	if err != nil {
		return 0, nil, false, err
	}
	defer leave()
	i, l, ok, err := g.b.leaf(ctx, key)
	if err != nil {
		return 0, nil, false, fmt.Errorf("store: leaf %s: %w", key, err)
	}
	return i, l, ok, nil
}

func (g *group) Unlogged(ctx context.Context, limit int) ([]string, error) {
	leave, err := g.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	ds, err := g.b.unlogged(ctx, limit)
	if err != nil {
		return nil, fmt.Errorf("store: unlogged decisions: %w", err)
	}
	return ds, nil
}

// missingHashes reports a hash read that found fewer hashes than asked:
// the tree is not integrated that far, or a stored hash was deleted.
func missingHashes(got, want int) error {
	return fmt.Errorf("%d of %d stored hashes found", got, want)
}
