package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/certless/certless/adapters"
)

// RecordSource is what the broker needs from a police record source.
type RecordSource interface {
	Answer(ctx context.Context, q adapters.Query) (adapters.Answer, error)
}

// ErrNoSource means no registered source covers a subject's region.
var ErrNoSource = errors.New("broker: no record source for the region")

// Router sends a query to the source of the most specific jurisdiction that
// holds the subject's records: county, then prefecture, then province.
//
// The rule:
//
//   - The region that decides is the region code of the subject's ID
//     number (its first six digits, GB/T 11643: the county that issued
//     it), through Jurisdictions: 220582 → 220582, 220500, 220000. It is the
//     only region known before any record is read and never changes for a
//     person; a code since retired (Jiutai's 220181) still names its
//     prefecture and province.
//   - At each level every source registered for that code is asked in
//     registration order; the first that holds the subject answers.
//   - A source that does not hold the subject (registered residence moved
//     to another county or prefecture since the number was issued) passes
//     the query up a level; the provincial population database, which holds
//     every resident of the province, answers last. When no source holds
//     the subject, the last not-found answer is the answer (not_found).
//   - No source at any level of the chain: ErrNoSource (the broker answers
//     a signed not_found/no_jurisdiction).
//   - A source that fails is not skipped: the error is returned (the broker
//     retries and then answers unavailable), since asking a higher level in
//     its place could answer from records the nearer bureau has corrected.
type Router struct {
	sources map[string][]namedSource // region code → sources
}

type namedSource struct {
	name string
	src  RecordSource
}

// NewRouter returns an empty router.
func NewRouter() *Router { return &Router{sources: map[string][]namedSource{}} }

// Add registers src for a GB/T 2260 region code (county 220582, prefecture
// 220500 or province 220000).
func (r *Router) Add(region, name string, src RecordSource) {
	r.sources[region] = append(r.sources[region], namedSource{name, src})
}

// Jurisdictions returns the region codes tried for a subject region, most specific
// first.
func Jurisdictions(region string) []string {
	if len(region) != 6 {
		return nil
	}
	out := []string{region}
	if p := region[:4] + "00"; p != region {
		out = append(out, p)
	}
	if p := region[:2] + "0000"; p != out[len(out)-1] {
		out = append(out, p)
	}
	return out
}

// Answer asks the sources along the jurisdiction chain until one finds the
// subject. It returns the last not-found answer when none does, and
// ErrNoSource when no source covers the region at all.
func (r *Router) Answer(ctx context.Context, q adapters.Query) (adapters.Answer, error) {
	if len(q.Subject.IDNumber) < 6 {
		return adapters.Answer{}, fmt.Errorf("%w: subject has no region code", ErrNoSource)
	}
	var last adapters.Answer
	asked := 0
	for _, code := range Jurisdictions(q.Subject.IDNumber[:6]) {
		for _, s := range r.sources[code] {
			asked++
			a, err := s.src.Answer(ctx, q)
			if err != nil {
				return adapters.Answer{}, fmt.Errorf("source %s: %w", s.name, err)
			}
			if a.Found {
				return a, nil
			}
			last = a
		}
	}
	if asked == 0 {
		return adapters.Answer{}, fmt.Errorf("%w %s", ErrNoSource, q.Subject.IDNumber[:6])
	}
	return last, nil
}

// Regions lists the region codes with a registered source.
func (r *Router) Regions() []string {
	out := make([]string, 0, len(r.sources))
	for k := range r.sources {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var _ RecordSource = (*Router)(nil)
