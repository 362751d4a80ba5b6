package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/certless/certless/config"
)

// TestCleanShutdownSaysStopped: after Ctrl-C, the last line dev (console)
// and serve (JSON) log is "stopped".
func TestCleanShutdownSaysStopped(t *testing.T) {
	dir := t.TempDir()
	cfg, err := ensureDevData(context.Background(), dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Brokers = []string{"127.0.0.1:" + strconv.Itoa(freePort(t))}
	cfg.HTTP.Addr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	path := filepath.Join(dir, config.FileName)
	if err := cfg.Write(path); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--data", dir, "dev"}, {"--config", path, "serve"}} {
		t.Run(args[2], func(t *testing.T) {
			r := startRun(t, args...)
			exited := make(chan int, 1)
			go func() { <-r.done; exited <- r.code }()
			waitReady(t, "http://"+cfg.HTTP.Addr+"/readyz", exited)
			if strings.Contains(r.stderr.String(), "stopped\n") || strings.Contains(r.stderr.String(), `"msg":"stopped"`) {
				t.Fatalf("says stopped while running:\n%s", r.stderr)
			}
			r.interrupt(t)
			if r.code != exitOK {
				t.Fatalf("exit %d after Ctrl-C:\n%s", r.code, r.stderr)
			}
			last := strings.TrimSuffix(lastLine(r.stderr.String()), "\n") // audit_test.go's
			if args[2] == "dev" {
				if !strings.HasSuffix(last, "\tINFO\tstopped") {
					t.Fatalf("dev's last line is %q, want the stopped line", last)
				}
				return
			}
			var line struct{ Level, Msg string }
			if err := json.Unmarshal([]byte(last), &line); err != nil || line.Level != "info" || line.Msg != "stopped" {
				t.Fatalf("serve's last line is %q (%v), want the stopped line", last, err)
			}
			if strings.Contains(r.stderr.String(), "dev defaults") {
				t.Fatalf("serve with --config warns of dev defaults:\n%s", r.stderr)
			}
		})
	}
}

// TestServeWarnsOnDevDefaults: serve with no configuration file says so on
// stderr and in its log, before anything else can fail.
func TestServeWarnsOnDevDefaults(t *testing.T) {
	t.Setenv(config.EnvConfig, "")
	t.Setenv(config.EnvKafkaBrokers, "127.0.0.1:"+strconv.Itoa(freePort(t)))
	t.Setenv(config.EnvHTTPAddr, "127.0.0.1:0")
	dir := t.TempDir() // no config.yaml, no keys: serve stops at the keys
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb strings.Builder
	code := run(ctx, []string{"--data", dir, "serve"}, &out, &errb)
	if code == exitOK {
		t.Fatalf("serve without keys exited 0:\n%s", errb.String())
	}
	lines := strings.Split(errb.String(), "\n")
	var warn struct{ Level, Msg, Hint string }
	if err := json.Unmarshal([]byte(lines[0]), &warn); err != nil || warn.Level != "warn" || warn.Msg != "no configuration file: running on dev defaults" ||
		!strings.Contains(warn.Hint, dir) || !strings.Contains(warn.Hint, "--config") {
		t.Fatalf("first line %q (%v), want the dev-defaults warning", lines[0], err)
	}
	if len(lines) < 2 || !strings.HasPrefix(lines[1], "certless serve: WARNING: no configuration file: running on dev defaults (data folder "+dir) {
		t.Fatalf("no plain warning on stderr:\n%s", errb.String())
	}
}
