package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/config"
	"github.com/certless/certless/report"
	"github.com/certless/certless/schemas"
)

// TestRealKafkaReport: on the real Kafka and PostgreSQL, after the demo's
// scenarios ran through the broker, `certless report --format json`
// counts exactly the decisions the agencies received receipts for, by
// outcome, per agency; names the log's checkpoint and reconciles every
// decision with its leaf; is valid against report.v1; and `report verify`
// passes on the file and fails, naming it, after one figure is edited.
// The HTML form is one file with its charts inline.
func TestRealKafkaReport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	svc := startTestService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0"})
	from := time.Now().Add(-time.Minute)
	rep, err := runScenarios(ctx, cfg, svc)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.checkpointer.Round(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for _, d := range rep.decided {
		want[d]++
	}
	if len(rep.decided) < 20 {
		t.Fatalf("the scenarios decided only %d requests", len(rep.decided))
	}
	// A threshold from the configuration reaches the report.
	cfg.Report.Anomalies.OffHoursBurst = 7
	path := filepath.Join(cfg.DataDir, config.FileName)
	if err := cfg.Write(path); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "report.json")
	to := time.Now().Add(time.Minute)
	code, stdout, errOut := runCLI(t, "--config", path, "report", "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339), "--format", "json", "--out", out)
	if code != exitOK || !strings.Contains(stdout, "reconciled with the log") {
		t.Fatalf("report: %d\n%s%s", code, stdout, errOut)
	}
	raw := mustRead(t, out)
	set, _ := schemas.Default()
	if err := set.Validate("report.v1", raw); err != nil {
		t.Fatalf("the report breaks report.v1: %v", err)
	}
	var r report.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.Thresholds.OffHoursBurst != 7 || r.Thresholds.SubjectAgencies != 3 {
		t.Errorf("thresholds %+v: want off_hours_burst 7 from the configuration, the rest the defaults", r.Thresholds)
	}
	if r.Totals.Requests != len(rep.decided) {
		t.Errorf("the report counts %d decisions; the agencies got %d receipts", r.Totals.Requests, len(rep.decided))
	}
	for outcome, n := range want {
		if r.Totals.ByOutcome[outcome] != n {
			t.Errorf("%s: the report counts %d, the receipts say %d", outcome, r.Totals.ByOutcome[outcome], n)
		}
	}
	sum := 0
	for _, a := range r.Agencies {
		sum += a.Requests
		if a.Level == "" || a.Region == "" {
			t.Errorf("agency %s without its level and region from the directory", a.ID)
		}
	}
	if sum != r.Totals.Requests || r.Checkpoint == nil || r.Checkpoint.Size == 0 || !r.Reconciliation.Reconciled ||
		r.Reconciliation.LeavesChecked != r.Totals.Requests || r.Totals.Measured != r.Totals.Requests || r.Totals.Latency == nil {
		t.Fatalf("agencies sum %d of %d; checkpoint %+v; reconciliation %+v; latency %+v of %d", sum, r.Totals.Requests, r.Checkpoint, r.Reconciliation, r.Totals.Latency, r.Totals.Measured)
	}
	if code, stdout, _ := runCLI(t, "--config", path, "report", "verify", out); code != exitOK || !strings.Contains(stdout, "signed by "+cfg.BrokerID+"/") {
		t.Fatalf("report verify: %d %s", code, stdout)
	}
	edited := strings.Replace(string(raw), `"requests": `, `"requests": 1`, 1)
	if err := os.WriteFile(out, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "--config", path, "report", "verify", out); code == exitOK || !strings.Contains(errOut, "does not verify") {
		t.Fatalf("report verify after an edit: %d %s", code, errOut)
	}
	html := filepath.Join(t.TempDir(), "report.html")
	if code, _, errOut := runCLI(t, "--config", path, "report", "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339), "--out", html); code != exitOK {
		t.Fatalf("html report: %d %s", code, errOut)
	}
	page := string(mustRead(t, html))
	if strings.Count(page, "<svg") != 2 || strings.Contains(page, "<script") || !strings.Contains(page, "reconciled 一致") {
		t.Fatalf("the HTML report: %d charts", strings.Count(page, "<svg"))
	}
}
