package console

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/certless/certless/broker/store"
	"github.com/certless/certless/report"
	"github.com/certless/certless/translog"
)

// pageSize is the decisions on one page.
const pageSize = 50

var funcs = template.FuncMap{
	"bj": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.In(report.Beijing).Format("2006-01-02 15:04:05")
	},
	"ms": func(us int64) string {
		if us < 0 {
			return "–"
		}
		return strconv.FormatFloat(float64(us)/1000, 'f', 1, 64)
	},
	"short": func(s string) string {
		if len(s) > 19 {
			return s[:19] + "…"
		}
		return s
	},
	"path": url.PathEscape,
}

func (h *Handler) agencies() []Agency {
	if h.o.Agencies == nil {
		return nil
	}
	return h.o.Agencies()
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	n, err := h.o.Store.Count(ctx)
	if err != nil {
		h.internal(w, r, "counting the decisions", err)
		return
	}
	cps, err := h.o.Store.RecentCheckpoints(ctx, 1)
	if err != nil {
		h.internal(w, r, "reading the newest checkpoint", err)
		return
	}
	data := map[string]any{"Decisions": n, "Agencies": len(h.agencies())}
	if len(cps) == 1 {
		if c, err := translog.ParseCheckpointBody(cps[0]); err == nil {
			data["Size"], data["Root"] = c.N, fmt.Sprintf("%x", c.Hash[:])
		}
	}
	recent, err := h.o.Store.Browse(ctx, store.BrowseFilter{Limit: 10})
	if err != nil {
		h.internal(w, r, "reading the newest decisions", err)
		return
	}
	data["Recent"] = recent
	h.render(w, r, "overview", http.StatusOK, data)
}

// Outcomes are the decision outcomes, for the filter.
var outcomes = []string{store.Answered, store.NotFound, store.Denied, store.Rejected, store.Unavailable, store.InternalError}

var tokenRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{0,64}$`)

// day parses a form's date (Beijing time) or RFC 3339 instant.
func day(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, report.Beijing); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339, s)
}

func (h *Handler) decisions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.BrowseFilter{Agency: q.Get("agency"), Outcome: q.Get("outcome"), Reason: q.Get("reason"), Limit: pageSize + 1}
	for _, v := range []string{f.Agency, f.Outcome, f.Reason} {
		if !tokenRe.MatchString(v) {
			h.fail(w, r, http.StatusBadRequest, "a filter holds a character outside [A-Za-z0-9._:-] or is longer than 64")
			return
		}
	}
	var err error
	if f.From, err = day(q.Get("from")); err != nil {
		h.fail(w, r, http.StatusBadRequest, "from: give a date YYYY-MM-DD (Beijing time)")
		return
	}
	if f.To, err = day(q.Get("to")); err != nil {
		h.fail(w, r, http.StatusBadRequest, "to: give a date YYYY-MM-DD (Beijing time)")
		return
	}
	if !f.To.IsZero() && len(q.Get("to")) == len("2006-01-02") {
		f.To = f.To.AddDate(0, 0, 1) // the day given is included
	}
	page := 1
	if p := q.Get("page"); p != "" {
		if page, err = strconv.Atoi(p); err != nil || page < 1 || page > 10000 {
			h.fail(w, r, http.StatusBadRequest, "page: 1 to 10000")
			return
		}
	}
	f.Offset = (page - 1) * pageSize
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	ds, err := h.o.Store.Browse(ctx, f)
	if err != nil {
		h.internal(w, r, "reading the decisions", err)
		return
	}
	more := len(ds) > pageSize
	if more {
		ds = ds[:pageSize]
	}
	link := func(p int) string {
		v := url.Values{}
		for _, k := range []string{"agency", "outcome", "reason", "from", "to"} {
			if q.Get(k) != "" {
				v.Set(k, q.Get(k))
			}
		}
		v.Set("page", strconv.Itoa(p))
		return "/audit/decisions?" + v.Encode()
	}
	data := map[string]any{"Decisions": ds, "Agencies": h.agencies(), "Outcomes": outcomes, "Q": map[string]string{
		"agency": q.Get("agency"), "outcome": q.Get("outcome"), "reason": q.Get("reason"), "from": q.Get("from"), "to": q.Get("to")},
		"PageNo": page, "First": f.Offset + 1, "Last": f.Offset + len(ds)}
	if more {
		data["Next"] = link(page + 1)
	}
	if page > 1 {
		data["Prev"] = link(page - 1)
	}
	h.render(w, r, "decisions", http.StatusOK, data)
}

var digestRe = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func (h *Handler) decision(w http.ResponseWriter, r *http.Request) (store.Decision, bool) {
	digest := r.PathValue("digest")
	if !digestRe.MatchString(digest) {
		h.fail(w, r, http.StatusBadRequest, "a decision is named by its request digest, sha256:<64 hex>")
		return store.Decision{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	d, ok, err := h.o.Store.Get(ctx, digest)
	if err != nil {
		h.internal(w, r, "reading the decision", err)
		return d, false
	}
	if !ok {
		h.fail(w, r, http.StatusNotFound, "no decision for request "+digest)
		return d, false
	}
	return d, true
}

func (h *Handler) receipt(w http.ResponseWriter, r *http.Request) {
	d, ok := h.decision(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	checks := h.o.Checks(ctx, d)
	failed := 0
	for _, c := range checks {
		if c.Err != nil {
			failed++
		}
	}
	h.render(w, r, "receipt", http.StatusOK, map[string]any{"D": d, "Checks": checks, "Failed": failed,
		"Fields": strings.Join(d.AnswerFields, ", ")})
}

func (h *Handler) bundle(w http.ResponseWriter, r *http.Request) {
	d, ok := h.decision(w, r)
	if !ok {
		return
	}
	b, err := h.o.Bundle(r.Context(), d)
	if err != nil {
		h.fail(w, r, http.StatusConflict, "no bundle: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="receipt-`+d.ReceiptID+`.bundle.json"`)
	_, _ = w.Write(b)
}

