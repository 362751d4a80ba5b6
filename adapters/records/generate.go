package records

import (
	"strconv"
	"strings"
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/regions"
)

func regionChain(code string) []string { return regions.Chain(code) }
func regionName(code string) string    { return regions.Name(code) }

var epoch = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)

// Generator produces a synthetic record set one family at a time, so a
// loader can stream millions of persons without holding them all.
type Generator struct {
	r           *rng
	total, done int
	counties    []string
	countyCum   []int
	countyIdx   map[string]uint32
	idSeq       map[uint32]uint16
	households  int
}

// NewGenerator returns a generator of exactly persons persons drawn from
// seed. The same seed and count always give the same records.
func NewGenerator(seed int64, persons int) *Generator {
	g := &Generator{r: newRNG(seed), total: max(persons, 0), countyIdx: map[string]uint32{}, idSeq: map[uint32]uint16{}}
	t := 0
	for i, c := range regions.Counties() {
		w := 2
		if strings.HasSuffix(c.Name, "区") {
			w = 3
		}
		if c.Parent == "220100" {
			w += 2
		}
		t += w
		g.counties = append(g.counties, c.Code)
		g.countyCum = append(g.countyCum, t)
		g.countyIdx[c.Code] = uint32(i)
	}
	return g
}

// Total is the number of persons the generator produces in all.
func (g *Generator) Total() int { return g.total }

// Done is the number of persons produced so far.
func (g *Generator) Done() int { return g.done }

// Next returns the records of the next family (one or more households with
// their members and everything about them), or false when all persons have
// been produced.
func (g *Generator) Next() (Batch, bool) {
	if g.done >= g.total {
		return Batch{}, false
	}
	f := &family{g: g}
	county := g.county()
	switch x := g.r.intn(100); {
	case x < 30:
		f.extended(county)
	case x < 90:
		f.nuclear(county)
	default:
		f.single(county)
	}
	b := f.finish(g.total - g.done)
	g.done += len(b.Persons)
	return b, true
}

// Generate returns the whole record set of persons persons drawn from seed.
func Generate(seed int64, persons int) *Dataset {
	g := NewGenerator(seed, persons)
	var ds Dataset
	for {
		b, ok := g.Next()
		if !ok {
			return &ds
		}
		ds.Append(&b)
	}
}

func (g *Generator) county() string { return g.counties[g.r.weighted(g.countyCum)] }

// date returns a uniformly drawn day in [lo, hi] (lo when hi < lo).
func (g *Generator) date(lo, hi time.Time) time.Time {
	d := int(hi.Sub(lo).Hours() / 24)
	if d <= 0 {
		return lo
	}
	return lo.AddDate(0, 0, g.r.intn(d+1))
}

// birthForAge draws a birth date for someone aged age at Snapshot.
func (g *Generator) birthForAge(age int) time.Time {
	hi := Snapshot.AddDate(-age, 0, 0)
	return g.date(hi.AddDate(-1, 0, 1), hi)
}

// idNumber assigns a unique ID number for a person born on birth and first
// registered in region.
func (g *Generator) idNumber(region string, birth time.Time, sex string) (string, time.Time) {
	for {
		day := uint32(birth.Sub(epoch).Hours() / 24)
		key := (g.countyIdx[region]*2)<<17 | day
		if sex == "M" {
			key |= 1 << 17
		}
		c := g.idSeq[key]
		if c < 500 {
			g.idSeq[key] = c + 1
			off := int((uint64(key) * 0x9e3779b97f4a7c15 >> 40) % 500)
			seq := ((off + int(c)) % 500) * 2
			if sex == "M" {
				seq++
			}
			return makeID(region, birth.Format("20060102"), seq), birth
		}
		// 500 people of one sex born on one day in one county: move the
		// birthday, the records are synthetic.
		birth = birth.AddDate(0, 0, -1)
	}
}

type member struct {
	p              Person
	surname        string
	birthRegion    string
	county         string
	father, mother *member
	spouse         *member
	head           bool
}

type family struct {
	g          *Generator
	members    []*member // in household order, head first
	households []Household
}

