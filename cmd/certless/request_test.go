package main

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/config"
)

// TestRequestAgainstDev runs `certless dev` and then `certless request`
// exactly as a newcomer would (in-process, on free ports), and checks the
// printed receipt is verified and answered.
func TestRequestAgainstDev(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
