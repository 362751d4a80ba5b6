package policies

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Field is one term of an agreement as a reader sees it: a dotted name
// ("quotas.per_day", "queries[identity].scope") and a readable value
// ("no limit", "the requester's own region", "always" where the document leaves it out).
type Field struct{ Name, Value string }

// Change is one field that differs between two agreements. A field only
// one side has (a query, a schedule, a legal basis, a review deadline) has
// the value None on the other.
type Change struct{ Field, Old, New string }

// None is the value of a field that one side of a Change does not have.
const None = "(none)"

// String is "FIELD: OLD -> NEW".
func (c Change) String() string { return c.Field + ": " + c.Old + " -> " + c.New }

// The sections of an agreement, in the order Flatten and Diff list them.
const (
	secID = iota
	secVersion
	secTitle
	secParties
	secQueries
	secQuotas
	secHours
	secValidity
	secSchedules
	secStatus
	secReview
)

// querySubs is the order of a query's fields.
var querySubs = []string{"purposes", "fields", "case_ref_required", "scope", "legal_basis", "answer_mismatch"}

// keyed is a field with its place in the order: section, item (the query
// or schedule name) and position within the item.
type keyed struct {
	Field
	sec  int
	item string
	sub  int
}

func flatten(a *Agreement) []keyed {
	var out []keyed
	add := func(sec int, item string, sub int, name, val string) {
		out = append(out, keyed{Field{name, val}, sec, item, sub})
	}
	add(secID, "", 0, "id", a.ID)
	add(secVersion, "", 0, "version", strconv.Itoa(a.Version))
	add(secTitle, "", 0, "title", a.Title)
	add(secParties, "", 0, "parties.requester", a.Parties.Requester)
	add(secParties, "", 1, "parties.provider", a.Parties.Provider)
	qs := slices.Clone(a.Queries)
	sort.Slice(qs, func(i, j int) bool { return qs[i].Query < qs[j].Query })
	for _, q := range qs {
		vals := map[string]string{
			"purposes":          strings.Join(q.Purposes, ", "),
			"fields":            strings.Join(q.Fields, ", "),
			"case_ref_required": strconv.FormatBool(q.CaseRefRequired),
			"scope":             strings.Join(q.Scope, ", "),
		}
		if vals["scope"] == "" {
			vals["scope"] = "the requester's own region"
		}
		if q.LegalBasis != "" {
			vals["legal_basis"] = q.LegalBasis
		}
		if q.AnswerMismatch {
			vals["answer_mismatch"] = "true"
		}
		for i, s := range querySubs {
			if v, ok := vals[s]; ok {
				add(secQueries, q.Query, i, "queries["+q.Query+"]."+s, v)
			}
		}
	}
	quota := func(n int64) string {
		if n == 0 {
			return "no limit"
		}
		return strconv.FormatInt(n, 10)
	}
	add(secQuotas, "", 0, "quotas.per_minute", quota(a.Quotas.PerMinute))
	add(secQuotas, "", 1, "quotas.per_day", quota(a.Quotas.PerDay))
	add(secQuotas, "", 2, "quotas.per_month", quota(a.Quotas.PerMonth))
	hours := "always"
	if h := a.ServiceHours; h != nil {
		hours = h.From + "-" + h.To + " Beijing time"
		if len(h.Weekdays) > 0 {
			d := make([]string, len(h.Weekdays))
			for i, n := range h.Weekdays {
				d[i] = strconv.Itoa(n)
			}
			hours += ", weekdays " + strings.Join(d, ", ")
		}
	}
	add(secHours, "", 0, "service_hours", hours)
	add(secValidity, "", 0, "validity.from", a.Validity.From.Format(time.RFC3339Nano))
	add(secValidity, "", 1, "validity.until", a.Validity.Until.Format(time.RFC3339Nano))
	ss := slices.Clone(a.Schedules)
	sort.Slice(ss, func(i, j int) bool { return ss[i].Name < ss[j].Name })
	for _, s := range ss {
		to := s.Recipient
		if to == "" {
			to = "the requester"
		}
		add(secSchedules, s.Name, 0, "schedules["+s.Name+"]", fmt.Sprintf("%s at %q to %s", s.Query, s.Cron, to))
	}
	add(secStatus, "", 0, "status", string(a.Status))
	add(secStatus, "", 1, "dispute_working_days", strconv.Itoa(a.DisputeDays()))
	if a.ReviewDeadline != nil {
		add(secReview, "", 0, "review_deadline", a.ReviewDeadline.Format(time.RFC3339Nano))
	}
	return out
}

// Flatten lists a's terms in a fixed order: id, version, title, parties,
// queries (by name; each with purposes, fields, case_ref_required, scope,
// and legal_basis and answer_mismatch when set), quotas, service_hours,
// validity, schedules (by name), status, review_deadline (when set).
func Flatten(a *Agreement) []Field {
	k := flatten(a)
	out := make([]Field, len(k))
	for i, f := range k {
		out[i] = f.Field
	}
	return out
}

// Diff lists the fields of Flatten that differ between a and b, in
// Flatten's order; a field only one side has comes where that side has it,
// with None on the other. Equal terms give no changes, whatever the
// layout of the documents.
func Diff(a, b *Agreement) []Change {
	fa, fb := flatten(a), flatten(b)
	va, vb := map[string]string{}, map[string]string{}
	for _, f := range fa {
		va[f.Name] = f.Value
	}
	for _, f := range fb {
		vb[f.Name] = f.Value
	}
	var all []keyed
	seen := map[string]bool{}
	for _, f := range append(fa, fb...) {
		if !seen[f.Name] {
			seen[f.Name] = true
			all = append(all, f)
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		x, y := all[i], all[j]
		if x.sec != y.sec {
			return x.sec < y.sec
		}
		if x.item != y.item {
			return x.item < y.item
		}
		return x.sub < y.sub
	})
	var out []Change
	for _, f := range all {
		x, okx := va[f.Name]
		y, oky := vb[f.Name]
		switch {
		case okx && oky && x == y:
		case !okx:
			out = append(out, Change{f.Name, None, y})
		case !oky:
			out = append(out, Change{f.Name, x, None})
		default:
			out = append(out, Change{f.Name, x, y})
		}
	}
	return out
}
