package directory_test

import (
	"context"
	"testing"
	"time"

	"github.com/certless/certless/directory"
)

// TestFollowSeesAnotherProcessesChanges: a follower on its own connection
// (as a running broker beside `certless agency`) gets a snapshot for each
// new version, with the entry as changed, and none for a version it has.
func TestFollowSeesAnotherProcessesChanges(t *testing.T) {
	backends(t, func(t *testing.T, dsn func() string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		ops := open(t, dsn())
		broker, err := directory.Open(ctx, ops.dsn, ops.log)
		if err != nil {
			t.Fatal(err)
		}
		defer broker.Close()
		start, err := broker.Snapshot(ctx)
		if err != nil || start.Version != 0 || len(start.Agencies) != 0 {
			t.Fatalf("empty directory: %+v, %v", start, err)
		}

		snaps := make(chan *directory.Snapshot, 16)
		followCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			broker.Follow(followCtx, start.Version, 5*time.Millisecond,
				func(s *directory.Snapshot) { snaps <- s },
				func(err error) { t.Errorf("follow: %v", err) })
		}()
		next := func(what string) *directory.Snapshot {
			t.Helper()
			select {
			case s := <-snaps:
				return s
			case <-ctx.Done():
				t.Fatalf("no snapshot after %s", what)
				return nil
			}
		}

		a := court(t)
		c, err := ops.dir.Dock(ctx, a, "ops-alice")
		if err != nil {
			t.Fatal(err)
		}
		s := next("dock")
		got, ok := s.Agency(a.ID)
		if s.Version != c.Seq || !ok || got.Status != directory.Active || got.Region != "220100" {
			t.Fatalf("after dock: version %d (want %d), %+v", s.Version, c.Seq, got)
		}
		c, err = ops.dir.Suspend(ctx, a.ID, "ops-alice", "audit")
		if err != nil {
			t.Fatal(err)
		}
		s = next("suspend")
		if got, _ := s.Agency(a.ID); s.Version != c.Seq || got.Status != directory.Suspended {
			t.Fatalf("after suspend: version %d (want %d), %+v", s.Version, c.Seq, got)
		}
		// A re-dock of the same content records nothing: no new snapshot
		// is due, and the next one delivered is the resumption's.
		if c, err := ops.dir.Dock(ctx, a, "ops-alice"); err != nil || !c.None() {
			t.Fatalf("re-dock: %+v, %v", c, err)
		}
		c, err = ops.dir.Resume(ctx, a.ID, "ops-alice", "")
		if err != nil {
			t.Fatal(err)
		}
		s = next("resume")
		if got, _ := s.Agency(a.ID); s.Version != c.Seq || got.Status != directory.Active {
			t.Fatalf("after resume: version %d (want %d), %+v", s.Version, c.Seq, got)
		}
		stop()
		<-done
		select {
		case s := <-snaps:
			t.Fatalf("a snapshot for a version already delivered: %d", s.Version)
		default:
		}
	})
}
