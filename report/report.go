// Package report computes the supervision reports (监督检查) auditors read:
// per agency, level, region and query type over a period, what was asked
// and decided, why requests were refused, how fast they were answered, what
// was disputed and what is overdue — and what looks wrong (Anomaly) — with
// every figure tied to the transparency log: the report names the
// checkpoint it was computed at and reconciles its decisions with the
// log's leaves (Reconcile).
//
// A report is data (Report, JSON schema certless.report.v1 in schemas/);
// Write renders it as JSON, CSV or one self-contained HTML file, and
// SignDetached/VerifyDetached seal the file with the broker's key (a
// detached JWS, RFC 7515 appendix F, beside it).
package report

import (
	"context"
	"maps"
	"math"
	"slices"
	"sort"
	"time"
)

// Schema names the report format (schemas/json/report.v1.json).
const Schema = "certless.report.v1"

// Decision is one decision as a report reads it: never the receipt,
// never a subject — SubjectKey is the keyed digest the broker stores.
type Decision struct {
	Agency, Query, Outcome, Reason, Type string
	SubjectKey                           string
	DecidedAt                            time.Time
	// LatencyMicros is -1 when not measured; LeafIndex -1 when the
	// decision predates the log.
	LatencyMicros, LeafIndex int64
}

// Agency is what the docking directory says of an agency.
type Agency struct {
	ID     string `json:"id"`
	Name   string `json:"name,omitempty"`
	Level  string `json:"level,omitempty"`
	Region string `json:"region,omitempty"`
}

// Filter narrows a report: to one level (province, prefecture, county),
// one region code and what lies under it, or one agency.
type Filter struct {
	Level  string `json:"level,omitempty"`
	Region string `json:"region,omitempty"`
	Agency string `json:"agency,omitempty"`
}

// under reports whether region lies in the region code prefix of code
// ("220000" covers 22xxxx, "220800" covers 2208xx).
func under(region, code string) bool {
	switch {
	case code == "" || region == code:
		return true
	case len(code) != 6 || len(region) != 6:
		return false
	case code[2:] == "0000":
		return region[:2] == code[:2]
	case code[4:] == "00":
		return region[:4] == code[:4]
	}
	return false
}

