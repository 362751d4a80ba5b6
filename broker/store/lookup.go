package store

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// lookups groups concurrent Gets, as the group commit groups Saves: a Get
// that arrives while lookup queries run waits for the next one, which reads
// every waiting digest in one query. An idle store answers a Get at once;
// a busy one answers hundreds per round trip.
type lookups struct {
	g       *group
	mu      sync.Mutex
	pending []*getRequest
	running int
}

type getRequest struct {
	digest string
	done   chan getResult // buffered: a caller that left does not block the query
}

type getResult struct {
	d     Decision
	found bool
	err   error
}

const (
	// maxLookupQueries bounds the lookup queries in flight (each holds a
	// connection).
	maxLookupQueries = 2
	// maxLookupBatch bounds the digests of one query.
	maxLookupBatch = 512
	// lookupTimeout bounds one query: it is shared, so no caller's context
	// cancels it.
	lookupTimeout = 30 * time.Second
)

func (l *lookups) get(ctx context.Context, digest string) (Decision, bool, error) {
	r := &getRequest{digest: digest, done: make(chan getResult, 1)}
	l.mu.Lock()
	l.pending = append(l.pending, r)
	if l.running < maxLookupQueries {
		l.running++
		go l.loop()
	}
	l.mu.Unlock()
	select {
	case res := <-r.done:
		return res.d, res.found, res.err
	case <-ctx.Done():
		return Decision{}, false, ctx.Err()
	}
}

// loop runs queries while Gets wait, then ends.
func (l *lookups) loop() {
	for {
		l.mu.Lock()
		if len(l.pending) == 0 {
			l.running--
			l.mu.Unlock()
			return
		}
		n := min(len(l.pending), maxLookupBatch)
		batch := append([]*getRequest(nil), l.pending[:n]...)
		l.pending = append(l.pending[:0:0], l.pending[n:]...)
		l.mu.Unlock()
		l.query(batch)
	}
}

func (l *lookups) query(batch []*getRequest) {
	fail := func(err error) {
		for _, r := range batch {
			r.done <- getResult{err: err}
		}
	}
	leave, err := l.g.enter()
	if err != nil {
		fail(err)
		return
	}
	defer leave()
	digests := make([]string, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, r := range batch {
		if !seen[r.digest] {
			seen[r.digest] = true
			digests = append(digests, r.digest)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	found, err := l.g.b.getMany(ctx, digests)
	if err != nil {
		fail(fmt.Errorf("store: get %d decisions: %w", len(digests), err))
		return
	}
	for _, r := range batch {
		d, ok := found[r.digest]
		r.done <- getResult{d: d, found: ok}
	}
}

func (p *postgresDB) getMany(ctx context.Context, digests []string) (map[string]Decision, error) {
	if len(digests) == 1 {
		d, ok, err := p.get(ctx, digests[0])
		if err != nil || !ok {
			return nil, err
		}
		return map[string]Decision{d.Digest: d}, nil
	}
	rows, err := p.pool.Query(ctx, pgSelect+` WHERE d.digest = ANY($1)`, digests)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]Decision, len(digests))
	for rows.Next() {
		d, err := pgScan(rows)
		if err != nil {
			return nil, err
		}
		out[d.Digest] = d
	}
	return out, rows.Err()
}

// SQLite is in-process: one prepared lookup per digest costs no round trip.
func (s *sqliteDB) getMany(ctx context.Context, digests []string) (map[string]Decision, error) {
	out := make(map[string]Decision, len(digests))
	for _, digest := range digests {
		d, ok, err := s.get(ctx, digest)
		if err != nil {
			return nil, err
		}
		if ok {
			out[digest] = d
		}
	}
	return out, nil
}
