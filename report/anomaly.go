package report

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"time"
)

// Thresholds tune the anomaly detectors; a zero field takes its default.
type Thresholds struct {
	// BaselineDays is the window before the period an agency's usual
	// volume and denial rate are taken from (default 28).
	BaselineDays int `json:"baseline_days"`
	// VolumeFactor: an agency's decisions per day in the period above
	// this many times its baseline's (default 3), with at least MinVolume
	// decisions in the period (default 20), is a volume spike.
	VolumeFactor float64 `json:"volume_factor"`
	MinVolume    int     `json:"min_volume"`
	// OffHoursBurst: this many requests of one agency refused as outside
	// its service hours within one hour (default 10).
	OffHoursBurst int `json:"off_hours_burst"`
	// SubjectAgencies: one subject (by its keyed digest) asked about by
	// this many agencies (default 3) within SubjectWindow (default 24h).
	SubjectAgencies int      `json:"subject_agencies"`
	SubjectWindow   Duration `json:"subject_window"`
	// PurposeMismatch: this many requests of one agency refused because
	// the purpose does not fit the query (default 5).
	PurposeMismatch int `json:"purpose_mismatch"`
	// DenialRise: an agency's share of denied and rejected decisions in
	// the period above its baseline's by this much (default 0.25), with
	// MinVolume decisions in both.
	DenialRise float64 `json:"denial_rise"`
}

// Duration is a time.Duration that reads and writes as "24h".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

func (t Thresholds) withDefaults() Thresholds {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&t.BaselineDays, 28)
	def(&t.MinVolume, 20)
	def(&t.OffHoursBurst, 10)
	def(&t.SubjectAgencies, 3)
	def(&t.PurposeMismatch, 5)
	if t.VolumeFactor <= 0 {
		t.VolumeFactor = 3
	}
	if t.SubjectWindow <= 0 {
		t.SubjectWindow = Duration(24 * time.Hour)
	}
	if t.DenialRise <= 0 {
		t.DenialRise = 0.25
	}
	return t
}

// Anomaly kinds.
const (
	AnomalyVolumeSpike     = "volume_spike"
	AnomalyOffHoursBurst   = "off_hours_burst"
	AnomalySubjectAgencies = "subject_many_agencies"
	AnomalyPurposeMismatch = "purpose_mismatch"
	AnomalyDenialRise      = "denial_rise"
)

