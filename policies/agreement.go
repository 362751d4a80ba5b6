package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/adapters/regions"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// SchemaName is the JSON Schema every agreement document must match.
const SchemaName = "agreement.v2"

// Bounds on what is read; larger input is refused, never truncated.
const (
	MaxDocumentBytes   = 64 << 10  // one agreement file
	MaxSignaturesBytes = 64 << 10  // one .jws.json file
	MaxStatusBytes     = 256 << 10 // one .status.jws file
	MaxStatements      = 256       // lifecycle statements in one .status.jws
	MaxFiles           = 4096      // agreement files in one folder
	maxDepth           = 16        // nesting of a document
)

// Status is the lifecycle state of an agreement.
type Status string

// The states. Only an active agreement within its validity is in force.
const (
	StatusProposed   Status = "proposed"
	StatusActive     Status = "active"
	StatusSuspended  Status = "suspended"
	StatusExpired    Status = "expired"
	StatusTerminated Status = "terminated"
)

// Agreement is one version of a data-sharing agreement, as decoded by
// Parse. A value from a Set must not be modified.
type Agreement struct {
	ID           string        `json:"id"`
	Version      int           `json:"version"`
	Title        string        `json:"title"`
	Parties      Parties       `json:"parties"`
	Queries      []Terms       `json:"queries"`
	Quotas       Quotas        `json:"quotas"`
	ServiceHours *ServiceHours `json:"service_hours,omitempty"`
	Validity     Validity      `json:"validity"`
	Schedules    []Schedule    `json:"schedules,omitempty"`
	Status       Status        `json:"status"`
	// ReviewDeadline is when a proposal should be decided; required when
	// Status is proposed.
	ReviewDeadline *time.Time `json:"review_deadline,omitempty"`
	// DisputeWorkingDays is the provider's time to answer a dispute, in
	// working days; 0 means DefaultDisputeWorkingDays.
	DisputeWorkingDays int `json:"dispute_working_days,omitempty"`
}

// DefaultDisputeWorkingDays is the time to answer a dispute when an
// agreement sets none.
const DefaultDisputeWorkingDays = 5

// DisputeDays is the agreement's time to answer a dispute, in working days.
func (a *Agreement) DisputeDays() int {
	if a == nil || a.DisputeWorkingDays <= 0 {
		return DefaultDisputeWorkingDays
	}
	return a.DisputeWorkingDays
}

// Parties names the two signatories by directory (agency) id.
type Parties struct {
	Requester string `json:"requester"`
	Provider  string `json:"provider"`
}

// Terms is what the agreement allows for one query type.
type Terms struct {
	Query           string   `json:"query"`
	Purposes        []string `json:"purposes"`
	LegalBasis      string   `json:"legal_basis,omitempty"`
	CaseRefRequired bool     `json:"case_ref_required,omitempty"`
	Fields          []string `json:"fields"`
	// AnswerMismatch (identity only) lets the answer say that the ID
	// number exists under another name.
	AnswerMismatch bool `json:"answer_mismatch,omitempty"`
	// Scope lists GB/T 2260 codes; empty means the requester's own region in
	// the docking directory (Request.AgencyRegion).
	Scope []string `json:"scope,omitempty"`
}

// Quotas limits uses per requester and agreement in calendar windows of
// Beijing time; 0 means no limit.
type Quotas struct {
	PerMinute int64 `json:"per_minute,omitempty"`
	PerDay    int64 `json:"per_day,omitempty"`
	PerMonth  int64 `json:"per_month,omitempty"`
}

// Limited reports whether any window has a limit.
func (q Quotas) Limited() bool { return q.PerMinute > 0 || q.PerDay > 0 || q.PerMonth > 0 }

// ServiceHours is a daily window in Beijing time: From inclusive, To
// exclusive ("HH:MM"; To may be "24:00"), on Weekdays (1 = Monday .. 7 =
// Sunday; empty means every day).
type ServiceHours struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Weekdays []int  `json:"weekdays,omitempty"`
}

// Validity is when the agreement is in force: From inclusive, Until
// exclusive.
type Validity struct {
	From  time.Time `json:"from"`
	Until time.Time `json:"until"`
}

// Schedule is a periodic exchange (issue 10's scheduler reads it): Cron is a
// standard 5-field expression in Beijing time; Recipient "" means the
// requester.
type Schedule struct {
	Name      string `json:"name"`
	Query     string `json:"query"`
	Cron      string `json:"cron"`
	Recipient string `json:"recipient,omitempty"`
}

// Terms returns the terms for query, or nil.
func (a *Agreement) Terms(query string) *Terms {
	for i := range a.Queries {
		if a.Queries[i].Query == query {
			return &a.Queries[i]
		}
	}
	return nil
}

// Party reports whether agency is one of the two parties.
func (a *Agreement) Party(agency string) bool {
	return agency == a.Parties.Requester || agency == a.Parties.Provider
}

// Beijing is China Standard Time, UTC+08:00 (no daylight saving), the zone
// of service hours, quota windows and schedules. Fixed, so no tzdata is
// needed.
var Beijing = time.FixedZone("CST", 8*60*60)

// ErrInvalid is wrapped by every error of Parse.
var ErrInvalid = errors.New("policies: invalid agreement")

