package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/config"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/policies"
	"github.com/certless/certless/policies/workdays"
)

// agreementWorld is a data folder with the keys of a court, the police and
// a stranger, and an empty policies folder.
type agreementWorld struct {
	t        *testing.T
	pol, kd  string
	lastOut  string
	lastErrs string
}

func newAgreementWorld(t *testing.T) *agreementWorld {
	t.Helper()
	root := t.TempDir()
	w := &agreementWorld{t: t, pol: filepath.Join(root, "policies"), kd: filepath.Join(root, "keys")}
	for agency, alg := range map[string]keys.Alg{"court-changchun": keys.EdDSA, "police-jilin": keys.ES256, "stranger": keys.EdDSA} {
		if _, err := keys.GenerateInDir(w.kd, agency, "k1", alg); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// run is `certless agreement ARGS... --dir POL --keys KEYS`.
func (w *agreementWorld) run(args ...string) int {
	w.t.Helper()
	full := append([]string{"agreement"}, args...)
	full = append(full, "--dir", w.pol, "--keys", w.kd)
	code, out, errs := runCLI(w.t, full...)
	w.lastOut, w.lastErrs = out, errs
	return code
}

// must runs and fails the test unless the exit code is want.
func (w *agreementWorld) must(want int, args ...string) string {
	w.t.Helper()
	if code := w.run(args...); code != want {
		w.t.Fatalf("certless agreement %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, want, w.lastOut, w.lastErrs)
	}
	return w.lastOut + w.lastErrs
}

const (
	court  = "court-changchun"
	police = "police-jilin"
	// A Thursday; Friday 25 September to Sunday 27 is the Mid-Autumn
	// holiday and 1-7 October National Day.
	beforeHolidays = "2026-09-24T10:00:00+08:00"
	inForce        = "2026-10-12T10:00:00+08:00"
)

func (w *agreementWorld) propose(now string, extra ...string) string {
	w.t.Helper()
	args := append([]string{"propose", "--id", "court-changchun/criminal-records", "--requester", court, "--provider", police,
		"--query", "criminal_record,identity", "--purpose", "litigation", "--case-ref-required", "--scope", "220100",
		"--per-day", "1000", "--from", "2026-10-01", "--until", "2027-10-01", "--now", now}, extra...)
	out := w.must(exitOK, args...)
	path, _, _ := strings.Cut(strings.SplitN(out, ": ", 2)[1], "\n")
	return path
}

// active proposes, co-signs, activates and co-signs; it returns the active
// version's file.
func (w *agreementWorld) active() string {
	w.t.Helper()
	p := w.propose(beforeHolidays)
	w.must(exitOK, "sign", p, "--as", court, "--now", beforeHolidays)
	w.must(exitOK, "sign", p, "--as", police, "--now", beforeHolidays)
	out := w.must(exitOK, "activate", p)
	path, _, _ := strings.Cut(strings.SplitN(out, ": ", 2)[1], "\n")
	w.must(exitOK, "sign", path, "--as", police, "--now", beforeHolidays)
	w.must(exitOK, "sign", path, "--as", court, "--now", beforeHolidays)
	return path
}

func TestAgreementProposeSignActivateVerify(t *testing.T) {
	w := newAgreementWorld(t)
	p := w.propose(beforeHolidays)
	if p != filepath.Join(w.pol, "court-changchun-criminal-records.v1.yaml") {
		t.Fatalf("proposal written to %s", p)
	}
	doc, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	a, err := policies.Parse(doc)
	if err != nil {
		t.Fatalf("the proposal does not parse: %v\n%s", err, doc)
	}
	// Five working days over the Mid-Autumn and National Day holidays:
	// 28, 29, 30 September, 8 and 9 October; due at the end of the 9th.
	now, _ := time.Parse(time.RFC3339, beforeHolidays)
	want := time.Date(2026, 10, 10, 0, 0, 0, 0, policies.Beijing)
	if a.Status != policies.StatusProposed || a.Version != 1 || a.ReviewDeadline == nil || !a.ReviewDeadline.Equal(want) || !want.Equal(workdays.Default().Deadline(now, 5)) {
		t.Fatalf("status %s version %d deadline %v, want proposed 1 %v", a.Status, a.Version, a.ReviewDeadline, want)
	}
	if !strings.Contains(w.lastOut, "review deadline: 2026-10-10T00:00:00+08:00") || strings.Contains(w.lastErrs, "warning") {
		t.Fatalf("propose said %q %q", w.lastOut, w.lastErrs)
	}
	for _, q := range a.Queries {
		if !slices.Equal(q.Fields, adapters.QueryType(q.Query).Fields()) || !q.CaseRefRequired || !slices.Equal(q.Scope, []string{"220100"}) {
			t.Errorf("%s: terms %+v, want every documented field", q.Query, q)
		}
	}

	out := w.must(exitFailure, "verify", p)
	if !strings.Contains(out, "missing_party") && !strings.Contains(out, "unsigned") {
		t.Fatalf("unsigned verify: %s", out)
	}
	if out := w.must(exitFailure, "sign", p, "--as", "stranger"); !strings.Contains(out, "stranger is not a party") {
		t.Fatalf("sign by a stranger: %s", out)
	}
	if _, err := os.Stat(p + policies.SignaturesSuffix); err == nil {
		t.Fatal("a refused signature left a signatures file")
	}
	w.must(exitOK, "sign", p, "--as", court)
	if out := w.must(exitFailure, "verify", p); !strings.Contains(out, "police-jilin (provider): not signed (missing_party)") {
		t.Fatalf("verify with one signature: %s", out)
	}
	if out := w.must(exitOK, "sign", p, "--as", police); !strings.Contains(out, "both parties have signed") {
		t.Fatalf("second sign: %s", out)
	}
	w.must(exitOK, "verify", p)

	out = w.must(exitOK, "activate", p)
	v2 := filepath.Join(w.pol, "court-changchun-criminal-records.v2.yaml")
	if !strings.Contains(out, v2) {
		t.Fatalf("activate: %s", out)
	}
	b2, _ := os.ReadFile(v2)
	a2, err := policies.Parse(b2)
	if err != nil || a2.Status != policies.StatusActive || a2.Version != 2 || a2.ReviewDeadline != nil {
		t.Fatalf("activated: %+v %v", a2, err)
	}
	if d := policies.Diff(a, a2); !slices.Equal(d, []policies.Change{
		{Field: "version", Old: "1", New: "2"},
		{Field: "status", Old: "proposed", New: "active"},
		{Field: "review_deadline", Old: "2026-10-10T00:00:00+08:00", New: policies.None},
	}) {
		t.Fatalf("activate changed more than version and status: %q", d)
	}
	if after, _ := os.ReadFile(p); string(after) != string(doc) {
		t.Fatal("activate rewrote the signed proposal")
	}
	w.must(exitFailure, "activate", v2) // not a proposal
	w.must(exitOK, "sign", v2, "--as", police)
	w.must(exitOK, "sign", v2, "--as", court)
	if out := w.must(exitOK, "verify", v2); !strings.Contains(out, "verified") {
		t.Fatalf("verify: %s", out)
	}

	// One byte changed: both signatures fail, named with the reason, and
	// signing the changed file is refused.
	tampered := filepath.Join(w.pol, "tampered.yaml")
	sigs, _ := os.ReadFile(v2 + policies.SignaturesSuffix)
	bad := []byte(strings.Replace(string(b2), "per_day: 1000", "per_day: 1001", 1))
	if err := os.WriteFile(tampered, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tampered+policies.SignaturesSuffix, sigs, 0o644); err != nil {
		t.Fatal(err)
	}
	out = w.must(exitFailure, "verify", tampered)
	for _, s := range []string{"court-changchun (requester): FAILS", "police-jilin (provider): FAILS", "signature_invalid", "does not verify over these bytes"} {
		if !strings.Contains(out, s) {
			t.Errorf("verify of a changed file lacks %q:\n%s", s, out)
		}
	}
	if out := w.must(exitFailure, "sign", tampered, "--as", court); !strings.Contains(out, "changed after signing") {
		t.Fatalf("sign of a changed file: %s", out)
	}

	out = w.must(exitOK, "show", "court-changchun/criminal-records", "--now", inForce)
	for _, s := range []string{"version 2", policies.Digest(b2), "status:    active", "court-changchun/k1", "police-jilin/k1", "quotas.per_day: 1000"} {
		if !strings.Contains(out, s) {
			t.Errorf("show lacks %q:\n%s", s, out)
		}
	}
}

func TestAgreementDeadlineCalendar(t *testing.T) {
	w := newAgreementWorld(t)
	// 2030 ships no calendar: only weekends are skipped, with a warning.
	w.propose("2030-03-04T10:00:00+08:00", "--out", filepath.Join(w.pol, "a.yaml"))
	if !strings.Contains(w.lastErrs, "warning: no holiday calendar for 2030") || !strings.Contains(w.lastOut, "review deadline: 2030-03-12T00:00:00+08:00") {
		t.Fatalf("unknown year: %q %q", w.lastOut, w.lastErrs)
	}
	// A calendar file for 2030 with a holiday Tuesday 5 to Thursday 7 March.
	cal := filepath.Join(t.TempDir(), "cn-2030.json")
	if err := os.WriteFile(cal, []byte(`{"year": 2030, "source": "test", "holidays": [{"name": "x", "from": "2030-03-05", "to": "2030-03-07"}], "workdays": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	w.propose("2030-03-04T10:00:00+08:00", "--holidays", cal, "--working-days", "3")
	if strings.Contains(w.lastErrs, "warning") || !strings.Contains(w.lastOut, "review deadline: 2030-03-13T00:00:00+08:00 (3 working days)") {
		t.Fatalf("with --holidays: %q %q", w.lastOut, w.lastErrs)
	}
	// The second proposal of one id is its next version.
	if !strings.Contains(w.lastOut, "version 2") {
		t.Fatalf("second proposal: %s", w.lastOut)
	}
	w.must(exitUsage, "propose", "--id", "x")
	w.must(exitUsage, "propose", "--id", "x", "--requester", court, "--provider", police, "--query", "no_such", "--purpose", "p")
	w.must(exitUsage, "propose", "--id", "x", "--requester", court, "--provider", police, "--query", "identity", "--purpose", "p", "--fields", "records")
}

func TestAgreementListOverdue(t *testing.T) {
	w := newAgreementWorld(t)
	w.must(exitOK, "propose", "--id", "old", "--requester", court, "--provider", police, "--query", "identity", "--purpose", "litigation", "--now", "2026-11-02T09:00:00+08:00")
	w.must(exitOK, "propose", "--id", "fresh", "--requester", court, "--provider", police, "--query", "identity", "--purpose", "litigation", "--now", "2026-12-01T09:00:00+08:00")
	if err := os.WriteFile(filepath.Join(w.pol, "broken.yaml"), []byte("id: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	now := "2026-12-02T09:00:00+08:00"
	out := w.must(exitOK, "list", "--now", now)
	if !strings.Contains(out, "\nold ") || !strings.Contains(out, "\nfresh ") || !strings.Contains(out, "broken.yaml: invalid_agreement") {
		t.Fatalf("list:\n%s", out)
	}
	out = w.must(exitOK, "list", "--overdue", "--now", now)
	if !strings.Contains(out, "\nold ") || !strings.Contains(out, "review overdue") || strings.Contains(out, "\nfresh ") {
		t.Fatalf("list --overdue:\n%s", out)
	}
	w.must(exitUsage, "list", "--status", "pending")
}

func TestAgreementSuspendResumeTerminate(t *testing.T) {
	w := newAgreementWorld(t)
	v2 := w.active()
	rowOf := func(status string) bool {
		out := w.must(exitOK, "list", "--status", status, "--now", inForce)
		return strings.Contains(out, "court-changchun-criminal-records.v2.yaml")
	}
	if !rowOf("active") {
		t.Fatalf("not active: %s", w.lastOut)
	}
	// A proposal has no lifecycle.
	w.must(exitFailure, "suspend", filepath.Join(w.pol, "court-changchun-criminal-records.v1.yaml"), "--as", court, "--now", inForce)

	out := w.must(exitOK, "suspend", v2, "--as", police, "--now", inForce)
	if !strings.Contains(out, "suspended by police-jilin") || !strings.Contains(out, "within 2s") {
		t.Fatalf("suspend: %s", out)
	}
	if !rowOf("suspended") || rowOf("active") {
		t.Fatalf("list after suspend: %s", w.lastOut)
	}
	before, _ := os.ReadFile(v2 + policies.StatusSuffix)
	if out := w.must(exitFailure, "resume", v2, "--as", court, "--now", inForce); !strings.Contains(out, "only a party that suspended may resume") {
		t.Fatalf("resume by the other party: %s", out)
	}
	if after, _ := os.ReadFile(v2 + policies.StatusSuffix); string(after) != string(before) {
		t.Fatal("a refused resume was written")
	}
	w.must(exitFailure, "suspend", v2, "--as", "stranger", "--now", inForce)
	w.must(exitOK, "resume", v2, "--as", police, "--now", inForce)
	if !rowOf("active") {
		t.Fatalf("list after resume: %s", w.lastOut)
	}
	w.must(exitOK, "terminate", v2, "--as", court, "--now", inForce)
	if !rowOf("terminated") {
		t.Fatalf("list after terminate: %s", w.lastOut)
	}
	w.must(exitFailure, "resume", v2, "--as", court, "--now", inForce)
	out = w.must(exitOK, "show", v2, "--now", inForce)
	if strings.Count(out, "by police-jilin (police-jilin/k1)") != 2 || !strings.Contains(out, "terminated by court-changchun") {
		t.Fatalf("show lists the statements:\n%s", out)
	}
	// The broker's own loading agrees.
	reg, _ := keys.LoadDir(w.kd)
	set, problems := policies.Load(w.pol, reg)
	at, _ := time.Parse(time.RFC3339, inForce)
	for _, i := range set.Agreements() {
		if st, _ := i.StatusAt(at.Add(time.Second)); i.Ref.Version == 2 && st != policies.StatusTerminated {
			t.Fatalf("loaded status %s", st)
		}
	}
	if len(problems) != 0 {
		t.Fatalf("problems: %v", problems)
	}
}

func TestAgreementDiff(t *testing.T) {
	w := newAgreementWorld(t)
	a := w.propose(beforeHolidays)
	b := w.propose(beforeHolidays, "--per-day", "2000", "--query", "kinship")
	out := w.must(exitOK, "diff", a, b)
	for _, s := range []string{"version: 1 -> 2", "quotas.per_day: 1000 -> 2000", "queries[kinship].purposes: (none) -> litigation"} {
		if !strings.Contains(out, s) {
			t.Errorf("diff lacks %q:\n%s", s, out)
		}
	}
	if strings.Index(out, "queries[kinship]") > strings.Index(out, "quotas.") {
		t.Errorf("diff order: queries before quotas:\n%s", out)
	}
	if out := w.must(exitOK, "diff", a, a); !strings.HasSuffix(out, "identical\n") {
		t.Fatalf("diff of a file with itself: %s", out)
	}
	w.must(exitFailure, "diff", a, filepath.Join(w.pol, "missing.yaml"))
}

// fakeQuotas reports fixed usages by "agency id@version" (the broker
// counts every version under broker.QuotaVersion); any other asks fail.
type fakeQuotas struct {
	mu    sync.Mutex
	usage map[string][3]int
	asked []string
}

func (f *fakeQuotas) Take(context.Context, string, string, int, store.Limits, time.Time) (bool, error) {
	return false, errors.New("not in this test")
}

func (f *fakeQuotas) Usage(ctx context.Context, agency, id string, version int, now time.Time) (int, int, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fmt.Sprintf("%s %s@%d", agency, id, version)
	f.asked = append(f.asked, k)
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > quotaUsageTimeout {
		return 0, 0, 0, fmt.Errorf("%s: no deadline of at most %v", k, quotaUsageTimeout)
	}
	u, ok := f.usage[k]
	if !ok {
		return 0, 0, 0, errors.New("database unavailable")
	}
	return u[0], u[1], u[2], nil
}

var _ store.Quotas = (*fakeQuotas)(nil)

func TestAgreementQuotaMetrics(t *testing.T) {
	root := t.TempDir()
	kd, pol := filepath.Join(root, "keys"), filepath.Join(root, "policies")
	priv := map[string]*keys.Private{}
	for agency, alg := range map[string]keys.Alg{court: keys.EdDSA, police: keys.ES256, "edu-jian": keys.EdDSA} {
		k, err := keys.GenerateInDir(kd, agency, "k1", alg)
		if err != nil {
			t.Fatal(err)
		}
		priv[agency] = k
	}
	if err := os.MkdirAll(pol, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, policies.Beijing)
	year := policies.Validity{From: now.AddDate(0, -1, 0), Until: now.AddDate(1, 0, 0)}
	write := func(name, requester string, version int, st policies.Status, v policies.Validity, q policies.Quotas) {
		t.Helper()
		a := &policies.Agreement{
			ID: requester + "/" + name, Version: version, Title: name, Status: st,
			Parties: policies.Parties{Requester: requester, Provider: police},
			Queries: []policies.Terms{{Query: "identity", Purposes: []string{"litigation"}, Fields: []string{"as_of"}}},
			Quotas:  q, Validity: v,
		}
		if st == policies.StatusProposed {
			d := now.AddDate(0, 0, 7)
			a.ReviewDeadline = &d
		}
		doc, err := policies.Format(a)
		if err != nil {
			t.Fatal(err)
		}
		var sigs []byte
		for _, p := range []string{requester, police} {
			if sigs, err = policies.Sign(doc, sigs, priv[p], time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		file := filepath.Join(pol, fmt.Sprintf("%s-%s.v%d.yaml", requester, name, version))
		if err := os.WriteFile(file, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file+policies.SignaturesSuffix, sigs, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// v1 governs: v2 is a proposal and v3 not yet valid.
	write("records", court, 1, policies.StatusActive, year, policies.Quotas{PerMinute: 60, PerDay: 1000})
	write("records", court, 2, policies.StatusProposed, year, policies.Quotas{PerMinute: 1})
	write("records", court, 3, policies.StatusActive, policies.Validity{From: now.AddDate(0, 1, 0), Until: now.AddDate(2, 0, 0)}, policies.Quotas{PerMinute: 2})
	write("unlimited", court, 1, policies.StatusActive, year, policies.Quotas{})
	write("expired", court, 1, policies.StatusActive, policies.Validity{From: now.AddDate(-1, 0, 0), Until: now.Add(-time.Hour)}, policies.Quotas{PerDay: 5})
	write("enrolment", "edu-jian", 1, policies.StatusActive, year, policies.Quotas{PerMonth: 300})
	write("broken", "edu-jian", 1, policies.StatusActive, year, policies.Quotas{PerDay: 9})
	reg, err := keys.LoadDir(kd)
	if err != nil {
		t.Fatal(err)
	}
	set, problems := policies.Load(pol, reg)
	if len(problems) != 0 || set.Len() != 7 {
		t.Fatalf("loaded %d, problems %v", set.Len(), problems)
	}

	preg := prometheus.NewPedanticRegistry()
	m := newAgreementMetrics(preg)
	m.quota.now = func() time.Time { return now }
	if n := testutil.CollectAndCount(preg, "certless_quota_used", "certless_quota_limit"); n != 0 {
		t.Fatalf("%d quota gauges before watch", n)
	}
	fq := &fakeQuotas{usage: map[string][3]int{
		court + " court-changchun/records@0": {7, 420, 9000},
		"edu-jian edu-jian/enrolment@0":      {0, 3, 250},
	}}
	m.watch(func() *policies.Set { return set }, fq)
	want := `
# HELP certless_quota_limit Quota of an agreement in force per calendar window (minute, day, month), by requesting agency; only windows with a limit.
# TYPE certless_quota_limit gauge
certless_quota_limit{agency="court-changchun",agreement="court-changchun/records",window="day"} 1000
certless_quota_limit{agency="court-changchun",agreement="court-changchun/records",window="minute"} 60
certless_quota_limit{agency="edu-jian",agreement="edu-jian/enrolment",window="month"} 300
# HELP certless_quota_scrape_errors_total Quota usages the decision store failed to report at a scrape (those gauges were left out).
# TYPE certless_quota_scrape_errors_total counter
certless_quota_scrape_errors_total 1
# HELP certless_quota_used Uses counted in the current calendar window (minute, day, month; Beijing time) of an agreement in force, by requesting agency.
# TYPE certless_quota_used gauge
certless_quota_used{agency="court-changchun",agreement="court-changchun/records",window="day"} 420
certless_quota_used{agency="court-changchun",agreement="court-changchun/records",window="minute"} 7
certless_quota_used{agency="edu-jian",agreement="edu-jian/enrolment",window="month"} 250
`
	if err := testutil.GatherAndCompare(preg, strings.NewReader(want), "certless_quota_used", "certless_quota_limit", "certless_quota_scrape_errors_total"); err != nil {
		t.Fatal(err)
	}
	slices.Sort(fq.asked)
	if want := []string{"court-changchun court-changchun/records@0", "edu-jian edu-jian/broken@0", "edu-jian edu-jian/enrolment@0"}; !slices.Equal(fq.asked, want) {
		t.Fatalf("Usage asked for %q, want %q", fq.asked, want)
	}

	// Once the store answers, the failed agreement's gauges appear; the
	// error count stays.
	fq.mu.Lock()
	fq.usage["edu-jian edu-jian/broken@0"] = [3]int{1, 2, 3}
	fq.mu.Unlock()
	if err := testutil.GatherAndCompare(preg, strings.NewReader(`
# HELP certless_quota_scrape_errors_total Quota usages the decision store failed to report at a scrape (those gauges were left out).
# TYPE certless_quota_scrape_errors_total counter
certless_quota_scrape_errors_total 1
`), "certless_quota_scrape_errors_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(preg, "certless_quota_used"); n != 4 {
		t.Fatalf("%d used gauges, want 4", n)
	}
}

// TestAgreementStatusGaugesAtScrape: the status gauges are computed when
// scraped, so an agreement past its validity counts as expired and a
// proposal past its deadline as overdue without any file changing.
func TestAgreementStatusGaugesAtScrape(t *testing.T) {
	root := t.TempDir()
	cfg := &config.Config{KeysDir: filepath.Join(root, "keys"), PoliciesDir: filepath.Join(root, "policies")}
	for _, party := range []string{"court-changchun", policeOwner} {
		if _, err := keys.GenerateInDir(cfg.KeysDir, party, "", keys.EdDSA); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(cfg.PoliciesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	doc := fmt.Sprintf("id: court-changchun/short\nversion: 1\ntitle: short\nparties:\n  requester: court-changchun\n  provider: %s\nqueries:\n  - query: identity\n    purposes: [litigation]\n    fields: [as_of, id_name_match]\nvalidity:\n  from: %q\n  until: %q\nstatus: active\n",
		policeOwner, now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	if err := writeCosigned(cfg, filepath.Join(cfg.PoliciesDir, "short.v1.yaml"), []byte(doc), "court-changchun", now); err != nil {
		t.Fatal(err)
	}
	reg, err := keys.LoadDir(cfg.KeysDir)
	if err != nil {
		t.Fatal(err)
	}
	set, problems := policies.Load(cfg.PoliciesDir, reg)
	if len(problems) != 0 {
		t.Fatal(problems)
	}
	preg := prometheus.NewRegistry()
	m := newAgreementMetrics(preg)
	m.watch(func() *policies.Set { return set }, &fakeQuotas{})
	for _, c := range []struct {
		at              time.Time
		active, expired float64
	}{{now, 1, 0}, {now.Add(2 * time.Hour), 0, 1}} {
		m.status.now = func() time.Time { return c.at }
		want := fmt.Sprintf("# HELP certless_agreements Agreement versions loaded from the policies folder, by status now (proposed, active, suspended, expired, terminated).\n# TYPE certless_agreements gauge\n"+
			"certless_agreements{status=\"active\"} %v\ncertless_agreements{status=\"expired\"} %v\ncertless_agreements{status=\"proposed\"} 0\ncertless_agreements{status=\"suspended\"} 0\ncertless_agreements{status=\"terminated\"} 0\n", c.active, c.expired)
		if err := testutil.GatherAndCompare(preg, strings.NewReader(want), "certless_agreements"); err != nil {
			t.Errorf("at %v: %v", c.at, err)
		}
	}
}
