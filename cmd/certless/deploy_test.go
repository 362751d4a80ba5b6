package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"
)

const (
	dashboardFile = "../../deploy/grafana/certless-dashboard.json"
	alertsFile    = "../../deploy/prometheus/alerts.yml"
)

// TestDeployFilesUseServedMetrics keeps the Grafana dashboard and the alert
// rules honest as metrics change: every metric they query must be served by
// a running broker (the dev service, after the demo's requests went through
// it so that labelled series exist), and every label they select on or
// group by must be a label of the metrics in that query. A metric with no
// series yet (a circuit that never opened, no transient failure) must at
// least be registered under that name.
func TestDeployFilesUseServedMetrics(t *testing.T) {
	queries := append(dashboardQueries(t), alertQueries(t)...)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := ensureDevData(ctx, t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	svc := startTestService(ctx, t, cfg, serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"})
	if _, err := runScenarios(ctx, cfg, svc); err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(get(t, "http://"+svc.httpAddr()+"/metrics")))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}

	checked := map[string]bool{}
	for _, q := range queries {
		served := true // every metric of q has series, so its labels can be checked
		labels := map[string]bool{"job": true, "instance": true, "le": true}
		for _, name := range metricNames(q.expr) {
			fam := family(families, name)
			if fam == nil {
				served = false
				if !registered(svc.registry, name) {
					t.Errorf("%s: %s is not a metric of the broker\n\t%s", q.where, name, q.expr)
				} else if !checked[name] {
					t.Logf("%s is registered but has no series after the scenarios", name)
				}
				checked[name] = true
				continue
			}
			checked[name] = true
			have := labelNames(fam)
			for l := range have {
				labels[l] = true
			}
			for _, l := range selectorLabels(q.expr, name) {
				if !have[l] && l != "job" && l != "instance" {
					t.Errorf("%s: %s has no label %q\n\t%s", q.where, name, l, q.expr)
				}
			}
		}
		if !served {
			continue
		}
		for _, l := range groupingLabels(q.expr) {
			if !labels[l] {
				t.Errorf("%s: groups by %q, a label of none of its metrics\n\t%s", q.where, l, q.expr)
			}
		}
	}
	if len(checked) < 10 {
		t.Fatalf("only %d metric names found in the deploy files: is the parsing broken?", len(checked))
	}
	t.Logf("%d queries over %d metrics checked", len(queries), len(checked))
}

type query struct {
	where string // file and panel or alert
	expr  string
}

