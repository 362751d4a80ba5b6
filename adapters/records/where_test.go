package records

import "testing"

// TestWhereKeepsABureausPart: a prefecture's part holds exactly the
// households registered under it, their members, and only rows of those.
func TestWhereKeepsABureausPart(t *testing.T) {
	ds := Generate(1, 2000)
	part := ds.Where(func(r string) bool { return r[:4] == "2205" })
	if len(part.Persons) == 0 || len(part.Persons) >= len(ds.Persons) {
		t.Fatalf("Tonghua holds %d of %d persons", len(part.Persons), len(ds.Persons))
	}
	households := map[string]bool{}
	for _, h := range part.Households {
		if h.RegionCode[:4] != "2205" {
			t.Fatalf("household %s of %s kept", h.ID, h.RegionCode)
		}
		households[h.ID] = true
	}
	held := map[string]bool{}
	for _, p := range part.Persons {
		if !households[p.HouseholdID] {
			t.Fatalf("person of household %s kept without it", p.HouseholdID)
		}
		held[p.IDNumber] = true
	}
	want := 0
	for _, p := range ds.Persons {
		for _, h := range ds.Households {
			if h.ID == p.HouseholdID && h.RegionCode[:4] == "2205" {
				want++
			}
		}
	}
	if want != len(part.Persons) {
		t.Fatalf("kept %d persons, %d are registered in Tonghua", len(part.Persons), want)
	}
	for _, k := range part.Kinship {
		if !held[k.PersonID] || !held[k.RelativeID] {
			t.Fatalf("kinship %s–%s kept with a relative not held", k.PersonID, k.RelativeID)
		}
	}
	for _, r := range part.Residences {
		if !held[r.PersonID] {
			t.Fatal("residence of a person not held")
		}
	}
	for _, c := range part.CriminalRecords {
		if !held[c.PersonID] {
			t.Fatal("criminal record of a person not held")
		}
	}
	for _, f := range part.FormerNames {
		if !held[f.PersonID] {
			t.Fatal("former name of a person not held")
		}
	}
}
