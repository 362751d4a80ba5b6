package feedback_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/certless/certless/feedback"
	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/policies/workdays"
	"github.com/certless/certless/schemas"
)

// backends runs fn on SQLite and on the real PostgreSQL (which CI=true
// requires).
func backends(t *testing.T, fn func(t *testing.T, dsn string)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, filepath.Join(t.TempDir(), "decisions.db")) })
	t.Run("postgres", func(t *testing.T) { fn(t, testenv.PostgresDB(t)) })
}

func openStore(t *testing.T, dsn string) *feedback.Store {
	t.Helper()
	s, err := feedback.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func sampleDispute(id string, opened time.Time) feedback.Dispute {
	return feedback.Dispute{
		ID: id, Digest: "sha256:" + id, Agency: "notary-dunhua", Message: []byte("jws." + id),
		Receipt:       schemas.MessageRef{ID: "01RECEIPT" + id[9:], Digest: "sha256:receipt-" + id},
		RequestDigest: "sha256:request-" + id, Query: "kinship", Fields: []string{"related", "relation"},
		Statement: "the relation is wrong", Owner: "police-jilin", OpenedAt: opened,
		Due: workdays.Default().Deadline(opened, 5),
	}
}

// TestDisputeLifecycle walks a dispute through every state on both
// backends, with an injected clock for the deadline: open (idempotent; a
// replayed id refused), forwarded, corrected with its resolution, closed;
// transitions out of order refused; every step an event whose notice is
// set once and sent once; overdue exactly after the deadline.
func TestDisputeLifecycle(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := openStore(t, dsn)
		// Friday 2026-12-04 10:00 Beijing: five working days end Friday 12-11, 24:00.
		opened := time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC)
		d := sampleDispute("01KDISPUTE00000000000000001", opened)
		if want := time.Date(2026, 12, 11, 16, 0, 0, 0, time.UTC); !d.Due.Equal(want) {
			t.Fatalf("due %v, want %v", d.Due, want)
		}
		got, created, err := s.OpenDispute(ctx, d)
		if err != nil || !created || got.Status != schemas.DisputeOpen {
			t.Fatalf("open: %+v %v %v", got, created, err)
		}
		if _, created, err := s.OpenDispute(ctx, d); err != nil || created {
			t.Fatalf("open again: created %v, %v", created, err)
		}
		replay := d
		replay.Digest = "sha256:other"
		if _, _, err := s.OpenDispute(ctx, replay); !errors.Is(err, feedback.ErrConflict) {
			t.Fatalf("replayed id: %v, want ErrConflict", err)
		}

		// Out of order: nothing resolves or closes an open dispute.
		if _, err := s.Transition(ctx, d.ID, []string{schemas.DisputeConfirmed, schemas.DisputeCorrected}, schemas.DisputeClosed, "x", "", opened, nil); !errors.Is(err, feedback.ErrState) {
			t.Fatalf("close an open dispute: %v", err)
		}
		if _, err := s.Transition(ctx, "01KNOSUCHDISPUTE0000000000", []string{schemas.DisputeOpen}, schemas.DisputeForwarded, "x", "", opened, nil); !errors.Is(err, feedback.ErrNotFound) {
			t.Fatalf("unknown dispute: %v", err)
		}
		step := func(from []string, to string, at time.Time, set func(*feedback.Dispute)) feedback.Event {
			t.Helper()
			ev, err := s.Transition(ctx, d.ID, from, to, "someone", "note", at, set)
			if err != nil || ev.Status != to {
				t.Fatalf("%s: %+v %v", to, ev, err)
			}
			if again, err := s.Transition(ctx, d.ID, from, to, "someone", "note", at, set); err != nil || again.Seq != 0 {
				t.Fatalf("%s again recorded %+v, %v", to, again, err)
			}
			return ev
		}
		fwd := step([]string{schemas.DisputeOpen}, schemas.DisputeForwarded, opened.Add(time.Minute), nil)
		if fwd.Seq != 2 {
			t.Fatalf("forwarded is step %d, want 2", fwd.Seq)
		}

		for at, want := range map[time.Time]int{d.Due.Add(-time.Second): 0, d.Due.Add(time.Second): 1} {
			late, err := s.List(ctx, feedback.Filter{OverdueAt: at})
			if err != nil || len(late) != want {
				t.Fatalf("overdue at %v: %d, want %d (%v)", at, len(late), want, err)
			}
			_, overdue, err := s.Counts(ctx, at)
			if err != nil || overdue["police-jilin"] != want {
				t.Fatalf("overdue count at %v: %v %v, want %d", at, overdue, err, want)
			}
		}

		ref := schemas.MessageRef{ID: "01KRESOLUTION0000000000001", Digest: "sha256:resolution"}
		step([]string{schemas.DisputeOpen, schemas.DisputeForwarded}, schemas.DisputeCorrected, d.Due.Add(time.Hour), func(x *feedback.Dispute) {
			x.Resolution, x.ResolutionRef = "a.b.c", ref
		})
		if late, _ := s.List(ctx, feedback.Filter{OverdueAt: d.Due.Add(48 * time.Hour)}); len(late) != 0 {
			t.Fatalf("an answered dispute is overdue: %+v", late)
		}
		byRes, ok, err := s.ByResolution(ctx, ref.ID)
		if err != nil || !ok || byRes.ID != d.ID || byRes.Resolution != "a.b.c" || byRes.Status != schemas.DisputeCorrected {
			t.Fatalf("by resolution: %+v %v %v", byRes, ok, err)
		}
		step([]string{schemas.DisputeConfirmed, schemas.DisputeCorrected}, schemas.DisputeClosed, d.Due.Add(2*time.Hour), nil)

		// Every step after open waits for its notice, oldest first.
		unsent, err := s.Unsent(ctx, 10)
		if err != nil || len(unsent) != 3 || unsent[0].Status != schemas.DisputeForwarded || unsent[2].Status != schemas.DisputeClosed {
			t.Fatalf("unsent: %+v %v", unsent, err)
		}
		for i, ev := range unsent {
			if err := s.SetNotice(ctx, d.ID, ev.Seq, []byte("notice"), int64(10+i)); err != nil {
				t.Fatal(err)
			}
			if err := s.SetNotice(ctx, d.ID, ev.Seq, []byte("another"), 99); err != nil {
				t.Fatal(err)
			}
			if err := s.MarkSent(ctx, d.ID, ev.Seq, opened); err != nil {
				t.Fatal(err)
			}
		}
		if unsent, err := s.Unsent(ctx, 10); err != nil || len(unsent) != 0 {
			t.Fatalf("after sending: %+v %v", unsent, err)
		}
		evs, err := s.Events(ctx, d.ID)
		if err != nil || len(evs) != 4 {
			t.Fatalf("events: %+v %v", evs, err)
		}
		for _, ev := range evs[1:] {
			if string(ev.Notice) != "notice" || ev.LeafIndex < 10 || ev.SentAt.IsZero() {
				t.Errorf("step %d: notice %q, leaf %d, sent %v: the first notice must stay", ev.Seq, ev.Notice, ev.LeafIndex, ev.SentAt)
			}
		}
		byStatus, _, err := s.Counts(ctx, opened)
		if err != nil || byStatus[schemas.DisputeClosed] != 1 {
			t.Fatalf("counts: %v %v", byStatus, err)
		}
	})
}

// TestAcksAreIdempotent: the same acknowledgement twice is one.
func TestAcksAreIdempotent(t *testing.T) {
	backends(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := openStore(t, dsn)
		a := feedback.Ack{Digest: "sha256:ack", Agency: "court-changchun", RefType: "receipt", RefID: "01RECEIPT", Kind: schemas.AckUsed, CaseRef: "(2026)吉01刑初1号", At: time.Now()}
		for range 2 {
			if err := s.RecordAck(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		acks, err := s.Acks(ctx, "01RECEIPT")
		if err != nil || len(acks) != 1 || acks[0].Kind != schemas.AckUsed || acks[0].CaseRef != a.CaseRef {
			t.Fatalf("acks: %+v %v", acks, err)
		}
	})
}