// dashboardQueries parses the dashboard, checks its frame (data source
// variable, agency variable, one data source everywhere, unique panel ids)
// and returns its panel targets and variable queries.
func dashboardQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type datasource struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	}
	type panel struct {
		ID         int         `json:"id"`
		Type       string      `json:"type"`
		Title      string      `json:"title"`
		Datasource *datasource `json:"datasource"`
		Targets    []struct {
			Datasource *datasource `json:"datasource"`
			Expr       string      `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"` // of collapsed rows
	}
	var d struct {
		UID           string            `json:"uid"`
		SchemaVersion int               `json:"schemaVersion"`
		Panels        []json.RawMessage `json:"panels"`
		Templating    struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				Definition string          `json:"definition"`
				Datasource *datasource     `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.SchemaVersion < 36 {
		t.Errorf("%s: uid %q, schemaVersion %d: want a uid and schema 36 or later", dashboardFile, d.UID, d.SchemaVersion)
	}
	const ds = "${DS_PROMETHEUS}"
	checkDS := func(where string, s *datasource) {
		if s == nil || s.Type != "prometheus" || s.UID != ds {
			t.Errorf("%s: %s: data source %+v, want prometheus %s", dashboardFile, where, s, ds)
		}
	}
	var out []query
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "datasource" {
			continue
		}
		checkDS("variable "+v.Name, v.Datasource)
		out = append(out, query{where: dashboardFile + ": variable " + v.Name, expr: v.Definition})
	}
	if !vars["DS_PROMETHEUS"] || !vars["agency"] {
		t.Errorf("%s: variables %v, want DS_PROMETHEUS and agency", dashboardFile, vars)
	}
	ids := map[int]string{}
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("%s: panel: %v", dashboardFile, err)
			}
			if other, dup := ids[p.ID]; dup {
				t.Errorf("%s: panels %q and %q share id %d", dashboardFile, other, p.Title, p.ID)
			}
			ids[p.ID] = p.Title
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			checkDS("panel "+p.Title, p.Datasource)
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", dashboardFile, p.Title)
			}
			for _, tg := range p.Targets {
				checkDS("panel "+p.Title, tg.Datasource)
				out = append(out, query{where: dashboardFile + ": panel " + p.Title, expr: tg.Expr})
			}
		}
	}
	walk(d.Panels)
	return out
}

// alertQueries parses the alert rules, checks each rule's frame and returns
// their expressions.
func alertQueries(t *testing.T) []query {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []query
	seen := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			where := fmt.Sprintf("%s: %s/%s", alertsFile, g.Name, r.Alert)
			if r.Alert == "" || seen[r.Alert] || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: want a unique alert name and an expr", where)
			}
			seen[r.Alert] = true
			if _, err := model.ParseDuration(r.For); err != nil {
				t.Errorf("%s: for %q: %v", where, r.For, err)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" {
				t.Errorf("%s: severity %q, want critical or warning", where, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want a summary and a description", where)
			}
			out = append(out, query{where: where, expr: r.Expr})
		}
	}
	for _, want := range []string{"up{", "certless_consumer_lag_messages", "certless_source_circuit_open", "certless_transient_failures_total", "certless_handle_seconds_bucket", `outcome="dead_letter"`, "certless_log_checkpoint_age_seconds"} {
		if !slices.ContainsFunc(out, func(q query) bool { return strings.Contains(q.expr, want) }) {
			t.Errorf("%s: no rule watches %s", alertsFile, want)
		}
	}
	return out
}

var (
	metricRE = regexp.MustCompile(`\b(?:certless|process|go)_[a-z0-9_]+\b`)
	groupRE  = regexp.MustCompile(`\b(?:by|without|on|ignoring)\s*\(([^)]*)\)`)
	matchRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
)

// metricNames returns the broker's metric names in expr: its own and the
// Go and process collectors' (those only where the process collector has
// them).
func metricNames(expr string) []string {
	var out []string
	for _, n := range metricRE.FindAllString(expr, -1) {
		if strings.HasPrefix(n, "process_") && runtime.GOOS != "linux" {
			continue
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// selectorLabels returns the label names matched in every selector of name
// in expr.
func selectorLabels(expr, name string) []string {
	var out []string
	re := regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\{([^}]*)\}`)
	for _, m := range re.FindAllStringSubmatch(expr, -1) {
		for _, l := range matchRE.FindAllStringSubmatch(m[1], -1) {
			out = append(out, l[1])
		}
	}
	return out
}

// groupingLabels returns the label names of by, without, on and ignoring
// clauses in expr.
func groupingLabels(expr string) []string {
	var out []string
	for _, m := range groupRE.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	return out
}

// family returns the family serving name: itself, or the histogram or
// summary whose _bucket, _sum or _count series it is.
func family(fams map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	if f, ok := fams[name]; ok {
		return f
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if f, ok := fams[base]; ok && (f.GetType() == dto.MetricType_HISTOGRAM || f.GetType() == dto.MetricType_SUMMARY) {
			return f
		}
	}
	return nil
}

func labelNames(f *dto.MetricFamily) map[string]bool {
	out := map[string]bool{}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			out[l.GetName()] = true
		}
	}
	return out
}

// registered reports whether reg holds a collector describing name (or the
// histogram name is a series of): registering a probe under that name is
// then refused as inconsistent with it.
func registered(reg prometheus.Registerer, name string) bool {
	names := []string{name}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			names = append(names, base)
		}
	}
	for _, n := range names {
		probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: n, Help: "deploy_test probe"})
		if err := reg.Register(probe); err != nil {
			return true
		}
		reg.Unregister(probe)
	}
	return false
}
