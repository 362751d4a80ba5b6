package exchange

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/schemas"
)

// Job is one schedule of an agreement in force.
type Job struct {
	Agreement schemas.AgreementRef
	// Schedule is the schedule's name, Cron its standard cron expression
	// (Beijing time), Recipient the agency the batches go to.
	Schedule, Cron, Recipient string
	// From and Until are the agreement's validity: periods are numbered
	// from From and end no later than Until.
	From, Until time.Time
	// Query is the record type sent; Fields the agreement's fields for it;
	// Purpose the agreement's purpose for it.
	Query   string
	Fields  []string
	Purpose string
}

// Key names the job in logs and metrics: "<agreement>/<schedule>".
func (j Job) Key() string { return j.Agreement.ID + "/" + j.Schedule }

// Defaults of a Scheduler's zero fields.
const (
	DefaultCatchUp     = 7 * 24 * time.Hour
	DefaultAckDeadline = 24 * time.Hour
	DefaultMaxPerRound = 50
	// DefaultPoll is how often Run looks for due work besides the
	// schedules' own times (agreements change, batches become overdue).
	DefaultPoll = time.Minute
)

// Scheduler runs the schedules of the agreements in force: each round
// builds the batch of every period that ended since the schedule's
// watermark (Store.Watermark), in order, publishes every batch
// not yet published, and offers again, the same bytes, every batch left
// unacknowledged past AckDeadline. The store coordinates brokers sharing
// it: the first batch stored for a period is that period's batch, and a
// batch is offered by one broker at a time (Store.Offer). A batch is
// stored before it is published, so a broker killed mid-batch publishes
// the stored bytes again after its restart.
type Scheduler struct {
	Store *Store
	// Jobs lists the schedules of the agreements in force at a time.
	Jobs func(now time.Time) []Job
	// Build builds the batch of a period (Build of this package, given the
	// job's feed, fields and keys).
	Build func(ctx context.Context, job Job, p Period) (Batch, error)
	// Publish produces a stored batch to its recipient's batches topic:
	// its records in index order, then its manifest.
	Publish func(ctx context.Context, b Stored) error
	// Logged, when set, is called before each publication (the broker
	// appends the manifest to the transparency log; it must be idempotent:
	// a batch offered again is logged once).
	Logged func(ctx context.Context, b Stored) error
	// CatchUp bounds a schedule's first run: periods that ended longer
	// ago are not built (default DefaultCatchUp). Once a schedule has a
	// batch, every later period is built.
	CatchUp time.Duration
	// AckDeadline is how long a published batch waits for its
	// acknowledgement before it is offered again (DefaultAckDeadline).
	AckDeadline time.Duration
	// MaxPerRound bounds the batches one round builds or offers
	// (DefaultMaxPerRound); Round reports whether work is left.
	MaxPerRound int
	// Now is the clock (default time.Now); tests move it.
	Now     func() time.Time
	Log     *zap.Logger
	Metrics *Metrics
}

// RoundResult is what one round did.
type RoundResult struct {
	Built, Offered, Reoffered int
	// More is set when the round stopped at MaxPerRound with work left.
	More bool
}

func (s *Scheduler) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Scheduler) log() *zap.Logger {
	if s.Log == nil {
		return zap.NewNop()
	}
	return s.Log
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// errBudget stops a round at MaxPerRound.
var errBudget = errors.New("exchange: round budget spent")

// Round does the work due at the clock's time. A job whose source or
// build fails is logged and counted and left for the next round; the
// others go on. The error is the first such failure.
func (s *Scheduler) Round(ctx context.Context) (RoundResult, error) {
	now := s.now()
	budget := s.MaxPerRound
	if budget <= 0 {
		budget = DefaultMaxPerRound
	}
	var res RoundResult
	// taken counts periods built here that another broker had stored
	// first: work, though not this broker's batches.
	taken := 0
	spend := func() error {
		if res.Built+res.Offered+res.Reoffered+taken >= budget {
			res.More = true
			return errBudget
		}
		return nil
	}
	var first error
	fail := func(job string, err error) {
		if errors.Is(err, errBudget) || ctx.Err() != nil {
			return
		}
		s.log().Warn("periodic exchange failed; the next round retries", zap.String("schedule", job), zap.Error(err))
		s.Metrics.failed(job)
		if first == nil {
			first = err
		}
	}
	jobs := s.Jobs(now)
	s.Metrics.known(jobs)
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].Key() < jobs[j].Key() })
	// Build every ended period after each watermark, in order.
	for _, job := range jobs {
		if err := s.buildDue(ctx, job, now, spend, &res, &taken); err != nil {
			fail(job.Key(), err)
		}
	}
	// Offer what was never published, then what waits past its deadline.
	deadline := orDefault(s.AckDeadline, DefaultAckDeadline)
	due, err := s.Store.Due(ctx, now, deadline)
	if err != nil {
		return res, err
	}
	for _, d := range due {
		id := d.ID
		if err := spend(); err != nil {
			break
		}
		var again bool
		ok, err := s.Store.Offer(ctx, id, now, func(b Stored) bool {
			again = !b.SentAt.IsZero()
			return b.SentAt.IsZero() || b.AckedAt.IsZero() && b.OfferedAt.Before(now.Add(-deadline))
		}, s.publish)
		if err != nil {
			fail(d.Job, fmt.Errorf("offer batch %s: %w", id, err))
			continue
		}
		if !ok {
			continue
		}
		if again {
			res.Reoffered++
			s.Metrics.reoffered()
			s.log().Warn("batch unacknowledged past its deadline: offered again", zap.String("batch", id), zap.Duration("deadline", deadline))
		} else {
			res.Offered++
			s.log().Info("batch published", zap.String("batch", id))
		}
	}
	if err := s.observe(ctx, now, deadline); err != nil && first == nil {
		first = err
	}
	return res, first
}

