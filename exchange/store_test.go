package exchange_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/certless/certless/envelope"
	"github.com/certless/certless/exchange"
	"github.com/certless/certless/internal/testenv"
)

// TestPeriods: a daily 01:00 schedule from an agreement that starts at
// noon has a first short period, then whole Beijing days, numbered from 1;
// none past now or the agreement's end.
func TestPeriods(t *testing.T) {
	start := time.Date(2026, 11, 1, 12, 0, 0, 0, exchange.Beijing)
	now := time.Date(2026, 11, 4, 3, 0, 0, 0, exchange.Beijing)
	ps, err := exchange.Periods("0 1 * * *", start, start.AddDate(1, 0, 0), now)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 {
		t.Fatalf("%d periods: %+v", len(ps), ps)
	}
	want := []time.Time{start, time.Date(2026, 11, 2, 1, 0, 0, 0, exchange.Beijing), time.Date(2026, 11, 3, 1, 0, 0, 0, exchange.Beijing), time.Date(2026, 11, 4, 1, 0, 0, 0, exchange.Beijing)}
	for i, p := range ps {
		if p.Sequence != i+1 || !p.From.Equal(want[i]) || !p.To.Equal(want[i+1]) {
			t.Errorf("period %d: %+v, want [%s, %s)", i+1, p, want[i], want[i+1])
		}
	}
	if ps, _ := exchange.Periods("0 1 * * *", start, want[2], now); len(ps) != 2 {
		t.Errorf("past the agreement's end: %d periods", len(ps))
	}
	if _, err := exchange.Periods("not cron", start, now, now); err == nil {
		t.Error("a bad schedule parsed")
	}
	next, _ := exchange.Next("0 1 * * *", now)
	if !next.Equal(time.Date(2026, 11, 5, 1, 0, 0, 0, exchange.Beijing)) {
		t.Errorf("next %s", next)
	}
}

