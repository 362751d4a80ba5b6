// Package adaptertest is the conformance suite every adapters.Source
// implementation passes.
//
// Run checks a source that holds the synthetic records of
// records.Generate(fx.Seed, fx.Persons) against the in-memory reference
// (records.Memory) and against expectations read straight from the generated
// records: every query type found with its fields, not found for an unknown
// ID or a name that does not match, kinship relations, cancelled
// registrations, criminal records present and absent, AsOf filtering and
// validity windows, invalid queries, context cancellation, and concurrent use
// (run it with -race).
package adaptertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/schemas/residentid"
)

// Fixtures says which synthetic records the source under test holds.
type Fixtures struct {
	Seed    int64
	Persons int // at least 2000, so every kind of case exists
}

// AsOf is the instant the suite's dated queries speak for: a month after
// records.Snapshot, so every generated event counts.
var AsOf = records.Snapshot.AddDate(0, 1, 0)

// Run runs the suite. newSource is called once; the source it returns is
// shared by all subtests and must hold exactly the records of fx.
func Run(t *testing.T, newSource func(t *testing.T) adapters.Source, fx Fixtures) {
	t.Helper()
	ds := records.Generate(fx.Seed, fx.Persons)
	c := choose(t, ds, fx)
	s := &suite{src: newSource(t), ref: records.NewSource("reference", records.NewMemory(ds), nil), ds: ds, c: c}
	t.Run("Name", s.name)
	t.Run("MatchesReference", s.matchesReference)
	t.Run("Identity", s.identity)
	t.Run("UnknownSubject", s.unknownSubject)
	t.Run("NameMismatch", s.nameMismatch)
	t.Run("Household", s.household)
	t.Run("Kinship", s.kinship)
	t.Run("FormerNames", s.formerNames)
	t.Run("Residence", s.residence)
	t.Run("HukouCancellation", s.hukouCancellation)
	t.Run("CriminalRecord", s.criminalRecord)
	t.Run("AsOfAndValidity", s.asOfAndValidity)
	t.Run("InvalidQuery", s.invalidQuery)
	t.Run("ContextCancelled", s.contextCancelled)
	t.Run("Concurrent", s.concurrent)
	t.Run("Changes", s.changes)
}

type suite struct {
	src adapters.Source
	ref *records.Source
	ds  *records.Dataset
	c   cases
}

// cases are persons picked from the records for each kind of check.
type cases struct {
	active, crime, dead, emigrated, renamed, mover *records.Person
	unknown                                        adapters.Subject
	kin                                            map[string][2]*records.Person // relation → (person, relative)
	unrelated                                      [2]*records.Person
}

func subject(p *records.Person) adapters.Subject {
	return adapters.Subject{IDNumber: p.IDNumber, Name: p.Name}
}

