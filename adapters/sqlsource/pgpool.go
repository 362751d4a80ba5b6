package sqlsource

import (
	"context"
	"errors"
	"sync"

	"github.com/jackc/pgx/v5"
)

// pgPool is a minimal PostgreSQL connection pool. pgx's own pool needs
// github.com/jackc/puddle/v2, which go.sum does not carry; this keeps the
// module graph unchanged. Connections are dialled on demand up to size and
// dropped when pgx reports them closed (for example after a cancelled query).
type pgPool struct {
	cfg   *pgx.ConnConfig
	slots chan struct{}  // one token per connection in use
	idle  chan *pgx.Conn // at most cap(slots)

	mu     sync.Mutex
	closed bool
}

var errPoolClosed = errors.New("sqlsource: connection pool closed")

func newPGPool(cfg *pgx.ConnConfig, size int) *pgPool {
	return &pgPool{cfg: cfg, slots: make(chan struct{}, size), idle: make(chan *pgx.Conn, size)}
}

// with runs f on a pooled connection.
func (p *pgPool) with(ctx context.Context, f func(*pgx.Conn) error) error {
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

func (p *pgPool) take(ctx context.Context) (*pgx.Conn, error) {
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, errPoolClosed
	}
	for {
		select {
		case c := <-p.idle:
			if !c.IsClosed() {
				return c, nil
			}
		default:
			return pgx.ConnectConfig(ctx, p.cfg)
		}
	}
}

func (p *pgPool) put(c *pgx.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || c.IsClosed() {
		_ = c.Close(context.Background())
		return
	}
	p.idle <- c // cannot block: a slot is held for c
}

func (p *pgPool) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	for {
		select {
		case c := <-p.idle:
			_ = c.Close(context.Background())
		default:
			return
		}
	}
}
