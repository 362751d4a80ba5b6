package policies

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/certless/certless/envelope"
)

// DefaultWatchInterval is how often Watcher.Run polls when given no
// interval.
const DefaultWatchInterval = 2 * time.Second

// Watcher holds the set in force for a policies folder and follows the
// folder: every decision reads Set() once and uses that whole set, and a
// reload swaps the pointer to a complete new set, never a half-loaded one.
// It is safe for concurrent use.
type Watcher struct {
	dir       string
	resolver  envelope.KeyResolver
	providers []string // see LoadFor; nil: any party may provide

	cur atomic.Pointer[Set]
	// loading serialises reloads from reading the folder to the swap, so a
	// set read earlier never replaces one read later.
	loading sync.Mutex
	seen    string // sum of the snapshot last built from; "" before one
	readErr string // the last folder error, reported once
}

// ReloadResult is what one reload did, for a log line and metrics.
type ReloadResult struct {
	// Set is the set in force after the reload.
	Set *Set
	// Swapped is true when Set is a newly loaded set.
	Swapped bool
	// Problems are the files refused by this reload (each refused file
	// loudly, every time the folder changes).
	Problems []Problem
	// Err is set when the folder could not be read; the set in force is
	// unchanged.
	Err error
}

// NewWatcher loads dir and returns a watcher holding the result (an empty
// set and the error when the folder cannot be read).
func NewWatcher(dir string, resolver envelope.KeyResolver) (*Watcher, ReloadResult) {
	return NewWatcherFor(dir, resolver, nil)
}

// NewWatcherFor is NewWatcher whose loads refuse an agreement whose
// provider is not one of providers, or whose requester is (see LoadFor).
func NewWatcherFor(dir string, resolver envelope.KeyResolver, providers []string) (*Watcher, ReloadResult) {
	w := &Watcher{dir: dir, resolver: resolver, providers: providers}
	w.cur.Store(Empty())
	return w, w.reload(true)
}

// Set returns the set in force. Read it once per decision.
func (w *Watcher) Set() *Set { return w.cur.Load() }

// Reload re-reads the folder now, even when its files did not change (call
// it after the key registry changed: a revoked or removed key can refuse an
// agreement).
func (w *Watcher) Reload() ReloadResult { return w.reload(true) }

// Run polls the folder every interval (DefaultWatchInterval when <= 0) and
// reloads when an agreement file was added, removed or rewritten, calling
// report with the result (never for a poll that found nothing new; a folder
// error once until it changes). It returns when ctx ends.
func (w *Watcher) Run(ctx context.Context, interval time.Duration, report func(ReloadResult)) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if res, changed := w.poll(); changed && report != nil {
			report(res)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Watcher) poll() (ReloadResult, bool) {
	res := w.reload(false)
	return res, res.Swapped || res.Err != nil
}

// reload builds a new set from the folder and swaps it in; unless force, it
// does nothing when the files are the ones last built from.
func (w *Watcher) reload(force bool) ReloadResult {
	w.loading.Lock()
	defer w.loading.Unlock()
	prev := w.cur.Load()
	snap, err := readSnapshot(w.dir)
	if err != nil {
		if !force && err.Error() == w.readErr {
			return ReloadResult{Set: prev}
		}
		w.readErr = err.Error()
		return ReloadResult{Set: prev, Err: err}
	}
	w.readErr = ""
	if !force && snap.sum == w.seen {
		return ReloadResult{Set: prev}
	}
	w.seen = snap.sum
	snap.providers = w.providers
	next, problems := snap.build(prev, w.resolver)
	w.cur.Store(next)
	return ReloadResult{Set: next, Swapped: true, Problems: problems}
}