// TestStoreKeepsTheFirstBatchOfAPeriod on both backends: a second build of
// a period (another broker, a re-run) gets the first one's bytes back.
func TestStoreKeepsTheFirstBatchOfAPeriod(t *testing.T) {
	for name, dsn := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "decisions.db") },
		"postgres": func(t *testing.T) string { return testenv.PostgresDB(t) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, err := exchange.Open(ctx, dsn(t))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p := exchange.Period{Sequence: 3, From: time.Date(2026, 11, 2, 17, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 3, 17, 0, 0, 0, time.UTC)}
			first := exchange.Batch{ID: "01KBATCH3", Manifest: []byte("m1"), Records: [][]byte{[]byte("r0"), []byte("r\n1"), {}}}
			got, mine, err := s.Put(ctx, "a/1", "daily", "edu-jian", p, first, p.To)
			if err != nil || !mine || !bytes.Equal(got.Manifest, first.Manifest) || len(got.Records) != 3 || string(got.Records[1]) != "r\n1" {
				t.Fatalf("put: %+v %v", got, err)
			}
			second := exchange.Batch{ID: "01KBATCH3X", Manifest: []byte("m2"), Records: [][]byte{[]byte("other")}}
			got, mine, err = s.Put(ctx, "a/1", "daily", "edu-jian", p, second, p.To.Add(time.Hour))
			if err != nil || mine || got.ID != first.ID || !bytes.Equal(got.Manifest, first.Manifest) || !got.From.Equal(p.From) {
				t.Fatalf("second put: %+v %v", got, err)
			}
			if n, err := s.Last(ctx, "a/1", "daily"); n != 3 || err != nil {
				t.Fatalf("last %d %v", n, err)
			}
			if due, err := s.Due(ctx, p.To, time.Hour); err != nil || len(due) != 1 || due[0].ID != first.ID || due[0].Job != "a/1/daily" {
				t.Fatalf("due before the first offer: %+v %v", due, err)
			}
			var published []byte
			always := func(exchange.Stored) bool { return true }
			ok, err := s.Offer(ctx, first.ID, p.To, always, func(_ context.Context, b exchange.Stored) error {
				published = b.Manifest
				return nil
			})
			if !ok || err != nil || !bytes.Equal(published, first.Manifest) {
				t.Fatalf("offer: %v %v %q", ok, err, published)
			}
			st, ok, err := s.ByID(ctx, first.ID)
			if !ok || err != nil || st.SentAt.IsZero() || st.Offers != 1 || !st.OfferedAt.Equal(p.To) {
				t.Fatalf("by id: %+v %v %v", st, ok, err)
			}
			// Not due before its deadline; due after it, until acknowledged.
			if due, _ := s.Due(ctx, p.To.Add(59*time.Minute), time.Hour); len(due) != 0 {
				t.Fatalf("due before the deadline: %+v", due)
			}
			if due, _ := s.Due(ctx, p.To.Add(61*time.Minute), time.Hour); len(due) != 1 {
				t.Fatalf("not due past the deadline: %+v", due)
			}
			sums, err := s.Summaries(ctx, p.To.Add(61*time.Minute), time.Hour)
			if err != nil || len(sums) != 1 || sums[0].Last != 3 || sums[0].LastSent != 3 || sums[0].Overdue != 1 || sums[0].OldestOverdue != 3 || sums[0].Offers != 1 {
				t.Fatalf("summaries: %+v %v", sums, err)
			}
			// A failed publication records nothing.
			if ok, err := s.Offer(ctx, first.ID, p.To.Add(2*time.Hour), always, func(context.Context, exchange.Stored) error { return context.DeadlineExceeded }); ok || err == nil {
				t.Fatalf("failed offer: %v %v", ok, err)
			}
			if st, _, _ := s.ByID(ctx, first.ID); st.Offers != 1 {
				t.Fatalf("a failed offer counted: %+v", st)
			}
			if _, err := s.Ack(ctx, first.ID, envelope.DigestOf(first.Manifest), "edu-jian", p.To.Add(3*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if due, _ := s.Due(ctx, p.To.Add(48*time.Hour), time.Hour); len(due) != 0 {
				t.Fatalf("an acknowledged batch is due: %+v", due)
			}
		})
	}
}

// TestOfferOneBrokerAtATime on PostgreSQL: while one broker publishes a
// batch, another's offer of it skips it rather than publishing it twice;
// once the first is done the batch is no longer due.
func TestOfferOneBrokerAtATime(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.PostgresDB(t)
	a, err := exchange.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := exchange.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p := exchange.Period{Sequence: 1, From: time.Date(2026, 11, 2, 17, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 3, 17, 0, 0, 0, time.UTC)}
	batch := exchange.Batch{ID: "01KBATCH1", Manifest: []byte("m"), Records: [][]byte{[]byte("r")}}
	if _, _, err := a.Put(ctx, "a/1", "daily", "edu-jian", p, batch, p.To); err != nil {
		t.Fatal(err)
	}
	unsent := func(st exchange.Stored) bool { return st.SentAt.IsZero() }
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := a.Offer(ctx, batch.ID, p.To, unsent, func(context.Context, exchange.Stored) error {
			close(inside)
			<-release
			return nil
		})
		done <- err
	}()
	<-inside
	ok, err := b.Offer(ctx, batch.ID, p.To, unsent, func(context.Context, exchange.Stored) error {
		t.Error("the second broker published a batch the first is publishing")
		return nil
	})
	if ok || err != nil {
		t.Fatalf("second offer while the first publishes: %v %v", ok, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ok, err = b.Offer(ctx, batch.ID, p.To, unsent, func(context.Context, exchange.Stored) error {
		t.Error("published again after the first broker's offer")
		return nil
	})
	if ok || err != nil {
		t.Fatalf("offer after the first: %v %v", ok, err)
	}
}
