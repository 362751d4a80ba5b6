package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// backend is one database dialect. commit runs in one transaction and is
// called from one goroutine at a time; the reads may run concurrently.
type backend interface {
	// commit stores each decision unless its digest exists and reports per
	// row what is stored (or a *ConflictError). An error fails the whole
	// batch: nothing of it is committed.
	commit(ctx context.Context, batch []Decision) ([]result, error)
	get(ctx context.Context, digest string) (Decision, bool, error)
	// getMany returns the stored decisions among digests, by digest.
	getMany(ctx context.Context, digests []string) (map[string]Decision, error)
	digestByRequestID(ctx context.Context, agency, requestID string) (string, bool, error)
	byReceipt(ctx context.Context, receiptID string) (Decision, bool, error)
	reserveStatus(ctx context.Context, n int) (int64, error)
	revoke(ctx context.Context, rs []Revocation) error
	revocations(ctx context.Context, from, to int64) ([]Revocation, error)
	bySubject(ctx context.Context, key string) ([]Decision, error)
	recent(ctx context.Context, agency string, limit int) ([]Decision, error)
	browse(ctx context.Context, agency, outcome, reason string, from, to time.Time, limit, offset int) ([]Decision, error)
	count(ctx context.Context) (int, error)
	rows(ctx context.Context, from, to time.Time, fn func(Row) error) error
	countBetween(ctx context.Context, from, to time.Time) (int, error)
	// takeBatch runs the Takes of items in one transaction, each all or
	// nothing on its own windows (month first), in the order given (the
	// caller sorts them, so concurrent batches take row locks in one global
	// order), and reports per item whether it counted. An error fails the
	// whole batch: nothing of it is counted.
	takeBatch(ctx context.Context, items []takeItem) ([]bool, error)
	// usage returns the counts of windows, in their order; limits unused.
	usage(ctx context.Context, k quotaKey, windows []quotaWindow) ([]int, error)
	logBackend
	close() error
}

type result struct {
	d   Decision
	err error
}

type request struct {
	d       Decision
	arrived time.Time
	done    chan result // buffered: the flusher never blocks on a caller that left
}

// flushTimeout bounds one batch transaction. Saves are not cancelled with
// their callers' contexts: a batch is shared and may already be committing.
const flushTimeout = time.Minute

// group turns concurrent Saves into batch transactions on a backend.
//
// One collector goroutine (run) queues requests and hands batches to one
// flusher goroutine, so at most one transaction is open while the next batch
// fills. When BatchSize requests wait behind a running transaction the
// collector stops receiving: Save blocks, which is the backpressure.
type group struct {
	b    backend
	opts Options

	reqs    chan *request
	closing chan struct{} // closed by Close: accept no more
	stopped chan struct{} // closed by run when everything accepted is committed

	closeOnce sync.Once
	closeErr  error

	mu       sync.Mutex     // orders enter against Close
	inflight sync.WaitGroup // quota calls admitted by enter

	takes   takeQueue
	lookups lookups

	batches, rows, queued atomic.Int64
}

var _ Store = (*group)(nil)

