package report

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// outcomes in the order the charts and tables show them.
var outcomes = []string{"answered", "not_found", "denied", "rejected", "unavailable", "internal_error"}

var outcomeColors = map[string]color.RGBA{
	"answered": {0x2e, 0x7d, 0x32, 0xff}, "not_found": {0x78, 0x90, 0x9c, 0xff}, "denied": {0xef, 0x6c, 0x00, 0xff},
	"rejected": {0xc6, 0x28, 0x28, 0xff}, "unavailable": {0x6a, 0x1b, 0x9a, 0xff}, "internal_error": {0x21, 0x21, 0x21, 0xff},
}

// labels are the bilingual names of outcomes and figures.
var labels = map[string]string{
	"answered": "答复 answered", "not_found": "查无 not found", "denied": "拒绝 denied", "rejected": "驳回 rejected",
	"unavailable": "暂不可用 unavailable", "internal_error": "内部错误 internal error",
}

// chartSVG renders p as an SVG element (no XML prolog) to inline.
func chartSVG(p *plot.Plot, w, h vg.Length) (template.HTML, error) {
	c := vgsvg.New(w, h)
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return "", err
	}
	s := b.String()
	if i := strings.Index(s, "<svg"); i > 0 {
		s = s[i:]
	}
	return template.HTML(s), nil // produced by the plot library from numbers and our labels
}

// outcomeChart is a stacked bar per agency of its decisions by outcome.
func outcomeChart(r *Report) (template.HTML, error) {
	if len(r.Agencies) == 0 {
		return "", nil
	}
	p := plot.New()
	p.Title.Text = "Decisions by outcome per agency"
	p.Y.Label.Text = "decisions"
	names := make([]string, len(r.Agencies))
	for i, a := range r.Agencies {
		names[i] = a.ID
	}
	var below *plotter.BarChart
	w := vg.Points(18)
	for _, o := range outcomes {
		vs := make(plotter.Values, len(r.Agencies))
		any := false
		for i, a := range r.Agencies {
			vs[i] = float64(a.ByOutcome[o])
			any = any || vs[i] > 0
		}
		if !any {
			continue
		}
		b, err := plotter.NewBarChart(vs, w)
		if err != nil {
			return "", err
		}
		b.Color, b.LineStyle.Width = outcomeColors[o], 0
		if below != nil {
			b.StackOn(below)
		}
		below = b
		p.Add(b)
		p.Legend.Add(o, b)
	}
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.5
	p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = draw.XRight, draw.YCenter
	top := 0.0
	for _, a := range r.Agencies {
		top = max(top, float64(a.Requests))
	}
	p.Y.Min, p.Y.Max = 0, top*1.4 // room for the legend above the bars
	return chartSVG(p, vg.Points(float64(max(420, 70*len(names)))), vg.Points(300))
}