// Parse decodes and validates one agreement document, YAML or JSON (JSON is
// read as the YAML it is). See the package comment for what is refused.
func Parse(b []byte) (*Agreement, error) {
	if len(b) > MaxDocumentBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrInvalid, len(b), MaxDocumentBytes)
	}
	js, err := yamlToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	set, err := schemas.Default()
	if err != nil {
		return nil, err
	}
	if err := set.Validate(SchemaName, js); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var a Agreement
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := a.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return &a, nil
}

// check is what the schema cannot say.
func (a *Agreement) check() error {
	p := a.Parties
	for _, id := range []string{p.Requester, p.Provider} {
		if err := keys.CheckAgency(id); err != nil {
			return fmt.Errorf("/parties: %v", err)
		}
	}
	if p.Requester == p.Provider {
		return errors.New("/parties: requester and provider are the same")
	}
	seen := map[string]bool{}
	for i, t := range a.Queries {
		at := fmt.Sprintf("/queries/%d", i)
		if seen[t.Query] {
			return fmt.Errorf("%s/query: %s is listed twice", at, t.Query)
		}
		seen[t.Query] = true
		documented := adapters.QueryType(t.Query).Fields()
		for j, f := range t.Fields {
			if !slices.Contains(documented, f) {
				return fmt.Errorf("%s/fields/%d: %q is not a field of %s (documented: %s)", at, j, f, t.Query, strings.Join(documented, ", "))
			}
		}
		if t.AnswerMismatch && t.Query != string(adapters.QueryIdentity) {
			return fmt.Errorf("%s/answer_mismatch: only for identity", at)
		}
		for j, c := range t.Scope {
			if _, ok := regions.Lookup(c); !ok {
				return fmt.Errorf("%s/scope/%d: %s is not a known GB/T 2260 region", at, j, c)
			}
		}
	}
	if !a.Validity.From.Before(a.Validity.Until) {
		return errors.New("/validity: from is not before until")
	}
	if h := a.ServiceHours; h != nil {
		from, _ := clock(h.From)
		to, _ := clock(h.To)
		if from >= to {
			return errors.New("/service_hours: from is not before to")
		}
	}
	for i, s := range a.Schedules {
		at := fmt.Sprintf("/schedules/%d", i)
		if len(strings.Fields(s.Cron)) != 5 {
			return fmt.Errorf("%s/cron: want 5 fields", at)
		}
		if _, err := cron.ParseStandard(s.Cron); err != nil {
			return fmt.Errorf("%s/cron: %v", at, err)
		}
		if a.Terms(s.Query) == nil {
			return fmt.Errorf("%s/query: %s is not among the agreement's queries", at, s.Query)
		}
		for _, o := range a.Schedules[:i] {
			if o.Name == s.Name {
				return fmt.Errorf("%s/name: %q is used twice", at, s.Name)
			}
		}
	}
	return nil
}

// clock parses "HH:MM" (or "24:00") into minutes since midnight.
func clock(s string) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil {
		return 0, false
	}
	return hh*60 + mm, true
}

// yamlToJSON turns one YAML document into JSON, keeping every scalar's text
// as written (a timestamp stays the string it was, an integer must be
// decimal) and refusing what would make two readers see different
// documents: duplicate keys, anchors and aliases, merge keys, tags other
// than the core ones, a second document.
func yamlToJSON(b []byte) ([]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty document")
		}
		return nil, err
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	v, err := nodeValue(&doc, 0)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func nodeValue(n *yaml.Node, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("line %d: nested deeper than %d", n.Line, maxDepth)
	}
	if n.Anchor != "" {
		return nil, fmt.Errorf("line %d: anchors are not allowed", n.Line)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, errors.New("empty document")
		}
		return nodeValue(n.Content[0], depth)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
				return nil, fmt.Errorf("line %d: keys must be strings", k.Line)
			}
			if k.Value == "<<" && k.Style == 0 {
				return nil, fmt.Errorf("line %d: merge keys are not allowed", k.Line)
			}
			if _, dup := m[k.Value]; dup {
				return nil, fmt.Errorf("line %d: key %q twice", k.Line, k.Value)
			}
			v, err := nodeValue(n.Content[i+1], depth+1)
			if err != nil {
				return nil, err
			}
			m[k.Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		if len(n.Content) > 1024 {
			return nil, fmt.Errorf("line %d: list longer than 1024", n.Line)
		}
		l := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := nodeValue(c, depth+1)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str", "!!timestamp":
			return n.Value, nil
		case "!!null":
			return nil, nil
		case "!!bool":
			switch n.Value {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
			return nil, fmt.Errorf("line %d: booleans are true or false, not %q", n.Line, n.Value)
		case "!!int":
			i, err := strconv.ParseInt(n.Value, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: integers are decimal, not %q", n.Line, n.Value)
			}
			return i, nil
		case "!!float":
			f, err := strconv.ParseFloat(n.Value, 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				return nil, fmt.Errorf("line %d: bad number %q", n.Line, n.Value)
			}
			return f, nil
		}
		return nil, fmt.Errorf("line %d: tag %s is not allowed", n.Line, n.Tag)
	case yaml.AliasNode:
		return nil, fmt.Errorf("line %d: aliases are not allowed", n.Line)
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node", n.Line)
}