// signature is one signature line of a checkpoint as the log page shows it.
type signature struct {
	Name     string
	Hash     string
	Verified bool
	Role     string
}

type checkpointRow struct {
	Size       int64
	Root       string
	Signatures []signature
	Err        string
}

func (h *Handler) logPage(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	cps, err := h.o.Store.RecentCheckpoints(ctx, 20)
	if err != nil {
		h.internal(w, r, "reading the checkpoints", err)
		return
	}
	pol, err := h.o.Policy()
	if err != nil {
		h.internal(w, r, "reading the log and witness keys", err)
		return
	}
	rows := make([]checkpointRow, 0, len(cps))
	for _, b := range cps {
		row := checkpointRow{}
		c, err := translog.OpenCheckpoint(b, pol.Origin, pol.Log, pol.Witnesses...)
		if err != nil {
			row.Err = err.Error()
			if body, err := translog.ParseCheckpointBody(b); err == nil {
				row.Size, row.Root = body.N, fmt.Sprintf("%x", body.Hash[:])
			}
			rows = append(rows, row)
			continue
		}
		row.Size, row.Root = c.N, fmt.Sprintf("%x", c.Hash[:])
		for _, s := range c.Note.Sigs {
			role := "witness 见证"
			if s.Name == pol.Log.Name() && s.Hash == pol.Log.KeyHash() {
				role = "log 日志"
			}
			row.Signatures = append(row.Signatures, signature{Name: s.Name, Hash: fmt.Sprintf("%08x", s.Hash), Verified: true, Role: role})
		}
		for _, s := range c.Note.UnverifiedSigs {
			row.Signatures = append(row.Signatures, signature{Name: s.Name, Hash: fmt.Sprintf("%08x", s.Hash), Role: "unknown key 未知密钥"})
		}
		rows = append(rows, row)
	}
	var witnesses []string
	for _, v := range pol.Witnesses {
		witnesses = append(witnesses, v.Name())
	}
	h.render(w, r, "log", http.StatusOK, map[string]any{"Checkpoints": rows, "Origin": pol.Origin, "Witnesses": witnesses, "Quorum": pol.Quorum})
}

func (h *Handler) reportsPage(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	list := make([]*generatedReport, 0, len(h.reports))
	for i := len(h.reports) - 1; i >= 0; i-- {
		list = append(list, h.reports[i])
	}
	h.mu.Unlock()
	now := h.o.Now().In(report.Beijing)
	first := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, report.Beijing)
	h.render(w, r, "reports", http.StatusOK, map[string]any{"Reports": list, "Agencies": h.agencies(),
		"From": first.Format("2006-01-02"), "To": now.AddDate(0, 0, 1).Format("2006-01-02")})
}

