package records

import (
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/regions"
)

// Journal returns the records of the change journal after Snapshot: for
// every day from the day after Snapshot through through (a UTC midnight or
// any time of that day), one elderly resident of each prefecture, living
// alone, whose registration is cancelled that day (a death). The synthetic
// records end at Snapshot; the journal carries them up to the day the data
// is seeded, so that a daily exchange of hukou cancellations has records
// for every recent day. It is deterministic: the same generator state and
// day always give the same persons, and a longer journal begins with the
// shorter one.
//
// Call it after Next has returned every person: journal persons take ID
// numbers the generator has not given, so they never collide with the
// main records. It draws nothing from the main records' stream before
// they are complete, so they are the same with or without a journal.
func (g *Generator) Journal(through time.Time) []Batch {
	last := time.Date(through.Year(), through.Month(), through.Day(), 0, 0, 0, 0, time.UTC)
	prefectures := regions.Prefectures()
	var out []Batch
	for day := Snapshot.AddDate(0, 0, 1); !day.After(last); day = day.AddDate(0, 0, 1) {
		for _, p := range prefectures {
			out = append(out, g.journalDeath(p.Code, day))
		}
	}
	return out
}

func (g *Generator) journalDeath(prefecture string, day time.Time) Batch {
	var counties []string
	for _, c := range regions.Counties() {
		if c.Parent == prefecture {
			counties = append(counties, c.Code)
		}
	}
	county := counties[g.r.intn(len(counties))]
	f := &family{g: g}
	hh := f.household(county)
	m := f.add(pick(g.r, []string{"M", "F"}), g.birthForAge(g.r.between(78, 96)), g.surname(county), county, hh, county, RelHead)
	m.p.CancelReason, m.p.CancelDate = adapters.CancelDeath, day
	since := g.date(m.p.BirthDate.AddDate(20, 0, 0), m.p.BirthDate.AddDate(40, 0, 0))
	return Batch{
		Households: f.households,
		Persons:    []Person{m.p},
		Residences: []Residence{{PersonID: m.p.IDNumber, Seq: 1, RegionCode: county, From: since, To: day}},
	}
}