func (s *Scheduler) publish(ctx context.Context, b Stored) error {
	if s.Logged != nil {
		if err := s.Logged(ctx, b); err != nil {
			return fmt.Errorf("log batch %s: %w", b.ID, err)
		}
	}
	return s.Publish(ctx, b)
}

// buildDue builds and stores the job's ended periods after its watermark.
func (s *Scheduler) buildDue(ctx context.Context, job Job, now time.Time, spend func() error, res *RoundResult, taken *int) error {
	ps, err := Periods(job.Cron, job.From, job.Until, now)
	if err != nil {
		return err
	}
	mark, ok, err := s.Store.Watermark(ctx, job.Agreement.ID, job.Schedule)
	if err != nil {
		return err
	}
	if !ok {
		// First run: from the first period that ended within CatchUp;
		// from then on, every period after the watermark.
		cut := now.Add(-orDefault(s.CatchUp, DefaultCatchUp))
		mark = sort.Search(len(ps), func(i int) bool { return !ps[i].To.Before(cut) })
		if err := s.Store.Advance(ctx, job.Agreement.ID, job.Schedule, mark); err != nil {
			return err
		}
		s.log().Info("schedule first run", zap.String("schedule", job.Key()), zap.Int("from_sequence", mark+1), zap.Duration("catch_up", orDefault(s.CatchUp, DefaultCatchUp)))
	}
	next := mark + 1
	for seq := next; seq <= len(ps); seq++ {
		if err := spend(); err != nil {
			return err
		}
		p := ps[seq-1]
		b, err := s.Build(ctx, job, p)
		if err != nil {
			return fmt.Errorf("build %s batch %d: %w", job.Key(), seq, err)
		}
		st, mine, err := s.Store.Put(ctx, job.Agreement.ID, job.Schedule, job.Recipient, p, b, now)
		if err != nil {
			return err
		}
		if err := s.Store.Advance(ctx, job.Agreement.ID, job.Schedule, seq); err != nil {
			return err
		}
		if !mine {
			*taken++ // another broker (or the operator) stored it first
			continue
		}
		res.Built++
		s.Metrics.built(job.Key(), st.Count)
		s.log().Info("batch built", zap.String("schedule", job.Key()), zap.Int("sequence", seq), zap.Int("records", st.Count), zap.String("batch", st.ID))
	}
	return nil
}

// observe sets the gauges from the store.
func (s *Scheduler) observe(ctx context.Context, now time.Time, deadline time.Duration) error {
	if s.Metrics == nil {
		return nil
	}
	sums, err := s.Store.Summaries(ctx, now, deadline)
	if err != nil {
		return err
	}
	s.Metrics.set(sums)
	return nil
}

// Run does a round at once and then whenever a schedule is due, at least
// every poll, until ctx ends; a round that left work runs again at once.
func (s *Scheduler) Run(ctx context.Context, poll time.Duration) {
	poll = orDefault(poll, DefaultPoll)
	for {
		res, _ := s.Round(ctx)
		wait := poll
		if res.More {
			wait = 0
		}
		now := s.now()
		for _, j := range s.Jobs(now) {
			if next, err := Next(j.Cron, now); err == nil && next.Sub(now) < wait {
				wait = max(next.Sub(now), 0) + time.Second // a second late: the period has surely ended
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
