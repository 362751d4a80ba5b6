package policies

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	a := mustParse(t, sampleDoc)
	if d := Diff(a, a); len(d) != 0 {
		t.Fatalf("Diff(a, a) = %v", d)
	}
	b := *a
	b.Version = 2
	b.Title = "new"
	b.Queries = []Terms{
		{Query: "kinship", Purposes: []string{"litigation"}, Fields: []string{"as_of"}, LegalBasis: "law"},
		a.Queries[1], // identity, unchanged
	}
	b.Quotas.PerMinute, b.Quotas.PerMonth = 0, 5
	b.ServiceHours = nil
	b.Schedules = []Schedule{{Name: "weekly", Query: "kinship", Cron: "0 9 * * 1"}}
	b.Status = StatusProposed
	deadline := time.Date(2026, 10, 10, 0, 0, 0, 0, Beijing)
	b.ReviewDeadline = &deadline
	want := []Change{
		{"version", "1", "2"},
		{"title", a.Title, "new"},
		{"queries[criminal_record].purposes", "litigation", None},
		{"queries[criminal_record].fields", "as_of, has_criminal_record", None},
		{"queries[criminal_record].case_ref_required", "true", None},
		{"queries[criminal_record].scope", "the requester's own region", None},
		{"queries[kinship].purposes", None, "litigation"},
		{"queries[kinship].fields", None, "as_of"},
		{"queries[kinship].case_ref_required", None, "false"},
		{"queries[kinship].scope", None, "the requester's own region"},
		{"queries[kinship].legal_basis", None, "law"},
		{"quotas.per_minute", "60", "no limit"},
		{"quotas.per_month", "no limit", "5"},
		{"service_hours", "08:00-18:00 Beijing time, weekdays 1, 2, 3, 4, 5", "always"},
		{"schedules[daily-records]", `criminal_record at "0 2 * * *" to the requester`, None},
		{"schedules[weekly]", None, `kinship at "0 9 * * 1" to the requester`},
		{"status", "active", "proposed"},
		{"review_deadline", None, "2026-10-10T00:00:00+08:00"},
	}
	got := Diff(a, &b)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff(a, b):\n%v\nwant\n%v", got, want)
	}
	// The other way round: the same fields in the same order, sides swapped.
	back := Diff(&b, a)
	if len(back) != len(want) {
		t.Fatalf("Diff(b, a) has %d changes, want %d: %v", len(back), len(want), back)
	}
	for i, c := range back {
		if w := want[i]; c != (Change{w.Field, w.New, w.Old}) {
			t.Errorf("Diff(b, a)[%d] = %v, want %v", i, c, w)
		}
	}
	// The order of queries and schedules in the document does not matter.
	c := *a
	c.Queries = []Terms{a.Queries[1], a.Queries[0]}
	if d := Diff(a, &c); len(d) != 0 {
		t.Errorf("reordered queries: %v", d)
	}
}

func TestFlattenOrder(t *testing.T) {
	var names []string
	for _, f := range Flatten(mustParse(t, sampleDoc)) {
		names = append(names, f.Name)
	}
	want := []string{"id", "version", "title", "parties.requester", "parties.provider",
		"queries[criminal_record].purposes", "queries[criminal_record].fields", "queries[criminal_record].case_ref_required", "queries[criminal_record].scope",
		"queries[identity].purposes", "queries[identity].fields", "queries[identity].case_ref_required", "queries[identity].scope",
		"quotas.per_minute", "quotas.per_day", "quotas.per_month", "service_hours", "validity.from", "validity.until",
		"schedules[daily-records]", "status", "dispute_working_days"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("Flatten order:\n%q\nwant\n%q", names, want)
	}
}

func ExampleDiff() {
	a, err := Parse([]byte(`id: court-changchun/criminal-records
version: 1
title: 长春市中级人民法院 — 违法犯罪记录核查
parties: {requester: court-changchun, provider: police-jilin}
queries:
  - {query: criminal_record, purposes: [litigation], fields: [has_criminal_record]}
quotas: {per_day: 1000}
validity: {from: 2026-11-01T00:00:00+08:00, until: 2027-11-01T00:00:00+08:00}
status: active
`))
	if err != nil {
		panic(err)
	}
	b := *a
	b.Version, b.Quotas.PerDay = 2, 2000
	for _, c := range Diff(a, &b) {
		fmt.Println(c)
	}
	// Output:
	// version: 1 -> 2
	// quotas.per_day: 1000 -> 2000
}
