package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/client"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpListsSubcommands(t *testing.T) {
	code, out, _ := runCLI(t, "--help")
	if code != exitOK {
		t.Fatalf("--help exit %d", code)
	}
	for _, sub := range []string{"dev", "serve", "demo", "request", "keys", "schemas", "records", "db", "version"} {
		if !strings.Contains(out, "\n  "+sub+" ") {
			t.Errorf("--help does not list %q", sub)
		}
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"no-such-command"}, exitUsage},
		{[]string{"--no-such-flag"}, exitUsage},
		{[]string{"request"}, exitUsage},
		{[]string{"keys", "generate", "--agency", "a1", "--alg", "HS256"}, exitUsage},
		{[]string{"schemas", "export"}, exitUsage},
		{[]string{"--config", "/does/not/exist.yaml", "serve"}, exitFailure},
		{[]string{"version"}, exitOK},
	}
	for _, c := range cases {
		if code, _, stderr := runCLI(t, c.args...); code != c.code {
			t.Errorf("certless %s: exit %d, want %d (%s)", strings.Join(c.args, " "), code, c.code, stderr)
		}
	}
}

func TestKeysAndSchemasCommands(t *testing.T) {
	dir := t.TempDir()
	if code, out, errs := runCLI(t, "keys", "generate", "--agency", "court-x", "--dir", dir); code != 0 || !strings.Contains(out, "court-x/") {
		t.Fatalf("keys generate: %d %s %s", code, out, errs)
	}
	code, out, _ := runCLI(t, "keys", "jwks", "--agency", "court-x", "--dir", dir)
	if code != 0 {
		t.Fatalf("keys jwks exit %d", code)
	}
	if _, err := client.BrokerKeys("court-x", []byte(out)); err != nil {
		t.Fatalf("printed JWKS does not parse: %v", err)
	}
	exp := t.TempDir()
	if code, out, _ := runCLI(t, "schemas", "export", exp); code != 0 || !strings.Contains(out, "verification_request") && !strings.Contains(out, "wrote") {
		t.Fatalf("schemas export: %d %s", code, out)
	}
}

// TestDevServesOperationsEndpoints starts what `certless dev` starts, on
// free ports, and checks /healthz, /readyz, /metrics and the JWKS.
func TestDevServesOperationsEndpoints(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, err := ensureDevData(ctx, t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	svc, err := startService(ctx, cfg, zap.NewNop(), serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.run(runCtx) }()
	base := "http://" + svc.httpAddr()
	for path, want := range map[string]string{
		"/healthz":               "ok",
		"/readyz":                `"ready":true`,
		"/metrics":               "certless_in_flight_messages",
		"/.well-known/jwks.json": `"kid": "certless/`,
	} {
		body := get(t, base+path)
		if !strings.Contains(body, want) {
			t.Errorf("%s: %q lacks %q", path, body, want)
		}
	}
	// Not routed: anything else, and the profiles while http.pprof is off.
	for _, path := range []string{"/debug/pprof/", "/admin", "/log"} {
		if code, _ := getStatus(t, base+path); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
	// dev's auditor login: the console refuses no login and takes it.
	if code, _ := getStatus(t, base+"/audit/"); code != http.StatusUnauthorized {
		t.Errorf("/audit/ without a login: %d", code)
	}
	user, pass, _ := strings.Cut(strings.TrimSpace(string(mustRead(t, filepath.Join(cfg.DataDir, devPasswordFile)))), " ")
	req, _ := http.NewRequest(http.MethodGet, base+"/audit/", nil)
	req.SetBasicAuth(user, pass)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("/audit/ as dev's %s: %v %v", user, res, err)
	} else {
		res.Body.Close()
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("service did not stop after cancel")
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %s", url, resp.Status, b)
	}
	return string(b)
}

// TestScenariosEmbedded runs the demo's scenarios on the embedded cluster
// and SQLite: the fast check of the whole chain.
func TestScenariosEmbedded(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, err := ensureDevData(ctx, t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	runScenarioTest(ctx, t, cfg, serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"})
}

// TestConfidentialAgencyWithoutKeyFailsAtStart: a missing encryption key is
// a configuration error found at start, not a stalled partition later.
func TestConfidentialAgencyWithoutKeyFailsAtStart(t *testing.T) {
	ctx := context.Background()
	cfg, err := ensureDevData(ctx, t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Agencies[0].EncryptReceipts = true // the court has no encryption key
	_, err = startService(ctx, cfg, zap.NewNop(), serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "encryption key") {
		t.Fatalf("start = %v, want a missing encryption key error", err)
	}
}

// TestPprofOptIn: with http.pprof the profiles are served to operators
// (here a loopback client, no operator being named).
func TestPprofOptIn(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, err := ensureDevData(ctx, t.TempDir(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Pprof = true
	svc := startTestService(ctx, t, cfg, serviceOptions{embeddedPort: -1, httpAddr: "127.0.0.1:0"})
	if body := get(t, "http://"+svc.httpAddr()+"/debug/pprof/"); !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof index: %q", body)
	}
}