// Match reports whether a decision of agency a is in the filter.
func (f Filter) Match(a Agency) bool {
	return (f.Agency == "" || a.ID == f.Agency) && (f.Level == "" || a.Level == f.Level) && under(a.Region, f.Region)
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Figures are the counts of one scope (the whole report, an agency, a
// query type of an agency, a region).
type Figures struct {
	Requests  int            `json:"requests"`
	ByOutcome map[string]int `json:"by_outcome"`
	// ByReason counts the reasons of denials, rejections and the rest.
	ByReason map[string]int `json:"by_reason"`
	// Latency is over the decisions whose latency was measured
	// (Measured); OnTime of those within the report's deadline.
	Latency    *Latency `json:"latency_ms,omitempty"`
	Measured   int      `json:"latency_measured"`
	OnTime     int      `json:"on_time"`
	OnTimeRate *float64 `json:"on_time_rate,omitempty"`
	// QuotaDenials counts quota_exceeded denials (quota pressure); PeakDay
	// is the most decisions in one Beijing day.
	QuotaDenials int `json:"quota_denials"`
	PeakDay      int `json:"peak_day"`
	// LeafRange is the first and last transparency-log index of the
	// scope's decisions ([-1, -1]: none logged).
	LeafRange [2]int64 `json:"leaf_range"`
}

// acc accumulates Figures.
type acc struct {
	f      Figures
	lat    []float64
	perDay map[string]int
}

func newAcc() *acc {
	return &acc{f: Figures{ByOutcome: map[string]int{}, ByReason: map[string]int{}, LeafRange: [2]int64{-1, -1}}, perDay: map[string]int{}}
}

// Beijing is the zone of days and hours in reports.
var Beijing = time.FixedZone("CST", 8*3600)

func (a *acc) add(d Decision, deadline time.Duration) {
	f := &a.f
	f.Requests++
	f.ByOutcome[d.Outcome]++
	if d.Reason != "" {
		f.ByReason[d.Reason]++
	}
	if d.Reason == "quota_exceeded" {
		f.QuotaDenials++
	}
	if d.LatencyMicros >= 0 {
		f.Measured++
		a.lat = append(a.lat, float64(d.LatencyMicros)/1000)
		if time.Duration(d.LatencyMicros)*time.Microsecond <= deadline {
			f.OnTime++
		}
	}
	a.perDay[d.DecidedAt.In(Beijing).Format(time.DateOnly)]++
	if d.LeafIndex >= 0 {
		if f.LeafRange[0] < 0 || d.LeafIndex < f.LeafRange[0] {
			f.LeafRange[0] = d.LeafIndex
		}
		f.LeafRange[1] = max(f.LeafRange[1], d.LeafIndex)
	}
}

func (a *acc) figures() Figures {
	f := a.f
	if len(a.lat) > 0 {
		sort.Float64s(a.lat)
		f.Latency = &Latency{P50: quantile(a.lat, 0.5), P90: quantile(a.lat, 0.9), P99: quantile(a.lat, 0.99), Max: a.lat[len(a.lat)-1]}
		r := float64(f.OnTime) / float64(f.Measured)
		f.OnTimeRate = &r
	}
	for _, n := range a.perDay {
		f.PeakDay = max(f.PeakDay, n)
	}
	return f
}

// quantile is the nearest-rank quantile of sorted xs, to the microsecond.
func quantile(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return math.Round(xs[max(i, 0)]*1000) / 1000
}

// AgencyFigures are an agency's figures, and per query type.
type AgencyFigures struct {
	Agency
	Figures
	Queries []QueryFigures `json:"queries"`
}

// QueryFigures are the figures of one query type.
type QueryFigures struct {
	Query string `json:"query"`
	Figures
}

// RegionFigures roll a region's agencies up: a county's into its
// prefecture's, a prefecture's into the province's.
type RegionFigures struct {
	Code     string `json:"code"`
	Name     string `json:"name,omitempty"`
	Level    string `json:"level"`
	Agencies int    `json:"agencies"`
	Figures
}

// Period is the report's half-open interval.
type Period struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// Checkpoint is the transparency-log checkpoint a report was computed at.
type Checkpoint struct {
	Origin   string `json:"origin"`
	Size     int64  `json:"size"`
	RootHash string `json:"root_hash"`
}

// Reconciliation says whether the report's decisions are the log's.
type Reconciliation struct {
	// Decisions counted; Logged those with a leaf under the checkpoint;
	// Unlogged without a leaf (older than the log); Pending with a leaf
	// the checkpoint does not cover yet.
	Decisions int `json:"decisions"`
	Logged    int `json:"logged"`
	Unlogged  int `json:"unlogged"`
	Pending   int `json:"pending"`
	// LeavesChecked are the leaves read back and compared with their
	// decisions; DecisionLeaves the decision leaves in the report's leaf
	// range whose time, agency and filter fall in the report.
	LeavesChecked  int  `json:"leaves_checked"`
	DecisionLeaves int  `json:"decision_leaves"`
	Reconciled     bool `json:"reconciled"`
	// Differences names the first mismatches.
	Differences []string `json:"differences"`
}

// Disputes are the disputes opened in the period.
type Disputes struct {
	Opened   int            `json:"opened"`
	ByStatus map[string]int `json:"by_status"`
	// Resolved were confirmed or corrected; ResolutionHours their time to
	// resolution (median, max).
	Resolved           int      `json:"resolved"`
	ResolutionHoursP50 *float64 `json:"resolution_hours_p50,omitempty"`
	ResolutionHoursMax *float64 `json:"resolution_hours_max,omitempty"`
}

// Dispute is one dispute as a report reads it.
type Dispute struct {
	Agency, Owner, Status string
	OpenedAt, ResolvedAt  time.Time
	Overdue               bool
}

// Overdue is what waits past its deadline at the report's end.
type Overdue struct {
	// Agreements are proposals past their review deadline.
	Agreements []string `json:"agreements"`
	// Disputes the data owners have not answered in time.
	Disputes int `json:"disputes"`
	// Batches of periodic exchange unacknowledged past the deadline.
	Batches []OverdueBatches `json:"batches"`
}

// OverdueBatches are one schedule's overdue batches.
type OverdueBatches struct {
	Schedule  string `json:"schedule"`
	Recipient string `json:"recipient"`
	Overdue   int    `json:"overdue"`
	// Oldest is the sequence of the oldest.
	Oldest int `json:"oldest"`
}

// Report is one supervision report.
type Report struct {
	Schema      string    `json:"schema"`
	Title       string    `json:"title"`
	Broker      string    `json:"broker"`
	GeneratedAt time.Time `json:"generated_at"`
	Period      Period    `json:"period"`
	Filter      Filter    `json:"filter"`
	// OnTimeMS is the deadline of the on-time figures.
	OnTimeMS       int64           `json:"on_time_deadline_ms"`
	Checkpoint     *Checkpoint     `json:"checkpoint"`
	Reconciliation Reconciliation  `json:"reconciliation"`
	Totals         Figures         `json:"totals"`
	Agencies       []AgencyFigures `json:"agencies"`
	Regions        []RegionFigures `json:"regions"`
	Disputes       Disputes        `json:"disputes"`
	Overdue        Overdue         `json:"overdue"`
	Anomalies      []Anomaly       `json:"anomalies"`
	// Thresholds are the anomaly thresholds the report used.
	Thresholds Thresholds `json:"thresholds"`
}

// Input is what a report is computed from.
type Input struct {
	Broker      string
	GeneratedAt time.Time
	Period      Period
	Filter      Filter
	// Deadline is the on-time deadline (default 2s).
	Deadline time.Duration
	// Agencies are the directory's agencies; a decision of an agency not
	// in it counts with no level or region.
	Agencies map[string]Agency
	// Regions names region codes (for the roll-up); optional.
	RegionName func(code string) string
	Disputes   []Dispute
	Overdue    Overdue
	Checkpoint *Checkpoint
	Thresholds Thresholds
}

// DefaultDeadline is the default on-time deadline.
const DefaultDeadline = 2 * time.Second

// Builder computes a report from decisions fed in time order.
type Builder struct {
	in       Input
	total    *acc
	agencies map[string]*acc
	queries  map[string]map[string]*acc
	regions  map[string]*acc
	members  map[string]map[string]bool
	anomaly  *detector
	seen     []Decision // of the period, for reconciliation
}

// NewBuilder starts a report of in; Baseline decisions (before the
// period) and the period's go through Add.
func NewBuilder(in Input) *Builder {
	if in.Deadline <= 0 {
		in.Deadline = DefaultDeadline
	}
	in.Thresholds = in.Thresholds.withDefaults()
	return &Builder{in: in, total: newAcc(), agencies: map[string]*acc{}, queries: map[string]map[string]*acc{},
		regions: map[string]*acc{}, members: map[string]map[string]bool{}, anomaly: newDetector(in.Thresholds, in.Period)}
}

func (b *Builder) agency(id string) Agency {
	if a, ok := b.in.Agencies[id]; ok {
		a.ID = id
		return a
	}
	return Agency{ID: id}
}

// Add counts one decision: in the baseline window before the period it
// feeds the anomaly detectors' baselines only; in the period, everything.
// Decisions outside the filter are skipped.
func (b *Builder) Add(d Decision) {
	a := b.agency(d.Agency)
	if !b.in.Filter.Match(a) {
		return
	}
	if d.DecidedAt.Before(b.in.Period.From) {
		b.anomaly.baseline(d)
		return
	}
	if !d.DecidedAt.Before(b.in.Period.To) {
		return
	}
	b.anomaly.add(d)
	b.seen = append(b.seen, d)
	b.total.add(d, b.in.Deadline)
	get := func(m map[string]*acc, k string) *acc {
		if m[k] == nil {
			m[k] = newAcc()
		}
		return m[k]
	}
	get(b.agencies, d.Agency).add(d, b.in.Deadline)
	if b.queries[d.Agency] == nil {
		b.queries[d.Agency] = map[string]*acc{}
	}
	q := d.Query
	if q == "" {
		q = "(" + d.Type + ")"
	}
	get(b.queries[d.Agency], q).add(d, b.in.Deadline)
	for _, code := range regionChain(a.Region) {
		get(b.regions, code).add(d, b.in.Deadline)
		if b.members[code] == nil {
			b.members[code] = map[string]bool{}
		}
		b.members[code][d.Agency] = true
	}
}

// regionChain is a county's, prefecture's and province's codes.
func regionChain(code string) []string {
	if len(code) != 6 {
		return nil
	}
	out := []string{code}
	if p := code[:4] + "00"; p != code {
		out = append(out, p)
	}
	if p := code[:2] + "0000"; p != out[len(out)-1] {
		out = append(out, p)
	}
	return out
}

func levelOf(code string) string {
	switch {
	case code[2:] == "0000":
		return "province"
	case code[4:] == "00":
		return "prefecture"
	}
	return "county"
}

// Report finishes the report; leaves, when set, reads the log's leaves
// for the reconciliation (see Reconcile).
func (b *Builder) Report(ctx context.Context, leaves LeafReader) (*Report, error) {
	in := b.in
	r := &Report{Schema: Schema, Title: "Certless supervision report 监督检查报告", Broker: in.Broker, GeneratedAt: in.GeneratedAt.UTC(),
		Period: Period{From: in.Period.From.UTC(), To: in.Period.To.UTC()}, Filter: in.Filter, OnTimeMS: in.Deadline.Milliseconds(),
		Checkpoint: in.Checkpoint, Totals: b.total.figures(), Overdue: in.Overdue, Thresholds: in.Thresholds,
		Agencies: []AgencyFigures{}, Regions: []RegionFigures{}, Anomalies: []Anomaly{}}
	if r.Overdue.Agreements == nil {
		r.Overdue.Agreements = []string{}
	}
	if r.Overdue.Batches == nil {
		r.Overdue.Batches = []OverdueBatches{}
	}
	for _, id := range slices.Sorted(maps.Keys(b.agencies)) {
		af := AgencyFigures{Agency: b.agency(id), Figures: b.agencies[id].figures(), Queries: []QueryFigures{}}
		for _, q := range slices.Sorted(maps.Keys(b.queries[id])) {
			af.Queries = append(af.Queries, QueryFigures{Query: q, Figures: b.queries[id][q].figures()})
		}
		r.Agencies = append(r.Agencies, af)
	}
	for _, code := range slices.Sorted(maps.Keys(b.regions)) {
		rf := RegionFigures{Code: code, Level: levelOf(code), Agencies: len(b.members[code]), Figures: b.regions[code].figures()}
		if in.RegionName != nil {
			rf.Name = in.RegionName(code)
		}
		r.Regions = append(r.Regions, rf)
	}
	r.Disputes = disputeFigures(in.Disputes, in.Period, func(agency string) bool { return in.Filter.Match(b.agency(agency)) })
	r.Anomalies = b.anomaly.anomalies()
	var err error
	r.Reconciliation, err = Reconcile(ctx, b.seen, in.Checkpoint, leaves, func(agency string) bool { return in.Filter.Match(b.agency(agency)) }, in.Period)
	return r, err
}

func disputeFigures(ds []Dispute, p Period, keep func(agency string) bool) Disputes {
	out := Disputes{ByStatus: map[string]int{}}
	var hours []float64
	for _, d := range ds {
		if !keep(d.Agency) || d.OpenedAt.Before(p.From) || !d.OpenedAt.Before(p.To) {
			continue
		}
		out.Opened++
		out.ByStatus[d.Status]++
		if !d.ResolvedAt.IsZero() {
			out.Resolved++
			hours = append(hours, d.ResolvedAt.Sub(d.OpenedAt).Hours())
		}
	}
	if len(hours) > 0 {
		sort.Float64s(hours)
		p50, mx := quantile(hours, 0.5), math.Round(hours[len(hours)-1]*1000)/1000
		out.ResolutionHoursP50, out.ResolutionHoursMax = &p50, &mx
	}
	return out
}

// shortKey shows a subject key without making it a handle: its first
// twelve characters.
func shortKey(k string) string {
	if len(k) > 17 {
		return k[:17] + "…"
	}
	return k
}
