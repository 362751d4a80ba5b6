package storetest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certless/certless/broker/store"
)

// Budget names one agency's budget under one agreement version.
type Budget struct {
	Agency, AgreementID string
	Version             int
}

// Take takes one use of b from s, failing t on an error.
func (b Budget) Take(t testing.TB, s store.Quotas, l store.Limits, now time.Time) bool {
	t.Helper()
	ok, err := s.Take(context.Background(), b.Agency, b.AgreementID, b.Version, l, now)
	if err != nil {
		t.Fatalf("take %+v at %v: %v", b, now, err)
	}
	return ok
}

// Usage returns the counts of b at now as [minute, day, month].
func (b Budget) Usage(t testing.TB, s store.Quotas, now time.Time) [3]int {
	t.Helper()
	m, d, mo, err := s.Usage(context.Background(), b.Agency, b.AgreementID, b.Version, now)
	if err != nil {
		t.Fatalf("usage %+v at %v: %v", b, now, err)
	}
	return [3]int{m, d, mo}
}

// TakeAll runs n concurrent Takes of b at now from the stores, round robin,
// and returns how many succeeded.
func (b Budget) TakeAll(t testing.TB, n int, l store.Limits, now time.Time, stores ...store.Quotas) int {
	t.Helper()
	var (
		ok   atomic.Int64
		wg   sync.WaitGroup
		errs = make([]error, n)
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			took, err := stores[i%len(stores)].Take(context.Background(), b.Agency, b.AgreementID, b.Version, l, now)
			if took {
				ok.Add(1)
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent takes: %v", err)
	}
	return int(ok.Load())
}

var court = Budget{"court-220102", "court-criminal-record", 3}

// at parses an RFC 3339 time.
func at(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func wantUsage(t *testing.T, s store.Quotas, b Budget, now time.Time, want [3]int) {
	t.Helper()
	if got := b.Usage(t, s, now); got != want {
		t.Errorf("usage of %s/%s v%d at %v: [minute day month] %v, want %v", b.Agency, b.AgreementID, b.Version, now, got, want)
	}
}

// takeN takes n times and fails t unless exactly the first room succeed.
func takeN(t *testing.T, s store.Quotas, b Budget, l store.Limits, now time.Time, n, room int) {
	t.Helper()
	for i := range n {
		if got, want := b.Take(t, s, l, now), i < room; got != want {
			t.Fatalf("take %d of %d at %v under %+v: %v, want %v", i+1, n, now, l, got, want)
		}
	}
}

// testQuotaEachWindow: each window's limit holds on its own, and its next
// window starts empty.
func testQuotaEachWindow(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	now := at(t, "2026-11-27T04:30:15.5Z") // 12:30:15.5 in Beijing

	minute := store.Limits{PerMinute: 3}
	takeN(t, s, court, minute, now, 5, 3)
	wantUsage(t, s, court, now, [3]int{3, 0, 0})
	next := at(t, "2026-11-27T04:31:00Z")
	takeN(t, s, court, minute, at(t, "2026-11-27T04:30:59.999999Z"), 1, 0)
	takeN(t, s, court, minute, next, 4, 3)
	wantUsage(t, s, court, next, [3]int{3, 0, 0})

	other := Budget{"edu-220582", "edu-household", 1}
	day := store.Limits{PerDay: 2}
	takeN(t, s, other, day, now, 3, 2)
	takeN(t, s, other, day, now.Add(time.Hour), 1, 0)
	wantUsage(t, s, other, now, [3]int{0, 2, 0})

	third := Budget{"notary-222403", "notary-kinship", 1}
	month := store.Limits{PerMonth: 4}
	takeN(t, s, third, month, now, 2, 2)
	takeN(t, s, third, month, now.AddDate(0, 0, 2), 3, 2)
	wantUsage(t, s, third, now, [3]int{0, 0, 4})
}

// testQuotaAllOrNothing: a full window refuses the Take and counts nothing
// in the windows that had room, whichever window is the full one.
func testQuotaAllOrNothing(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	now := at(t, "2026-11-27T04:30:15Z")

	// The day fills first: the minute has room, and is not counted.
	l := store.Limits{PerMinute: 5, PerDay: 2, PerMonth: 10}
	takeN(t, s, court, l, now, 4, 2)
	wantUsage(t, s, court, now, [3]int{2, 2, 2})
	later := now.Add(3 * time.Minute)
	takeN(t, s, court, l, later, 2, 0)
	wantUsage(t, s, court, later, [3]int{0, 2, 2})

	// The minute (counted last) fills first: the month and day counted
	// before it are rolled back.
	b := Budget{"court-220102", "court-identity", 1}
	l = store.Limits{PerMinute: 1, PerDay: 10, PerMonth: 10}
	takeN(t, s, b, l, now, 3, 1)
	wantUsage(t, s, b, now, [3]int{1, 1, 1})

	// The month (counted first) is full: nothing else is counted.
	b = Budget{"court-220102", "court-identity", 2}
	takeN(t, s, b, store.Limits{PerMonth: 1}, now.AddDate(0, 0, -5), 1, 1)
	takeN(t, s, b, store.Limits{PerMinute: 9, PerDay: 9, PerMonth: 1}, now, 2, 0)
	wantUsage(t, s, b, now, [3]int{0, 0, 1})
}

// testQuotaBeijingWindows: windows are the calendar minute, day and month
// in Beijing time (UTC+8), not in UTC.
func testQuotaBeijingWindows(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	day := store.Limits{PerDay: 1}
	month := store.Limits{PerMonth: 1}

	// Beijing midnight at the end of a year: new minute, day, month.
	before, after := at(t, "2026-12-31T15:59:59Z"), at(t, "2026-12-31T16:00:00Z")
	takeN(t, s, court, day, before, 2, 1)
	takeN(t, s, court, day, after, 2, 1)
	b := Budget{"court-220102", "court-criminal-record", 4}
	takeN(t, s, b, month, before, 2, 1)
	takeN(t, s, b, month, after, 2, 1)
	wantUsage(t, s, b, before, [3]int{0, 0, 1})
	wantUsage(t, s, b, after, [3]int{0, 0, 1})

	// UTC midnight is no boundary: 07:59:59 and 08:00 on one Beijing day.
	b = Budget{"court-220102", "court-criminal-record", 5}
	takeN(t, s, b, day, at(t, "2026-12-15T23:59:59Z"), 1, 1)
	takeN(t, s, b, day, at(t, "2026-12-16T00:00:00Z"), 1, 0)
	// The first UTC day of a month is still the last Beijing day before it.
	b = Budget{"court-220102", "court-criminal-record", 6}
	takeN(t, s, b, month, at(t, "2026-11-30T15:59:59.999999Z"), 1, 1) // 23:59:59.999999 on 30 Nov
	takeN(t, s, b, month, at(t, "2026-11-01T00:00:00Z"), 1, 0)        // 08:00 on 1 Nov
	takeN(t, s, b, month, at(t, "2026-10-31T16:00:00Z"), 1, 0)        // 00:00 on 1 Nov
	takeN(t, s, b, month, at(t, "2026-10-31T15:59:59Z"), 1, 1)        // 23:59:59 on 31 Oct
	takeN(t, s, b, month, at(t, "2026-11-30T16:00:00Z"), 1, 1)        // 00:00 on 1 Dec
	// Any zone: the same instant is the same window.
	b = Budget{"court-220102", "court-criminal-record", 7}
	takeN(t, s, b, day, time.Date(2027, 1, 1, 0, 0, 0, 0, store.Beijing), 1, 1)
	takeN(t, s, b, day, time.Date(2026, 12, 31, 11, 0, 0, 0, time.FixedZone("EST", -5*3600)), 1, 0) // 00:00 Beijing
	takeN(t, s, b, day, time.Date(2026, 12, 31, 10, 59, 0, 0, time.FixedZone("EST", -5*3600)), 1, 1)
}

// testQuotaUnlimited: a window without a limit is not counted, and with no
// limit at all every Take succeeds and counts nothing.
func testQuotaUnlimited(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	now := at(t, "2026-11-27T04:30:15Z")
	wantUsage(t, s, court, now, [3]int{0, 0, 0})
	takeN(t, s, court, store.Limits{}, now, 5, 5)
	wantUsage(t, s, court, now, [3]int{0, 0, 0})
	takeN(t, s, court, store.Limits{PerDay: 2}, now, 3, 2)
	wantUsage(t, s, court, now, [3]int{0, 2, 0})
	// An unlimited window is not counted even while others fill.
	takeN(t, s, court, store.Limits{PerMinute: 5}, now, 1, 1)
	takeN(t, s, court, store.Limits{PerMonth: 5}, now, 1, 1)
	wantUsage(t, s, court, now, [3]int{1, 2, 1})
}

// testQuotaIndependentBudgets: agencies, agreements and versions each have
// a budget of their own.
func testQuotaIndependentBudgets(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	now := at(t, "2026-11-27T04:30:15Z")
	l := store.Limits{PerMinute: 1, PerDay: 1, PerMonth: 1}
	budgets := []Budget{
		court,
		{"court-220103", court.AgreementID, court.Version},
		{court.Agency, "court-identity", court.Version},
		{court.Agency, court.AgreementID, court.Version + 1},
		{court.Agency, court.AgreementID, 0},
		{"court-220102-", court.AgreementID, court.Version}, // no key prefix collision
	}
	for _, b := range budgets {
		takeN(t, s, b, l, now, 2, 1)
	}
	for _, b := range budgets {
		wantUsage(t, s, b, now, [3]int{1, 1, 1})
	}
}

// testQuotaConcurrent: of concurrent Takes straddling a limit, exactly the
// limit succeed, whichever window is the fullest.
func testQuotaConcurrent(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	now := at(t, "2026-11-27T04:30:15Z")
	for _, tc := range []struct {
		b     Budget
		l     store.Limits
		n     int
		usage [3]int
	}{
		{Budget{"court-220102", "minute", 1}, store.Limits{PerMinute: 17}, 40, [3]int{17, 0, 0}},
		{Budget{"court-220102", "day", 1}, store.Limits{PerMinute: 100, PerDay: 23, PerMonth: 1000}, 50, [3]int{23, 23, 23}},
		{Budget{"court-220102", "month", 1}, store.Limits{PerMinute: 100, PerDay: 100, PerMonth: 11}, 30, [3]int{11, 11, 11}},
		{Budget{"court-220102", "room", 1}, store.Limits{PerMinute: 100, PerDay: 100, PerMonth: 100}, 30, [3]int{30, 30, 30}},
	} {
		want := min(tc.n, tc.l.PerMinute)
		for _, lim := range []int{tc.l.PerDay, tc.l.PerMonth} {
			if lim > 0 {
				want = min(want, lim)
			}
		}
		if got := tc.b.TakeAll(t, tc.n, tc.l, now, s); got != want {
			t.Errorf("%s: %d of %d concurrent takes under %+v succeeded, want %d", tc.b.AgreementID, got, tc.n, tc.l, want)
		}
		wantUsage(t, s, tc.b, now, tc.usage)
	}
}

// testQuotaSaveAlongside: Takes and Saves share the database without
// changing each other's results.
func testQuotaSaveAlongside(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	now := at(t, "2026-11-27T04:30:15Z")
	ds := decisions(30, "quota")
	var (
		wg   sync.WaitGroup
		errs []error
	)
	wg.Go(func() { _, errs = saveAll(context.Background(), s, ds) })
	took := court.TakeAll(t, 30, store.Limits{PerDay: 20}, now, s)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("saves beside takes: %v", err)
	}
	if took != 20 {
		t.Errorf("%d takes succeeded beside saves, want 20", took)
	}
	mustCount(t, s, len(ds))
}

func testQuotaBadInput(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	ctx := context.Background()
	now := at(t, "2026-11-27T04:30:15Z")
	l := store.Limits{PerDay: 1}
	for name, tc := range map[string]struct {
		b Budget
		l store.Limits
	}{
		"empty agency":         {Budget{"", "a", 1}, l},
		"empty agreement":      {Budget{"court-220102", "", 1}, l},
		"negative version":     {Budget{"court-220102", "a", -1}, l},
		"NUL in agreement":     {Budget{"court-220102", "a\x00b", 1}, l},
		"invalid UTF-8 agency": {Budget{"\xff", "a", 1}, l},
		"negative limit":       {court, store.Limits{PerMinute: 1, PerMonth: -1}},
	} {
		if _, err := s.Take(ctx, tc.b.Agency, tc.b.AgreementID, tc.b.Version, tc.l, now); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("take, %s: err %v, want ErrInvalid", name, err)
		}
		if name == "negative limit" {
			continue
		}
		if _, _, _, err := s.Usage(ctx, tc.b.Agency, tc.b.AgreementID, tc.b.Version, now); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("usage, %s: err %v, want ErrInvalid", name, err)
		}
	}
	wantUsage(t, s, court, now, [3]int{0, 0, 0})
}

