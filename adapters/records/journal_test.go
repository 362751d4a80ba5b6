package records

import (
	"testing"
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/regions"
)

// TestJournal: the journal adds one cancellation per prefecture and day
// after Snapshot, with ID numbers the main records do not use, leaves the
// main records as they are, and a longer journal starts with the shorter.
func TestJournal(t *testing.T) {
	main := Generate(5, 800)
	g := NewGenerator(5, 800)
	for {
		if _, ok := g.Next(); !ok {
			break
		}
	}
	through := Snapshot.AddDate(0, 0, 10).Add(13 * time.Hour)
	j := g.Journal(through)
	if want := 10 * len(regions.Prefectures()); len(j) != want {
		t.Fatalf("%d journal entries, want %d", len(j), want)
	}
	ids := map[string]bool{}
	for _, p := range main.Persons {
		ids[p.IDNumber] = true
	}
	perDay := map[string]map[string]bool{}
	for _, b := range j {
		if len(b.Persons) != 1 || len(b.Households) != 1 || len(b.Residences) != 1 {
			t.Fatalf("journal entry %+v", b)
		}
		p := b.Persons[0]
		if ids[p.IDNumber] || !validID(p.IDNumber) {
			t.Fatalf("journal ID %s reused or invalid", p.IDNumber)
		}
		ids[p.IDNumber] = true
		if p.CancelReason != adapters.CancelDeath || !p.CancelDate.After(Snapshot) || p.CancelDate.After(through) {
			t.Fatalf("journal person %+v", p)
		}
		d := p.CancelDate.Format(DateLayout)
		if perDay[d] == nil {
			perDay[d] = map[string]bool{}
		}
		perDay[d][b.Households[0].RegionCode[:4]] = true
	}
	for d, pre := range perDay {
		if len(pre) != len(regions.Prefectures()) {
			t.Fatalf("day %s has cancellations in %d prefectures", d, len(pre))
		}
	}
	again := NewGenerator(5, 800)
	for {
		if _, ok := again.Next(); !ok {
			break
		}
	}
	short := again.Journal(Snapshot.AddDate(0, 0, 3))
	for i := range short {
		if short[i].Persons[0] != j[i].Persons[0] {
			t.Fatalf("entry %d differs between a 3-day and a 10-day journal", i)
		}
	}
}
