package exchange

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Beijing is the zone schedules run in: "0 1 * * *" is 01:00 Beijing time.
var Beijing = time.FixedZone("CST", 8*3600)

// Period is one run of a schedule: batch Sequence covers [From, To), and
// is due at To.
type Period struct {
	Sequence int
	From, To time.Time
}

// maxPeriods bounds a catch-up (a minutely schedule over two years).
const maxPeriods = 2 << 20

// Periods returns the schedule's periods completed by now: the first runs
// from start (the agreement's validity) to the schedule's first time after
// it, each next from one time to the next, numbered from 1. A period ends
// no later than end (the agreement's validity end).
func Periods(spec string, start, end, now time.Time) ([]Period, error) {
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("exchange: schedule %q: %w", spec, err)
	}
	var out []Period
	from := start
	for seq := 1; ; seq++ {
		to := sched.Next(from.In(Beijing))
		if to.IsZero() || to.After(now) || to.After(end) {
			return out, nil
		}
		out = append(out, Period{Sequence: seq, From: from.UTC(), To: to.UTC()})
		if len(out) > maxPeriods {
			return nil, fmt.Errorf("exchange: schedule %q has more than %d periods since %s", spec, maxPeriods, start)
		}
		from = to
	}
}

// Next is the schedule's next time after now, when the next batch is due.
func Next(spec string, now time.Time) (time.Time, error) {
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return time.Time{}, fmt.Errorf("exchange: schedule %q: %w", spec, err)
	}
	return sched.Next(now.In(Beijing)).UTC(), nil
}