func testQuotaReopen(t *testing.T, h Harness) {
	o := h.Fresh(t)
	s := open(t, o, store.Options{})
	now := at(t, "2026-11-27T04:30:15Z")
	l := store.Limits{PerMinute: 3, PerDay: 5}
	takeN(t, s, court, l, now, 2, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, o, store.Options{})
	wantUsage(t, s, court, now, [3]int{2, 2, 0})
	takeN(t, s, court, l, now, 2, 1)
}

func testQuotaClosed(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := at(t, "2026-11-27T04:30:15Z")
	if _, err := s.Take(ctx, court.Agency, court.AgreementID, court.Version, store.Limits{PerDay: 1}, now); !errors.Is(err, store.ErrClosed) {
		t.Errorf("take after close: err %v, want ErrClosed", err)
	}
	if _, _, _, err := s.Usage(ctx, court.Agency, court.AgreementID, court.Version, now); !errors.Is(err, store.ErrClosed) {
		t.Errorf("usage after close: err %v, want ErrClosed", err)
	}
}

func testQuotaCancelled(t *testing.T, h Harness) {
	s := open(t, h.Fresh(t), store.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	now := at(t, "2026-11-27T04:30:15Z")
	if _, err := s.Take(ctx, court.Agency, court.AgreementID, court.Version, store.Limits{PerDay: 1}, now); !errors.Is(err, context.Canceled) {
		t.Errorf("take with a cancelled ctx: err %v, want context.Canceled", err)
	}
	wantUsage(t, s, court, now, [3]int{0, 0, 0})
	takeN(t, s, court, store.Limits{PerDay: 1}, now, 2, 1)
}
