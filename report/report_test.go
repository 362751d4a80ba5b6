package report_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/keys"
	"github.com/certless/certless/report"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/translog"
)

var agencies = map[string]report.Agency{
	"court-changchun": {Name: "Changchun court", Level: "prefecture", Region: "220100"},
	"edu-jian":        {Name: "Ji'an education bureau", Level: "county", Region: "220582"},
	"notary-dunhua":   {Name: "Dunhua notary", Level: "county", Region: "222403"},
	"civil-jilin":     {Name: "Jilin civil affairs", Level: "province", Region: "220000"},
}

// world is a workload whose truth the test knows, and its log.
type world struct {
	ds     []report.Decision
	leaves map[int64][]byte
	from   time.Time
}

func (w *world) add(t *testing.T, d report.Decision) {
	t.Helper()
	d.LeafIndex = int64(len(w.leaves))
	leaf, err := translog.Leaf{Kind: translog.KindDecision, Agency: d.Agency, Outcome: d.Outcome, Reason: d.Reason, Query: d.Query,
		Time: translog.FormatTime(d.DecidedAt)}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	w.leaves[d.LeafIndex] = leaf
	w.ds = append(w.ds, d)
}

func (w *world) read(_ context.Context, start int64, n int) ([][]byte, error) {
	var out [][]byte
	for i := start; i < start+int64(n); i++ {
		out = append(out, w.leaves[i])
	}
	return out, nil
}

// newWorld: a baseline month of ordinary traffic, then a reporting week
// with injected anomalies: the notary's volume five times its usual, a
// burst of its requests outside service hours, the education bureau's
// purposes that do not fit, the court's refusals rising, one subject asked
// about by three agencies within a day.
func newWorld(t *testing.T) *world {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, report.Beijing)
	w := &world{leaves: map[int64][]byte{}, from: from}
	d := func(agency, query, outcome, reason string, at time.Time, latencyMS int64) report.Decision {
		return report.Decision{Agency: agency, Query: query, Outcome: outcome, Reason: reason, Type: "verification_request",
			DecidedAt: at, LatencyMicros: latencyMS * 1000, SubjectKey: fmt.Sprintf("hmac:%x", at.UnixNano())}
	}
	base := from.AddDate(0, 0, -28)
	for day := 0; day < 28; day++ {
		at := base.AddDate(0, 0, day).Add(10 * time.Hour)
		for i := 0; i < 4; i++ {
			w.add(t, d("notary-dunhua", "kinship", "answered", "", at.Add(time.Duration(i)*time.Minute), 40))
			w.add(t, d("court-changchun", "criminal_record", "answered", "", at.Add(time.Duration(i)*time.Minute), 50))
		}
	}
	for day := 0; day < 7; day++ {
		at := from.AddDate(0, 0, day).Add(10 * time.Hour)
		for i := 0; i < 20; i++ { // five times the notary's four a day
			w.add(t, d("notary-dunhua", "kinship", "answered", "", at.Add(time.Duration(i)*time.Second), 30))
		}
		for i := 0; i < 4; i++ {
			outcome, reason := "answered", ""
			if i > 0 { // three in four refused, against none before
				outcome, reason = "denied", "case_reference_missing"
			}
			w.add(t, d("court-changchun", "criminal_record", outcome, reason, at.Add(time.Duration(i)*time.Minute), 2500)) // late
		}
	}
	night := from.AddDate(0, 0, 2).Add(23 * time.Hour)
	for i := 0; i < 12; i++ {
		w.add(t, d("notary-dunhua", "household", "denied", "outside_service_hours", night.Add(time.Duration(i)*3*time.Minute), 20))
	}
	for i := 0; i < 6; i++ {
		w.add(t, d("edu-jian", "household", "denied", "purpose_not_allowed", from.AddDate(0, 0, 3).Add(time.Duration(i)*time.Hour), 25))
	}
	noon := from.AddDate(0, 0, 4).Add(12 * time.Hour)
	for i, a := range []string{"court-changchun", "notary-dunhua", "civil-jilin"} {
		x := d(a, "identity", "answered", "", noon.Add(time.Duration(i)*2*time.Hour), 35)
		x.SubjectKey = "hmac:0123456789abcdef0123"
		w.add(t, x)
	}
	return w
}

