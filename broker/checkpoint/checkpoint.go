// Package checkpoint keeps the broker's transparency log checkpointed: it
// integrates the leaves the decision store has sequenced into the RFC 6962
// tree, signs a C2SP checkpoint of each new size with the log key, asks
// witnesses to cosign it (C2SP tlog-witness) and stores what they return.
// It runs at least once a second while leaves arrive, and once more on
// shutdown.
//
// It also fails closed: when checkpoints cannot be made or stored for
// longer than the tolerance (the model is X-Road's
// acceptable-timestamp-failure-period), Open refuses and the record step
// stops publishing receipts rather than answer outside the log; Ready
// reports the failure at once, for /readyz.
package checkpoint

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/translog"
)

// Store is the log storage the checkpointer drives.
type Store interface {
	Integrate(ctx context.Context, max int, fn store.IntegrateFunc) (int64, error)
	Sequenced(ctx context.Context) (int64, error)
	ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	LatestCheckpoint(ctx context.Context) ([]byte, error)
	SaveCosignature(ctx context.Context, size int64, witness string, line []byte) error
}

// Witness cosigns checkpoints through C2SP tlog-witness.
type Witness interface {
	// Name is the witness's key name.
	Name() string
	// AddCheckpoint submits signed, a checkpoint that extends the tree of
	// oldSize (proof: the consistency proof between them), and returns the
	// verified cosignature line. An error that carries the witness's own
	// size (KnownSize) asks for another oldSize.
	AddCheckpoint(ctx context.Context, oldSize int64, proof tlog.TreeProof, signed []byte) ([]byte, error)
}

// Conflict is implemented by a Witness error that tells the size the
// witness knows (HTTP 409 in tlog-witness).
type Conflict interface {
	KnownSize() int64
}

// Stages of a failed round, as Metrics.Failed reports them.
const (
	StageCheckpoint = "checkpoint"
	// StageAudit: the stored tree no longer reproduces the checkpoint the
	// broker signed before (a stored hash was altered).
	StageAudit = "audit"
)

// Metrics receives what the checkpointer does.
type Metrics interface {
	Checkpointed(size int64, at time.Time)
	Failed(stage string)
	Cosigned(witness string, ok bool)
	// Refused counts a record step Open held back.
	Refused()
}

// Checkpointer integrates, signs and gathers cosignatures. Its fields are
// set before Run and not changed after.
type Checkpointer struct {
	Store  Store
	Origin string
	// Signer returns the log's note signer; it is asked each round, so a
	// missing or unreadable key is a failed round (fail closed), not a
	// crash.
	Signer    func() (note.Signer, error)
	Witnesses []Witness
	// Interval between rounds; default 1 s.
	Interval time.Duration
	// Tolerance is how long rounds may fail before Open refuses; default
	// 30 s. Leaves stay durable in the meantime and are checkpointed when
	// the log recovers.
	Tolerance time.Duration
	// WitnessTimeout bounds one witness call; default 5 s.
	WitnessTimeout time.Duration
	Log            *zap.Logger
	Metrics        Metrics
	Now            func() time.Time

	mu       sync.Mutex
	signed   tlog.Tree // the newest tree this checkpointer signed
	lastGood time.Time // last round that left no sequenced leaf unintegrated, or integrated some
	lastErr  error
	sizes    map[string]int64 // what each witness last cosigned
}

// ErrStale is returned by Open when the log has failed for longer than the
// tolerance.
var ErrStale = errors.New("checkpoint: the transparency log has not checkpointed within its tolerance; not answering outside the log")

// ErrInconsistent is a round that found the stored tree no longer
// matching the checkpoint this broker signed of its size.
var ErrInconsistent = errors.New("checkpoint: the stored tree does not reproduce the last checkpoint")

func (c *Checkpointer) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Checkpointer) tolerance() time.Duration {
	if c.Tolerance > 0 {
		return c.Tolerance
	}
	return 30 * time.Second
}

// Open implements broker.Gate.
func (c *Checkpointer) Open() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastGood.IsZero() || c.lastErr == nil {
		return nil // before the first round, or healthy
	}
	if age := c.now().Sub(c.lastGood); age > c.tolerance() {
		if c.Metrics != nil {
			c.Metrics.Refused()
		}
		return fmt.Errorf("%w (failing for %s: %v)", ErrStale, age.Round(time.Second), c.lastErr)
	}
	return nil
}

// Ready reports the last round's failure, for /readyz.
func (c *Checkpointer) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastErr != nil {
		return fmt.Errorf("transparency log: %w", c.lastErr)
	}
	return nil
}

// Run makes a round every Interval until ctx ends, then one last round
// (bounded by 10 s) so a clean shutdown leaves every leaf checkpointed.
func (c *Checkpointer) Run(ctx context.Context) error {
	every := c.Interval
	if every <= 0 {
		every = time.Second
	}
	c.mu.Lock()
	c.lastGood = c.now()
	c.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			return c.Round(final)
		case <-t.C:
			c.Round(ctx)
		}
	}
}

// Round integrates every sequenced leaf, checkpointing each new size, and
// asks the witnesses to cosign the newest checkpoint.
func (c *Checkpointer) Round(ctx context.Context) error {
	err := c.round(ctx)
	c.mu.Lock()
	c.lastErr = err
	if err == nil {
		c.lastGood = c.now()
	}
	c.mu.Unlock()
	if err != nil {
		if c.Log != nil {
			c.Log.Error("transparency log checkpoint failed", zap.Error(err))
		}
		if c.Metrics != nil {
			stage := StageCheckpoint
			if errors.Is(err, ErrInconsistent) {
				stage = StageAudit
			}
			c.Metrics.Failed(stage)
		}
	}
	return err
}