func choose(t *testing.T, ds *records.Dataset, fx Fixtures) cases {
	t.Helper()
	byID := map[string]*records.Person{}
	members := map[string]int{}
	for i := range ds.Persons {
		p := &ds.Persons[i]
		byID[p.IDNumber] = p
		members[p.HouseholdID]++
	}
	has := func(ids []string) map[string]bool {
		m := map[string]bool{}
		for _, id := range ids {
			m[id] = true
		}
		return m
	}
	var crimeIDs, nameIDs []string
	for _, r := range ds.CriminalRecords {
		crimeIDs = append(crimeIDs, r.PersonID)
	}
	for _, r := range ds.FormerNames {
		nameIDs = append(nameIDs, r.PersonID)
	}
	moves := map[string]int{}
	for _, r := range ds.Residences {
		moves[r.PersonID]++
	}
	crime, renamed := has(crimeIDs), has(nameIDs)
	var c cases
	for i := range ds.Persons {
		p := &ds.Persons[i]
		cancelled := p.CancelReason != ""
		switch {
		case c.active == nil && !cancelled && !crime[p.IDNumber] && !renamed[p.IDNumber] && members[p.HouseholdID] >= 3 && p.Relation != records.RelHead:
			c.active = p
		case c.crime == nil && !cancelled && crime[p.IDNumber]:
			c.crime = p
		case c.dead == nil && p.CancelReason == adapters.CancelDeath:
			c.dead = p
		case c.emigrated == nil && p.CancelReason == adapters.CancelEmigration:
			c.emigrated = p
		case c.renamed == nil && !cancelled && renamed[p.IDNumber]:
			c.renamed = p
		case c.mover == nil && !cancelled && moves[p.IDNumber] >= 3:
			c.mover = p
		}
	}
	c.kin = map[string][2]*records.Person{}
	for _, k := range ds.Kinship {
		if _, ok := c.kin[k.Relation]; !ok {
			c.kin[k.Relation] = [2]*records.Person{byID[k.PersonID], byID[k.RelativeID]}
		}
	}
	related := map[[2]string]bool{}
	for _, k := range ds.Kinship {
		related[[2]string{k.PersonID, k.RelativeID}] = true
	}
	for i := 1; i < len(ds.Persons); i++ {
		a, b := &ds.Persons[0], &ds.Persons[len(ds.Persons)-i]
		if !related[[2]string{a.IDNumber, b.IDNumber}] {
			c.unrelated = [2]*records.Person{a, b}
			break
		}
	}
	if c.active == nil || c.crime == nil || c.dead == nil || c.emigrated == nil || c.renamed == nil || c.mover == nil ||
		len(c.kin) < 6 || c.unrelated[0] == nil {
		t.Fatalf("adaptertest: the %d persons of seed %d lack some case; use more persons", len(ds.Persons), fx.Seed)
	}
	// An ID number with a valid check digit that the records do not hold.
	a := c.active
	for seq := 0; ; seq++ {
		id := residentid.Make(a.IDNumber[:6], a.BirthDate, seq)
		if byID[id] == nil {
			c.unknown = adapters.Subject{IDNumber: id, Name: a.Name}
			break
		}
	}
	return c
}

func (s *suite) ask(t *testing.T, q adapters.Query) adapters.Answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := s.src.Answer(ctx, q)
	if err != nil {
		t.Fatalf("Answer(%s): %v", q.Type, err)
	}
	if a.Source == "" {
		t.Errorf("Answer(%s): empty Source", q.Type)
	}
	return a
}

func query(typ adapters.QueryType, p adapters.Subject) adapters.Query {
	return adapters.Query{Type: typ, Subject: p, AsOf: AsOf}
}

func (s *suite) found(t *testing.T, q adapters.Query) map[string]any {
	t.Helper()
	a := s.ask(t, q)
	if !a.Found {
		t.Fatalf("%s: not found", q.Type)
	}
	return normalise(t, a.Fields)
}

func (s *suite) notFound(t *testing.T, q adapters.Query) {
	t.Helper()
	a := s.ask(t, q)
	if a.Found || len(a.Fields) != 0 {
		t.Errorf("%s: found=%v with %d fields, want not found and no fields", q.Type, a.Found, len(a.Fields))
	}
}

// normalise gives fields the shape they have after a JSON round trip.
func normalise(t *testing.T, f map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatalf("fields are not JSON: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func expect(t *testing.T, f map[string]any, key string, want any) {
	t.Helper()
	if got, ok := f[key]; !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("field %s = %#v (present %v), want %#v", key, got, ok, want)
	}
}

func absent(t *testing.T, f map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if v, ok := f[k]; ok {
			t.Errorf("field %s = %#v, want absent", k, v)
		}
	}
}

func (s *suite) name(t *testing.T) {
	if s.src.Name() == "" {
		t.Fatal("Name is empty")
	}
	a := s.ask(t, query(adapters.QueryIdentity, subject(s.c.active)))
	if a.Source != s.src.Name() {
		t.Errorf("Answer.Source = %q, Name() = %q", a.Source, s.src.Name())
	}
}

// probes is every query type for each picked person, plus kinship pairs.
func (s *suite) probes() []adapters.Query {
	var qs []adapters.Query
	c := s.c
	for _, p := range []*records.Person{c.active, c.crime, c.dead, c.emigrated, c.renamed, c.mover} {
		for _, typ := range adapters.AllQueryTypes() {
			if typ == adapters.QueryKinship {
				continue
			}
			qs = append(qs, query(typ, subject(p)))
		}
	}
	for _, rel := range []string{records.KinParent, records.KinChild, records.KinSpouse, records.KinSibling, records.KinGrandparent, records.KinGrandchild} {
		pair := c.kin[rel]
		q := query(adapters.QueryKinship, subject(pair[0]))
		r := subject(pair[1])
		q.Related = &r
		qs = append(qs, q)
	}
	return qs
}

