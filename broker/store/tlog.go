package store

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/translog"
)

// The transparency log's state lives beside the decisions, so that a
// decision's leaf is appended in the transaction that stores the decision:
// no receipt is ever published whose leaf is not durable.
//
//   - tlog_leaves holds every leaf at its index, with a unique key (the
//     request digest for a decision, "dead_letter:<topic>:<partition>:<offset>"
//     for a dead letter), so a redelivered message never takes a second
//     index. Indexes come from one counter row (tlog_sequence) locked by the
//     appending transaction: with any number of brokers on one database
//     there is one sequence, without gaps or an index used twice.
//   - tlog_hashes holds the RFC 6962 stored hashes of the integrated tree
//     (tlog.StoredHashIndex), tlog_integration its size: integration runs in
//     its own transaction, one at a time, after leaves are durable.
//   - tlog_checkpoints holds every signed checkpoint ever issued,
//     tlog_cosignatures the witnesses' cosignatures of them.
//
// Leaves, hashes, checkpoints and cosignatures are never updated or
// deleted; the two counters are the only rows updated.

// Log is the transparency log's storage.
type Log interface {
	// AppendLeaf appends a leaf that is not a decision's (a dead letter, and
	// later agreement and directory changes) under a unique key, and returns
	// its index; a key already logged returns the index it holds.
	AppendLeaf(ctx context.Context, key string, leaf []byte) (int64, error)
	// Sequenced returns the number of leaves appended.
	Sequenced(ctx context.Context) (int64, error)
	// Integrate extends the integrated tree by up to max sequenced leaves,
	// in one transaction that one caller at a time runs: fn receives the
	// integrated size, its right edge and the leaves that follow, and
	// returns the stored hashes they add and the signed checkpoint of the
	// new size. With no new leaf fn is not called and Integrate returns
	// the integrated size.
	Integrate(ctx context.Context, max int, fn IntegrateFunc) (int64, error)
	// LatestCheckpoint returns the newest checkpoint with the cosignatures
	// stored for it appended; nil before the first.
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	// CheckpointCovering returns the smallest stored checkpoint of a size
	// greater than index that at least quorum witnesses cosigned (all
	// cosignatures appended), else the newest one covering index; nil when
	// none covers it yet.
	CheckpointCovering(ctx context.Context, index int64, quorum int) ([]byte, error)
	// Checkpoints calls fn with every stored checkpoint (cosignatures
	// appended), oldest first.
	Checkpoints(ctx context.Context, fn func(signed []byte) error) error
	// RecentCheckpoints returns the n newest stored checkpoints
	// (cosignatures appended), newest first.
	RecentCheckpoints(ctx context.Context, n int) ([][]byte, error)
	// SaveCosignature stores a witness's cosignature line of the
	// checkpoint of size.
	SaveCosignature(ctx context.Context, size int64, witness string, line []byte) error
	// ReadHashes returns the integrated tree's stored hashes at indexes.
	ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	// ReadLeaves returns the leaves [start, start+n) (fewer at the end).
	ReadLeaves(ctx context.Context, start int64, n int) ([][]byte, error)
	// Leaf returns the index and bytes of the leaf logged under key.
	Leaf(ctx context.Context, key string) (int64, []byte, bool, error)
	// Unlogged returns up to limit digests of decisions that have no leaf.
	Unlogged(ctx context.Context, limit int) ([]string, error)
}

// IntegrateFunc computes what integrating leaves into the tree of size
// (with right edge edge) adds; see Log.Integrate.
type IntegrateFunc func(size int64, edge []translog.StoredHash, leaves [][]byte) (hashes []translog.StoredHash, checkpoint []byte, err error)

func checkLeaf(key string, leaf []byte) error {
	if key == "" || len(key) > 512 {
		return fmt.Errorf("store: %w: leaf key of %d bytes", ErrInvalid, len(key))
	}
	if len(leaf) == 0 || len(leaf) > translog.MaxLeafSize {
		return fmt.Errorf("store: %w: leaf of %d bytes", ErrInvalid, len(leaf))
	}
	return nil
}

// decisionLeaf is the leaf of a normalised decision.
func decisionLeaf(d Decision) ([]byte, error) {
	l := translog.Leaf{
		Kind: translog.KindDecision, Time: translog.FormatTime(d.DecidedAt), Agency: translog.Token(d.Agency),
		Type: translog.Token(d.Type), Query: translog.Token(d.QueryType), Outcome: d.Outcome, Reason: translog.Token(d.Reason),
		Request: d.Digest, Receipt: translog.Digest(d.Receipt),
		Agreement: d.AgreementDigest, AgreementID: translog.Token(d.AgreementID), AgreementVersion: d.AgreementVersion,
	}
	b, err := l.Marshal()
	if err != nil {
		return nil, fmt.Errorf("store: %w: %v", ErrInvalid, err)
	}
	return b, nil
}

// DecisionLeaf returns the leaf the store logs for d, for auditors that
// compare decisions with the log.
func DecisionLeaf(d Decision) ([]byte, error) {
	n, err := normalise(d)
	if err != nil {
		return nil, err
	}
	return n.Leaf, nil
}

// integrate runs fn for the leaves after size and checks what it returns.
func integrate(size int64, edge []translog.StoredHash, leaves [][]byte, fn IntegrateFunc) ([]translog.StoredHash, []byte, error) {
	hashes, cp, err := fn(size, edge, leaves)
	if err != nil {
		return nil, nil, err
	}
	c, err := translog.ParseCheckpointBody(cp)
	if err != nil {
		return nil, nil, err
	}
	if c.N != size+int64(len(leaves)) {
		return nil, nil, fmt.Errorf("store: checkpoint of size %d for a tree of %d", c.N, size+int64(len(leaves)))
	}
	return hashes, cp, nil
}
