package records

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/regions"
)

// Store is the handful of lookups Answer needs. Implementations return
// (nil/empty, nil) for records that do not exist and an error only when the
// lookup itself failed; they are safe for concurrent use.
type Store interface {
	// Person returns the person with the ID number, or nil.
	Person(ctx context.Context, id string) (*Person, error)
	// Household returns the household and all its members (cancelled ones
	// included), or a nil household.
	Household(ctx context.Context, householdID string) (*Household, []Person, error)
	// Relation returns what relativeID is to personID (Kin*), or "".
	Relation(ctx context.Context, personID, relativeID string) (string, error)
	FormerNames(ctx context.Context, personID string) ([]FormerName, error)
	Residences(ctx context.Context, personID string) ([]Residence, error)
	CriminalRecords(ctx context.Context, personID string) ([]CriminalRecord, error)
}

// Source answers queries from a Store. It is the adapters.Source of every
// record store in Certless.
type Source struct {
	name  string
	store Store
	now   func() time.Time
}

// NewSource returns a Source named name over st. now is the clock used when
// a query has no AsOf; nil means time.Now.
func NewSource(name string, st Store, now func() time.Time) *Source {
	if now == nil {
		now = time.Now
	}
	return &Source{name: name, store: st, now: now}
}

var _ adapters.Source = (*Source)(nil)

// Name implements adapters.Source.
func (s *Source) Name() string { return s.name }

// maxFutureSkew is how far in the future a query's AsOf may lie.
const maxFutureSkew = 5 * time.Minute

// Answer implements adapters.Source.
//
// The subject must be known and, except for identity, bear the given name;
// otherwise the answer is not found. AsOf filters dated records: only events
// on or before AsOf's date in China (UTC+8) count. AsOf is truncated to the
// second; ValidUntil is q.Type.Validity() after the later of AsOf and now. Names match exactly after
// removing white space.
func (s *Source) Answer(ctx context.Context, q adapters.Query) (adapters.Answer, error) {
	if err := q.Validate(); err != nil {
		return adapters.Answer{}, err
	}
	now := s.now().UTC()
	asOf := q.AsOf.UTC()
	if q.AsOf.IsZero() {
		asOf = now
	}
	asOf = asOf.Truncate(time.Second)
	if asOf.After(now.Add(maxFutureSkew)) {
		return adapters.Answer{}, fmt.Errorf("%w: as_of lies in the future", adapters.ErrInvalidQuery)
	}
	if err := ctx.Err(); err != nil {
		return adapters.Answer{}, fmt.Errorf("records: %w", err)
	}
	notFound := adapters.Answer{AsOf: asOf, Source: s.name}

	p, err := s.store.Person(ctx, q.Subject.IDNumber)
	if err != nil {
		return adapters.Answer{}, fmt.Errorf("records: look up subject: %w", err)
	}
	if p == nil {
		return notFound, nil
	}
	match := sameName(p.Name, q.Subject.Name)
	if !match && q.Type != adapters.QueryIdentity {
		return notFound, nil
	}
	// Records are dated in China's calendar: an event counts when it
	// happened on or before asOf's day there.
	cn := asOf.In(china)
	day := time.Date(cn.Year(), cn.Month(), cn.Day(), 0, 0, 0, 0, time.UTC)
	f := map[string]any{adapters.FieldAsOf: asOf.Format(time.RFC3339)}

	switch q.Type {
	case adapters.QueryIdentity:
		f[adapters.FieldIDNameMatch] = match
		if match {
			f[adapters.FieldStatus] = status(p, day)
		}

	case adapters.QueryHousehold:
		if p.CancelledAt(day) {
			f[adapters.FieldRegistered] = false
			break
		}
		h, members, err := s.store.Household(ctx, p.HouseholdID)
		if err != nil {
			return adapters.Answer{}, fmt.Errorf("records: look up household: %w", err)
		}
		if h == nil {
			return adapters.Answer{}, fmt.Errorf("records: subject's household %w", errInconsistent)
		}
		householdFields(f, h, members, day)

	case adapters.QueryKinship:
		r, err := s.store.Person(ctx, q.Related.IDNumber)
		if err != nil {
			return adapters.Answer{}, fmt.Errorf("records: look up related subject: %w", err)
		}
		if r == nil || !sameName(r.Name, q.Related.Name) {
			return notFound, nil
		}
		rel, err := s.store.Relation(ctx, p.IDNumber, r.IDNumber)
		if err != nil {
			return adapters.Answer{}, fmt.Errorf("records: look up kinship: %w", err)
		}
		f[adapters.FieldRelated] = rel != ""
		f[adapters.FieldRelation] = cmp.Or(rel, KinNone)

	case adapters.QueryFormerNames:
		ns, err := s.store.FormerNames(ctx, p.IDNumber)
		if err != nil {
			return adapters.Answer{}, fmt.Errorf("records: look up former names: %w", err)
		}
		slices.SortFunc(ns, func(a, b FormerName) int { return cmp.Or(a.Until.Compare(b.Until), cmp.Compare(a.Seq, b.Seq)) })
		list := []any{}
		for _, n := range ns {
			if !n.Until.After(day) {
				list = append(list, map[string]any{"name": n.Name, "until": n.Until.Format(DateLayout)})
			}
		}
		f[adapters.FieldHasFormerNames] = len(list) > 0
		f[adapters.FieldFormerNames] = list

	case adapters.QueryResidence:
		rs, err := s.store.Residences(ctx, p.IDNumber)
		if err != nil {
			return adapters.Answer{}, fmt.Errorf("records: look up residences: %w", err)
		}
		slices.SortFunc(rs, func(a, b Residence) int { return cmp.Or(a.From.Compare(b.From), cmp.Compare(a.Seq, b.Seq)) })
		list := []any{}
		for _, r := range rs {
			if r.From.After(day) {
				continue
			}
			e := map[string]any{"region_code": r.RegionCode, "from": r.From.Format(DateLayout)}
			if name := regions.FullName(r.RegionCode); name != "" {
				e["region_name"] = name
			}
			if !r.To.IsZero() && !r.To.After(day) {
				e["to"] = r.To.Format(DateLayout)
			}
			list = append(list, e)
		}
		f[adapters.FieldResidences] = list

	case adapters.QueryHukouCancellation:
		c := p.CancelledAt(day)
		f[adapters.FieldCancelled] = c
		if c {
			f[adapters.FieldReason] = p.CancelReason
			f[adapters.FieldDate] = p.CancelDate.Format(DateLayout)
		}

	case adapters.QueryCriminalRecord:
		cs, err := s.store.CriminalRecords(ctx, p.IDNumber)
		if err != nil {
			return adapters.Answer{}, fmt.Errorf("records: look up criminal records: %w", err)
		}
		slices.SortFunc(cs, func(a, b CriminalRecord) int {
			return cmp.Or(a.JudgmentDate.Compare(b.JudgmentDate), cmp.Compare(a.Seq, b.Seq))
		})
		list := []any{}
		for _, c := range cs {
			if !c.JudgmentDate.After(day) {
				list = append(list, map[string]any{
					"offence": c.Offence, "court": c.Court,
					"judgment_date": c.JudgmentDate.Format(DateLayout), "sentence": c.Sentence,
				})
			}
		}
		f[adapters.FieldHasCriminalRecord] = len(list) > 0
		if len(list) > 0 {
			f[adapters.FieldRecords] = list
		}
	}
	// The validity window runs from when the answer is given (as a paper
	// certificate's runs from its issue), also for a historical as_of.
	from := now.Truncate(time.Second)
	if asOf.After(from) {
		from = asOf
	}
	return adapters.Answer{
		Found: true, Fields: f, AsOf: asOf,
		ValidUntil: from.Add(q.Type.Validity()), Source: s.name,
	}, nil
}