// latencyChart is p50, p90 and p99 per agency, in milliseconds.
func latencyChart(r *Report) (template.HTML, error) {
	var names []string
	var p50, p90, p99 plotter.Values
	for _, a := range r.Agencies {
		if a.Latency == nil {
			continue
		}
		names = append(names, a.ID)
		p50, p90, p99 = append(p50, a.Latency.P50), append(p90, a.Latency.P90), append(p99, a.Latency.P99)
	}
	if len(names) == 0 {
		return "", nil
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Latency per agency (ms; on-time deadline %d ms)", r.OnTimeMS)
	p.Y.Label.Text = "ms"
	w := vg.Points(10)
	for i, s := range []struct {
		name string
		v    plotter.Values
		c    color.RGBA
	}{{"p50", p50, color.RGBA{0x90, 0xca, 0xf9, 0xff}}, {"p90", p90, color.RGBA{0x42, 0xa5, 0xf5, 0xff}}, {"p99", p99, color.RGBA{0x0d, 0x47, 0xa1, 0xff}}} {
		b, err := plotter.NewBarChart(s.v, w)
		if err != nil {
			return "", err
		}
		b.Color, b.LineStyle.Width, b.Offset = s.c, 0, vg.Length(i-1)*w
		p.Add(b)
		p.Legend.Add(s.name, b)
	}
	top := 0.0
	for _, v := range p99 {
		top = max(top, v)
	}
	p.Y.Min, p.Y.Max = 0, top*1.4
	p.Legend.Top = true
	p.NominalX(names...)
	p.X.Tick.Label.Rotation = 0.5
	p.X.Tick.Label.XAlign, p.X.Tick.Label.YAlign = draw.XRight, draw.YCenter
	return chartSVG(p, vg.Points(float64(max(420, 70*len(names)))), vg.Points(300))
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"label": func(k string) string {
		if l, ok := labels[k]; ok {
			return l
		}
		return k
	},
	"keys": func(m map[string]int) []string { return slices.Sorted(maps.Keys(m)) },
	"pct": func(p *float64) string {
		if p == nil {
			return "–"
		}
		return fmt.Sprintf("%.1f%%", 100**p)
	},
	"ms": func(l *Latency, which string) string {
		if l == nil {
			return "–"
		}
		v := map[string]float64{"p50": l.P50, "p90": l.P90, "p99": l.P99, "max": l.Max}[which]
		return fmt.Sprintf("%.1f", v)
	},
	"when":     func(t time.Time) string { return t.In(Beijing).Format("2006-01-02 15:04:05 (UTC+8)") },
	"outcomes": func() []string { return outcomes },
}).Parse(`<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>{{.R.Title}}</title>
<style>
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","PingFang SC","Microsoft YaHei",system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#212121;line-height:1.45}
h1{font-size:1.5em;border-bottom:2px solid #1565c0;padding-bottom:.3em}h2{font-size:1.15em;margin-top:1.8em;color:#0d47a1}
table{border-collapse:collapse;width:100%;margin:.6em 0;font-size:.9em}th,td{border:1px solid #cfd8dc;padding:.25em .5em;text-align:right}
th{background:#eceff1}td.l,th.l{text-align:left}.ok{color:#2e7d32}.bad{color:#c62828;font-weight:bold}
.meta td{text-align:left}figure{margin:1em 0;break-inside:avoid}svg{max-width:100%;height:auto}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}table{break-inside:auto}tr{break-inside:avoid}}
</style></head><body>
<h1>{{.R.Title}}</h1>
<table class="meta">
<tr><th class="l">期间 Period</th><td>{{when .R.Period.From}} — {{when .R.Period.To}}</td></tr>
<tr><th class="l">范围 Filter</th><td>level {{or .R.Filter.Level "all"}}, region {{or .R.Filter.Region "all"}}, agency {{or .R.Filter.Agency "all"}}</td></tr>
<tr><th class="l">经纪 Broker</th><td>{{.R.Broker}}, generated {{when .R.GeneratedAt}}</td></tr>
<tr><th class="l">检查点 Checkpoint</th><td>{{with .R.Checkpoint}}{{.Origin}}, tree size {{.Size}}, root hash <code>{{.RootHash}}</code>{{else}}none{{end}}</td></tr>
<tr><th class="l">核对 Reconciliation</th><td>{{with .R.Reconciliation}}{{if .Reconciled}}<span class="ok">reconciled 一致</span>{{else}}<span class="bad">NOT reconciled 不一致</span>{{end}}:
{{.Decisions}} decisions, {{.Logged}} under the checkpoint, {{.LeavesChecked}} leaves read back and compared, {{.DecisionLeaves}} decision leaves in range, {{.Unlogged}} older than the log, {{.Pending}} not yet checkpointed.
{{range .Differences}}<br><span class="bad">{{.}}</span>{{end}}{{end}}</td></tr>
</table>

<h2>总量 Totals</h2>
<table><tr><th class="l">requests 请求</th>{{range outcomes}}<th>{{label .}}</th>{{end}}<th>p50 ms</th><th>p99 ms</th><th>on time 按时</th><th>quota denials 配额</th></tr>
<tr><td class="l">{{.R.Totals.Requests}}</td>{{range outcomes}}<td>{{index $.R.Totals.ByOutcome .}}</td>{{end}}<td>{{ms .R.Totals.Latency "p50"}}</td><td>{{ms .R.Totals.Latency "p99"}}</td><td>{{pct .R.Totals.OnTimeRate}}</td><td>{{.R.Totals.QuotaDenials}}</td></tr></table>
{{if .Outcomes}}<figure>{{.Outcomes}}</figure>{{end}}

<h2>按机构 Per agency</h2>
<table><tr><th class="l">agency 机构</th><th class="l">level 层级</th><th class="l">region 区划</th><th class="l">query 查询</th><th>requests</th>{{range outcomes}}<th>{{label .}}</th>{{end}}<th>p50</th><th>p90</th><th>p99</th><th>on time</th><th>peak day</th><th>leaves</th></tr>
{{range .R.Agencies}}{{$a := .}}<tr><td class="l"><b>{{.ID}}</b><br>{{.Name}}</td><td class="l">{{.Level}}</td><td class="l">{{.Region}}</td><td class="l">all</td><td>{{.Requests}}</td>{{range outcomes}}<td>{{index $a.ByOutcome .}}</td>{{end}}<td>{{ms .Latency "p50"}}</td><td>{{ms .Latency "p90"}}</td><td>{{ms .Latency "p99"}}</td><td>{{pct .OnTimeRate}}</td><td>{{.PeakDay}}</td><td>{{index .LeafRange 0}}–{{index .LeafRange 1}}</td></tr>
{{range .Queries}}{{$q := .}}<tr><td class="l"></td><td></td><td></td><td class="l">{{.Query}}</td><td>{{.Requests}}</td>{{range outcomes}}<td>{{index $q.ByOutcome .}}</td>{{end}}<td>{{ms .Latency "p50"}}</td><td>{{ms .Latency "p90"}}</td><td>{{ms .Latency "p99"}}</td><td>{{pct .OnTimeRate}}</td><td>{{.PeakDay}}</td><td></td></tr>{{end}}{{end}}</table>
{{if .Latency}}<figure>{{.Latency}}</figure>{{end}}

<h2>拒绝与驳回原因 Reasons</h2>
<table><tr><th class="l">reason 原因</th><th>decisions</th></tr>{{range keys .R.Totals.ByReason}}<tr><td class="l">{{.}}</td><td>{{index $.R.Totals.ByReason .}}</td></tr>{{end}}</table>

<h2>区划汇总 Regions (county → prefecture → province)</h2>
<table><tr><th class="l">code</th><th class="l">name 名称</th><th class="l">level</th><th>agencies</th><th>requests</th>{{range outcomes}}<th>{{label .}}</th>{{end}}<th>on time</th></tr>
{{range .R.Regions}}{{$g := .}}<tr><td class="l">{{.Code}}</td><td class="l">{{.Name}}</td><td class="l">{{.Level}}</td><td>{{.Agencies}}</td><td>{{.Requests}}</td>{{range outcomes}}<td>{{index $g.ByOutcome .}}</td>{{end}}<td>{{pct .OnTimeRate}}</td></tr>{{end}}</table>

<h2>异议 Disputes</h2>
<table><tr><th class="l">opened 提出</th><th>resolved 已处理</th>{{range keys .R.Disputes.ByStatus}}<th>{{.}}</th>{{end}}<th>hours to resolution (median) 处理时长</th></tr>
<tr><td class="l">{{.R.Disputes.Opened}}</td><td>{{.R.Disputes.Resolved}}</td>{{range keys .R.Disputes.ByStatus}}<td>{{index $.R.Disputes.ByStatus .}}</td>{{end}}<td>{{with .R.Disputes.ResolutionHoursP50}}{{printf "%.1f" .}}{{else}}–{{end}}</td></tr></table>

<h2>逾期 Overdue</h2>
<table><tr><th class="l">what</th><th class="l">which</th><th>count</th></tr>
<tr><td class="l">agreement proposals past review 协议待审逾期</td><td class="l">{{range .R.Overdue.Agreements}}{{.}} {{end}}</td><td>{{len .R.Overdue.Agreements}}</td></tr>
<tr><td class="l">disputes past the data owner's deadline 异议逾期</td><td></td><td>{{.R.Overdue.Disputes}}</td></tr>
{{range .R.Overdue.Batches}}<tr><td class="l">exchange batches unacknowledged 交换批次未确认</td><td class="l">{{.Schedule}} → {{.Recipient}} (oldest #{{.Oldest}})</td><td>{{.Overdue}}</td></tr>{{end}}
</table>

<h2>异常 Anomalies</h2>
{{if .R.Anomalies}}<table><tr><th class="l">kind 类型</th><th class="l">who</th><th class="l">detail 说明</th><th>count</th><th class="l">when</th><th>leaves</th></tr>
{{range .R.Anomalies}}<tr><td class="l">{{.Kind}}</td><td class="l">{{.Agency}}{{range .Agencies}}{{.}} {{end}}{{with .Subject}}<br>subject {{.}}{{end}}</td><td class="l">{{.Detail}}</td><td>{{.Count}}</td><td class="l">{{when .From}} — {{when .To}}</td><td>{{index .LeafRange 0}}–{{index .LeafRange 1}}</td></tr>{{end}}</table>
{{else}}<p>None found with the thresholds below. 未发现异常。</p>{{end}}
<p style="font-size:.85em">Thresholds: baseline {{.R.Thresholds.BaselineDays}} days; volume ×{{.R.Thresholds.VolumeFactor}} (min {{.R.Thresholds.MinVolume}}); off-hours burst {{.R.Thresholds.OffHoursBurst}}/hour; one subject, {{.R.Thresholds.SubjectAgencies}} agencies within {{.R.Thresholds.SubjectWindow}}; purpose mismatch {{.R.Thresholds.PurposeMismatch}}; denial rise +{{.R.Thresholds.DenialRise}}.</p>
<p style="font-size:.85em">This file is signed by the broker: <code>certless report verify FILE</code> checks the detached JWS beside it (FILE.jws). 本报告由经纪签名。</p>
</body></html>
`))

// WriteHTML writes r as one self-contained HTML page: no script, font or
// image from elsewhere; charts are inline SVG drawn by gonum/plot.
func WriteHTML(w io.Writer, r *Report) error {
	oc, err := outcomeChart(r)
	if err != nil {
		return fmt.Errorf("report: chart: %w", err)
	}
	lc, err := latencyChart(r)
	if err != nil {
		return fmt.Errorf("report: chart: %w", err)
	}
	return page.Execute(w, struct {
		R                 *Report
		Outcomes, Latency template.HTML
	}{r, oc, lc})
}
