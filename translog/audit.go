package translog

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// An audit replays a whole log with public keys only: it recomputes the
// tree from the leaves (Tree: about a microsecond a leaf, memory
// logarithmic in the size), checks every stored checkpoint's signatures
// and its root at its size, and, when the log's stored hashes are at hand,
// every stored hash the leaves imply. It reports the first thing that is
// wrong, at the leaf or checkpoint where it is wrong.
//
// A finding about one leaf (it does not parse, its stored hash no longer
// matches its bytes, it disagrees with a record kept outside the log) is
// settled by the next checkpoint: when the checkpoint's root matches the
// recomputed tree, the leaf is as the log signed it and the other record
// changed; when it does not, the leaf changed.

// MaxAuditChunk is the most leaves an audit reads at once.
const MaxAuditChunk = 1 << 16

// maxHashRead is the most stored hashes an audit asks for in one read.
const maxHashRead = 1 << 16

// AuditLog is what an audit reads: a decision store's methods, or a tile
// client's, fit its fields.
type AuditLog struct {
	// Size is the number of leaves the log says it holds.
	Size int64
	// ReadLeaves returns the leaves [start, start+n), fewer where they
	// stop (at the end, or at a gap).
	ReadLeaves func(ctx context.Context, start int64, n int) ([][]byte, error)
	// Checkpoints calls fn with every stored signed checkpoint, with its
	// cosignatures, oldest first.
	Checkpoints func(ctx context.Context, fn func(signed []byte) error) error
	// ReadHashes, when set, returns the log's stored hashes at the given
	// stored-hash indexes (tlog.StoredHashIndex), to be compared with the
	// recomputed ones; a log that keeps none leaves it nil.
	ReadHashes func(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
}

// Disagreement is a leaf that disagrees with evidence the log does not
// hold (for a decision's leaf, the decision in the store).
type Disagreement struct {
	Index  int64
	Reason string
}

// Auditor audits a log against its policy. Its fields are set before
// Audit and not changed during it.
type Auditor struct {
	// Policy names the log's origin and key, and the witnesses of which at
	// least Quorum must have cosigned the newest checkpoint (every
	// checkpoint with EveryQuorum; witnesses cosign the newest checkpoint
	// of each round, so older ones may lack cosignatures legitimately).
	Policy      Policy
	EveryQuorum bool
	// Chunk is how many leaves are read at once; default and most
	// MaxAuditChunk.
	Chunk int
	// Compare, when set, compares the leaves [start, start+len(leaves))
	// (every one parsed) with evidence outside the log and returns the
	// first that disagrees, nil when none does.
	Compare func(ctx context.Context, start int64, leaves [][]byte, parsed []Leaf) (*Disagreement, error)
	// Progress, when set, is called after each chunk of leaves.
	Progress func(done, total int64)
	// Consistent, when set, is called for each pair of consecutive
	// distinct checkpoints that are consistent (both are roots of the one
	// recomputed tree, so the older is a prefix of the newer).
	Consistent func(old, new tlog.Tree)
}

// Report is the result of an audit.
type Report struct {
	Leaves      int64 // leaves read and checked
	Checkpoints int   // stored checkpoints checked, duplicates included
	// Head is the newest checkpoint's tree and Cosigned the policy's
	// witnesses that cosigned it (zero Head for a log without one).
	Head     tlog.Tree
	Cosigned []string
	// Consistent counts the consecutive checkpoint pairs found consistent.
	Consistent int
	// Unintegrated counts the leaves after the head, not under any
	// checkpoint yet.
	Unintegrated int64
	// Problem is the first thing found wrong; nil when the log verified.
	Problem *Problem
}

// Err is the report's problem as an error, nil for a log that verified.
func (r Report) Err() error {
	if r.Problem == nil {
		return nil
	}
	return r.Problem
}

// Problem is the first thing an audit found wrong.
type Problem struct {
	// Leaf is the index of the first bad leaf, -1 when no one leaf is
	// named.
	Leaf int64
	// Checkpoint is the size of the first bad checkpoint, -1 when none is
	// named.
	Checkpoint int64
	// From and To bound the leaves [From, To) one of which changed, for a
	// checkpoint whose root no longer matches and no leaf is named.
	From, To int64
	Reason   string
}

// ErrAudit is wrapped by every Problem.
var ErrAudit = errors.New("translog: audit failed")

func (p *Problem) Error() string {
	switch {
	case p.Leaf >= 0 && p.Checkpoint >= 0:
		return fmt.Sprintf("leaf %d (checkpoint of size %d): %s", p.Leaf, p.Checkpoint, p.Reason)
	case p.Leaf >= 0:
		return fmt.Sprintf("leaf %d: %s", p.Leaf, p.Reason)
	case p.Checkpoint >= 0:
		return fmt.Sprintf("checkpoint of size %d: %s", p.Checkpoint, p.Reason)
	}
	return p.Reason
}

// Unwrap makes errors.Is(p, ErrAudit) true.
func (p *Problem) Unwrap() error { return ErrAudit }

// auditCheckpoint is what an audit keeps of one stored checkpoint.
type auditCheckpoint struct {
	seq       int // 1-based position in stored order
	size      int64
	hash      tlog.Hash
	err       error // signature or origin failure; nil when the log signed it
	quorumErr error
	cosigned  []string
}

// finding is a leaf's problem waiting for the next checkpoint to tell
// whether the leaf or the other record changed.
type finding struct {
	leaf     int64
	reason   string
	proven   string // what it means when the checkpoint proves the leaf
	refuted  string // what it means when the checkpoint no longer matches
	unproven string // what it means when no checkpoint covers the leaf
}

// Audit reads the whole log and checks it. The error is for a log that
// could not be read (and a policy without a log key); what is wrong with
// the log is the report's Problem.
func (a *Auditor) Audit(ctx context.Context, log AuditLog) (Report, error) {
	if a.Policy.Log == nil {
		return Report{}, errors.New("translog: audit: the policy has no log key")
	}
	if log.ReadLeaves == nil || log.Checkpoints == nil {
		return Report{}, errors.New("translog: audit: the log has no ReadLeaves or Checkpoints")
	}
	var r Report
	cps, p, err := a.readCheckpoints(ctx, log)
	r.Checkpoints = len(cps)
	if err != nil || p != nil {
		r.Problem = p
		return r, err
	}
	run := &auditRun{a: a, log: log, cps: cps, report: &r, head: -1}
	for _, c := range cps {
		run.head = max(run.head, c.size)
	}
	r.Problem, err = run.run(ctx)
	return r, err
}

func (a *Auditor) readCheckpoints(ctx context.Context, log AuditLog) ([]auditCheckpoint, *Problem, error) {
	var (
		cps  []auditCheckpoint
		prob *Problem
	)
	err := log.Checkpoints(ctx, func(signed []byte) error {
		seq := len(cps) + 1
		body, err := ParseCheckpointBody(signed)
		if err != nil {
			if prob == nil {
				prob = &Problem{Leaf: -1, Checkpoint: -1, Reason: fmt.Sprintf("stored checkpoint #%d is unreadable: %v", seq, err)}
			}
			cps = append(cps, auditCheckpoint{seq: seq, size: -1})
			return nil
		}
		c := auditCheckpoint{seq: seq, size: body.N, hash: body.Hash}
		v, cosigned, err := a.Policy.VerifyCheckpoint(signed)
		switch {
		case err != nil && v.Note == nil:
			c.err = err
		case err != nil:
			c.quorumErr, c.cosigned = err, cosigned
		case v.N != body.N || v.Hash != body.Hash:
			c.err = fmt.Errorf("%w: the signed tree is not the stored one", ErrCheckpoint)
		default:
			c.cosigned = cosigned
		}
		cps = append(cps, c)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("translog: audit: read checkpoints: %w", err)
	}
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].size < cps[j].size })
	return cps, prob, nil
}

