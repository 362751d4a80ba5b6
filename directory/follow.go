package directory

import (
	"context"
	"fmt"
	"time"
)

// Snapshot is the whole directory at one version, as a running broker
// follows it.
type Snapshot struct {
	// Version is the seq of the newest change the snapshot includes (it may
	// include a few newer ones: a follower then simply loads again).
	Version  int64
	Agencies map[string]Agency // by id
	Sources  map[string]Source // by name
}

// Agency returns the docked agency id, if any.
func (s *Snapshot) Agency(id string) (Agency, bool) {
	if s == nil {
		return Agency{}, false
	}
	a, ok := s.Agencies[id]
	return a, ok
}

// Snapshot reads the version, then every agency and source.
func (d *Directory) Snapshot(ctx context.Context) (*Snapshot, error) {
	v, err := d.Version(ctx)
	if err != nil {
		return nil, err
	}
	as, err := d.List(ctx)
	if err != nil {
		return nil, err
	}
	ss, err := d.ListSources(ctx)
	if err != nil {
		return nil, err
	}
	s := &Snapshot{Version: v, Agencies: make(map[string]Agency, len(as)), Sources: make(map[string]Source, len(ss))}
	for _, a := range as {
		s.Agencies[a.ID] = a
	}
	for _, src := range ss {
		s.Sources[src.Name] = src
	}
	return s, nil
}

// DefaultFollowInterval is how often Follow polls when given no interval.
const DefaultFollowInterval = time.Second

// Follow polls the directory's version every interval (DefaultFollowInterval
// when <= 0) and, whenever it differs from the version of the snapshot last
// delivered (from, to begin with), reads a new snapshot and calls apply with
// it, from this goroutine, until ctx ends. A poll that fails calls fail with
// the error (a database that is down for a while is tried again at the next
// tick; the broker keeps the last snapshot meanwhile). One poll is one
// cheap query (max(seq) of the change history).
func (d *Directory) Follow(ctx context.Context, from int64, interval time.Duration, apply func(*Snapshot), fail func(error)) {
	if interval <= 0 {
		interval = DefaultFollowInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	seen := from
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, err := d.poll(ctx, seen)
		switch {
		case err != nil && ctx.Err() == nil:
			fail(err)
		case s != nil:
			seen = s.Version
			apply(s)
		}
	}
}

// poll returns a new snapshot when the version is not seen, else nil.
func (d *Directory) poll(ctx context.Context, seen int64) (*Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := d.Version(ctx)
	if err != nil {
		return nil, err
	}
	if v == seen {
		return nil, nil
	}
	s, err := d.Snapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("directory: follow: %w", err)
	}
	return s, nil
}