func newGroup(b backend, opts Options) *group {
	g := &group{
		b:       b,
		opts:    opts,
		reqs:    make(chan *request),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	g.lookups.g = g
	go g.run()
	return g
}

func (g *group) Save(ctx context.Context, d Decision) (Decision, error) {
	d, err := normalise(d)
	if err != nil {
		return Decision{}, err
	}
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	r := &request{d: d, done: make(chan result, 1)}
	select {
	case g.reqs <- r:
	case <-g.closing:
		return Decision{}, ErrClosed
	case <-ctx.Done():
		return Decision{}, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.d, res.err
	case <-ctx.Done():
		return Decision{}, ctx.Err()
	}
}

func (g *group) run() {
	defer close(g.stopped)
	work := make(chan []*request)
	idle := make(chan struct{})
	go func() {
		defer close(idle)
		for batch := range work {
			g.flush(batch)
			idle <- struct{}{}
		}
	}()
	defer func() {
		close(work)
		<-idle // the flusher has returned
	}()

	var (
		pending []*request
		busy    bool // a batch is committing
		due     bool // the pending requests may go: BatchWait is not holding them
		closed  bool
		timer   *time.Timer
		timeout <-chan time.Time
	)
	arm := func() {
		due, timeout = false, nil
		if len(pending) == 0 {
			return
		}
		if g.opts.BatchWait <= 0 { // no deliberate wait: go when nothing commits
			due = true
			return
		}
		wait := g.opts.BatchWait - time.Since(pending[0].arrived)
		if wait <= 0 {
			due = true
			return
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		timeout = timer.C
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	closing := g.closing
	for {
		if !busy && len(pending) > 0 && (due || closed || len(pending) >= g.opts.BatchSize) {
			n := min(len(pending), g.opts.BatchSize)
			batch := pending[:n:n]
			pending = pending[n:]
			busy = true
			work <- batch
			arm()
		}
		if closed && !busy && len(pending) == 0 {
			return
		}
		recv := g.reqs
		if closed || len(pending) >= g.opts.BatchSize {
			recv = nil
		}
		select {
		case r := <-recv:
			r.arrived = time.Now()
			pending = append(pending, r)
			g.queued.Add(1)
			if len(pending) == 1 {
				arm()
			}
		case <-timeout:
			due, timeout = true, nil
		case <-idle:
			busy = false
		case <-closing:
			closed, closing = true, nil
		}
	}
}

func (g *group) flush(batch []*request) {
	ds := make([]Decision, len(batch))
	for i, r := range batch {
		ds[i] = r.d
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	res, err := g.b.commit(ctx, ds)
	cancel()
	// The counters first: a caller told its result may read Stats at
	// once and must not see its own save still queued.
	g.batches.Add(1)
	g.rows.Add(int64(len(batch)))
	g.queued.Add(-int64(len(batch)))
	for i, r := range batch {
		if err != nil {
			r.done <- result{err: fmt.Errorf("store: commit batch of %d: %w", len(batch), err)}
		} else {
			r.done <- res[i]
		}
	}
}

func (g *group) Get(ctx context.Context, digest string) (Decision, bool, error) {
	if g.isClosed() {
		return Decision{}, false, ErrClosed
	}
	// Concurrent Gets share one query (lookups).
	d, ok, err := g.lookups.get(ctx, digest)
	if err != nil {
		return Decision{}, false, fmt.Errorf("store: get %s: %w", digest, err)
	}
	return d, ok, nil
}

func (g *group) ByReceipt(ctx context.Context, receiptID string) (Decision, bool, error) {
	if g.isClosed() {
		return Decision{}, false, ErrClosed
	}
	d, ok, err := g.b.byReceipt(ctx, receiptID)
	if err != nil {
		return Decision{}, false, fmt.Errorf("store: decision of receipt %q: %w", receiptID, err)
	}
	return d, ok, nil
}

func (g *group) DigestByRequestID(ctx context.Context, agency, requestID string) (string, bool, error) {
	if g.isClosed() {
		return "", false, ErrClosed
	}
	digest, ok, err := g.b.digestByRequestID(ctx, agency, requestID)
	if err != nil {
		return "", false, fmt.Errorf("store: digest of agency %q id %q: %w", agency, requestID, err)
	}
	return digest, ok, nil
}

func (g *group) Count(ctx context.Context) (int, error) {
	if g.isClosed() {
		return 0, ErrClosed
	}
	n, err := g.b.count(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: count: %w", err)
	}
	return n, nil
}

func (g *group) Stats() Stats {
	return Stats{Batches: g.batches.Load(), Rows: g.rows.Load(), Queued: g.queued.Load()}
}

func (g *group) Close() error {
	g.closeOnce.Do(func() {
		g.mu.Lock()
		close(g.closing)
		g.mu.Unlock()
		<-g.stopped
		g.inflight.Wait()
		if err := g.b.close(); err != nil {
			g.closeErr = fmt.Errorf("store: close: %w", err)
		}
	})
	return g.closeErr
}

func (g *group) isClosed() bool {
	select {
	case <-g.closing:
		return true
	default:
		return false
	}
}
