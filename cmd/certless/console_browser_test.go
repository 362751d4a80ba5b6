package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/client"
	"github.com/certless/certless/internal/testenv"
	"github.com/certless/certless/report"
	"github.com/certless/certless/translog"
	"github.com/certless/certless/webauth"
)

// TestRealKafkaAuditorConsoleInChromium drives headless Chromium against a
// broker on the real Kafka and PostgreSQL that serves its HTTP address over
// TLS with Prometheus-format bcrypt logins, after the demo's scenarios:
// the auditor logs in, browses the denied decisions, opens a receipt whose
// checks all pass, sees the checkpoints, generates an HTML report and
// downloads it with its signature (which verifies, and fails after one
// figure is edited), and looks up a person under a case reference, which
// lands in the transparency log; an operator login and no login cannot
// reach the console. Screenshots of the main pages are kept as artefacts.
func TestRealKafkaAuditorConsoleInChromium(t *testing.T) {
	bin := testenv.Chromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	logins := map[string]string{"auditor-zhang": randomPassword(), "prometheus": randomPassword()}
	certPEM := writeTLSWebConfig(t, cfg.DataDir, logins)
	cfg.HTTP.WebConfigFile = filepath.Join(cfg.DataDir, "web.yml")
	cfg.HTTP.Auditors, cfg.HTTP.Operators = []string{"auditor-zhang"}, []string{"prometheus"}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	// The agencies' machines trust the deployment's CA: the scenarios
	// fetch status lists from the broker over TLS.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	old := http.DefaultTransport
	http.DefaultTransport = tr
	t.Cleanup(func() { http.DefaultTransport = old })

	svc := startTestService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0"})
	base := svc.httpBase()
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("the HTTP address is %s, not TLS", base)
	}
	rep, err := runScenarios(ctx, cfg, svc)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.checkpointer.Round(ctx); err != nil {
		t.Fatal(err)
	}
	denied := 0
	for _, o := range rep.decided {
		if o == "denied" {
			denied++
		}
	}
	if denied == 0 || denied > 50 || len(rep.decided) < 20 {
		t.Fatalf("the scenarios decided %d requests, %d denied", len(rep.decided), denied)
	}
	// Plain HTTP to the TLS address is refused; TLS is served with the
	// file's certificate.
	if res, err := http.Get("http://" + svc.httpAddr() + "/.well-known/jwks.json"); err == nil {
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP served the JWKS on the TLS address")
		}
	}

	auditor := openBrowser(t, bin, "auditor-zhang", logins["auditor-zhang"])
	step := func(ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) int64 {
		t.Helper()
		res, err := chromedp.RunResponse(ctx, actions...)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return res.Status
	}
	text := func(ctx context.Context, sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	number := func(ctx context.Context, js string) int {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[float64](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return int(v)
	}
	shots := map[string][]byte{}
	shoot := func(ctx context.Context, name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatal(err)
		}
		shots[name] = b
	}

	// Log in and see the overview.
	if code := step(auditor, "overview", chromedp.Navigate(base+"/audit/")); code != 200 {
		t.Fatalf("the auditor's overview: %d", code)
	}
	stored, err := svc.store.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if u, n := text(auditor, "#user"), text(auditor, "#decisions"); u != "auditor-zhang" || n != strconv.Itoa(stored) {
		t.Fatalf("overview: user %q, decisions %q, the store holds %d", u, n, stored)
	}
	shoot(auditor, "overview")

	// Browse: the denied decisions, each row denied.
	step(auditor, "decisions", chromedp.Click(`main a[href="/audit/decisions"]`))
	if err := chromedp.Do(auditor, chromedp.SetValue(`select[name="outcome"]`, "denied")); err != nil {
		t.Fatal(err)
	}
	step(auditor, "browse denied", chromedp.Click("#browse"))
	rows := number(auditor, `document.querySelectorAll("table.decisions tbody a.receipt").length`)
	others := number(auditor, `Array.from(document.querySelectorAll("table.decisions td.outcome")).filter(td => td.textContent !== "denied").length`)
	if rows != denied || others != 0 {
		t.Fatalf("browse denied: %d rows (%d not denied), the scenarios had %d denials", rows, others, denied)
	}
	shoot(auditor, "decisions")

	// Open a receipt: every check passes.
	step(auditor, "receipt", chromedp.Click("table.decisions a.receipt"))
	checks := number(auditor, `document.querySelectorAll("#checks tbody tr").length`)
	passed := number(auditor, `document.querySelectorAll("#checks tbody td.ok").length`)
	if v := text(auditor, "#verdict"); !strings.Contains(v, "all passed") || checks < 6 || passed != checks {
		t.Fatalf("receipt checks: %q, %d of %d passed", v, passed, checks)
	}
	shoot(auditor, "receipt")

	// The log's checkpoints, each signed by the log key.
	step(auditor, "log", chromedp.Click(`nav a[href="/audit/log"]`))
	if n, signed := number(auditor, `document.querySelectorAll("#checkpoints tbody tr").length`),
		number(auditor, `Array.from(document.querySelectorAll("#checkpoints tbody tr")).filter(tr => tr.textContent.includes("log 日志")).length`); n == 0 || signed != n {
		t.Fatalf("log page: %d checkpoints, %d signed by the log", n, signed)
	}

	// Generate an HTML report and download it with its signature.
	step(auditor, "reports", chromedp.Click(`nav a[href="/audit/reports"]`))
	step(auditor, "generate", chromedp.Click("#generate"))
	if got := text(auditor, "#report-requests"); got != strconv.Itoa(len(rep.decided)) {
		t.Fatalf("the report counts %s decisions; the agencies got %d receipts", got, len(rep.decided))
	}
	if r := text(auditor, "#reconciliation"); !strings.Contains(r, "reconciled with the log") {
		t.Fatalf("reconciliation: %q", r)
	}
	shoot(auditor, "report")
	dir := t.TempDir()
	file := download(t, auditor, dir, "#download")
	sig := download(t, auditor, dir, "#download-jws")
	if filepath.Base(sig) != filepath.Base(file)+".jws" || !strings.HasSuffix(file, ".html") {
		t.Fatalf("downloaded %s and %s", file, sig)
	}
	page, jws := mustRead(t, file), mustRead(t, sig)
	jwks, err := svc.keys.JWKS(cfg.BrokerID)
	if err != nil {
		t.Fatal(err)
	}
	bk, err := client.BrokerKeys(cfg.BrokerID, jwks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := report.VerifyDetached(jws, page, bk); err != nil {
		t.Fatalf("the downloaded report does not verify: %v", err)
	}
	if strings.Count(string(page), "<svg") != 2 || strings.Contains(string(page), "<script") {
		t.Fatal("the downloaded report is not the self-contained HTML with two charts")
	}
	edited := strings.Replace(string(page), ">"+strconv.Itoa(len(rep.decided))+"<", ">"+strconv.Itoa(len(rep.decided)+1)+"<", 1)
	if edited == string(page) {
		t.Fatal("no total to edit in the report")
	}
	if _, err := report.VerifyDetached(jws, []byte(edited), bk); err == nil {
		t.Fatal("an edited report verifies")
	}

	// A subject look-up under a case reference: logged, then answered.
	person := demoSubjects(records.Generate(devSeed, devPersons)).clean
	keys := svc.subjectKeys(person.IDNumber, "")
	want := 0
	for _, k := range keys {
		ds, err := svc.store.BySubject(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		want += len(ds)
	}
	if want == 0 {
		t.Fatal("the scenarios answered nothing about the clean subject")
	}
	step(auditor, "subject form", chromedp.Click(`nav a[href="/audit/subject"]`))
	if err := chromedp.Do(auditor, chromedp.SendKeys(`input[name="id_number"]`, person.IDNumber),
		chromedp.SendKeys(`input[name="case_reference"]`, "(2026)吉01刑初12号")); err != nil {
		t.Fatal(err)
	}
	step(auditor, "look up", chromedp.Click("#lookup"))
	logged := text(auditor, "#logged")
	if !strings.Contains(logged, strconv.Itoa(want)+" 项决定") {
		t.Fatalf("look-up: %q, want %d decisions", logged, want)
	}
	leafIdx, err := strconv.ParseInt(text(auditor, "#logged b"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	leaves, err := svc.store.ReadLeaves(ctx, leafIdx, 1)
	if err != nil {
		t.Fatal(err)
	}
	l, err := translog.ParseLeaf(leaves[0])
	if err != nil || l.Kind != translog.KindSubjectLookup || l.Agency != "auditor:auditor-zhang" || l.Outcome != "found:"+strconv.Itoa(want) ||
		strings.Contains(string(leaves[0]), person.IDNumber) || strings.Contains(string(leaves[0]), person.Name) {
		t.Fatalf("leaf %d of the look-up: %s (%v)", leafIdx, leaves[0], err)
	}
	shoot(auditor, "subject")

	// An operator login reaches /metrics but not the console; no login
	// reaches neither, and still the public JWKS.
	operator := openBrowser(t, bin, "prometheus", logins["prometheus"])
	if code := step(operator, "operator console", chromedp.Navigate(base+"/audit/")); code != http.StatusForbidden {
		t.Fatalf("an operator reached the console: %d", code)
	}
	if body := text(operator, "body"); !strings.Contains(body, "does not hold the auditor role") {
		t.Fatalf("the operator was told %q", body)
	}
	if code := step(operator, "operator metrics", chromedp.Navigate(base+"/metrics")); code != 200 {
		t.Fatalf("the operator's /metrics: %d", code)
	}
	anonymous := openBrowser(t, bin, "", "")
	for path, want := range map[string]int64{"/audit/": 401, "/audit/decisions": 401, "/metrics": 401, "/.well-known/jwks.json": 200, "/log/checkpoint": 200} {
		if code := step(anonymous, "anonymous "+path, chromedp.Navigate(base+path)); code != want {
			t.Errorf("no login, %s: %d, want %d", path, code, want)
		}
	}
	for name, b := range shots {
		art := filepath.Join(os.TempDir(), "certless-console-"+name+".png")
		if err := os.WriteFile(art, b, 0o644); err == nil {
			t.Logf("screenshot: %s (%d bytes)", art, len(b))
		}
	}
}

// openBrowser starts a headless Chromium that answers the broker's login
// prompt as user (an empty user cancels it), and trusts any certificate.
func openBrowser(t *testing.T, bin, user, pass string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.IgnoreCertErrors,
		chromedp.Flag("disable-gpu", true), chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	auth := chromedp.Events(ctx, fetch.AuthRequired)
	yes := true
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &yes}); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	go func() {
		for ev, err := range auth {
			if err != nil {
				return
			}
			resp := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			if user != "" {
				resp = &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: user, Password: pass}
			}
			_, _ = chromedp.Call(ctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: resp})
		}
	}()
	return ctx
}