// china is the zone record dates are in (UTC+8, no daylight saving).
var china = time.FixedZone("CST", 8*3600)

var errInconsistent = errors.New("is missing: records are inconsistent")

func status(p *Person, day time.Time) string {
	if p.CancelledAt(day) {
		return "cancelled"
	}
	return "active"
}

// sameName compares names as registered: exact, ignoring surrounding and
// inner white space (a requester may type "王 伟").
func sameName(registered, given string) bool {
	return registered == strings.Join(strings.Fields(given), "")
}

var relationRank = map[string]int{RelHead: 0, RelSpouse: 1, RelParent: 2, RelChild: 3, RelGrandchild: 4}

func householdFields(f map[string]any, h *Household, members []Person, day time.Time) {
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Person) int {
		return cmp.Or(cmp.Compare(relationRank[a.Relation], relationRank[b.Relation]),
			a.BirthDate.Compare(b.BirthDate), strings.Compare(a.IDNumber, b.IDNumber))
	})
	list := []any{}
	head := ""
	for _, m := range ms {
		if m.IDNumber == h.HeadID {
			head = m.Name
		}
		if m.CancelledAt(day) {
			continue
		}
		list = append(list, map[string]any{"name": m.Name, "relation": m.Relation})
	}
	f[adapters.FieldRegistered] = true
	f[adapters.FieldHouseholdID] = h.ID
	f[adapters.FieldHead] = head
	f[adapters.FieldMembers] = list
	f[adapters.FieldRegionCode] = h.RegionCode
	// A code outside the embedded table (another province, a division
	// renamed since) keeps its code and has no name, rather than an empty
	// one the receipt schema refuses.
	if name := regions.FullName(h.RegionCode); name != "" {
		f[adapters.FieldRegionName] = name
	}
}