func (f *family) household(county string) string {
	f.g.households++
	id := county + strconv.Itoa(100000000 + f.g.households)[1:]
	f.households = append(f.households, Household{ID: id, RegionCode: county})
	return id
}

func (f *family) add(sex string, birth time.Time, surname, birthRegion, household, county, relation string) *member {
	g := f.g
	id, birth := g.idNumber(birthRegion, birth, sex)
	m := &member{
		p: Person{IDNumber: id, Name: surname + g.given(sex), Sex: sex, BirthDate: birth,
			HouseholdID: household, Relation: relation},
		surname: surname, birthRegion: birthRegion, county: county, head: relation == RelHead,
	}
	if m.head {
		f.households[len(f.households)-1].HeadID = id
	}
	f.members = append(f.members, m)
	return m
}

// adultOrigin is where an adult who joins a household was born.
func (f *family) adultOrigin(county string) string {
	if f.g.r.chance(0.7) {
		return county
	}
	return f.g.county()
}

func other(sex string) string {
	if sex == "M" {
		return "F"
	}
	return "M"
}

func age(birth time.Time) int {
	a := Snapshot.Year() - birth.Year()
	if Snapshot.YearDay() < birth.YearDay() {
		a--
	}
	return a
}

func (f *family) marry(m *member, hh, county string) *member {
	g := f.g
	a := max(age(m.p.BirthDate)+g.r.between(-4, 4), 20)
	s := f.add(other(m.p.Sex), g.birthForAge(a), g.surname(county), f.adultOrigin(county), hh, county, RelSpouse)
	m.spouse, s.spouse = s, m
	return s
}

// children adds n children of the couple (or single parent) to household hh.
func (f *family) children(father, mother *member, n int, hh, county, relation string, minAge int) []*member {
	g := f.g
	base := mother
	if base == nil {
		base = father
	}
	var kids []*member
	for range n {
		lo := base.p.BirthDate.AddDate(22, 0, 0)
		hi := base.p.BirthDate.AddDate(38, 0, 0)
		if limit := Snapshot.AddDate(-minAge, 0, 0); hi.After(limit) {
			hi = limit
		}
		if hi.Before(lo) {
			break
		}
		surname := base.surname
		if father != nil {
			surname = father.surname
		}
		sex := pick(g.r, []string{"M", "F"})
		k := f.add(sex, g.date(lo, hi), surname, county, hh, county, relation)
		k.father, k.mother = father, mother
		kids = append(kids, k)
	}
	return kids
}

func couple(a, b *member) (father, mother *member) {
	if a.p.Sex == "M" {
		return a, b
	}
	return b, a
}

func (f *family) nuclear(county string) {
	g := f.g
	hh := f.household(county)
	sex := "M"
	if g.r.chance(0.25) {
		sex = "F"
	}
	headAge := g.r.between(22, 80)
	head := f.add(sex, g.birthForAge(headAge), g.surname(county), f.adultOrigin(county), hh, county, RelHead)
	if headAge <= 55 && g.r.chance(0.18) {
		pa := headAge + g.r.between(24, 34)
		dad := f.add("M", g.birthForAge(pa), head.surname, f.adultOrigin(county), hh, county, RelParent)
		head.father = dad
		if g.r.chance(0.7) {
			mum := f.add("F", g.birthForAge(pa+g.r.between(-4, 3)), g.surname(county), f.adultOrigin(county), hh, county, RelParent)
			head.mother = mum
			dad.spouse, mum.spouse = mum, dad
		}
	}
	if headAge >= 23 && g.r.chance(0.8) {
		sp := f.marry(head, hh, county)
		fa, mo := couple(head, sp)
		f.children(fa, mo, []int{0, 0, 0, 1, 1, 1, 1, 2, 2, 3}[g.r.intn(10)], hh, county, RelChild, 0)
	} else if headAge >= 25 && g.r.chance(0.15) {
		if sex == "M" {
			f.children(head, nil, 1, hh, county, RelChild, 0)
		} else {
			f.children(nil, head, 1, hh, county, RelChild, 0)
		}
	}
}

