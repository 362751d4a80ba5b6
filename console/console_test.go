package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/broker/store/storetest"
	"github.com/certless/certless/console"
	"github.com/certless/certless/report"
	"github.com/certless/certless/schemas/residentid"
	"github.com/certless/certless/translog"
	"github.com/certless/certless/webauth"
)

// world is a console over a real SQLite store with known decisions.
type world struct {
	srv     *httptest.Server
	store   store.Store
	mu      sync.Mutex
	lookups []console.Lookup
	logErr  error
	subject map[string]string // subject key of each ID number
	reports int
}

// Two valid GB 11643 numbers (their check digits computed).
var (
	subjectID = "22010219800101001" + string(residentid.Checksum("22010219800101001"))
	otherID   = "22010219900202003" + string(residentid.Checksum("22010219900202003"))
)

func newWorld(t *testing.T) *world {
	t.Helper()
	for _, id := range []string{subjectID, otherID} {
		if err := residentid.Validate(id); err != nil {
			t.Fatalf("test ID %s: %v", id, err)
		}
	}
	ctx := context.Background()
	s, err := store.Open(ctx, filepath.Join(t.TempDir(), "d.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	w := &world{store: s, subject: map[string]string{subjectID: "hmac:subject-one", otherID: "hmac:subject-two"}}
	t0 := time.Date(2026, 11, 27, 1, 0, 0, 0, time.UTC)
	for i := range 60 {
		agency := []string{"court-changchun", "edu-jilin", "notary-yanji"}[i%3]
		d := storetest.Decision(agency, fmt.Sprintf("req-%02d", i), "console")
		d.DecidedAt = t0.Add(time.Duration(i) * time.Minute)
		d.SubjectKey = "hmac:other"
		if i%10 == 0 {
			d.SubjectKey = w.subject[subjectID]
		}
		if i%4 == 1 {
			d.Outcome, d.Reason = store.Denied, "quota_exceeded"
		}
		if _, err := s.Save(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	h, err := console.New(console.Options{
		Broker: "certless",
		Store:  s,
		Agencies: func() []console.Agency {
			return []console.Agency{{ID: "court-changchun", Name: "长春市中级人民法院"}, {ID: "edu-jilin"}, {ID: "notary-yanji"}}
		},
		Checks: func(_ context.Context, d store.Decision) []console.Check {
			return []console.Check{{Name: "broker signature", Note: "kid of " + d.Agency}, {Name: "status", Err: errors.New("revoked: corrected")}}
		},
		Bundle: func(_ context.Context, d store.Decision) ([]byte, error) {
			return []byte(`{"receipt":"` + d.ReceiptID + `"}`), nil
		},
		Policy: func() (translog.Policy, error) { return translog.Policy{}, errors.New("no log in this test") },
		Report: func(_ context.Context, r console.ReportRequest) (string, []byte, []byte, *report.Report, error) {
			w.mu.Lock()
			w.reports++
			w.mu.Unlock()
			rep := &report.Report{Period: r.Period}
			rep.Totals.Requests = 60
			return "certless-report." + r.Format, []byte("figures of " + r.Filter.Agency), []byte("sig"), rep, nil
		},
		SubjectKeys: func(id, related string) []string { return []string{w.subject[id]} },
		SubjectDigest: func(id string) string {
			return translog.Digest([]byte("keyed " + id))
		},
		LogLookup: func(_ context.Context, l console.Lookup) (int64, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.logErr != nil {
				return 0, w.logErr
			}
			w.lookups = append(w.lookups, l)
			return int64(100 + len(w.lookups)), nil
		},
		ValidID: residentid.Validate,
		Now:     func() time.Time { return time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	as := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(rw, r.WithContext(webauth.WithUser(r.Context(), "auditor-zhang")))
	})
	w.srv = httptest.NewServer(as)
	t.Cleanup(w.srv.Close)
	return w
}

func (w *world) logged() []console.Lookup {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]console.Lookup(nil), w.lookups...)
}

func (w *world) get(t *testing.T, path string) (int, string) {
	t.Helper()
	res, err := w.srv.Client().Get(w.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func (w *world) post(t *testing.T, path string, form url.Values, header ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := *w.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestBrowse: pages of 50, newest first, filtered by agency, outcome,
// reason and period, each row linking its receipt; bad filters refused.
func TestBrowse(t *testing.T) {
	w := newWorld(t)
	code, page := w.get(t, "/audit/decisions")
	if code != 200 || strings.Count(page, `class="receipt"`) != 50 || !strings.Contains(page, `id="next"`) {
		t.Fatalf("first page: %d, %d rows", code, strings.Count(page, `class="receipt"`))
	}
	// Rows show receipt ids: the newest decision's comes first, the
	// oldest is on the second page.
	newest, second9 := storetest.Decision("court-changchun", "req-57", "console"), storetest.Decision("court-changchun", "req-54", "console")
	if i, j := strings.Index(page, newest.ReceiptID), strings.Index(page, second9.ReceiptID); i < 0 || j < 0 || i > j {
		t.Fatalf("not newest first: %d %d", i, j)
	}
	_, second := w.get(t, "/audit/decisions?page=2")
	oldest := storetest.Decision("court-changchun", "req-00", "console")
	if n := strings.Count(second, `class="receipt"`); n != 10 || strings.Contains(second, `id="next"`) || !strings.Contains(second, oldest.ReceiptID) {
		t.Fatalf("second page: %d rows", n)
	}
	_, denied := w.get(t, "/audit/decisions?agency=edu-jilin&outcome=denied&reason=quota_exceeded")
	// i%3==1 and i%4==1: i = 1, 13, 25, 37, 49.
	if n := strings.Count(denied, `class="receipt"`); n != 5 || strings.Contains(denied, "court-changchun</td>") {
		t.Fatalf("edu-jilin's quota denials: %d rows", n)
	}
	_, day := w.get(t, "/audit/decisions?from=2026-11-28&to=2026-11-28")
	if n := strings.Count(day, `class="receipt"`); n != 0 {
		t.Fatalf("a day without decisions lists %d", n)
	}
	_, nov27 := w.get(t, "/audit/decisions?from=2026-11-27&to=2026-11-27&agency=notary-yanji")
	if n := strings.Count(nov27, `class="receipt"`); n != 20 {
		t.Fatalf("the notary's decisions of 27 November (Beijing): %d rows", n)
	}
	for _, bad := range []string{"?agency=a%27%20OR%201=1", "?from=yesterday", "?page=0", "?page=x"} {
		if code, _ := w.get(t, "/audit/decisions"+bad); code != 400 {
			t.Errorf("%s: %d, want 400", bad, code)
		}
	}
}

// TestReceiptPage: a decision's page shows its checks, a failed one as
// failed; an unknown or malformed digest is refused.
func TestReceiptPage(t *testing.T) {
	w := newWorld(t)
	d := storetest.Decision("court-changchun", "req-00", "console")
	code, page := w.get(t, "/audit/receipts/"+d.Digest)
	if code != 200 || !strings.Contains(page, "kid of court-changchun") || !strings.Contains(page, "1 项未通过 failed") || !strings.Contains(page, "revoked: corrected") {
		t.Fatalf("receipt page %d:\n%s", code, page)
	}
	if code, body := w.get(t, "/audit/receipts/"+d.Digest+"/bundle.json"); code != 200 || !strings.Contains(body, d.ReceiptID) {
		t.Fatalf("bundle %d %s", code, body)
	}
	if code, _ := w.get(t, "/audit/receipts/sha256:"+strings.Repeat("0", 64)); code != 404 {
		t.Errorf("unknown digest: %d", code)
	}
	if code, _ := w.get(t, "/audit/receipts/not-a-digest"); code != 400 {
		t.Errorf("malformed digest: %d", code)
	}
}

// TestSubjectLookup: without a case reference or with a bad ID number
// nothing is searched or logged; with both, the look-up is logged (the
// subject as a keyed digest, never the ID number) before the decisions
// are shown; when logging fails nothing is shown.
func TestSubjectLookup(t *testing.T) {
	w := newWorld(t)
	for _, f := range []url.Values{
		{"id_number": {subjectID}},
		{"id_number": {subjectID}, "case_reference": {"abc"}},
		{"id_number": {subjectID[:17] + "0"}, "case_reference": {"(2026)吉01刑初12号"}},
		{"id_number": {subjectID}, "case_reference": {strings.Repeat("案", 129)}},
	} {
		res, body := w.post(t, "/audit/subject", f)
		if res.StatusCode != 400 || strings.Contains(body, `id="logged"`) {
			t.Errorf("%v: %d", f, res.StatusCode)
		}
	}
	if len(w.logged()) != 0 {
		t.Fatalf("refused look-ups were logged: %+v", w.lookups)
	}
	res, body := w.post(t, "/audit/subject", url.Values{"id_number": {subjectID}, "case_reference": {"(2026)吉01刑初12号"}})
	if res.StatusCode != 200 || !strings.Contains(body, "logged as leaf <b>101</b> · 6 项决定 decisions found") || strings.Count(body, `class="receipt"`) != 6 {
		t.Fatalf("look-up %d:\n%s", res.StatusCode, body)
	}
	l := w.logged()[0]
	if l.User != "auditor-zhang" || l.CaseReference != "(2026)吉01刑初12号" || l.Found != 6 || l.Subject != translog.Digest([]byte("keyed "+subjectID)) ||
		strings.Contains(fmt.Sprint(l), subjectID) {
		t.Fatalf("logged %+v", l)
	}
	if strings.Contains(body, subjectID) {
		t.Fatal("the page repeats the ID number")
	}
	w.mu.Lock()
	w.logErr = errors.New("log unavailable")
	w.mu.Unlock()
	res, body = w.post(t, "/audit/subject", url.Values{"id_number": {subjectID}, "case_reference": {"(2026)吉01刑初12号"}})
	if res.StatusCode != 500 || strings.Contains(body, `class="receipt"`) {
		t.Fatalf("unlogged look-up answered: %d", res.StatusCode)
	}
	// Decisions are never searchable by ID number on the browse page.
	if _, page := w.get(t, "/audit/decisions?reason="+subjectID); strings.Count(page, `class="receipt"`) != 0 {
		t.Fatal("an ID number found decisions through the browse filters")
	}
}

// TestReports: the form generates a report and redirects to its page;
// the file and its signature download as attachments; a bad form and a
// cross-origin post are refused without generating anything.
func TestReports(t *testing.T) {
	w := newWorld(t)
	res, _ := w.post(t, "/audit/reports", url.Values{"from": {"2026-11-01"}, "to": {"2026-12-01"}, "format": {"json"}, "agency": {"edu-jilin"}})
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("generate: %d", res.StatusCode)
	}
	loc := res.Header.Get("Location")
	code, page := w.get(t, loc)
	if code != 200 || !strings.Contains(page, `id="report-requests">60<`) {
		t.Fatalf("report page %d %s", code, page)
	}
	dl, err := w.srv.Client().Get(w.srv.URL + loc + "/certless-report.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(dl.Body)
	dl.Body.Close()
	if string(body) != "figures of edu-jilin" || !strings.HasPrefix(dl.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("download %q %v", body, dl.Header)
	}
	if code, sig := w.get(t, loc+"/certless-report.json.jws"); code != 200 || sig != "sig" {
		t.Fatalf("signature %d %q", code, sig)
	}
	if code, _ := w.get(t, loc+"/other.json"); code != 404 {
		t.Errorf("another file name: %d", code)
	}
	_, list := w.get(t, "/audit/reports")
	if !strings.Contains(list, "certless-report.json") || !strings.Contains(list, "auditor-zhang") {
		t.Fatal("the generated report is not listed")
	}
	for _, f := range []url.Values{
		{"from": {"2026-12-01"}, "to": {"2026-11-01"}, "format": {"json"}},
		{"from": {"2026-11-01"}, "to": {"2026-12-01"}, "format": {"pdf"}},
		{"from": {"2026-11-01"}, "to": {"2026-12-01"}, "format": {"json"}, "level": {"village"}},
	} {
		if res, _ := w.post(t, "/audit/reports", f); res.StatusCode != 400 {
			t.Errorf("%v: %d", f, res.StatusCode)
		}
	}
	res, _ = w.post(t, "/audit/reports", url.Values{"from": {"2026-11-01"}, "to": {"2026-12-01"}, "format": {"json"}},
		"Origin", "https://elsewhere.example", "Sec-Fetch-Site", "cross-site")
	w.mu.Lock()
	n := w.reports
	w.mu.Unlock()
	if res.StatusCode != http.StatusForbidden || n != 1 {
		t.Fatalf("cross-origin post: %d, %d reports generated", res.StatusCode, n)
	}
}

// TestPagesAreSelfContained: every page loads only the console's own
// stylesheet, with a policy that forbids anything else, and no script.
func TestPagesAreSelfContained(t *testing.T) {
	w := newWorld(t)
	for _, p := range []string{"/audit/", "/audit/decisions", "/audit/reports", "/audit/subject", "/audit/nothing"} {
		res, err := w.srv.Client().Get(w.srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		csp := res.Header.Get("Content-Security-Policy")
		if strings.Contains(string(b), "<script") || !strings.Contains(csp, "default-src 'none'") || res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: script or policy %q", p, csp)
		}
		if strings.Contains(string(b), "http://") || strings.Contains(string(b), "https://") {
			t.Errorf("%s links outside the broker", p)
		}
	}
}