// download clicks the link sel and returns the path of the file Chromium
// saved in dir.
func download(t *testing.T, ctx context.Context, dir, sel string) string {
	t.Helper()
	yes := true
	if _, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir, EventsEnabled: &yes}); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	begun := chromedp.BrowserEvents(dctx, browser.DownloadWillBegin)
	progress := chromedp.BrowserEvents(dctx, browser.DownloadProgress)
	if err := chromedp.Do(ctx, chromedp.Click(sel)); err != nil {
		t.Fatal(err)
	}
	var name string
	for ev, err := range begun {
		if err != nil {
			t.Fatalf("download of %s did not begin: %v", sel, err)
		}
		name = ev.SuggestedFilename
		break
	}
	for ev, err := range progress {
		if err != nil {
			t.Fatalf("download of %s: %v", sel, err)
		}
		if ev.State == browser.DownloadProgressStateCompleted {
			break
		}
		if ev.State == browser.DownloadProgressStateCanceled {
			t.Fatalf("download of %s cancelled", sel)
		}
	}
	return filepath.Join(dir, name)
}

// writeTLSWebConfig writes dir/web.yml in Prometheus's web configuration
// format: a certificate for 127.0.0.1 and the logins, bcrypt-hashed. It
// returns the certificate.
func writeTLSWebConfig(t *testing.T, dir string, logins map[string]string) []byte {
	t.Helper()
	certPEM, keyPEM := testenv.ServerCert(t)
	if err := os.WriteFile(filepath.Join(dir, "web.crt"), certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "web.key"), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("tls_server_config:\n  cert_file: web.crt\n  key_file: web.key\nbasic_auth_users:\n")
	for u, p := range logins {
		h, err := webauth.HashPassword(p)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("  " + u + ": " + h + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "web.yml"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPEM
}
