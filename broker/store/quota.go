package store

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Limits are an agreement's quotas; 0 means no limit for that window.
type Limits struct{ PerMinute, PerDay, PerMonth int }

// Quotas counts the uses of agreements' quotas in the decision store's
// database, so every broker instance on one database shares one budget.
// The value Open returns implements it (Store embeds it); a consumer such
// as the policy step declares the part it needs.
type Quotas interface {
	// Take counts one use of agency's budget under agreement (id and
	// version) at now, in every window with a limit, all or nothing: it
	// returns false, counting nothing, when any window is already full.
	// Windows are calendar windows in Beijing time (UTC+8): the minute, the
	// day, the month that contain now. A window without a limit is not
	// counted; with no limit at all Take returns true and counts nothing.
	//
	// Exact at the boundary: of N concurrent Takes from one budget, also
	// from several Stores (processes) on one PostgreSQL database or one
	// SQLite file, exactly min(N, room) succeed, room being the least room
	// left in its limited windows.
	// Concurrent Takes share transactions (their own, off the group-commit
	// path of Save), committed without waiting for the disk: a crash of
	// the database may forget the last uses, never decisions.
	//
	// Errors: ErrInvalid (wrapped) for an empty or non-UTF-8 agency or id,
	// a negative version or limit; ErrClosed after Close; anything else is
	// transient. After a transient error (ctx ending included) the use may
	// have been counted, and a retry counts it again: an error errs toward
	// denying early, never toward exceeding a limit.
	Take(ctx context.Context, agency, agreementID string, agreementVersion int, limits Limits, now time.Time) (bool, error)
	// Usage returns the counts of the windows containing now (for metrics:
	// quota used / quota). A window never taken from counts 0.
	Usage(ctx context.Context, agency, agreementID string, agreementVersion int, now time.Time) (perMinute, perDay, perMonth int, err error)
}

// Beijing is the zone of quota windows: China Standard Time, UTC+8, no
// daylight saving time.
var Beijing = time.FixedZone("CST", 8*3600)

// Quota periods as stored, in the order Take counts them. Every Take takes
// its row locks in this order, so concurrent Takes cannot deadlock.
const (
	periodMonth  = "month"
	periodDay    = "day"
	periodMinute = "minute"
)

// quotaKey is whose budget a use counts against.
type quotaKey struct {
	agency, agreementID string
	version             int
}

// quotaWindow is one window of a Take: its period, start (UTC) and limit.
type quotaWindow struct {
	period string
	start  time.Time
	limit  int
}

// windowStarts returns the starts of the month, day and minute in Beijing
// time containing now, in UTC.
func windowStarts(now time.Time) (month, day, minute time.Time) {
	t := now.In(Beijing)
	y, m, d := t.Date()
	month = time.Date(y, m, 1, 0, 0, 0, 0, Beijing).UTC()
	day = time.Date(y, m, d, 0, 0, 0, 0, Beijing).UTC()
	minute = time.Date(y, m, d, t.Hour(), t.Minute(), 0, 0, Beijing).UTC()
	return month, day, minute
}

// windows returns the limited windows of a Take at now, month first.
func (l Limits) windows(now time.Time) []quotaWindow {
	month, day, minute := windowStarts(now)
	ws := make([]quotaWindow, 0, 3)
	for _, w := range []quotaWindow{{periodMonth, month, l.PerMonth}, {periodDay, day, l.PerDay}, {periodMinute, minute, l.PerMinute}} {
		if w.limit > 0 {
			ws = append(ws, w)
		}
	}
	return ws
}

