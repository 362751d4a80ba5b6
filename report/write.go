package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
)

// Formats a report is written in.
const (
	FormatJSON = "json"
	FormatCSV  = "csv"
	FormatHTML = "html"
)

// Write renders r in format.
func Write(w io.Writer, r *Report, format string) error {
	switch format {
	case FormatJSON:
		return WriteJSON(w, r)
	case FormatCSV:
		return WriteCSV(w, r)
	case FormatHTML:
		return WriteHTML(w, r)
	}
	return fmt.Errorf("report: format %q: want json, csv or html", format)
}

// WriteJSON writes r as indented JSON (schema certless.report.v1).
func WriteJSON(w io.Writer, r *Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// CSVHeader is the first line of the CSV form: one figure per row.
var CSVHeader = []string{"scope", "id", "name", "level", "region", "query", "figure", "value"}

// WriteCSV writes the figures of r one per row: scope is report, agency,
// query, region, disputes, overdue, anomaly or log; figure names a
// figure as the JSON form does (by_outcome.answered, latency_ms.p99, …).
func WriteCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	row := func(rec ...string) { _ = cw.Write(rec) }
	row(CSVHeader...)
	row("report", r.Broker, r.Title, r.Filter.Level, r.Filter.Region, "", "period.from", r.Period.From.Format("2006-01-02T15:04:05Z07:00"))
	row("report", r.Broker, r.Title, r.Filter.Level, r.Filter.Region, "", "period.to", r.Period.To.Format("2006-01-02T15:04:05Z07:00"))
	row("report", r.Broker, r.Title, r.Filter.Level, r.Filter.Region, "", "on_time_deadline_ms", strconv.FormatInt(r.OnTimeMS, 10))
	figures := func(scope, id, name, level, region, query string, f Figures) {
		for _, kv := range figureValues(f) {
			row(scope, id, name, level, region, query, kv[0], kv[1])
		}
	}
	figures("report", r.Broker, "", r.Filter.Level, r.Filter.Region, "", r.Totals)
	for _, a := range r.Agencies {
		figures("agency", a.ID, a.Name, a.Level, a.Region, "", a.Figures)
		for _, q := range a.Queries {
			figures("query", a.ID, a.Name, a.Level, a.Region, q.Query, q.Figures)
		}
	}
	for _, g := range r.Regions {
		figures("region", g.Code, g.Name, g.Level, g.Code, "", g.Figures)
		row("region", g.Code, g.Name, g.Level, g.Code, "", "agencies", strconv.Itoa(g.Agencies))
	}
	d := r.Disputes
	row("disputes", "", "", "", "", "", "opened", strconv.Itoa(d.Opened))
	row("disputes", "", "", "", "", "", "resolved", strconv.Itoa(d.Resolved))
	for _, s := range slices.Sorted(maps.Keys(d.ByStatus)) {
		row("disputes", "", "", "", "", "", "by_status."+s, strconv.Itoa(d.ByStatus[s]))
	}
	if d.ResolutionHoursP50 != nil {
		row("disputes", "", "", "", "", "", "resolution_hours_p50", num(*d.ResolutionHoursP50))
		row("disputes", "", "", "", "", "", "resolution_hours_max", num(*d.ResolutionHoursMax))
	}
	for _, a := range r.Overdue.Agreements {
		row("overdue", a, "", "", "", "", "agreement", "1")
	}
	row("overdue", "", "", "", "", "", "disputes", strconv.Itoa(r.Overdue.Disputes))
	for _, b := range r.Overdue.Batches {
		row("overdue", b.Schedule, b.Recipient, "", "", "", "batches", strconv.Itoa(b.Overdue))
		row("overdue", b.Schedule, b.Recipient, "", "", "", "batches.oldest", strconv.Itoa(b.Oldest))
	}
	for _, a := range r.Anomalies {
		id := a.Agency
		if id == "" {
			id = a.Subject
		}
		row("anomaly", id, a.Detail, "", "", "", a.Kind+".count", strconv.Itoa(a.Count))
		row("anomaly", id, a.Detail, "", "", "", a.Kind+".leaf_range", fmt.Sprintf("%d-%d", a.LeafRange[0], a.LeafRange[1]))
	}
	if cp := r.Checkpoint; cp != nil {
		row("log", cp.Origin, "", "", "", "", "checkpoint.size", strconv.FormatInt(cp.Size, 10))
		row("log", cp.Origin, "", "", "", "", "checkpoint.root_hash", cp.RootHash)
	}
	rc := r.Reconciliation
	for _, kv := range [][2]string{{"decisions", strconv.Itoa(rc.Decisions)}, {"logged", strconv.Itoa(rc.Logged)}, {"unlogged", strconv.Itoa(rc.Unlogged)},
		{"pending", strconv.Itoa(rc.Pending)}, {"leaves_checked", strconv.Itoa(rc.LeavesChecked)}, {"decision_leaves", strconv.Itoa(rc.DecisionLeaves)},
		{"reconciled", strconv.FormatBool(rc.Reconciled)}} {
		row("log", "", "", "", "", "", "reconciliation."+kv[0], kv[1])
	}
	cw.Flush()
	return cw.Error()
}

// figureValues flattens f as the CSV form names its figures.
func figureValues(f Figures) [][2]string {
	out := [][2]string{{"requests", strconv.Itoa(f.Requests)}}
	for _, k := range slices.Sorted(maps.Keys(f.ByOutcome)) {
		out = append(out, [2]string{"by_outcome." + k, strconv.Itoa(f.ByOutcome[k])})
	}
	for _, k := range slices.Sorted(maps.Keys(f.ByReason)) {
		out = append(out, [2]string{"by_reason." + k, strconv.Itoa(f.ByReason[k])})
	}
	if l := f.Latency; l != nil {
		out = append(out, [2]string{"latency_ms.p50", num(l.P50)}, [2]string{"latency_ms.p90", num(l.P90)}, [2]string{"latency_ms.p99", num(l.P99)}, [2]string{"latency_ms.max", num(l.Max)})
	}
	out = append(out, [2]string{"latency_measured", strconv.Itoa(f.Measured)}, [2]string{"on_time", strconv.Itoa(f.OnTime)})
	if f.OnTimeRate != nil {
		out = append(out, [2]string{"on_time_rate", num(*f.OnTimeRate)})
	}
	out = append(out, [2]string{"quota_denials", strconv.Itoa(f.QuotaDenials)}, [2]string{"peak_day", strconv.Itoa(f.PeakDay)},
		[2]string{"leaf_range.first", strconv.FormatInt(f.LeafRange[0], 10)}, [2]string{"leaf_range.last", strconv.FormatInt(f.LeafRange[1], 10)})
	return out
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