func (s *suite) matchesReference(t *testing.T) {
	for _, q := range s.probes() {
		want, err := s.ref.Answer(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		got := s.ask(t, q)
		if got.Found != want.Found || !got.AsOf.Equal(want.AsOf) || !got.ValidUntil.Equal(want.ValidUntil) {
			t.Errorf("%s: found/as_of/valid_until = %v %v %v, want %v %v %v", q.Type,
				got.Found, got.AsOf, got.ValidUntil, want.Found, want.AsOf, want.ValidUntil)
		}
		if g, w := normalise(t, got.Fields), normalise(t, want.Fields); !reflect.DeepEqual(g, w) {
			gb, _ := json.Marshal(g)
			wb, _ := json.Marshal(w)
			t.Errorf("%s: fields differ from the reference\n got %s\nwant %s", q.Type, gb, wb)
		}
	}
}

func (s *suite) identity(t *testing.T) {
	f := s.found(t, query(adapters.QueryIdentity, subject(s.c.active)))
	expect(t, f, adapters.FieldIDNameMatch, true)
	expect(t, f, adapters.FieldStatus, "active")
	expect(t, f, adapters.FieldAsOf, AsOf.Format(time.RFC3339))

	wrong := subject(s.c.active)
	wrong.Name = s.c.crime.Name
	f = s.found(t, query(adapters.QueryIdentity, wrong))
	expect(t, f, adapters.FieldIDNameMatch, false)
	absent(t, f, adapters.FieldStatus)

	f = s.found(t, query(adapters.QueryIdentity, subject(s.c.dead)))
	expect(t, f, adapters.FieldStatus, "cancelled")

	// Spaces typed inside a name do not make it a different name.
	spaced := subject(s.c.active)
	r := []rune(spaced.Name)
	spaced.Name = " " + string(r[:1]) + " " + string(r[1:]) + " "
	f = s.found(t, query(adapters.QueryIdentity, spaced))
	expect(t, f, adapters.FieldIDNameMatch, true)
}

func (s *suite) unknownSubject(t *testing.T) {
	for _, typ := range adapters.AllQueryTypes() {
		q := query(typ, s.c.unknown)
		if typ == adapters.QueryKinship {
			r := subject(s.c.active)
			q.Related = &r
		}
		s.notFound(t, q)
	}
	// A known subject with an unknown related person.
	q := query(adapters.QueryKinship, subject(s.c.active))
	q.Related = &s.c.unknown
	s.notFound(t, q)
}

func (s *suite) nameMismatch(t *testing.T) {
	wrong := subject(s.c.crime)
	wrong.Name = s.c.active.Name
	for _, typ := range adapters.AllQueryTypes() {
		if typ == adapters.QueryIdentity {
			continue
		}
		q := query(typ, wrong)
		if typ == adapters.QueryKinship {
			r := subject(s.c.active)
			q.Related = &r
		}
		s.notFound(t, q)
	}
	// The related person's name must match too.
	pair := s.c.kin[records.KinSpouse]
	q := query(adapters.QueryKinship, subject(pair[0]))
	r := subject(pair[1])
	r.Name = pair[0].Name
	q.Related = &r
	s.notFound(t, q)
}

func (s *suite) household(t *testing.T) {
	p := s.c.active
	f := s.found(t, query(adapters.QueryHousehold, subject(p)))
	expect(t, f, adapters.FieldRegistered, true)
	expect(t, f, adapters.FieldHouseholdID, p.HouseholdID)
	var h records.Household
	var head records.Person
	var active []string
	for _, x := range s.ds.Households {
		if x.ID == p.HouseholdID {
			h = x
		}
	}
	for _, x := range s.ds.Persons {
		if x.IDNumber == h.HeadID {
			head = x
		}
		if x.HouseholdID == h.ID && !x.CancelledAt(AsOf) {
			active = append(active, x.Name)
		}
	}
	expect(t, f, adapters.FieldHead, head.Name)
	expect(t, f, adapters.FieldRegionCode, h.RegionCode)
	if n, _ := f[adapters.FieldRegionName].(string); n == "" {
		t.Error("region_name empty")
	}
	ms, _ := f[adapters.FieldMembers].([]any)
	if len(ms) != len(active) {
		t.Fatalf("%d members, want %d", len(ms), len(active))
	}
	first, _ := ms[0].(map[string]any)
	if first["name"] != head.Name || first["relation"] != records.RelHead {
		t.Errorf("first member %v, want the head", first)
	}
	seen := false
	for _, m := range ms {
		if m.(map[string]any)["name"] == p.Name && m.(map[string]any)["relation"] == p.Relation {
			seen = true
		}
	}
	if !seen {
		t.Error("subject not among the members")
	}

	f = s.found(t, query(adapters.QueryHousehold, subject(s.c.dead)))
	expect(t, f, adapters.FieldRegistered, false)
	absent(t, f, adapters.FieldHouseholdID, adapters.FieldMembers)
}

func (s *suite) kinship(t *testing.T) {
	for rel, pair := range s.c.kin {
		q := query(adapters.QueryKinship, subject(pair[0]))
		r := subject(pair[1])
		q.Related = &r
		f := s.found(t, q)
		expect(t, f, adapters.FieldRelated, true)
		expect(t, f, adapters.FieldRelation, rel)
	}
	q := query(adapters.QueryKinship, subject(s.c.unrelated[0]))
	r := subject(s.c.unrelated[1])
	q.Related = &r
	f := s.found(t, q)
	expect(t, f, adapters.FieldRelated, false)
	expect(t, f, adapters.FieldRelation, records.KinNone)
}

func (s *suite) formerNames(t *testing.T) {
	p := s.c.renamed
	var want []any
	for _, n := range s.ds.FormerNames {
		if n.PersonID == p.IDNumber {
			want = append(want, map[string]any{"name": n.Name, "until": n.Until.Format(records.DateLayout)})
		}
	}
	f := s.found(t, query(adapters.QueryFormerNames, subject(p)))
	expect(t, f, adapters.FieldHasFormerNames, true)
	expect(t, f, adapters.FieldFormerNames, want)

	f = s.found(t, query(adapters.QueryFormerNames, subject(s.c.active)))
	expect(t, f, adapters.FieldHasFormerNames, false)
	expect(t, f, adapters.FieldFormerNames, []any{})
}

func (s *suite) residence(t *testing.T) {
	p := s.c.mover
	var want []records.Residence
	for _, r := range s.ds.Residences {
		if r.PersonID == p.IDNumber {
			want = append(want, r)
		}
	}
	f := s.found(t, query(adapters.QueryResidence, subject(p)))
	got, _ := f[adapters.FieldResidences].([]any)
	if len(got) != len(want) {
		t.Fatalf("%d residences, want %d", len(got), len(want))
	}
	for i, g := range got {
		e := g.(map[string]any)
		if e["region_code"] != want[i].RegionCode || e["from"] != want[i].From.Format(records.DateLayout) {
			t.Errorf("residence %d = %v, want %+v", i, e, want[i])
		}
	}
	if _, ok := got[len(got)-1].(map[string]any)["to"]; ok {
		t.Error("current residence has an end date")
	}
}

func (s *suite) hukouCancellation(t *testing.T) {
	for _, p := range []*records.Person{s.c.dead, s.c.emigrated} {
		f := s.found(t, query(adapters.QueryHukouCancellation, subject(p)))
		expect(t, f, adapters.FieldCancelled, true)
		expect(t, f, adapters.FieldReason, p.CancelReason)
		expect(t, f, adapters.FieldDate, p.CancelDate.Format(records.DateLayout))

		// Record dates are China's calendar days: 01:00 in Beijing on the
		// day of cancellation is still the previous day in UTC.
		q0 := query(adapters.QueryHukouCancellation, subject(p))
		q0.AsOf = p.CancelDate.Add(-7 * time.Hour)
		expect(t, s.found(t, q0), adapters.FieldCancelled, true)

		// The day before, the registration was still active.
		q := query(adapters.QueryHukouCancellation, subject(p))
		q.AsOf = p.CancelDate.AddDate(0, 0, -1)
		f = s.found(t, q)
		expect(t, f, adapters.FieldCancelled, false)
		absent(t, f, adapters.FieldReason, adapters.FieldDate)
	}
	f := s.found(t, query(adapters.QueryHukouCancellation, subject(s.c.active)))
	expect(t, f, adapters.FieldCancelled, false)
	absent(t, f, adapters.FieldReason, adapters.FieldDate)
}

func (s *suite) criminalRecord(t *testing.T) {
	p := s.c.crime
	var first records.CriminalRecord
	n := 0
	for _, r := range s.ds.CriminalRecords {
		if r.PersonID == p.IDNumber {
			if n == 0 || r.JudgmentDate.Before(first.JudgmentDate) {
				first = r
			}
			n++
		}
	}
	f := s.found(t, query(adapters.QueryCriminalRecord, subject(p)))
	expect(t, f, adapters.FieldHasCriminalRecord, true)
	rs, _ := f[adapters.FieldRecords].([]any)
	if len(rs) != n {
		t.Fatalf("%d records, want %d", len(rs), n)
	}
	r0 := rs[0].(map[string]any)
	if r0["offence"] != first.Offence || r0["court"] != first.Court ||
		r0["judgment_date"] != first.JudgmentDate.Format(records.DateLayout) || r0["sentence"] != first.Sentence {
		t.Errorf("record %v, want %+v", r0, first)
	}

	f = s.found(t, query(adapters.QueryCriminalRecord, subject(s.c.active)))
	expect(t, f, adapters.FieldHasCriminalRecord, false)
	absent(t, f, adapters.FieldRecords)

	// Before the judgment there was no record.
	q := query(adapters.QueryCriminalRecord, subject(p))
	q.AsOf = first.JudgmentDate.AddDate(0, 0, -1)
	f = s.found(t, q)
	expect(t, f, adapters.FieldHasCriminalRecord, false)
}

func (s *suite) asOfAndValidity(t *testing.T) {
	// A historical as_of speaks for that instant; its validity window runs
	// from when the answer is given, as a paper certificate's does.
	for _, typ := range adapters.AllQueryTypes() {
		q := query(typ, subject(s.c.kin[records.KinSpouse][0]))
		if typ == adapters.QueryKinship {
			r := subject(s.c.kin[records.KinSpouse][1])
			q.Related = &r
		}
		before := time.Now().Add(-time.Second)
		a := s.ask(t, q)
		after := time.Now().Add(time.Second)
		if !a.AsOf.Equal(AsOf) || a.ValidUntil.Before(before.Add(typ.Validity())) || a.ValidUntil.After(after.Add(typ.Validity())) {
			t.Errorf("%s: as_of %v valid_until %v, want %v and now +%v", typ, a.AsOf, a.ValidUntil, AsOf, typ.Validity())
		}
	}
	before := time.Now().Add(-time.Second)
	q := query(adapters.QueryCriminalRecord, subject(s.c.active))
	q.AsOf = time.Time{}
	a := s.ask(t, q)
	after := time.Now().Add(time.Second)
	if a.AsOf.Before(before) || a.AsOf.After(after) {
		t.Errorf("zero AsOf answered as of %v, want now (%v..%v)", a.AsOf, before, after)
	}
	if d := a.ValidUntil.Sub(a.AsOf); d != 30*24*time.Hour {
		t.Errorf("criminal record valid for %v, want 30 days", d)
	}
}

func (s *suite) invalidQuery(t *testing.T) {
	bad := []adapters.Query{
		{Type: "credit_score", Subject: subject(s.c.active)},
		{Type: adapters.QueryIdentity, Subject: adapters.Subject{IDNumber: s.c.active.IDNumber}},
		{Type: adapters.QueryKinship, Subject: subject(s.c.active)},
		{Type: adapters.QueryIdentity, Subject: subject(s.c.active), AsOf: time.Now().Add(24 * time.Hour)},
	}
	for _, q := range bad {
		_, err := s.src.Answer(context.Background(), q)
		if !errors.Is(err, adapters.ErrInvalidQuery) {
			t.Errorf("%+v: err = %v, want ErrInvalidQuery", q, err)
		}
	}
}

func (s *suite) contextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.src.Answer(ctx, query(adapters.QueryCriminalRecord, subject(s.c.active)))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err = %v, want context.Canceled", err)
	}
	// The source still works afterwards.
	s.found(t, query(adapters.QueryCriminalRecord, subject(s.c.active)))
}

