// Package records is the police record model Certless answers from, a
// deterministic synthetic generator of such records for Jilin province, and
// the one place where a query is turned into an answer.
//
// The model is what a household-registration (hukou) and criminal-record
// system holds: persons with their resident ID numbers, households and their
// members, kinship, former names, residence history, hukou cancellations and
// criminal records.
//
// Generate and Generator promise that the same seed and person count give
// the same records, byte for byte, on every platform and Go version (the
// generator uses its own PRNG, not math/rand's unspecified streams). Every ID
// number is 18 digits with a valid GB 11643 check digit and a real Jilin
// county-level GB/T 2260 code; ID numbers are unique within a data set.
//
// Answer is the query semantics shared by every record source: a source
// implements Store (a handful of lookups), and Source turns a Store into an
// adapters.Source. The SQL sources and the in-memory Memory store use it, so
// all sources give the same answer to the same query over the same records.
package records

import "time"

// Snapshot is the date the synthetic records were drawn up: no generated
// event (birth, move, name change, cancellation, judgment) is later.
var Snapshot = time.Date(2026, time.June, 30, 0, 0, 0, 0, time.UTC)

// Relations of a household member to the head of the household.
const (
	RelHead       = "head"
	RelSpouse     = "spouse"
	RelChild      = "child"
	RelParent     = "parent"
	RelGrandchild = "grandchild"
)

// Kinship relations: what the relative is to the person.
const (
	KinParent      = "parent"
	KinChild       = "child"
	KinSpouse      = "spouse"
	KinSibling     = "sibling"
	KinGrandparent = "grandparent"
	KinGrandchild  = "grandchild"
	KinNone        = "none"
)

// Person is one registered person. Dates are UTC midnights.
type Person struct {
	IDNumber    string
	Name        string
	Sex         string // "M" or "F"
	BirthDate   time.Time
	HouseholdID string
	// Relation is the person's relation to the head of the household (Rel*).
	Relation string
	// CancelReason is adapters.CancelDeath or adapters.CancelEmigration when
	// the registration was cancelled on CancelDate, "" otherwise.
	CancelReason string
	CancelDate   time.Time
}

// CancelledAt reports whether p's registration was cancelled on or before t.
func (p *Person) CancelledAt(t time.Time) bool {
	return p.CancelReason != "" && !p.CancelDate.After(t)
}

// Household is one hukou household, registered in a county-level region.
type Household struct {
	ID         string
	HeadID     string
	RegionCode string
}

// Kin says what RelativeID is to PersonID (Kin*). Kinship is stored in both
// directions.
type Kin struct {
	PersonID   string
	RelativeID string
	Relation   string
}

// FormerName is a name PersonID bore until the date it was changed.
type FormerName struct {
	PersonID string
	Seq      int
	Name     string
	Until    time.Time
}

// Residence is one period of registered residence; To is zero for the
// current one.
type Residence struct {
	PersonID   string
	Seq        int
	RegionCode string
	From       time.Time
	To         time.Time
}

// CriminalRecord is one criminal judgment against PersonID.
type CriminalRecord struct {
	PersonID     string
	Seq          int
	Offence      string
	Court        string
	JudgmentDate time.Time
	Sentence     string
}

// Batch is a set of records: one family from the Generator, or a whole
// Dataset. Persons of a household follow its Household row, head first.
type Batch struct {
	Households      []Household
	Persons         []Person
	Kinship         []Kin
	FormerNames     []FormerName
	Residences      []Residence
	CriminalRecords []CriminalRecord
}

// Dataset is a whole generated record set.
type Dataset = Batch

// Append adds the records of o to b.
func (b *Batch) Append(o *Batch) {
	b.Households = append(b.Households, o.Households...)
	b.Persons = append(b.Persons, o.Persons...)
	b.Kinship = append(b.Kinship, o.Kinship...)
	b.FormerNames = append(b.FormerNames, o.FormerNames...)
	b.Residences = append(b.Residences, o.Residences...)
	b.CriminalRecords = append(b.CriminalRecords, o.CriminalRecords...)
}

// Rows is the number of rows b holds across all tables.
func (b *Batch) Rows() int {
	return len(b.Households) + len(b.Persons) + len(b.Kinship) + len(b.FormerNames) +
		len(b.Residences) + len(b.CriminalRecords)
}

// DateLayout formats the dates of the record model and of answers.
const DateLayout = "2006-01-02"

// Where returns the part of b a police bureau of a region holds: the
// households registered in a region keep says yes to, their members, and
// the members' kinship (both relatives held), former names, residences and
// criminal records. A prefecture's bureau keeps its counties' households:
// keep(r) = r[:4] == "2201".
func (b *Batch) Where(keep func(region string) bool) Batch {
	var out Batch
	households := map[string]bool{}
	for _, h := range b.Households {
		if keep(h.RegionCode) {
			households[h.ID] = true
			out.Households = append(out.Households, h)
		}
	}
	persons := map[string]bool{}
	for _, p := range b.Persons {
		if households[p.HouseholdID] {
			persons[p.IDNumber] = true
			out.Persons = append(out.Persons, p)
		}
	}
	for _, k := range b.Kinship {
		if persons[k.PersonID] && persons[k.RelativeID] {
			out.Kinship = append(out.Kinship, k)
		}
	}
	for _, f := range b.FormerNames {
		if persons[f.PersonID] {
			out.FormerNames = append(out.FormerNames, f)
		}
	}
	for _, r := range b.Residences {
		if persons[r.PersonID] {
			out.Residences = append(out.Residences, r)
		}
	}
	for _, c := range b.CriminalRecords {
		if persons[c.PersonID] {
			out.CriminalRecords = append(out.CriminalRecords, c)
		}
	}
	return out
}