func (w *world) build(t *testing.T, f report.Filter, cp *report.Checkpoint) *report.Report {
	t.Helper()
	b := report.NewBuilder(report.Input{Broker: "certless", GeneratedAt: w.from.AddDate(0, 0, 8), Period: report.Period{From: w.from, To: w.from.AddDate(0, 0, 7)},
		Filter: f, Agencies: agencies, Checkpoint: cp,
		Disputes: []report.Dispute{
			{Agency: "court-changchun", Owner: "police-jilin", Status: "corrected", OpenedAt: w.from.Add(time.Hour), ResolvedAt: w.from.Add(25 * time.Hour)},
			{Agency: "court-changchun", Owner: "police-jilin", Status: "forwarded", OpenedAt: w.from.Add(2 * time.Hour), Overdue: true},
			{Agency: "court-changchun", Owner: "police-jilin", Status: "closed", OpenedAt: w.from.AddDate(0, 0, -3)}, // before the period
		},
		Overdue: report.Overdue{Disputes: 1, Batches: []report.OverdueBatches{{Schedule: "social-security-baicheng/records/daily-cancellations", Recipient: "social-security-baicheng", Overdue: 2, Oldest: 310}}}})
	for _, d := range w.ds {
		b.Add(d)
	}
	r, err := b.Report(context.Background(), w.read)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (w *world) checkpoint() *report.Checkpoint {
	return &report.Checkpoint{Origin: "certless.test/log", Size: int64(len(w.leaves)), RootHash: "sha256:ab"}
}

// TestReportKnownTruth: every figure of the week is the workload's, and
// each injected anomaly, and no other, is reported.
func TestReportKnownTruth(t *testing.T) {
	w := newWorld(t)
	r := w.build(t, report.Filter{}, w.checkpoint())
	tot := r.Totals
	if tot.Requests != 140+28+12+6+3 || tot.ByOutcome["answered"] != 140+7+3 || tot.ByOutcome["denied"] != 21+12+6 {
		t.Fatalf("totals %+v", tot)
	}
	if tot.ByReason["case_reference_missing"] != 21 || tot.ByReason["outside_service_hours"] != 12 || tot.ByReason["purpose_not_allowed"] != 6 {
		t.Fatalf("reasons %+v", tot.ByReason)
	}
	// 28 court decisions took 2.5 s, past the 2 s deadline.
	if tot.Measured != tot.Requests || tot.OnTime != tot.Requests-28 || tot.Latency.Max != 2500 || tot.Latency.P50 != 30 {
		t.Fatalf("latency %+v on time %d of %d", tot.Latency, tot.OnTime, tot.Measured)
	}
	byID := map[string]report.AgencyFigures{}
	for _, a := range r.Agencies {
		byID[a.ID] = a
	}
	if n := byID["notary-dunhua"]; n.Requests != 140+12+1 || n.PeakDay != 20+12 || len(n.Queries) != 3 {
		t.Fatalf("notary %+v", n.Figures)
	}
	// Regions roll up: Dunhua (222403) into Yanbian (222400) and the
	// province; the province counts every agency.
	regions := map[string]report.RegionFigures{}
	for _, g := range r.Regions {
		regions[g.Code] = g
	}
	if regions["222400"].Requests != byID["notary-dunhua"].Requests || regions["220000"].Requests != tot.Requests || regions["220000"].Agencies != 4 ||
		regions["220100"].Level != "prefecture" || regions["220582"].Level != "county" {
		t.Fatalf("regions %+v", r.Regions)
	}
	if d := r.Disputes; d.Opened != 2 || d.Resolved != 1 || *d.ResolutionHoursP50 != 24 || d.ByStatus["forwarded"] != 1 {
		t.Fatalf("disputes %+v", d)
	}
	kinds := map[string]report.Anomaly{}
	for _, a := range r.Anomalies {
		if _, dup := kinds[a.Kind+a.Agency]; dup {
			t.Fatalf("anomaly twice: %+v", a)
		}
		kinds[a.Kind+a.Agency] = a
	}
	want := map[string]int{
		report.AnomalyVolumeSpike + "notary-dunhua":   153,
		report.AnomalyOffHoursBurst + "notary-dunhua": 12,
		report.AnomalyPurposeMismatch + "edu-jian":    6,
		report.AnomalyDenialRise + "court-changchun":  21,
		report.AnomalySubjectAgencies:                 3,
	}
	for k, n := range want {
		a, ok := kinds[k]
		if !ok {
			t.Errorf("anomaly %s not reported", k)
			continue
		}
		if a.Count != n || a.LeafRange[0] < 0 || a.LeafRange[1] < a.LeafRange[0] {
			t.Errorf("anomaly %s: count %d (want %d), leaves %v", k, a.Count, n, a.LeafRange)
		}
	}
	if len(r.Anomalies) != len(want) {
		t.Errorf("%d anomalies, want %d: %+v", len(r.Anomalies), len(want), r.Anomalies)
	}
	if s := kinds[report.AnomalySubjectAgencies]; strings.Contains(s.Subject, "0123456789abcdef0123") || len(s.Agencies) != 3 {
		t.Errorf("subject anomaly %+v (the key must be shortened)", s)
	}
	rc := r.Reconciliation
	if !rc.Reconciled || rc.Logged != tot.Requests || rc.LeavesChecked != tot.Requests || len(rc.Differences) != 0 {
		t.Fatalf("reconciliation %+v", rc)
	}
}

// TestReportFilterAndReconciliation: a county filter keeps its agency
// only; a leaf that says something else than its decision, and a decision
// leaf no decision stands for, are named; without a checkpoint the report
// says it is not tied to the log.
func TestReportFilterAndReconciliation(t *testing.T) {
	w := newWorld(t)
	r := w.build(t, report.Filter{Region: "222403"}, w.checkpoint())
	if len(r.Agencies) != 1 || r.Agencies[0].ID != "notary-dunhua" || r.Totals.Requests != r.Agencies[0].Requests || !r.Reconciliation.Reconciled {
		t.Fatalf("county filter: %d agencies, %+v", len(r.Agencies), r.Reconciliation)
	}
	if r := w.build(t, report.Filter{Level: "province"}, w.checkpoint()); r.Totals.Requests != 1 {
		t.Fatalf("province level: %d", r.Totals.Requests)
	}
	// Alter one leaf (as if the store and the log disagreed).
	i := w.ds[len(w.ds)-1].LeafIndex
	w.leaves[i], _ = translog.Leaf{Kind: translog.KindDecision, Agency: "civil-jilin", Outcome: "denied", Reason: "no_agreement", Query: "identity",
		Time: translog.FormatTime(w.ds[len(w.ds)-1].DecidedAt)}.Marshal()
	// And drop a decision the log holds.
	w.ds = append(w.ds[:len(w.ds)-2], w.ds[len(w.ds)-1])
	r = w.build(t, report.Filter{}, w.checkpoint())
	rc := r.Reconciliation
	if rc.Reconciled || len(rc.Differences) != 2 || !strings.Contains(strings.Join(rc.Differences, "\n"), fmt.Sprintf("leaf %d says", i)) {
		t.Fatalf("reconciliation of a bad log: %+v", rc)
	}
	if r := w.build(t, report.Filter{}, nil); r.Reconciliation.Reconciled || r.Reconciliation.Pending != r.Totals.Requests {
		t.Fatalf("no checkpoint: %+v", r.Reconciliation)
	}
}

// TestReportFormats: the JSON form is valid against report.v1; the CSV
// carries the same figures; the HTML is one file with inline SVG charts and
// nothing fetched from elsewhere; a signed file verifies, and fails after
// one figure is changed or with another key.
func TestReportFormats(t *testing.T) {
	w := newWorld(t)
	r := w.build(t, report.Filter{}, w.checkpoint())
	var js bytes.Buffer
	if err := report.Write(&js, r, report.FormatJSON); err != nil {
		t.Fatal(err)
	}
	set, err := schemas.Default()
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Validate("report.v1", js.Bytes()); err != nil {
		t.Fatalf("the JSON report breaks report.v1: %v", err)
	}
	var back report.Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Totals.Requests != r.Totals.Requests {
		t.Fatalf("JSON round trip: %v", err)
	}
	var cs bytes.Buffer
	if err := report.Write(&cs, r, report.FormatCSV); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&cs).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, row := range rows[1:] {
		found[row[0]+"|"+row[1]+"|"+row[5]+"|"+row[6]] = row[7]
	}
	if found["report|certless||requests"] != fmt.Sprint(r.Totals.Requests) || found["agency|edu-jian||by_reason.purpose_not_allowed"] != "6" ||
		found["query|notary-dunhua|household|by_outcome.denied"] != "12" || found["log|||reconciliation.reconciled"] != "true" {
		t.Fatalf("CSV figures: %v", found)
	}
	var h bytes.Buffer
	if err := report.Write(&h, r, report.FormatHTML); err != nil {
		t.Fatal(err)
	}
	page := h.String()
	if strings.Count(page, "<svg") != 2 || !strings.Contains(page, "答复 answered") || !strings.Contains(page, "reconciled 一致") {
		t.Fatalf("HTML: %d charts", strings.Count(page, "<svg"))
	}
	for _, ext := range []string{"<script", "src=\"http", "href=\"http", "@import", "url(http"} {
		if strings.Contains(page, ext) {
			t.Fatalf("the HTML fetches from elsewhere: %s", ext)
		}
	}
	key, _ := keys.Generate("certless", "k1", keys.EdDSA)
	reg, _ := keys.NewRegistry(key.Public)
	sig, err := report.SignDetached(key, js.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if kid, err := report.VerifyDetached(sig, js.Bytes(), reg); err != nil || kid != key.KID() {
		t.Fatalf("verify: %s %v", kid, err)
	}
	edited := bytes.Replace(js.Bytes(), []byte(fmt.Sprintf(`"requests": %d`, r.Totals.Requests)), []byte(fmt.Sprintf(`"requests": %d`, r.Totals.Requests+1)), 1)
	if _, err := report.VerifyDetached(sig, edited, reg); !errors.Is(err, report.ErrSignature) {
		t.Fatalf("an edited figure verified: %v", err)
	}
	other, _ := keys.Generate("certless", "k2", keys.EdDSA)
	osig, _ := report.SignDetached(other, js.Bytes())
	if _, err := report.VerifyDetached(osig, js.Bytes(), reg); !errors.Is(err, report.ErrSignature) {
		t.Fatalf("another key's signature verified: %v", err)
	}
}
