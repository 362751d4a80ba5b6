package report_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/report"
)

// TestHTMLReportRendersInChromium: the HTML report, opened from a file in
// headless Chromium (Debian's, installed by scripts/services.sh), draws its
// two charts with a size, shows the reconciliation and the tables, and
// asks nothing of the network. A screenshot is kept as a test artefact.
func TestHTMLReportRendersInChromium(t *testing.T) {
	bin := testenv.Chromium(t)
	w := newWorld(t)
	r := w.build(t, report.Filter{}, w.checkpoint())
	var page bytes.Buffer
	if err := report.WriteHTML(&page, r); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1200, 1600))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()

	if err := chromedp.Do(ctx, chromedp.Navigate("file://"+file)); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	eval := func(js string) any {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
		if err != nil {
			t.Fatalf("chromium: %s: %v", js, err)
		}
		return v
	}
	charts := eval(`document.querySelectorAll("figure svg").length`)
	tables := eval(`document.querySelectorAll("table").length`)
	narrow := eval(`Array.from(document.querySelectorAll("figure svg")).filter(s => s.getBoundingClientRect().width < 200).length`)
	// Every resource the page loaded besides itself (a self-contained page
	// loads none).
	loaded := eval(`performance.getEntriesByType("resource").map(e => e.name).join(" ")`)
	if charts != float64(2) || tables.(float64) < 7 || narrow != float64(0) {
		t.Fatalf("rendered %v charts (%v narrower than 200px) and %v tables", charts, narrow, tables)
	}
	if loaded != "" {
		t.Fatalf("the report loaded %v", loaded)
	}
	if h1, err := chromedp.Run(ctx, chromedp.Text("h1")); err != nil || !strings.Contains(h1, "supervision report") {
		t.Fatalf("title %q (%v)", h1, err)
	}
	reconciled, err := chromedp.Run(ctx, chromedp.Text(".ok"))
	if err != nil || !strings.Contains(reconciled, "reconciled") {
		t.Fatalf("reconciliation shown as %q (%v)", reconciled, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(80))
	if err != nil {
		t.Fatal(err)
	}
	art := filepath.Join(os.TempDir(), "certless-report-screenshot.jpg")
	if err := os.WriteFile(art, shot, 0o644); err == nil {
		t.Logf("screenshot: %s (%d bytes)", art, len(shot))
	}
}