func (f *family) single(county string) {
	hh := f.household(county)
	f.add(pick(f.g.r, []string{"M", "F"}), f.g.birthForAge(f.g.r.between(18, 90)), f.g.surname(county), f.adultOrigin(county), hh, county, RelHead)
}

func (f *family) extended(county string) {
	g := f.g
	h0 := f.household(county)
	elderAge := g.r.between(58, 88)
	grandpa := f.add("M", g.birthForAge(elderAge), g.surname(county), f.adultOrigin(county), h0, county, RelHead)
	grandma := f.marry(grandpa, h0, county)
	for _, k := range f.children(grandpa, grandma, g.r.between(1, 3), "", county, RelChild, 22) {
		if !g.r.chance(0.8) {
			k.p.HouseholdID = h0
			continue
		}
		kc := county
		if g.r.chance(0.3) {
			kc = g.county()
		}
		hk := f.household(kc)
		k.p.HouseholdID, k.p.Relation, k.head, k.county = hk, RelHead, true, kc
		f.households[len(f.households)-1].HeadID = k.p.IDNumber
		if !g.r.chance(0.85) {
			continue
		}
		sp := f.marry(k, hk, kc)
		fa, mo := couple(k, sp)
		for _, gk := range f.children(fa, mo, g.r.between(0, 2), hk, kc, RelChild, 0) {
			if g.r.chance(0.1) {
				gk.p.HouseholdID, gk.p.Relation, gk.county = h0, RelGrandchild, county
			}
		}
	}
}

// finish draws the life events of every member and emits at most limit
// persons with everything that refers only to emitted persons. Persons are
// emitted household by household, head first, then in the order they joined.
func (f *family) finish(limit int) Batch {
	var b Batch
	kept := map[*member]bool{}
	for _, h := range f.households {
		var in []*member
		for _, m := range f.members {
			if m.p.HouseholdID == h.ID {
				if m.head {
					in = append([]*member{m}, in...)
				} else {
					in = append(in, m)
				}
			}
		}
		if len(in) == 0 || len(b.Persons) == limit {
			continue
		}
		b.Households = append(b.Households, h)
		for _, m := range in {
			if len(b.Persons) == limit {
				break
			}
			kept[m] = true
			f.cancel(m)
			b.Persons = append(b.Persons, m.p)
			res := f.residences(m)
			b.Residences = append(b.Residences, res...)
			b.FormerNames = append(b.FormerNames, f.formerNames(m)...)
			b.CriminalRecords = append(b.CriminalRecords, f.crimes(m, res)...)
		}
	}
	b.Kinship = f.kinship(kept)
	return b
}

func (f *family) end(m *member) time.Time {
	if m.p.CancelReason != "" {
		return m.p.CancelDate
	}
	return Snapshot
}

func (f *family) cancel(m *member) {
	g := f.g
	if m.head {
		return
	}
	// A registration is cancelled after the person's children were born.
	afterKids := func(lo time.Time) time.Time {
		for _, c := range f.members {
			if (c.father == m || c.mother == m) && !c.p.BirthDate.Before(lo) {
				lo = c.p.BirthDate.AddDate(0, 0, 1)
			}
		}
		return lo
	}
	a := age(m.p.BirthDate)
	var reason string
	var lo time.Time
	switch {
	case a >= 65 && g.r.chance(0.12):
		reason, lo = adapters.CancelDeath, m.p.BirthDate.AddDate(65, 0, 0)
	case a >= 22 && a <= 50 && (m.p.Relation == RelChild || m.p.Relation == RelSpouse) && g.r.chance(0.04):
		reason, lo = adapters.CancelEmigration, m.p.BirthDate.AddDate(21, 0, 0)
	default:
		return
	}
	if l := Snapshot.AddDate(-10, 0, 0); l.After(lo) {
		lo = l
	}
	if lo = afterKids(lo); lo.After(Snapshot) {
		return
	}
	m.p.CancelReason, m.p.CancelDate = reason, g.date(lo, Snapshot)
}