func newQuotaKey(agency, agreementID string, version int) (quotaKey, error) {
	bad := func(format string, args ...any) (quotaKey, error) {
		return quotaKey{}, fmt.Errorf("store: quota: %w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	for _, f := range []struct{ name, v string }{{"agency", agency}, {"agreement id", agreementID}} {
		if f.v == "" {
			return bad("empty %s", f.name)
		}
		if !utf8.ValidString(f.v) || strings.IndexByte(f.v, 0) >= 0 {
			return bad("%s is not NUL-free UTF-8", f.name)
		}
	}
	if version < 0 {
		return bad("negative agreement version %d", version)
	}
	return quotaKey{agency, agreementID, version}, nil
}

func (k quotaKey) String() string {
	return fmt.Sprintf("agency %q agreement %q v%d", k.agency, k.agreementID, k.version)
}

func (g *group) Take(ctx context.Context, agency, agreementID string, agreementVersion int, limits Limits, now time.Time) (bool, error) {
	k, err := newQuotaKey(agency, agreementID, agreementVersion)
	if err != nil {
		return false, err
	}
	if limits.PerMinute < 0 || limits.PerDay < 0 || limits.PerMonth < 0 {
		return false, fmt.Errorf("store: quota of %v: %w: negative limit in %+v", k, ErrInvalid, limits)
	}
	leave, err := g.enter()
	if err != nil {
		return false, err
	}
	defer leave()
	ws := limits.windows(now)
	if len(ws) == 0 {
		return true, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	ok, err := g.takeBatched(ctx, takeItem{k, ws})
	if err != nil {
		return false, fmt.Errorf("store: take quota of %v: %w", k, err)
	}
	return ok, nil
}

// takeItem is one Take: a budget and its limited windows, month first.
type takeItem struct {
	k  quotaKey
	ws []quotaWindow
}

// less orders items by their budget and then their windows, so that every
// batch, in every process, takes the rows' locks in one global order and
// concurrent batches cannot deadlock.
func (a takeItem) less(b takeItem) bool {
	if a.k.agency != b.k.agency {
		return a.k.agency < b.k.agency
	}
	if a.k.agreementID != b.k.agreementID {
		return a.k.agreementID < b.k.agreementID
	}
	if a.k.version != b.k.version {
		return a.k.version < b.k.version
	}
	// One budget has one set of limited windows; two Takes of it either
	// side of a minute (day, month) boundary lock their rows in the order of
	// the windows' starts, month first, so no two batches lock two rows in
	// opposite orders.
	for i := range min(len(a.ws), len(b.ws)) {
		if !a.ws[i].start.Equal(b.ws[i].start) {
			return a.ws[i].start.Before(b.ws[i].start)
		}
	}
	return len(a.ws) < len(b.ws)
}

// maxTakeBatch bounds the Takes of one transaction.
const maxTakeBatch = 256

// takeQueue groups concurrent Takes into one transaction, as the group
// does Saves: the Takes that queue while one batch commits are the next
// batch, so under load a budget costs one transaction per batch, not per
// request; alone, a Take pays for one transaction and no more.
type takeQueue struct {
	mu      sync.Mutex
	pending []*takeReq
	running bool
}

type takeReq struct {
	item takeItem
	done chan takeRes // buffered: the flusher never blocks on a caller that left
}

type takeRes struct {
	ok  bool
	err error
}

func (g *group) takeBatched(ctx context.Context, item takeItem) (bool, error) {
	r := &takeReq{item: item, done: make(chan takeRes, 1)}
	q := &g.takes
	q.mu.Lock()
	q.pending = append(q.pending, r)
	lead := !q.running
	q.running = true
	q.mu.Unlock()
	if lead {
		// The flusher outlives a caller that gives up; Close waits for it.
		g.inflight.Add(1)
		go g.flushTakes()
	}
	select {
	case res := <-r.done:
		return res.ok, res.err
	case <-ctx.Done():
		// The Take may still be counted by its batch: an error errs toward
		// denying early, as Take promises.
		return false, ctx.Err()
	}
}

// flushTakes commits the pending Takes, batch after batch, until none is
// left.
func (g *group) flushTakes() {
	defer g.inflight.Done()
	q := &g.takes
	for {
		q.mu.Lock()
		batch := q.pending
		if len(batch) > maxTakeBatch {
			batch = batch[:maxTakeBatch]
		}
		q.pending = q.pending[len(batch):]
		if len(batch) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		sort.SliceStable(batch, func(i, j int) bool { return batch[i].item.less(batch[j].item) })
		items := make([]takeItem, len(batch))
		for i, r := range batch {
			items[i] = r.item
		}
		ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
		oks, err := g.b.takeBatch(ctx, items)
		cancel()
		for i, r := range batch {
			if err != nil {
				r.done <- takeRes{err: err}
			} else {
				r.done <- takeRes{ok: oks[i]}
			}
		}
	}
}

func (g *group) Usage(ctx context.Context, agency, agreementID string, agreementVersion int, now time.Time) (perMinute, perDay, perMonth int, err error) {
	k, err := newQuotaKey(agency, agreementID, agreementVersion)
	if err != nil {
		return 0, 0, 0, err
	}
	leave, err := g.enter()
	if err != nil {
		return 0, 0, 0, err
	}
	defer leave()
	month, day, minute := windowStarts(now)
	used, err := g.b.usage(ctx, k, []quotaWindow{{periodMonth, month, 0}, {periodDay, day, 0}, {periodMinute, minute, 0}})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("store: quota usage of %v: %w", k, err)
	}
	return used[2], used[1], used[0], nil
}

// enter admits one quota call unless the store is closed; Close waits for
// the admitted ones before it closes the database.
func (g *group) enter() (leave func(), err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.isClosed() {
		return nil, ErrClosed
	}
	g.inflight.Add(1)
	return g.inflight.Done, nil
}