type auditRun struct {
	a      *Auditor
	log    AuditLog
	cps    []auditCheckpoint // by size
	next   int               // first checkpoint not yet reached
	head   int64             // size of the newest checkpoint, -1 for none
	report *Report
	tree   *Tree
	prev   *tlog.Tree // the last checkpoint that matched
	found  *finding
}

func (run *auditRun) run(ctx context.Context) (*Problem, error) {
	tree, err := NewTree(0, nil)
	if err != nil {
		return nil, err
	}
	run.tree = tree
	if p := run.reach(0); p != nil {
		return p, nil
	}
	chunk := run.a.Chunk
	if chunk <= 0 || chunk > MaxAuditChunk {
		chunk = MaxAuditChunk
	}
	// Stored hashes exist for the integrated tree: up to the largest
	// checkpoint claimed.
	hashed := int64(0)
	if run.log.ReadHashes != nil && len(run.cps) > 0 {
		hashed = min(run.cps[len(run.cps)-1].size, run.log.Size)
	}
	for start := int64(0); start < run.log.Size; {
		n := int(min(int64(chunk), run.log.Size-start))
		leaves, err := run.log.ReadLeaves(ctx, start, n)
		if err != nil {
			return nil, fmt.Errorf("translog: audit: read leaves [%d, %d): %w", start, start+int64(n), err)
		}
		if len(leaves) > n {
			leaves = leaves[:n]
		}
		if len(leaves) == 0 {
			if p := run.settle(); p != nil {
				return p, nil
			}
			return &Problem{Leaf: start, Checkpoint: -1, Reason: fmt.Sprintf("missing: the log holds %d leaves but they stop at %d (a leaf was deleted)",
				run.log.Size, start)}, nil
		}
		p, err := run.chunk(ctx, start, leaves, hashed)
		if err != nil || p != nil {
			return p, err
		}
		start += int64(len(leaves))
		run.report.Leaves = start
		if run.a.Progress != nil {
			run.a.Progress(start, run.log.Size)
		}
	}
	if p := run.settle(); p != nil {
		return p, nil
	}
	if run.next < len(run.cps) {
		c := run.cps[run.next]
		return &Problem{Leaf: -1, Checkpoint: c.size, Reason: fmt.Sprintf("beyond the log's %d leaves (stored checkpoint #%d): leaves it covers were deleted",
			run.log.Size, c.seq)}, nil
	}
	if run.head >= 0 {
		run.report.Unintegrated = run.log.Size - run.head
	} else {
		run.report.Unintegrated = run.log.Size
	}
	return nil, nil
}