func (s *suite) concurrent(t *testing.T) {
	qs := s.probes()
	want := make([]map[string]any, len(qs))
	for i, q := range qs {
		a, err := s.ref.Answer(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = normalise(t, a.Fields)
	}
	const workers = 8
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range qs {
				j := (i + w*7) % len(qs)
				a, err := s.src.Answer(context.Background(), qs[j])
				if err != nil {
					errs <- err
					return
				}
				b, _ := json.Marshal(a.Fields)
				var got map[string]any
				_ = json.Unmarshal(b, &got)
				if !reflect.DeepEqual(got, want[j]) {
					errs <- fmt.Errorf("%s: concurrent answer differs from the reference", qs[j].Type)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// changes: a source with a change feed lists, for every type that has one,
// the same changes as the reference, each with the answer as of the
// period's end, page by page through the cursor; a count read straight
// from the generated records agrees for cancellations; an empty period
// lists nothing; malformed queries are invalid.
func (s *suite) changes(t *testing.T) {
	feed, ok := s.src.(adapters.ChangeFeed)
	if !ok {
		t.Fatalf("%s has no change feed", s.src.Name())
	}
	ctx := context.Background()
	until := records.Snapshot
	after := until.AddDate(-3, 0, 0)
	all := func(f adapters.ChangeFeed, q adapters.ChangeQuery) []adapters.Change {
		t.Helper()
		var out []adapters.Change
		for pages := 0; ; pages++ {
			page, err := f.Changes(ctx, q)
			if err != nil {
				t.Fatalf("changes %+v: %v", q, err)
			}
			out = append(out, page.Changes...)
			if !page.More {
				return out
			}
			if pages > 10000 {
				t.Fatal("the feed does not end")
			}
			q.Cursor = page.Next
		}
	}
	for _, typ := range adapters.ChangeTypes {
		for _, region := range []string{"220000", "220500", "222403"} {
			q := adapters.ChangeQuery{Type: typ, Region: region, After: after, Until: until, Limit: 7}
			got, want := all(feed, q), all(s.ref, q)
			if len(got) != len(want) {
				t.Fatalf("%s in %s: %d changes, the reference %d", typ, region, len(got), len(want))
			}
			for i := range got {
				if got[i].Subject != want[i].Subject || !got[i].At.Equal(want[i].At) ||
					!reflect.DeepEqual(normalise(t, got[i].Answer.Fields), normalise(t, want[i].Answer.Fields)) {
					t.Fatalf("%s in %s, change %d: %+v, the reference %+v", typ, region, i, got[i], want[i])
				}
			}
			if region == "220000" && typ == adapters.QueryHukouCancellation {
				n := 0
				for _, p := range s.ds.Persons {
					d := p.CancelDate.Format(records.DateLayout)
					if p.CancelReason != "" && d > after.Format(records.DateLayout) && d <= until.Format(records.DateLayout) {
						n++
					}
				}
				if n == 0 || len(got) != n {
					t.Fatalf("cancellations in the province: %d, the records hold %d", len(got), n)
				}
				for _, c := range got {
					if c.Answer.Fields[adapters.FieldCancelled] != true {
						t.Fatalf("a cancellation whose answer is not cancelled: %+v", c)
					}
				}
			}
		}
	}
	empty := adapters.ChangeQuery{Type: adapters.QueryHukouCancellation, Region: "220000", After: until.AddDate(1, 0, 0), Until: until.AddDate(2, 0, 0)}
	if got := all(feed, empty); len(got) != 0 {
		t.Fatalf("a period after the records: %d changes", len(got))
	}
	for name, q := range map[string]adapters.ChangeQuery{
		"no feed for the type": {Type: adapters.QueryKinship, Region: "220000", After: after, Until: until},
		"bad region":           {Type: adapters.QueryResidence, Region: "22", After: after, Until: until},
		"empty period":         {Type: adapters.QueryResidence, Region: "220000", After: until, Until: until},
		"bad cursor":           {Type: adapters.QueryResidence, Region: "220000", After: after, Until: until, Cursor: "x' OR 1=1"},
		"limit too large":      {Type: adapters.QueryResidence, Region: "220000", After: after, Until: until, Limit: adapters.MaxChangePage + 1},
	} {
		if _, err := feed.Changes(ctx, q); !errors.Is(err, adapters.ErrInvalidQuery) {
			t.Errorf("%s: %v, want invalid_query", name, err)
		}
	}
}
