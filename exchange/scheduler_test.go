package exchange_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/certless/certless/exchange"
	"github.com/certless/certless/schemas"
)

// TestSchedulerFailingJobStallsNoOther: a schedule whose batches cannot be
// built fails every round, is counted, and leaves the other schedule's
// periods to go out in order; a round stops at its budget and the next
// goes on from there; a failed publication is offered again next round.
func TestSchedulerFailingJobStallsNoOther(t *testing.T) {
	ctx := context.Background()
	st, err := exchange.Open(ctx, filepath.Join(t.TempDir(), "decisions.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	start := time.Date(2026, 9, 1, 0, 0, 0, 0, exchange.Beijing)
	job := func(name string) exchange.Job {
		return exchange.Job{Agreement: schemas.AgreementRef{ID: "a/" + name, Version: 1}, Schedule: "daily", Cron: "0 1 * * *",
			Recipient: "r", From: start, Until: start.AddDate(1, 0, 0), Query: "hukou_cancellation"}
	}
	now := start.AddDate(0, 0, 4).Add(12 * time.Hour) // five periods ended (01:00 on 1 to 5 September)
	var published []string
	failPublish := true
	reg := prometheus.NewRegistry()
	s := &exchange.Scheduler{Store: st,
		Jobs: func(time.Time) []exchange.Job { return []exchange.Job{job("broken"), job("fine")} },
		Build: func(_ context.Context, j exchange.Job, p exchange.Period) (exchange.Batch, error) {
			if j.Agreement.ID == "a/broken" {
				return exchange.Batch{}, errors.New("no record source with a change feed covers 229900")
			}
			return exchange.Batch{ID: fmt.Sprintf("B%d", p.Sequence), Manifest: []byte(fmt.Sprint(p.Sequence))}, nil
		},
		Publish: func(_ context.Context, b exchange.Stored) error {
			if failPublish && b.Sequence == 2 {
				return errors.New("kafka: not enough replicas")
			}
			published = append(published, b.ID)
			return nil
		},
		CatchUp: 30 * 24 * time.Hour, MaxPerRound: 4, Now: func() time.Time { return now }, Metrics: exchange.NewMetrics(reg),
	}
	// The budget of four: the first round builds four periods.
	res, err := s.Round(ctx)
	if err == nil || !strings.Contains(err.Error(), "229900") || res.Built != 4 || res.Offered != 0 || !res.More {
		t.Fatalf("first round: %+v %v", res, err)
	}
	// The second builds the fifth and offers three; the second batch's
	// publication fails.
	res, err = s.Round(ctx)
	if err == nil || res.Built != 1 || res.Offered != 3 || !res.More {
		t.Fatalf("second round: %+v %v", res, err)
	}
	if got := strings.Join(published, ","); got != "B1,B3,B4" {
		t.Fatalf("published %s", got)
	}
	failPublish = false
	if res, _ := s.Round(ctx); res.Offered != 2 || res.More || strings.Join(published, ",") != "B1,B3,B4,B2,B5" {
		t.Fatalf("third round: %+v, published %v", res, published)
	}
	if n := counterValue(t, reg, "certless_exchange_failures_total", "a/broken/daily"); n != 3 {
		t.Fatalf("failures of the broken schedule: %v, want 3 (one per round)", n)
	}
	if mark, ok, _ := st.Watermark(ctx, "a/broken", "daily"); !ok || mark != 0 {
		t.Fatalf("the broken schedule's watermark moved: %d %v", mark, ok)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, schedule string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == name && l.GetName() == "schedule" && l.GetValue() == schedule {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{schedule=%q}", name, schedule)
	return 0
}