// chunk checks the leaves [start, start+len(leaves)).
func (run *auditRun) chunk(ctx context.Context, start int64, leaves [][]byte, hashed int64) (*Problem, error) {
	parsed, perrs := parseAll(leaves)
	clean := len(leaves)
	for k, err := range perrs {
		if err != nil {
			clean = k
			break
		}
	}
	var dis *Disagreement
	if run.a.Compare != nil && clean > 0 && run.found == nil {
		d, err := run.a.Compare(ctx, start, leaves[:clean], parsed[:clean])
		if err != nil {
			return nil, fmt.Errorf("translog: audit: compare leaves [%d, %d): %w", start, start+int64(clean), err)
		}
		dis = d
	}
	stored, have, err := run.storedHashes(ctx, start, min(start+int64(len(leaves)), max(hashed, start)))
	if err != nil {
		return nil, err
	}
	base := tlog.StoredHashCount(start)
	for k, leaf := range leaves {
		i := start + int64(k)
		if _, err := run.tree.Append(leaf); err != nil {
			return nil, err
		}
		fresh := run.tree.Drain()
		if run.found == nil {
			run.found = run.leafFinding(i, perrs[k], fresh, stored, have, base, dis)
		}
		if p := run.reach(i + 1); p != nil {
			return p, nil
		}
	}
	return nil, nil
}

// leafFinding is what is wrong with leaf i, if anything.
func (run *auditRun) leafFinding(i int64, perr error, fresh []StoredHash, stored []tlog.Hash, have []bool, base int64, dis *Disagreement) *finding {
	var reasons []string
	proven, refuted := "", "the leaf is not the one the log signed (altered, inserted, deleted or moved)"
	if perr != nil {
		reasons = append(reasons, fmt.Sprintf("not a valid leaf: %v", perr))
		proven = "the log itself wrote this leaf"
	}
	for _, h := range fresh {
		k := h.Index - base
		if k < 0 || k >= int64(len(stored)) {
			continue // not integrated yet: no stored hash to compare
		}
		if !have[k] {
			what := "record hash"
			if level, _ := tlog.SplitStoredHashIndex(h.Index); level > 0 {
				what = fmt.Sprintf("hash at level %d", level)
			}
			reasons = append(reasons, fmt.Sprintf("its stored %s (stored-hash index %d) is missing", what, h.Index))
			if proven == "" {
				proven = "a stored hash was deleted"
			}
			break
		}
		if stored[k] != h.Hash {
			level, n := tlog.SplitStoredHashIndex(h.Index)
			if level == 0 {
				reasons = append(reasons, "its bytes no longer hash to its stored record hash")
			} else {
				w := int64(1) << level
				reasons = append(reasons, fmt.Sprintf("the stored hash at level %d covering leaves [%d, %d) is not their hash", level, n*w, n*w+w))
			}
			if proven == "" {
				proven = "the stored hashes were altered"
			}
			break
		}
	}
	if dis != nil && dis.Index == i {
		reasons = append(reasons, dis.Reason)
		if proven == "" {
			proven = "the record it disagrees with changed after the leaf was logged"
		}
	}
	if len(reasons) == 0 {
		return nil
	}
	return &finding{leaf: i, reason: strings.Join(reasons, "; "), proven: proven, refuted: refuted}
}

