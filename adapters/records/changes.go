package records

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/certless/certless/adapters"
)

// Event is one dated change of a person's records.
type Event struct {
	IDNumber string
	Day      time.Time // a UTC midnight
}

// ChangeStore is a Store that can list dated events: the records of type
// typ of persons registered under the code prefix prefix whose day is after
// after and not after until (both 'YYYY-MM-DD'), ordered by day then ID
// number, starting after (cursorDay, cursorID) when cursorDay is set, at
// most limit.
type ChangeStore interface {
	Events(ctx context.Context, typ adapters.QueryType, prefix, after, until, cursorDay, cursorID string, limit int) ([]Event, error)
}

// ErrNoChangeFeed is returned by Changes over a store that lists no events.
var ErrNoChangeFeed = errors.New("records: this source keeps no change feed")

// Changes implements adapters.ChangeFeed: each event of the period with the
// subject's full answer as of the period's end.
func (s *Source) Changes(ctx context.Context, q adapters.ChangeQuery) (adapters.ChangePage, error) {
	if err := q.Validate(); err != nil {
		return adapters.ChangePage{}, err
	}
	cs, ok := s.store.(ChangeStore)
	if !ok {
		return adapters.ChangePage{}, ErrNoChangeFeed
	}
	limit := q.Limit
	if limit == 0 {
		limit = adapters.MaxChangePage
	}
	var cDay, cID string
	if q.Cursor != "" {
		cDay, cID, _ = strings.Cut(q.Cursor, "/")
	}
	// Record dates are China's calendar days: an event of day D counts
	// from D's start in Beijing, as answers count it.
	evs, err := cs.Events(ctx, q.Type, adapters.RegionPrefix(q.Region), q.After.In(china).Format(DateLayout), q.Until.In(china).Format(DateLayout), cDay, cID, limit+1)
	if err != nil {
		return adapters.ChangePage{}, fmt.Errorf("records: changes: %w", err)
	}
	page := adapters.ChangePage{Changes: []adapters.Change{}}
	if len(evs) > limit {
		evs, page.More = evs[:limit], true
	}
	for _, e := range evs {
		p, err := s.store.Person(ctx, e.IDNumber)
		if err != nil {
			return adapters.ChangePage{}, fmt.Errorf("records: changes: %w", err)
		}
		if p == nil {
			continue
		}
		subj := adapters.Subject{IDNumber: p.IDNumber, Name: p.Name}
		a, err := s.Answer(ctx, adapters.Query{Type: q.Type, Subject: subj, AsOf: q.Until})
		if err != nil {
			return adapters.ChangePage{}, err
		}
		page.Changes = append(page.Changes, adapters.Change{Subject: subj, At: e.Day, Answer: a})
	}
	if page.More {
		last := evs[len(evs)-1]
		page.Next = last.Day.Format(DateLayout) + "/" + last.IDNumber
	}
	return page, nil
}

// Events implements ChangeStore.
func (m *Memory) Events(_ context.Context, typ adapters.QueryType, prefix, after, until, cursorDay, cursorID string, limit int) ([]Event, error) {
	type key struct{ day, id string }
	seen := map[key]bool{}
	add := func(id string, day time.Time) {
		if day.IsZero() {
			return
		}
		d := day.Format(DateLayout)
		p := m.persons[id]
		if p == nil || d <= after || d > until {
			return
		}
		h := m.households[p.HouseholdID]
		if h == nil || !strings.HasPrefix(h.RegionCode, prefix) {
			return
		}
		if cursorDay != "" && (d < cursorDay || d == cursorDay && id <= cursorID) {
			return
		}
		seen[key{d, id}] = true
	}
	switch typ {
	case adapters.QueryHukouCancellation:
		for id, p := range m.persons {
			if p.CancelReason != "" {
				add(id, p.CancelDate)
			}
		}
	case adapters.QueryCriminalRecord:
		for id, cs := range m.crimes {
			for _, c := range cs {
				add(id, c.JudgmentDate)
			}
		}
	case adapters.QueryResidence:
		for id, rs := range m.residences {
			for _, r := range rs {
				add(id, r.From)
			}
		}
	case adapters.QueryFormerNames:
		for id, fs := range m.former {
			for _, f := range fs {
				add(id, f.Until)
			}
		}
	default:
		return nil, fmt.Errorf("%w: %s has no change feed", adapters.ErrInvalidQuery, typ)
	}
	keys := make([]key, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].day != keys[j].day {
			return keys[i].day < keys[j].day
		}
		return keys[i].id < keys[j].id
	})
	if len(keys) > limit {
		keys = keys[:limit]
	}
	out := make([]Event, len(keys))
	for i, k := range keys {
		d, _ := time.Parse(DateLayout, k.day)
		out[i] = Event{IDNumber: k.id, Day: d}
	}
	return out, nil
}

var _ ChangeStore = (*Memory)(nil)
