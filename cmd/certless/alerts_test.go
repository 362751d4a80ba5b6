package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
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