// storedHashes reads the stored hashes that the leaves [start, end) added.
// have[k] is false for a hash the log lacks.
func (run *auditRun) storedHashes(ctx context.Context, start, end int64) ([]tlog.Hash, []bool, error) {
	if run.log.ReadHashes == nil || end <= start {
		return nil, nil, nil
	}
	lo, hi := tlog.StoredHashCount(start), tlog.StoredHashCount(end)
	out := make([]tlog.Hash, hi-lo)
	have := make([]bool, hi-lo)
	for g := lo; g < hi; g += maxHashRead {
		idx := make([]int64, min(maxHashRead, hi-g))
		for k := range idx {
			idx[k] = g + int64(k)
		}
		hs, err := run.log.ReadHashes(ctx, idx)
		if err == nil && len(hs) == len(idx) {
			copy(out[g-lo:], hs)
			for k := range idx {
				have[g-lo+int64(k)] = true
			}
			continue
		}
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("translog: audit: read stored hashes: %w", ctx.Err())
		}
		// Some are missing: read them one by one to learn which.
		for k, x := range idx {
			h, err := run.log.ReadHashes(ctx, []int64{x})
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("translog: audit: read stored hashes: %w", ctx.Err())
			}
			if err == nil && len(h) == 1 {
				out[g-lo+int64(k)], have[g-lo+int64(k)] = h[0], true
			}
		}
	}
	return out, have, nil
}

// reach checks the checkpoints of size n, the tree's size now.
func (run *auditRun) reach(n int64) *Problem {
	if run.next >= len(run.cps) || run.cps[run.next].size != n {
		return nil
	}
	at := run.cps[run.next:]
	k := 0
	for k < len(at) && at[k].size == n {
		k++
	}
	at = at[:k]
	run.next += k
	root, err := run.tree.Root()
	if err != nil {
		return &Problem{Leaf: -1, Checkpoint: n, Reason: err.Error()}
	}
	var valid []auditCheckpoint
	for _, c := range at {
		if c.err != nil {
			if p := run.settle(); p != nil {
				return p
			}
			return &Problem{Leaf: -1, Checkpoint: n, Reason: fmt.Sprintf("stored checkpoint #%d does not verify: %v", c.seq, c.err)}
		}
		valid = append(valid, c)
	}
	for _, c := range valid[1:] {
		if c.hash != valid[0].hash {
			if p := run.settle(); p != nil {
				return p
			}
			return &Problem{Leaf: -1, Checkpoint: n, Reason: fmt.Sprintf(
				"fork: stored checkpoints #%d and #%d, both signed by the log key, have different roots %s and %s (the log equivocated); the leaves' root is %s",
				valid[0].seq, c.seq, valid[0].hash, c.hash, root.Hash)}
		}
	}
	c := valid[0]
	if c.hash != root.Hash {
		if f := run.found; f != nil {
			return &Problem{Leaf: f.leaf, Checkpoint: n, Reason: fmt.Sprintf("%s; the checkpoint no longer matches the leaves, so %s", f.reason, f.refuted)}
		}
		from := int64(0)
		if run.prev != nil {
			from = run.prev.N
		}
		reason := fmt.Sprintf("its root %s is not the root %s of the leaves: one of the leaves [%d, %d) was altered, inserted, deleted or moved", c.hash, root.Hash, from, n)
		if run.log.ReadHashes != nil {
			reason += ", and the stored hashes rewritten to match"
		}
		return &Problem{Leaf: -1, Checkpoint: n, From: from, To: n, Reason: reason}
	}
	if f := run.found; f != nil {
		return &Problem{Leaf: f.leaf, Checkpoint: -1, Reason: fmt.Sprintf("%s; the leaf is as the log signed it (checkpoint of size %d), so %s", f.reason, n, f.proven)}
	}
	var cosigned []string
	var qerr error
	for _, c := range valid {
		if len(c.cosigned) > len(cosigned) || cosigned == nil {
			cosigned, qerr = c.cosigned, c.quorumErr
		}
	}
	if qerr != nil && (run.a.EveryQuorum || n == run.head) {
		return &Problem{Leaf: -1, Checkpoint: n, Reason: qerr.Error()}
	}
	cur := tlog.Tree{N: n, Hash: c.hash}
	if run.prev != nil {
		run.report.Consistent++
		if run.a.Consistent != nil {
			run.a.Consistent(*run.prev, cur)
		}
	}
	run.prev = &cur
	run.report.Head, run.report.Cosigned = cur, cosigned
	return nil
}

// settle reports a leaf finding that no checkpoint can settle.
func (run *auditRun) settle() *Problem {
	f := run.found
	if f == nil {
		return nil
	}
	return &Problem{Leaf: f.leaf, Checkpoint: -1, Reason: f.reason + "; no valid checkpoint covers the leaf, so whether the leaf or the other record changed is not proven"}
}

// parseAll parses leaves on every CPU.
func parseAll(leaves [][]byte) ([]Leaf, []error) {
	parsed := make([]Leaf, len(leaves))
	errs := make([]error, len(leaves))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(leaves)/1024))
	per := (len(leaves) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := w*per, min((w+1)*per, len(leaves))
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := lo; k < hi; k++ {
				parsed[k], errs[k] = ParseLeaf(leaves[k])
			}
		}()
	}
	wg.Wait()
	return parsed, errs
}
