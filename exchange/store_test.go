package exchange_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

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
	for name, dsn := range map[string]func() string{
		"sqlite":   func() string { return filepath.Join(t.TempDir(), "decisions.db") },
		"postgres": func() string { return testenv.PostgresDB(t) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, err := exchange.Open(ctx, dsn())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p := exchange.Period{Sequence: 3, From: time.Date(2026, 11, 2, 17, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 3, 17, 0, 0, 0, time.UTC)}
			first := exchange.Batch{ID: "01KBATCH3", Manifest: []byte("m1"), Records: [][]byte{[]byte("r0"), []byte("r\n1"), {}}}
			got, err := s.Put(ctx, "a/1", "daily", "edu-jian", p, first, p.To)
			if err != nil || !bytes.Equal(got.Manifest, first.Manifest) || len(got.Records) != 3 || string(got.Records[1]) != "r\n1" {
				t.Fatalf("put: %+v %v", got, err)
			}
			second := exchange.Batch{ID: "01KBATCH3X", Manifest: []byte("m2"), Records: [][]byte{[]byte("other")}}
			got, err = s.Put(ctx, "a/1", "daily", "edu-jian", p, second, p.To.Add(time.Hour))
			if err != nil || got.ID != first.ID || !bytes.Equal(got.Manifest, first.Manifest) || !got.From.Equal(p.From) {
				t.Fatalf("second put: %+v %v", got, err)
			}
			if n, err := s.Last(ctx, "a/1", "daily"); n != 3 || err != nil {
				t.Fatalf("last %d %v", n, err)
			}
			if err := s.MarkSent(ctx, first.ID, p.To); err != nil {
				t.Fatal(err)
			}
			if st, ok, err := s.ByID(ctx, first.ID); !ok || err != nil || st.SentAt.IsZero() {
				t.Fatalf("by id: %+v %v %v", st, ok, err)
			}
		})
	}
}
