package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/certless/certless/adapters"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/envelope"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/schemas/residentid"
)

// panickySource is a record source with a bug: every answer panics.
type panickySource struct{ asked atomic.Int64 }

func (s *panickySource) Answer(context.Context, adapters.Query) (adapters.Answer, error) {
	s.asked.Add(1)
	panic("panickySource: a bug in a record source")
}

var _ broker.RecordSource = (*panickySource)(nil)

// TestRealKafkaInternalErrorFiresAlert: on the real Kafka and PostgreSQL, a
// request routed to a record source that panics is answered with a signed
// internal_error receipt, certless_decisions_total counts it, and the
// CertlessInternalErrors expression of deploy/prometheus/alerts.yml,
// evaluated by the PromQL engine over two scrapes of /metrics stored as
// Prometheus stores them, is empty before the request and fires after it.
func TestRealKafkaInternalErrorFiresAlert(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	expr := alertExpr(t, "CertlessInternalErrors")

	// Meihekou (220581) has no source of its own: the router asks the
	// panicking one first, before the province's records.
	const county = "220581"
	cfg := realConfig(ctx, t)
	for _, a := range cfg.Adapters {
		if a.Region == county {
			t.Fatalf("adapter %s already serves %s", a.Name, county)
		}
	}
	svc, err := startService(ctx, cfg, zap.NewNop(), serviceOptions{httpAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	src := &panickySource{}
	svc.sources.router.Load().Add(county, "panicky", src)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("broker stopped with %v", err)
		}
	})
	metricsURL := "http://" + svc.httpAddr() + "/metrics"
	target := scrapeTarget{job: "certless", instance: svc.httpAddr()}
	prom := newPromStore(t)

	// t0: before the request.
	t1 := time.Now().Truncate(time.Second)
	t0 := t1.Add(-time.Minute)
	fam0 := scrapeFamilies(ctx, t, metricsURL)
	prom.add(t, t0, target, fam0)
	if v := prom.eval(ctx, t, expr, t0); len(v) != 0 {
		t.Fatalf("CertlessInternalErrors fires before any internal error, at t0: %v", v)
	}

	// One signed identity request about a Meihekou resident.
	const agency = "court-changchun"
	now := time.Now().UTC().Truncate(time.Second)
	key, err := keys.SigningKey(cfg.KeysDir, agency, now)
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := json.Marshal(schemas.Subject{IDNumber: residentid.Make(county, time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC), 11), Name: "梅河口居民"})
	raw, err := envelope.Sign(key, envelope.Payload{
		Type: schemas.TypeVerificationRequest, ID: newULID(), Agency: agency, IssuedAt: now, ExpiresAt: now.Add(10 * time.Minute),
		Purpose: envelope.Purpose{Basis: "criminal-proceedings", CaseRef: "A-1"},
		Body:    json.RawMessage(`{"query":"identity","subject":` + string(subject) + `}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	w := watchReceipts(ctx, t, cfg, svc, agency)
	prod, err := bkafka.NewProducer(svc.kafka, bkafka.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	digest := envelope.DigestOf(raw)
	if err := prod.Produce(ctx, bkafka.Message{Topic: svc.topics.Requests(agency), Value: raw}); err != nil {
		t.Fatal(err)
	}
	got, err := w.Await(ctx, map[string]string{digest: ""})
	if err != nil {
		t.Fatal(err)
	}
	r := got[digest]
	if r.Envelope == nil || r.Envelope.Agency != cfg.BrokerID || r.RequestAgency != agency {
		t.Fatalf("receipt not verified as the broker's for %s: %+v", agency, r)
	}
	if r.Decision != schemas.DecisionInternalError || r.Reason != broker.ReasonInternal {
		t.Fatalf("receipt %s/%s %q, want %s/%s", r.Decision, r.Reason, r.Detail, schemas.DecisionInternalError, broker.ReasonInternal)
	}
	if n := src.asked.Load(); n != 1 {
		t.Fatalf("the panicking source was asked %d times, want 1 (a panic is not retried)", n)
	}

	// t1: the metrics middleware counted the decision before the receipt
	// was published, so the scrape after the receipt sees it.
	fam1 := scrapeFamilies(ctx, t, metricsURL)
	before, after := counterSum(fam0, "certless_decisions_total", "outcome", "internal_error"), counterSum(fam1, "certless_decisions_total", "outcome", "internal_error")
	if after-before != 1 {
		t.Fatalf(`certless_decisions_total{outcome="internal_error"}: %v at t0, %v at t1; want one more`, before, after)
	}
	prom.add(t, t1, target, fam1)

	v := prom.eval(ctx, t, expr, t1)
	if len(v) == 0 {
		// A counter series born at its first increment has one sample in
		// the window, and increase() needs two: the first internal error
		// of each label set is invisible unless the expression counts new
		// series (or the series exist at 0 before).
		t.Fatalf("CertlessInternalErrors does not fire at t1 after an internal_error receipt:\n\t%s\nseries at t1 (absent at t0): %s", expr, seriesOf(fam1, "certless_decisions_total"))
	}
	for _, s := range v {
		if s.Metric.Get("job") != "certless" {
			t.Errorf("alert series %v: want job=\"certless\"", s.Metric)
		}
	}
	t.Logf("CertlessInternalErrors fires at t1: %v", v)
	if v := prom.eval(ctx, t, expr, t0); len(v) != 0 {
		t.Fatalf("CertlessInternalErrors fires at t0 with both scrapes stored: %v", v)
	}
}

// alertExpr returns the expression of the alert called name in alerts.yml.
func alertExpr(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == name {
				return strings.TrimSpace(r.Expr)
			}
		}
	}
	t.Fatalf("%s: no alert %s", alertsFile, name)
	return ""
}

// scrapeFamilies reads the text exposition at url.
func scrapeFamilies(ctx context.Context, t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// counterSum adds the counters of family name whose label has value.
func counterSum(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	sum := 0.0
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// seriesOf renders the series of family name, for failure messages.
func seriesOf(fams map[string]*dto.MetricFamily, name string) string {
	var b strings.Builder
	for _, m := range fams[name].GetMetric() {
		fmt.Fprintf(&b, "\n\t%s{", name)
		for i, l := range m.GetLabel() {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "%s=%q", l.GetName(), l.GetValue())
		}
		fmt.Fprintf(&b, "} %v", m.GetCounter().GetValue())
	}
	return b.String()
}

// scrapeTarget is the target labels Prometheus attaches to every series it
// scrapes.
type scrapeTarget struct{ job, instance string }

// promStore holds scraped samples as Prometheus stores them and queries
// them with the PromQL engine configured as the Prometheus server's
// defaults are (5m lookback, @ and negative offsets). It keeps the samples
// in memory rather than in a TSDB: the engine reads only what a
// storage.Queryable returns, and the TSDB would bring the whole remote-write
// and service-discovery graph (cloud SDKs, Kubernetes client) into this
// test binary.
type promStore struct {
	series map[string]*promql.Series // by labels.String()
	engine *promql.Engine
}

func newPromStore(t *testing.T) *promStore {
	t.Helper()
	ng := promql.NewEngine(promql.EngineOpts{
		MaxSamples: 50_000_000, Timeout: 2 * time.Minute, LookbackDelta: 5 * time.Minute,
		EnableAtModifier: true, EnableNegativeOffset: true,
	})
	t.Cleanup(func() { _ = ng.Close() })
	return &promStore{series: map[string]*promql.Series{}, engine: ng}
}

// add stores one scrape of target at ts as Prometheus ingests the text
// format: one float series per counter, gauge and untyped metric, per
// summary quantile plus _sum and _count, per histogram bucket (le) plus
// _sum and _count, each with the target's job and instance labels, and the
// synthetic up series. Scrapes are added in time order.
func (p *promStore) add(t *testing.T, ts time.Time, target scrapeTarget, fams map[string]*dto.MetricFamily) {
	t.Helper()
	ms := ts.UnixMilli()
	put := func(name string, m *dto.Metric, v float64, extra ...string) {
		b := labels.NewScratchBuilder(len(m.GetLabel()) + 4)
		b.Add(labels.MetricName, name)
		b.Add("job", target.job)
		b.Add("instance", target.instance)
		for _, l := range m.GetLabel() {
			b.Add(l.GetName(), l.GetValue())
		}
		for i := 0; i+1 < len(extra); i += 2 {
			b.Add(extra[i], extra[i+1])
		}
		b.Sort()
		ls := b.Labels()
		s := p.series[ls.String()]
		if s == nil {
			s = &promql.Series{Metric: ls}
			p.series[ls.String()] = s
		}
		if n := len(s.Floats); n > 0 && s.Floats[n-1].T >= ms {
			t.Fatalf("%s: sample at %d not after %d", ls, ms, s.Floats[n-1].T)
		}
		s.Floats = append(s.Floats, promql.FPoint{T: ms, F: v})
	}
	put("up", &dto.Metric{}, 1)
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				put(name, m, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				put(name, m, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				put(name, m, m.GetUntyped().GetValue())
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				for _, q := range s.GetQuantile() {
					put(name, m, q.GetValue(), "quantile", formatFloat(q.GetQuantile()))
				}
				put(name+"_sum", m, s.GetSampleSum())
				put(name+"_count", m, float64(s.GetSampleCount()))
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				inf := false
				for _, b := range h.GetBucket() {
					inf = inf || math.IsInf(b.GetUpperBound(), 1)
					put(name+"_bucket", m, float64(b.GetCumulativeCount()), "le", formatFloat(b.GetUpperBound()))
				}
				if !inf {
					put(name+"_bucket", m, float64(h.GetSampleCount()), "le", "+Inf")
				}
				put(name+"_sum", m, h.GetSampleSum())
				put(name+"_count", m, float64(h.GetSampleCount()))
			}
		}
	}
}

// Querier implements storage.Queryable.
func (p *promStore) Querier(mint, maxt int64) (storage.Querier, error) {
	return &promQuerier{p: p, mint: mint, maxt: maxt}, nil
}

// promQuerier returns the stored series matching a selector, with their
// samples in [mint, maxt].
type promQuerier struct {
	p          *promStore
	mint, maxt int64
}

func (q *promQuerier) Select(_ context.Context, sortSeries bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	var out []promql.Series
	for _, s := range q.p.series {
		if !slices.ContainsFunc(ms, func(m *labels.Matcher) bool { return !m.Matches(s.Metric.Get(m.Name)) }) {
			in := promql.Series{Metric: s.Metric}
			for _, f := range s.Floats {
				if f.T >= q.mint && f.T <= q.maxt {
					in.Floats = append(in.Floats, f)
				}
			}
			if len(in.Floats) > 0 {
				out = append(out, in)
			}
		}
	}
	if sortSeries {
		slices.SortFunc(out, func(a, b promql.Series) int { return labels.Compare(a.Metric, b.Metric) })
	}
	return &seriesSet{series: out, i: -1}
}

func (*promQuerier) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (*promQuerier) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (*promQuerier) Close() error { return nil }

type seriesSet struct {
	series []promql.Series
	i      int
}

func (s *seriesSet) Next() bool                      { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() storage.Series              { return promql.NewStorageSeries(s.series[s.i]) }
func (*seriesSet) Err() error                        { return nil }
func (*seriesSet) Warnings() annotations.Annotations { return nil }

var (
	_ storage.Queryable = (*promStore)(nil)
	_ storage.Querier   = (*promQuerier)(nil)
)

// formatFloat formats a le or quantile label value as Prometheus does.
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// eval runs expr as an instant query at ts, as the rule manager does for
// an alert, and returns the resulting vector: the alert's firing series.
func (p *promStore) eval(ctx context.Context, t *testing.T, expr string, ts time.Time) promql.Vector {
	t.Helper()
	q, err := p.engine.NewInstantQuery(ctx, p, nil, expr, ts)
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		t.Fatalf("%s at %v: %v", expr, ts, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// TestAlertRulesCheck: the rules file passes `promtool check rules` when
// promtool is installed (Debian's prometheus package), and always the
// checks promtool makes, through the same Prometheus library: YAML of
// the rule format with no unknown field, each expression parsed as
// PromQL, each label and annotation template parsed.
func TestAlertRulesCheck(t *testing.T) {
	groups, errs := rulefmt.ParseFile(alertsFile, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("rulefmt: %v", err)
	}
	if groups == nil || len(groups.Groups) == 0 {
		t.Fatalf("%s: no rule groups parsed", alertsFile)
	}
	// The library really checks: a broken expression is refused.
	if _, errs := rulefmt.Parse([]byte("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up{job=\n"), false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler)); len(errs) == 0 {
		t.Fatal("rulefmt accepts a broken expression: the check above proves nothing")
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Logf("promtool not installed (apt-get install prometheus): checked with the rulefmt library only")
		return
	}
	out, err := exec.Command(promtool, "check", "rules", alertsFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", alertsFile, err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}

// addUp stores the synthetic up series of target at ts with value v (0:
// the scrape failed).
func (p *promStore) addUp(t *testing.T, ts time.Time, target scrapeTarget, v float64) {
	t.Helper()
	p.add(t, ts, target, nil)
	s := p.series[labels.FromStrings(labels.MetricName, "up", "instance", target.instance, "job", target.job).String()]
	s.Floats[len(s.Floats)-1].F = v
}

// TestAlertBrokerDownAbsent: CertlessBrokerDown fires for a target whose
// scrape fails (up 0), and also when the job has no target left, never
// scraped or gone from service discovery (no up series within the
// lookback); not while a target is up.
func TestAlertBrokerDownAbsent(t *testing.T) {
	ctx := context.Background()
	expr := alertExpr(t, "CertlessBrokerDown")
	t0 := time.Now().Truncate(time.Second)
	a := scrapeTarget{job: "certless", instance: "broker-1:8080"}
	other := scrapeTarget{job: "node", instance: "host:9100"}

	prom := newPromStore(t)
	prom.add(t, t0, other, nil)
	if v := prom.eval(ctx, t, expr, t0); len(v) != 1 || v[0].Metric.Get("job") != "certless" {
		t.Fatalf("no target in job certless: %v, want one series with job=\"certless\"", v)
	}

	prom = newPromStore(t)
	prom.add(t, t0, other, nil)
	prom.add(t, t0, a, nil)
	if v := prom.eval(ctx, t, expr, t0); len(v) != 0 {
		t.Fatalf("fires while %s is up: %v", a.instance, v)
	}
	prom.addUp(t, t0.Add(30*time.Second), a, 0)
	v := prom.eval(ctx, t, expr, t0.Add(30*time.Second))
	if len(v) != 1 || v[0].Metric.Get("instance") != a.instance {
		t.Fatalf("after a failed scrape of %s: %v, want its series", a.instance, v)
	}
	// The target disappears: its last sample leaves the 5m lookback.
	gone := t0.Add(30*time.Second + 5*time.Minute + time.Second)
	v = prom.eval(ctx, t, expr, gone)
	if len(v) != 1 || v[0].Metric.Get("job") != "certless" {
		t.Fatalf("%s gone from service discovery: %v, want the absent series", a.instance, v)
	}
}

// TestAlertCircuitHalfOpen: a source that stays down flips its circuit
// between open and half-open (a probe call every open_for, which fails);
// CertlessSourceCircuitOpen must hold at every evaluation of that cycle, or
// its "for" clock restarts at each probe and it never fires. It clears once
// the circuit closes. The gauge is the broker's own (broker.SourceMetrics),
// scraped from a registry as Prometheus would.
func TestAlertCircuitHalfOpen(t *testing.T) {
	ctx := context.Background()
	expr := alertExpr(t, "CertlessSourceCircuitOpen")
	reg := prometheus.NewRegistry()
	m := broker.NewSourceMetrics(reg)
	m.Wrap("police-jilin", nil)
	target := scrapeTarget{job: "certless", instance: "broker-1:8080"}
	prom := newPromStore(t)
	t0 := time.Now().Truncate(time.Second)
	step := 15 * time.Second
	// open for 30s, half-open for one scrape, six times; then closed.
	var states []string
	for range 6 {
		states = append(states, "open", "open", "half-open")
	}
	states = append(states, "closed")
	legacy := `max by (job, source) (certless_source_circuit_open) == 1`
	legacyGaps := 0
	for i, st := range states {
		m.CircuitChanged("police-jilin", st)
		ts := t0.Add(time.Duration(i) * step)
		prom.add(t, ts, target, gatherFamilies(t, reg))
		v := prom.eval(ctx, t, expr, ts)
		if st == "closed" {
			if len(v) != 0 {
				t.Fatalf("%v: circuit closed, alert still holds: %v", ts.Sub(t0), v)
			}
			continue
		}
		if len(v) != 1 || v[0].Metric.Get("source") != "police-jilin" {
			t.Fatalf("%v: circuit %s, alert expression gives %v: the for clock restarts", ts.Sub(t0), st, v)
		}
		if len(prom.eval(ctx, t, legacy, ts)) == 0 {
			legacyGaps++
		}
	}
	if legacyGaps != 6 {
		t.Fatalf("the old expression (== 1) had %d gaps, want 6 (one per half-open probe): the cycle does not test the fix", legacyGaps)
	}
}

// gatherFamilies collects reg as a scrape of it would parse.
func gatherFamilies(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// TestMetricsInitialisedAtStart: a broker that has handled nothing yet
// serves, at 0, the series known at start — decisions of every docked
// agency by outcome, handle latency by outcome, transient failures of
// every request topic, every record source's answers by outcome, latency
// and circuit, the log's failures by stage — so dashboards show 0 rather
// than no data and increase() counts a first event.
func TestMetricsInitialisedAtStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg, err := ensureDevData(ctx, t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	svc := startTestService(ctx, t, cfg, serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"})
	fams := scrapeFamilies(ctx, t, "http://"+svc.httpAddr()+"/metrics")

	// value returns the value of the series of family name with exactly
	// the labels want, and whether there is one.
	value := func(name string, want map[string]string) (float64, bool) {
		for _, m := range fams[name].GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if !maps.Equal(got, want) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
		return 0, false
	}
	expect := func(name string, want map[string]string) {
		t.Helper()
		v, ok := value(name, want)
		switch {
		case !ok:
			t.Errorf("%s%v: no series before any request", name, want)
		case v != 0:
			t.Errorf("%s%v = %v before any request, want 0", name, want, v)
		}
	}
	if len(cfg.Agencies) == 0 || len(cfg.Adapters) == 0 {
		t.Fatalf("dev config has %d agencies and %d adapters: nothing to check", len(cfg.Agencies), len(cfg.Adapters))
	}
	for _, o := range broker.Outcomes {
		expect("certless_handle_seconds", map[string]string{"outcome": o})
		for _, a := range cfg.Agencies {
			expect("certless_decisions_total", map[string]string{"agency": a.ID, "query": "none", "outcome": o, "reason": "none", "redelivery": "false"})
		}
	}
	for _, a := range cfg.Agencies {
		expect("certless_transient_failures_total", map[string]string{"topic": svc.topics.Requests(a.ID)})
	}
	for _, a := range cfg.Adapters {
		expect("certless_source_circuit_open", map[string]string{"source": a.Name})
		expect("certless_source_answer_seconds", map[string]string{"source": a.Name})
		for _, o := range []string{"found", "not_found", "unavailable", "error"} {
			expect("certless_source_answers_total", map[string]string{"source": a.Name, "outcome": o})
		}
	}
	for _, stage := range []string{"checkpoint", "audit"} {
		expect("certless_log_failures_total", map[string]string{"stage": stage})
	}
}
