package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/config"
	"github.com/certless/certless/internal/testenv"
)

// TestRequestAgainstDev runs `certless dev` and then `certless request`
// exactly as a newcomer would (in-process, on free ports), and checks the
// printed receipt is verified and answered.
func TestRequestAgainstDev(t *testing.T) {
	dir, _, stop := startDev(t)

	p := demoSubjects(records.Generate(devSeed, devPersons)).offender
	code, out, errs := runCLI(t, "--data", dir, "request", "--as", "court-changchun", "--query", "criminal_record",
		"--subject", p.IDNumber, "--name", p.Name, "--timeout", "30s")
	if code != exitOK {
		t.Fatalf("request exit %d: %s", code, errs)
	}
	for _, want := range []string{"(verified, signed by certless/", "decision", "answered", "has_criminal_record  true"} {
		if !strings.Contains(out, want) {
			t.Errorf("request output lacks %q:\n%s", want, out)
		}
	}
	stop()
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitReady polls url until it answers 200, the process exits or a deadline
// passes.
func waitReady(t *testing.T, url string, exited <-chan int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within 60s", url)
		}
		select {
		case code := <-exited:
			t.Fatalf("process exited with %d before it was ready", code)
		case <-tick.C:
		}
	}
}

// TestDockBesideDev is the README's walk-through on a running `certless
// dev`, through the CLI only: a county court's key generated, the court
// docked, its first request answered (signed, denied no_agreement) within
// seconds with no restart; then an agreement proposed, co-signed,
// activated and co-signed again, and the court's request answered about a
// resident of its county and denied outside_scope about anyone else.
func TestDockBesideDev(t *testing.T) {
	ctx := context.Background()
	dir, cfg, stop := startDev(t)

	cli := func(args ...string) string {
		t.Helper()
		code, out, errs := runCLI(t, append([]string{"--data", dir}, args...)...)
		if code != exitOK {
			t.Fatalf("certless %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		return out
	}
	persons := records.Generate(devSeed, devPersons).Persons
	inCounty := pick(t, persons, func(p records.Person) bool { return strings.HasPrefix(p.IDNumber, "220582") })
	outside := pick(t, persons, func(p records.Person) bool { return strings.HasPrefix(p.IDNumber, "2203") })
	// request prints the receipt; its exit code says the decision (0
	// answered, exitDenied denied; anything else fails the test).
	request := func(p records.Person) string {
		t.Helper()
		args := []string{"--data", dir, "request", "--as", "court-jian", "--query", "identity", "--subject", p.IDNumber, "--name", p.Name,
			"--purpose", "case-handling", "--timeout", "30s"}
		code, out, errs := runCLI(t, args...)
		switch {
		case code == exitOK && strings.Contains(out, "answered"), code == exitDenied && strings.Contains(out, "denied"):
		default:
			t.Fatalf("certless %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
		}
		return out
	}

	cli("keys", "generate", "--agency", "court-jian")
	cli("agency", "dock", "--id", "court-jian", "--level", "county", "--region", "220582", "--name", "集安市人民法院",
		"--kind", "court", "--jwks", filepath.Join(cfg.KeysDir, "court-jian.jwks.json"))
	start := time.Now()
	out := request(inCounty)
	t.Logf("the docked court's first request was answered after %v", time.Since(start).Round(time.Millisecond))
	for _, want := range []string{"(verified, signed by certless/", "denied", "no_agreement"} {
		if !strings.Contains(out, want) {
			t.Fatalf("first request of the docked court lacks %q:\n%s", want, out)
		}
	}

	cli("agreement", "propose", "--id", "court-jian/identity", "--requester", "court-jian", "--provider", "police-jilin",
		"--query", "identity", "--purpose", "case-handling")
	v1 := filepath.Join(cfg.PoliciesDir, "court-jian-identity.v1.yaml")
	cli("agreement", "sign", v1, "--as", "court-jian")
	cli("agreement", "sign", v1, "--as", "police-jilin")
	cli("agreement", "activate", v1)
	v2 := filepath.Join(cfg.PoliciesDir, "court-jian-identity.v2.yaml")
	cli("agreement", "sign", v2, "--as", "court-jian")
	cli("agreement", "sign", v2, "--as", "police-jilin")
	testenv.Eventually(ctx, t, "the court's request answered under its agreement", 30*time.Second, func() error {
		if out := request(inCounty); !strings.Contains(out, "answered") || !strings.Contains(out, "court-jian/identity v2") {
			return fmt.Errorf("not answered yet:\n%s", out)
		}
		return nil
	})
	if out := request(outside); !strings.Contains(out, "outside_scope") {
		t.Fatalf("request about a resident of another county:\n%s", out)
	}
	stop()
}

// startDev runs `certless dev` in-process on a fresh data folder and free
// ports, as a newcomer would, and returns once it is ready; stop sends
// Ctrl-C and fails unless it exits cleanly.
func startDev(t *testing.T) (dir string, cfg *config.Config, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir = t.TempDir()
	cfg, err := ensureDevData(ctx, dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Brokers = []string{"127.0.0.1:" + strconv.Itoa(freePort(t))}
	cfg.HTTP.Addr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	if err := cfg.Write(filepath.Join(dir, config.FileName)); err != nil {
		t.Fatal(err)
	}
	devDone := make(chan int, 1)
	go func() {
		var out, errb strings.Builder
		devDone <- run(ctx, []string{"--data", dir, "dev"}, &out, &errb)
	}()
	waitReady(t, "http://"+cfg.HTTP.Addr+"/readyz", devDone)
	return dir, cfg, func() {
		t.Helper()
		cancel()
		select {
		case code := <-devDone:
			if code != exitOK {
				t.Fatalf("dev exited %d after Ctrl-C", code)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("dev did not stop")
		}
	}
}
