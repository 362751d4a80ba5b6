package policies

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sameAgreement fails unless a and b are equal, instants compared as
// instants with their offsets.
func sameAgreement(t *testing.T, a, b *Agreement) {
	t.Helper()
	x, y := *a, *b
	for _, p := range [][2]*time.Time{{&x.Validity.From, &y.Validity.From}, {&x.Validity.Until, &y.Validity.Until}} {
		if !p[0].Equal(*p[1]) || p[0].Format(time.RFC3339Nano) != p[1].Format(time.RFC3339Nano) {
			t.Errorf("instant %v, want %v", *p[1], *p[0])
		}
		*p[0], *p[1] = time.Time{}, time.Time{}
	}
	if (x.ReviewDeadline == nil) != (y.ReviewDeadline == nil) {
		t.Fatalf("review deadline %v, want %v", y.ReviewDeadline, x.ReviewDeadline)
	}
	if x.ReviewDeadline != nil {
		if !x.ReviewDeadline.Equal(*y.ReviewDeadline) || x.ReviewDeadline.Format(time.RFC3339Nano) != y.ReviewDeadline.Format(time.RFC3339Nano) {
			t.Errorf("review deadline %v, want %v", *y.ReviewDeadline, *x.ReviewDeadline)
		}
		x.ReviewDeadline, y.ReviewDeadline = nil, nil
	}
	if !reflect.DeepEqual(x, y) {
		t.Errorf("read back\n%+v\nwant\n%+v", y, x)
	}
}

func mustParse(t *testing.T, doc string) *Agreement {
	t.Helper()
	a, err := Parse([]byte(doc))
	if err != nil {
		t.Fatalf("%v\n%s", err, doc)
	}
	return a
}

func TestFormatRoundTrip(t *testing.T) {
	deadline := time.Date(2026, 10, 10, 0, 0, 0, 0, Beijing)
	full := mustParse(t, sampleDoc) // service hours, scope, schedules, quotas
	proposal := *full
	proposal.Status, proposal.ReviewDeadline = StatusProposed, &deadline
	proposal.Title = "法院 \"quoted\" # not a comment: {x} [y] \\ &a *b"
	proposal.Queries = append([]Terms(nil), full.Queries...)
	proposal.Queries[1].AnswerMismatch = true
	proposal.Queries[1].LegalBasis = "《民事诉讼法》第六十七条"
	proposal.Quotas = Quotas{PerMinute: 1, PerDay: 2, PerMonth: 3}
	proposal.Schedules = []Schedule{{Name: "weekly-mondays", Query: "identity", Cron: "30 9 * * 1", Recipient: "edu-jian"}}
	proposal.Validity = Validity{From: time.Date(2026, 10, 1, 0, 0, 0, 500, time.UTC), Until: time.Date(2027, 10, 1, 0, 0, 0, 0, Beijing)}
	bare := mustParse(t, `id: x
version: 3
title: t
parties: {requester: court-changchun, provider: police-jilin}
queries:
  - query: identity
    purposes: [litigation]
    fields: [as_of]
validity: {from: 2026-10-01T00:00:00+08:00, until: 2027-10-01T00:00:00+08:00}
status: terminated
`)
	for name, a := range map[string]*Agreement{"full": full, "proposal": &proposal, "bare": bare} {
		t.Run(name, func(t *testing.T) {
			doc, err := Format(a)
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(doc)
			if err != nil {
				t.Fatalf("Format's output does not parse: %v\n%s", err, doc)
			}
			sameAgreement(t, a, back)
			if d := Diff(a, back); len(d) > 0 {
				t.Errorf("Diff after the round trip: %v", d)
			}
			again, err := Format(back)
			if err != nil || !bytes.Equal(again, doc) {
				t.Errorf("Format is not stable: %v\n%s\nthen\n%s", err, doc, again)
			}
		})
	}
}

func TestFormatLayout(t *testing.T) {
	doc, err := Format(mustParse(t, sampleDoc))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"id: \"court-changchun/criminal-records\"\nversion: 1\n",
		"  - query: criminal_record\n    purposes: [\"litigation\"]\n    case_ref_required: true\n    fields: [as_of, has_criminal_record]\n",
		"    scope: [\"220100\"]\n",
		"quotas:\n  per_minute: 60\n  per_day: 1000\nservice_hours:\n",
		"  weekdays: [1, 2, 3, 4, 5]\n",
		"validity:\n  from: 2026-11-01T00:00:00+08:00\n",
		"    cron: \"0 2 * * *\"\n",
		"status: active\n",
	} {
		if !strings.Contains(string(doc), s) {
			t.Errorf("Format lacks %q:\n%s", s, doc)
		}
	}
	if strings.Contains(string(doc), "review_deadline") || strings.Contains(string(doc), "per_month") {
		t.Errorf("Format wrote what a leaves out:\n%s", doc)
	}
}

func TestFormatRefuses(t *testing.T) {
	base := func() *Agreement { return mustParse(t, sampleDoc) }
	cases := map[string]func(a *Agreement){
		"same parties":         func(a *Agreement) { a.Parties.Provider = a.Parties.Requester },
		"validity backwards":   func(a *Agreement) { a.Validity.From, a.Validity.Until = a.Validity.Until, a.Validity.From },
		"field injection":      func(a *Agreement) { a.Queries[0].Fields = []string{"as_of], purposes: [x"} },
		"query injection":      func(a *Agreement) { a.Queries[0].Query = "identity\n    scope: [\"220100\"]" },
		"negative quota":       func(a *Agreement) { a.Quotas.PerDay = -1 },
		"proposal no deadline": func(a *Agreement) { a.Status = StatusProposed },
		"no queries":           func(a *Agreement) { a.Queries = nil },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			a := base()
			mutate(a)
			doc, err := Format(a)
			if !errors.Is(err, ErrInvalid) || doc != nil {
				t.Fatalf("Format = %q, %v; want ErrInvalid", doc, err)
			}
		})
	}
}