// Anomaly is one thing that looks wrong, with its evidence.
type Anomaly struct {
	Kind   string `json:"kind"`
	Agency string `json:"agency,omitempty"`
	// Agencies are the agencies of a subject asked about by many.
	Agencies []string `json:"agencies,omitempty"`
	// Subject is the keyed digest of the subject, shortened; never the
	// subject.
	Subject string `json:"subject,omitempty"`
	Detail  string `json:"detail"`
	// Evidence: the count, the baseline it is set against, when, and the
	// decisions' leaf range in the transparency log.
	Count     int       `json:"count"`
	Baseline  *float64  `json:"baseline,omitempty"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	LeafRange [2]int64  `json:"leaf_range"`
}

type agencyStats struct {
	n, refused int
}

type detector struct {
	t      Thresholds
	period Period
	base   map[string]*agencyStats
	cur    map[string]*agencyStats
	curDs  map[string][]Decision // per agency, the period's decisions
	// offHours and purpose are the refusals of those reasons per agency.
	offHours, purpose map[string][]Decision
	// subjects: per subject key, its decisions (time order).
	subjects map[string][]Decision
}

func newDetector(t Thresholds, p Period) *detector {
	return &detector{t: t, period: p, base: map[string]*agencyStats{}, cur: map[string]*agencyStats{}, curDs: map[string][]Decision{},
		offHours: map[string][]Decision{}, purpose: map[string][]Decision{}, subjects: map[string][]Decision{}}
}

func refused(d Decision) bool { return d.Outcome == "denied" || d.Outcome == "rejected" }

func stat(m map[string]*agencyStats, k string) *agencyStats {
	if m[k] == nil {
		m[k] = &agencyStats{}
	}
	return m[k]
}

// BaselineFrom is where the baseline window of a period starts.
func (t Thresholds) BaselineFrom(from time.Time) time.Time {
	return from.AddDate(0, 0, -t.withDefaults().BaselineDays)
}

func (x *detector) baseline(d Decision) {
	if d.DecidedAt.Before(x.t.BaselineFrom(x.period.From)) {
		return
	}
	s := stat(x.base, d.Agency)
	s.n++
	if refused(d) {
		s.refused++
	}
}

func (x *detector) add(d Decision) {
	s := stat(x.cur, d.Agency)
	s.n++
	if refused(d) {
		s.refused++
	}
	x.curDs[d.Agency] = append(x.curDs[d.Agency], d)
	switch d.Reason {
	case "outside_service_hours":
		x.offHours[d.Agency] = append(x.offHours[d.Agency], d)
	case "purpose_not_allowed":
		x.purpose[d.Agency] = append(x.purpose[d.Agency], d)
	}
	if d.SubjectKey != "" {
		x.subjects[d.SubjectKey] = append(x.subjects[d.SubjectKey], d)
	}
}

func leafRange(ds []Decision) [2]int64 {
	r := [2]int64{-1, -1}
	for _, d := range ds {
		if d.LeafIndex < 0 {
			continue
		}
		if r[0] < 0 || d.LeafIndex < r[0] {
			r[0] = d.LeafIndex
		}
		r[1] = max(r[1], d.LeafIndex)
	}
	return r
}

func evidence(a Anomaly, ds []Decision) Anomaly {
	a.Count = len(ds)
	a.From, a.To = ds[0].DecidedAt.UTC(), ds[len(ds)-1].DecidedAt.UTC()
	a.LeafRange = leafRange(ds)
	return a
}

func (x *detector) anomalies() []Anomaly {
	out := []Anomaly{}
	t := x.t
	days := x.period.To.Sub(x.period.From).Hours() / 24
	baseDays := float64(t.BaselineDays)
	for _, ag := range slices.Sorted(maps.Keys(x.cur)) {
		cur, base := x.cur[ag], x.base[ag]
		ds := x.curDs[ag]
		// Volume far above the agency's own usual.
		if cur.n >= t.MinVolume && days > 0 {
			perDay := float64(cur.n) / days
			var usual float64
			if base != nil {
				usual = float64(base.n) / baseDays
			}
			if base != nil && base.n >= t.MinVolume && perDay > t.VolumeFactor*usual {
				b := round3(usual)
				out = append(out, evidence(Anomaly{Kind: AnomalyVolumeSpike, Agency: ag, Baseline: &b,
					Detail: fmt.Sprintf("%.1f decisions a day, %.1f× its usual %.1f (the %d days before)", perDay, perDay/usual, usual, t.BaselineDays)}, ds))
			}
		}
		// A sudden rise in refusals.
		if cur.n >= t.MinVolume && base != nil && base.n >= t.MinVolume {
			now, was := float64(cur.refused)/float64(cur.n), float64(base.refused)/float64(base.n)
			if now-was >= t.DenialRise {
				b := round3(was)
				var refs []Decision
				for _, d := range ds {
					if refused(d) {
						refs = append(refs, d)
					}
				}
				out = append(out, evidence(Anomaly{Kind: AnomalyDenialRise, Agency: ag, Baseline: &b,
					Detail: fmt.Sprintf("%.0f%% of its decisions denied or rejected, against %.0f%% before", 100*now, 100*was)}, refs))
			}
		}
		// Bursts outside service hours: a sliding hour.
		if w := maxWindow(x.offHours[ag], time.Hour); len(w) >= t.OffHoursBurst {
			out = append(out, evidence(Anomaly{Kind: AnomalyOffHoursBurst, Agency: ag,
				Detail: fmt.Sprintf("%d requests outside the agreed service hours within one hour", len(w))}, w))
		}
		// Purposes that do not fit the query type.
		if ps := x.purpose[ag]; len(ps) >= t.PurposeMismatch {
			out = append(out, evidence(Anomaly{Kind: AnomalyPurposeMismatch, Agency: ag,
				Detail: fmt.Sprintf("%d requests with a purpose the agreement does not allow for the query", len(ps))}, ps))
		}
	}
	// One subject asked about by many agencies in a short window.
	for _, k := range slices.Sorted(maps.Keys(x.subjects)) {
		ds := x.subjects[k]
		best, bestAgencies := subjectWindow(ds, time.Duration(t.SubjectWindow))
		if len(bestAgencies) >= t.SubjectAgencies {
			out = append(out, evidence(Anomaly{Kind: AnomalySubjectAgencies, Agencies: bestAgencies, Subject: shortKey(k),
				Detail: fmt.Sprintf("one subject asked about by %d agencies within %s", len(bestAgencies), time.Duration(t.SubjectWindow))}, best))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Kind < out[j].Kind })
	return out
}

// subjectWindow is the window (of at most d) of ds, in time order, with
// the most distinct agencies, and those agencies.
func subjectWindow(ds []Decision, d time.Duration) ([]Decision, []string) {
	count := map[string]int{}
	var best []Decision
	most, left := 0, 0
	for i := range ds {
		count[ds[i].Agency]++
		for ds[i].DecidedAt.Sub(ds[left].DecidedAt) > d {
			if count[ds[left].Agency]--; count[ds[left].Agency] == 0 {
				delete(count, ds[left].Agency)
			}
			left++
		}
		if len(count) > most {
			most, best = len(count), ds[left:i+1]
		}
	}
	agencies := map[string]bool{}
	for _, x := range best {
		agencies[x.Agency] = true
	}
	return best, slices.Sorted(maps.Keys(agencies))
}

// maxWindow is the longest run of ds (time order) within d of its first.
func maxWindow(ds []Decision, d time.Duration) []Decision {
	var best []Decision
	j := 0
	for i := range ds {
		for ds[i].DecidedAt.Sub(ds[j].DecidedAt) > d {
			j++
		}
		if i-j+1 > len(best) {
			best = ds[j : i+1]
		}
	}
	return best
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
