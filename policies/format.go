package policies

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Format writes a as an agreement.v2 YAML document in a fixed layout: free
// text as JSON-quoted strings (valid YAML, no type guessing), identifiers
// bare when they cannot be read as anything but a string, instants in
// RFC 3339 with their own offset.
//
// It is the inverse of Parse: the bytes it returns parse to an agreement
// with the same terms as a (Diff finds no change). Otherwise — a not
// valid, or text that would read back differently — it returns an error
// wrapping ErrInvalid and no bytes.
func Format(a *Agreement) ([]byte, error) {
	var b bytes.Buffer
	ts := func(t time.Time) string { return t.Format(time.RFC3339Nano) }
	fmt.Fprintf(&b, "id: %s\nversion: %d\ntitle: %s\n", quote(a.ID), a.Version, quote(a.Title))
	fmt.Fprintf(&b, "parties:\n  requester: %s\n  provider: %s\n", quote(a.Parties.Requester), quote(a.Parties.Provider))
	b.WriteString("queries:\n")
	for _, t := range a.Queries {
		fmt.Fprintf(&b, "  - query: %s\n    purposes: %s\n", ident(t.Query), list(t.Purposes, quote))
		if t.LegalBasis != "" {
			fmt.Fprintf(&b, "    legal_basis: %s\n", quote(t.LegalBasis))
		}
		if t.CaseRefRequired {
			b.WriteString("    case_ref_required: true\n")
		}
		fmt.Fprintf(&b, "    fields: %s\n", list(t.Fields, ident))
		if t.AnswerMismatch {
			b.WriteString("    answer_mismatch: true\n")
		}
		if len(t.Scope) > 0 {
			fmt.Fprintf(&b, "    scope: %s\n", list(t.Scope, quote))
		}
	}
	if a.Quotas.Limited() {
		b.WriteString("quotas:\n")
		for _, x := range []struct {
			k string
			v int64
		}{{"per_minute", a.Quotas.PerMinute}, {"per_day", a.Quotas.PerDay}, {"per_month", a.Quotas.PerMonth}} {
			if x.v != 0 {
				fmt.Fprintf(&b, "  %s: %d\n", x.k, x.v)
			}
		}
	}
	if h := a.ServiceHours; h != nil {
		fmt.Fprintf(&b, "service_hours:\n  from: %s\n  to: %s\n", quote(h.From), quote(h.To))
		if len(h.Weekdays) > 0 {
			d := make([]string, len(h.Weekdays))
			for i, n := range h.Weekdays {
				d[i] = strconv.Itoa(n)
			}
			fmt.Fprintf(&b, "  weekdays: [%s]\n", strings.Join(d, ", "))
		}
	}
	fmt.Fprintf(&b, "validity:\n  from: %s\n  until: %s\n", ts(a.Validity.From), ts(a.Validity.Until))
	if len(a.Schedules) > 0 {
		b.WriteString("schedules:\n")
		for _, s := range a.Schedules {
			fmt.Fprintf(&b, "  - name: %s\n    query: %s\n    cron: %s\n", quote(s.Name), ident(s.Query), quote(s.Cron))
			if s.Recipient != "" {
				fmt.Fprintf(&b, "    recipient: %s\n", quote(s.Recipient))
			}
		}
	}
	fmt.Fprintf(&b, "status: %s\n", ident(string(a.Status)))
	if a.DisputeWorkingDays > 0 {
		fmt.Fprintf(&b, "dispute_working_days: %d\n", a.DisputeWorkingDays)
	}
	if a.ReviewDeadline != nil {
		fmt.Fprintf(&b, "review_deadline: %s\n", ts(*a.ReviewDeadline))
	}

	doc := b.Bytes()
	back, err := Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("format %s v%d: %w", a.ID, a.Version, err)
	}
	if d := Diff(a, back); len(d) > 0 {
		return nil, fmt.Errorf("%w: format %s v%d: %s reads back as %s", ErrInvalid, a.ID, a.Version, d[0].Field, d[0].New)
	}
	return doc, nil
}

// quote is s as a JSON string, which YAML reads as that string.
func quote(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSuffix(buf.String(), "\n")
}

// ident is s bare when YAML can read it only as that string (a lower-case
// identifier such as a query type, a field or a status), else quoted.
func ident(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return quote(s)
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return quote(s)
		}
	}
	switch s {
	case "true", "false", "null", "yes", "no", "on", "off", "y", "n":
		return quote(s)
	}
	return s
}

func list(v []string, f func(string) string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = f(x)
	}
	return "[" + strings.Join(s, ", ") + "]"
}
