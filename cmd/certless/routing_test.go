package main

import (
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters/httpsource"
	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/adapters/sqlsource"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
)

// TestCountyHTTPSourceAnswersBeforeProvince registers a county-level HTTP
// record service beside the province's SQL source and checks that a subject
// of that county is answered by the county, another by the province, and
// that both show in the per-source metrics.
func TestCountyHTTPSourceAnswersBeforeProvince(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	cfg, err := ensureDevData(ctx, dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	ds := records.Generate(devSeed, devPersons)
	var inCounty, elsewhere records.Person
	county := ""
	for _, p := range ds.Persons {
		if p.CancelReason != "" {
			continue
		}
		if county == "" {
			county, inCounty = p.IDNumber[:6], p
		} else if p.IDNumber[:6] != county && elsewhere.IDNumber == "" {
			elsewhere = p
		}
	}
	// The county's own service, here in front of the same seeded records.
	src, err := sqlsource.Open(ctx, filepath.Join(dir, "records.db"), sqlsource.Options{Name: "county-upstream"})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	upstream := httptest.NewServer(httpsource.Handler(src, httpsource.HandlerOptions{}))
	defer upstream.Close()
	cfg.Adapters = append(cfg.Adapters, config.Adapter{Name: "county-http", Type: "http", Level: "county", Region: county,
		Options: map[string]any{"url": upstream.URL, "timeout": "2s"}})
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	svc := startTestService(ctx, t, cfg, serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"})

	c, err := newAgencyClient(ctx, cfg, "court-changchun", "")
	if err != nil {
		t.Fatal(err)
	}
	c.Kafka = svc.kafka
	defer c.Close()
	key, err := keys.SigningKey(cfg.KeysDir, "court-changchun", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []records.Person{inCounty, elsewhere} {
		s, err := client.Build(key, client.Request{Query: "identity", Subject: schemas.Subject{IDNumber: p.IDNumber, Name: p.Name},
			Basis: "case-handling", CaseRef: "R-1"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		r, err := c.Request(wctx, s)
		wcancel()
		if err != nil {
			t.Fatal(err)
		}
		if r.Decision != schemas.DecisionAnswered {
			t.Fatalf("decision %s/%s", r.Decision, r.Reason)
		}
	}
	metrics := get(t, "http://"+svc.httpAddr()+"/metrics")
	for _, want := range []string{
		`certless_source_answers_total{outcome="found",source="county-http"} 1`,
		`certless_source_answers_total{outcome="found",source="jilin-records"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