func (c *Checkpointer) round(ctx context.Context) error {
	signer, err := c.Signer()
	if err != nil {
		return fmt.Errorf("log key: %w", err)
	}
	grew := false
	for {
		before := int64(-1)
		after, err := c.Store.Integrate(ctx, 0, func(size int64, edge []translog.StoredHash, leaves [][]byte) ([]translog.StoredHash, []byte, error) {
			before = size
			if err := c.consistent(size, edge); err != nil {
				return nil, nil, err
			}
			hs, cp, err := Extend(signer, c.Origin, size, edge, leaves)
			if err == nil {
				if b, perr := translog.ParseCheckpointBody(cp); perr == nil {
					c.mu.Lock()
					c.signed = b.Tree
					c.mu.Unlock()
				}
			}
			return hs, cp, err
		})
		if err != nil {
			return err
		}
		if before < 0 || after == before {
			break // nothing new
		}
		grew = true
		if c.Metrics != nil {
			c.Metrics.Checkpointed(after, c.now())
		}
	}
	// A tree with leaves but no checkpoint yet (the first round of an
	// empty log has nothing to sign) is fine; a sequenced count ahead of
	// the integrated one means leaves committed while we integrated: the
	// next round takes them.
	if grew || len(c.Witnesses) > 0 {
		c.cosign(ctx)
	}
	return nil
}

// consistent checks the stored right edge of size against the tree this
// checkpointer signed last, when that was of the same size.
func (c *Checkpointer) consistent(size int64, edge []translog.StoredHash) error {
	c.mu.Lock()
	last := c.signed
	c.mu.Unlock()
	if size == 0 || last.N != size {
		return nil
	}
	t, err := translog.NewTree(size, edge)
	if err != nil {
		return err
	}
	root, err := t.Root()
	if err != nil {
		return err
	}
	if root.Hash != last.Hash {
		return fmt.Errorf("%w: size %d root %s, signed %s", ErrInconsistent, size, root.Hash, last.Hash)
	}
	return nil
}

// Extend is the IntegrateFunc of the checkpointer: it appends leaves to the
// tree of size (right edge edge) and signs the checkpoint of the new size.
func Extend(signer note.Signer, origin string, size int64, edge []translog.StoredHash, leaves [][]byte) ([]translog.StoredHash, []byte, error) {
	t, err := translog.NewTree(size, edge)
	if err != nil {
		return nil, nil, err
	}
	for _, l := range leaves {
		if _, err := t.Append(l); err != nil {
			return nil, nil, err
		}
	}
	root, err := t.Root()
	if err != nil {
		return nil, nil, err
	}
	cp, err := translog.SignCheckpoint(signer, origin, root)
	if err != nil {
		return nil, nil, err
	}
	return t.Drain(), cp, nil
}

// cosign asks each witness, concurrently, to cosign the newest checkpoint.
// A witness failure is logged and counted; it never fails the round (the
// log goes on without a witness; verifiers decide how many they require).
func (c *Checkpointer) cosign(ctx context.Context) {
	signed, err := c.Store.LatestCheckpoint(ctx)
	if err != nil || signed == nil {
		return
	}
	cp, err := translog.ParseCheckpointBody(signed)
	if err != nil {
		return
	}
	// Only the log's own signature goes to witnesses.
	own, err := ownNote(signed)
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for _, w := range c.Witnesses {
		c.mu.Lock()
		if c.sizes == nil {
			c.sizes = map[string]int64{}
		}
		old, known := c.sizes[w.Name()]
		c.mu.Unlock()
		if known && old >= cp.N {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.cosignOne(ctx, w, old, cp.N, own)
		}()
	}
	wg.Wait()
}

func (c *Checkpointer) cosignOne(ctx context.Context, w Witness, old, size int64, signed []byte) {
	timeout := c.WitnessTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var line []byte
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var proof tlog.TreeProof
		if old > 0 && old < size {
			proof, err = tlog.ProveTree(size, old, translog.HashReader(ctx, c.Store))
			if err != nil {
				break
			}
		}
		line, err = w.AddCheckpoint(ctx, old, proof, signed)
		var conflict Conflict
		if errors.As(err, &conflict) && conflict.KnownSize() != old && conflict.KnownSize() <= size {
			old = conflict.KnownSize()
			continue
		}
		break
	}
	if err == nil {
		err = c.Store.SaveCosignature(ctx, size, w.Name(), line)
	}
	if c.Metrics != nil {
		c.Metrics.Cosigned(w.Name(), err == nil)
	}
	if err != nil {
		if c.Log != nil {
			c.Log.Warn("witness did not cosign", zap.String("witness", w.Name()), zap.Int64("size", size), zap.Error(err))
		}
		return
	}
	c.mu.Lock()
	c.sizes[w.Name()] = size
	c.mu.Unlock()
}

// ownNote strips cosignatures, keeping the log's signature line, which is
// the first.
func ownNote(signed []byte) ([]byte, error) {
	text, sigs, ok := cut(signed)
	if !ok {
		return nil, translog.ErrCheckpoint
	}
	first := sigs
	for i, b := range sigs {
		if b == '\n' {
			first = sigs[:i+1]
			break
		}
	}
	return append(append(append([]byte(nil), text...), '\n'), first...), nil
}

func cut(b []byte) (text, sigs []byte, ok bool) {
	for i := 0; i+1 < len(b); i++ {
		if b[i] == '\n' && b[i+1] == '\n' {
			return b[:i+1], b[i+2:], true
		}
	}
	return nil, nil, false
}