func (h *Handler) generate(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, http.StatusBadRequest, "the form could not be read")
		return
	}
	from, err1 := day(r.PostForm.Get("from"))
	to, err2 := day(r.PostForm.Get("to"))
	if err1 != nil || err2 != nil || from.IsZero() || to.IsZero() || !from.Before(to) {
		h.fail(w, r, http.StatusBadRequest, "give the period as two dates YYYY-MM-DD (Beijing time), the first before the second")
		return
	}
	req := ReportRequest{Period: report.Period{From: from, To: to}, Format: r.PostForm.Get("format"),
		Filter: report.Filter{Level: r.PostForm.Get("level"), Region: r.PostForm.Get("region"), Agency: r.PostForm.Get("agency")}}
	switch req.Filter.Level {
	case "", "province", "prefecture", "county":
	default:
		h.fail(w, r, http.StatusBadRequest, "level: province, prefecture or county")
		return
	}
	switch req.Format {
	case report.FormatHTML, report.FormatJSON, report.FormatCSV:
	default:
		h.fail(w, r, http.StatusBadRequest, "format: html, json or csv")
		return
	}
	if !tokenRe.MatchString(req.Filter.Region) || !tokenRe.MatchString(req.Filter.Agency) {
		h.fail(w, r, http.StatusBadRequest, "region and agency: codes of [A-Za-z0-9._:-]")
		return
	}
	if !h.busy.TryLock() {
		w.Header().Set("Retry-After", "10")
		h.fail(w, r, http.StatusServiceUnavailable, "another report is being generated; try again in a moment")
		return
	}
	defer h.busy.Unlock()
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	name, file, jws, rep, err := h.o.Report(ctx, req)
	if err != nil {
		h.internal(w, r, "generating the report", err)
		return
	}
	g := &generatedReport{ID: newID(), Generated: Generated{Name: name, File: file, JWS: jws, Report: rep, Format: req.Format, By: userOf(r), At: h.o.Now()}}
	h.mu.Lock()
	h.reports = append(h.reports, g)
	if len(h.reports) > maxReports {
		h.reports = h.reports[len(h.reports)-maxReports:]
	}
	h.mu.Unlock()
	h.o.Log.Info("report generated", zap.String("user", g.By), zap.String("file", name), zap.Int("decisions", rep.Totals.Requests))
	http.Redirect(w, r, "/audit/reports/"+g.ID, http.StatusSeeOther)
}

func (h *Handler) find(id string) *generatedReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, g := range h.reports {
		if g.ID == id {
			return g
		}
	}
	return nil
}

func (h *Handler) reportPage(w http.ResponseWriter, r *http.Request) {
	g := h.find(r.PathValue("id"))
	if g == nil {
		h.fail(w, r, http.StatusNotFound, "no such report (the console keeps the last 16 it generated); generate it again")
		return
	}
	h.render(w, r, "report", http.StatusOK, map[string]any{"G": g, "R": g.Report})
}

func (h *Handler) reportFile(w http.ResponseWriter, r *http.Request) {
	g := h.find(r.PathValue("id"))
	if g == nil {
		h.fail(w, r, http.StatusNotFound, "no such report")
		return
	}
	var body []byte
	var ctype string
	switch r.PathValue("file") {
	case g.Name:
		body = g.File
		ctype = map[string]string{report.FormatHTML: "text/html; charset=utf-8", report.FormatJSON: "application/json", report.FormatCSV: "text/csv; charset=utf-8"}[g.Format]
	case g.Name + ".jws":
		body, ctype = g.JWS, "application/jose"
	default:
		h.fail(w, r, http.StatusNotFound, "no such file")
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="`+r.PathValue("file")+`"`)
	_, _ = w.Write(body)
}

func (h *Handler) subjectForm(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, "subject", http.StatusOK, map[string]any{})
}

// maxCaseReference bounds a case reference (characters).
const maxCaseReference = 128

func (h *Handler) subject(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		h.fail(w, r, http.StatusBadRequest, "the form could not be read")
		return
	}
	id := strings.TrimSpace(r.PostForm.Get("id_number"))
	related := strings.TrimSpace(r.PostForm.Get("related_id_number"))
	caseRef := strings.TrimSpace(r.PostForm.Get("case_reference"))
	form := map[string]any{"CaseReference": caseRef}
	if n := utf8.RuneCountInString(caseRef); n < 4 || n > maxCaseReference || !utf8.ValidString(caseRef) {
		form["Error"] = fmt.Sprintf("a look-up needs the case reference (案件编号) it is made for, 4 to %d characters", maxCaseReference)
		h.render(w, r, "subject", http.StatusBadRequest, form)
		return
	}
	if err := h.o.ValidID(id); err != nil {
		form["Error"] = "ID number: " + err.Error()
		h.render(w, r, "subject", http.StatusBadRequest, form)
		return
	}
	if related != "" {
		if err := h.o.ValidID(related); err != nil {
			form["Error"] = "related ID number: " + err.Error()
			h.render(w, r, "subject", http.StatusBadRequest, form)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	var found []store.Decision
	for _, k := range h.o.SubjectKeys(id, related) {
		ds, err := h.o.Store.BySubject(ctx, k)
		if err != nil {
			h.internal(w, r, "reading the subject's decisions", err)
			return
		}
		found = append(found, ds...)
	}
	l := Lookup{User: userOf(r), CaseReference: caseRef, Subject: h.o.SubjectDigest(id), Found: len(found), At: h.o.Now()}
	// Logged before it is answered: a look-up the log does not hold is
	// not shown.
	leaf, err := h.o.LogLookup(ctx, l)
	if err != nil {
		h.internal(w, r, "logging the look-up (it is not answered unless logged)", err)
		return
	}
	h.o.Log.Info("subject look-up", zap.String("user", l.User), zap.String("case_reference", caseRef),
		zap.String("subject", l.Subject), zap.Int("found", l.Found), zap.Int64("leaf", leaf))
	form["Found"], form["Leaf"], form["Searched"] = found, leaf, true
	h.render(w, r, "subject", http.StatusOK, form)
}