func (f *family) residences(m *member) []Residence {
	g := f.g
	path := []string{m.birthRegion}
	if age(m.p.BirthDate) >= 20 && g.r.chance(0.12) {
		if c := g.county(); c != path[0] {
			path = append(path, c)
		}
	}
	if m.county != path[len(path)-1] {
		path = append(path, m.county)
	}
	end := f.end(m)
	moves := make([]time.Time, 0, len(path))
	moves = append(moves, m.p.BirthDate)
	lo := m.p.BirthDate.AddDate(18, 0, 0)
	if lo.After(end) {
		lo = m.p.BirthDate.AddDate(0, 0, 1)
	}
	for range path[1:] {
		d := g.date(lo, end)
		moves = append(moves, d)
		lo = d.AddDate(0, 0, 1)
	}
	var out []Residence
	for i, c := range path {
		r := Residence{PersonID: m.p.IDNumber, Seq: i + 1, RegionCode: c, From: moves[i]}
		if i+1 < len(path) {
			r.To = moves[i+1]
		} else if m.p.CancelReason != "" {
			r.To = m.p.CancelDate
		}
		out = append(out, r)
	}
	return out
}

func (f *family) formerNames(m *member) []FormerName {
	g := f.g
	if age(m.p.BirthDate) < 8 || !g.r.chance(0.05) {
		return nil
	}
	n := 1
	if g.r.chance(0.1) {
		n = 2
	}
	var out []FormerName
	lo, end := m.p.BirthDate.AddDate(5, 0, 0), f.end(m)
	names := []string{m.p.Name}
	for i := range n {
		names = append(names, g.otherGiven(names[len(names)-1], m.surname, m.p.Sex))
		d := g.date(lo, end)
		lo = d.AddDate(0, 0, 1)
		out = append(out, FormerName{PersonID: m.p.IDNumber, Seq: i + 1, Until: d})
	}
	// The oldest name is the last drawn; the current name stays current.
	for i := range out {
		out[i].Name = names[n-i]
	}
	return out
}

func (f *family) crimes(m *member, res []Residence) []CriminalRecord {
	g := f.g
	if age(m.p.BirthDate) < 20 || !g.r.chance(0.025) {
		return nil
	}
	n := 1
	if g.r.chance(0.15) {
		n = 2
	}
	var out []CriminalRecord
	lo, end := m.p.BirthDate.AddDate(18, 0, 0), f.end(m)
	for i := range n {
		d := g.date(lo, end)
		lo = d.AddDate(0, 0, 1)
		county := res[0].RegionCode
		for _, r := range res {
			if !r.From.After(d) {
				county = r.RegionCode
			}
		}
		o := pick(g.r, offences)
		out = append(out, CriminalRecord{
			PersonID: m.p.IDNumber, Seq: i + 1, Offence: o.name,
			Court:        court(county, o.serious && g.r.chance(0.5)),
			JudgmentDate: d, Sentence: o.sentence(g),
		})
	}
	return out
}

func (f *family) kinship(kept map[*member]bool) []Kin {
	var out []Kin
	rel := func(a, b *member, r string) {
		if a != nil && b != nil && kept[a] && kept[b] {
			out = append(out, Kin{PersonID: a.p.IDNumber, RelativeID: b.p.IDNumber, Relation: r})
		}
	}
	for _, m := range f.members {
		rel(m, m.spouse, KinSpouse)
		for _, p := range []*member{m.father, m.mother} {
			if p == nil {
				continue
			}
			rel(m, p, KinParent)
			rel(m, p.father, KinGrandparent)
			rel(m, p.mother, KinGrandparent)
		}
		for _, c := range f.members {
			if c.father == m || c.mother == m {
				rel(m, c, KinChild)
			}
			for _, p := range []*member{c.father, c.mother} {
				if p != nil && (p.father == m || p.mother == m) {
					rel(m, c, KinGrandchild)
				}
			}
			if c != m && ((c.father != nil && c.father == m.father) || (c.mother != nil && c.mother == m.mother)) {
				rel(m, c, KinSibling)
			}
		}
	}
	return out
}
