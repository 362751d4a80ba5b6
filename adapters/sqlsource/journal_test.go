package sqlsource_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/adapters/regions"
	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/internal/testenv"
)

// TestJournalSeedAndExtend on both dialects: a seed with the change journal
// through day 5 after the snapshot carries its cancellations in the change
// feed; extending it through day 8 adds exactly days 6 to 8 (one per
// prefecture and day), a second extension nothing, and the feed then has
// day 7's cancellations.
func TestJournalSeedAndExtend(t *testing.T) {
	for name, dsn := range map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return filepath.Join(t.TempDir(), "records.db") },
		"postgres": func(t *testing.T) string { return testenv.PostgresDB(t) },
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dsn := dsn(t)
			day := func(n int) time.Time { return records.Snapshot.AddDate(0, 0, n) }
			if err := sqlsource.SeedThrough(ctx, dsn, 400, 3, nil, day(5), nil); err != nil {
				t.Fatal(err)
			}
			n, err := sqlsource.ExtendJournal(ctx, dsn, 400, 3, nil, day(8))
			if want := 3 * len(regions.Prefectures()); err != nil || n != want {
				t.Fatalf("extended by %d persons (%v), want %d", n, err, want)
			}
			if n, err := sqlsource.ExtendJournal(ctx, dsn, 400, 3, nil, day(8)); err != nil || n != 0 {
				t.Fatalf("a current journal extended by %d (%v)", n, err)
			}
			src, err := sqlsource.Open(ctx, dsn, sqlsource.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			for _, d := range []int{3, 7} {
				// Day d's events: (end of day d-1, end of day d].
				q := adapters.ChangeQuery{Type: adapters.QueryHukouCancellation, Region: "220000",
					After: day(d).Add(-time.Second).Add(-8 * time.Hour), Until: day(d + 1).Add(-time.Second).Add(-8 * time.Hour)}
				page, err := src.Changes(ctx, q)
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Changes) != len(regions.Prefectures()) {
					t.Fatalf("day %d: %d cancellations in the feed, want one per prefecture", d, len(page.Changes))
				}
			}
		})
	}
}
