package store

import (
	"context"
	"errors"
	"sync"

	"github.com/jackc/pgx/v5"
)

// connPool is a minimal pool of PostgreSQL connections for the store's reads.
//
// It exists because pgx's own pool (pgxpool) needs github.com/jackc/puddle/v2,
// which go.sum does not carry yet; once it does, replace this file with a
// *pgxpool.Pool. Writes do not use it: the flusher owns one connection.
type connPool struct {
	cfg   *pgx.ConnConfig
	slots chan struct{}  // a token per connection in use or being dialled
	idle  chan *pgx.Conn // never more than cap(slots) entries

	mu     sync.Mutex
	closed bool
}

func newConnPool(cfg *pgx.ConnConfig, size int) *connPool {
	return &connPool{cfg: cfg, slots: make(chan struct{}, size), idle: make(chan *pgx.Conn, size)}
}

var errPoolClosed = errors.New("connection pool closed")

// with runs f on a connection of the pool, dialling one when none is idle.
func (p *connPool) with(ctx context.Context, f func(*pgx.Conn) error) error {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.slots }()
	c, err := p.take(ctx)
	if err != nil {
		return err
	}
	err = f(c)
	p.put(c)
	return err
}

func (p *connPool) take(ctx context.Context) (*pgx.Conn, error) {
	for {
		select {
		case c := <-p.idle:
			if !c.IsClosed() {
				return c, nil
			}
		default:
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return nil, errPoolClosed
			}
			return pgx.ConnectConfig(ctx, p.cfg)
		}
	}
}

func (p *connPool) put(c *pgx.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || c.IsClosed() {
		c.Close(context.Background())
		return
	}
	p.idle <- c // cannot block: at most cap(slots) connections exist
}

// close closes the idle connections; the pool must not be in use.
func (p *connPool) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for {
		select {
		case c := <-p.idle:
			errs = append(errs, c.Close(context.Background()))
		default:
			return errors.Join(errs...)
		}
	}
}
