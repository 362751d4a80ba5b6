package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certless/certless/internal/testenv"
)

// startupOutput is a bytes.Buffer a running command writes to while the
// test reads it.
type startupOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *startupOutput) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *startupOutput) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// cliRun is a command line running in-process.
type cliRun struct {
	args           []string
	stdout, stderr *startupOutput
	cancel         context.CancelFunc
	// done is closed when the command has returned code.
	done chan struct{}
	code int
}

// startCLI runs the command line in-process until stop (Ctrl-C, then
// fails the test unless it exits 0) or the end of the test; exited
// receives its exit code.
func startCLI(t *testing.T, args ...string) (stdout, stderr *startupOutput, exited <-chan int, stop func()) {
	t.Helper()
	r := startRun(t, args...)
	codes := make(chan int, 1)
	go func() { <-r.done; codes <- r.code }()
	return r.stdout, r.stderr, codes, func() {
		t.Helper()
		r.interrupt(t)
		if r.exited() && r.code != exitOK {
			t.Errorf("certless %s exited %d after Ctrl-C:\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// startRun runs the command line in-process; it is stopped (Ctrl-C) when
// the test ends, if it is still running.
func startRun(t *testing.T, args ...string) *cliRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &cliRun{args: args, stdout: &startupOutput{}, stderr: &startupOutput{}, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(r.done); r.code = run(ctx, args, r.stdout, r.stderr) }()
	t.Cleanup(func() { r.interrupt(t) })
	return r
}

// exited reports whether the command has returned.
func (r *cliRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// interrupt sends Ctrl-C and waits for the command to return.
func (r *cliRun) interrupt(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		t.Errorf("certless %s did not stop within 30s", strings.Join(r.args, " "))
	}
}

// TestDevBannerPastedRequest runs `certless dev --kafka-addr --http-addr`
// on free ports and a fresh data folder, waits for its banner, checks it
// says what runs where, then runs the request command it prints, as pasted,
// and checks it is answered.
func TestDevBannerPastedRequest(t *testing.T) {
	dir := t.TempDir()
	kafkaAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	dev := startRun(t, "--data", dir, "dev", "--kafka-addr", kafkaAddr, "--http-addr", httpAddr)
	stdout, stderr := dev.stdout, dev.stderr

	ctx := context.Background()
	testenv.Eventually(ctx, t, "the dev banner", 90*time.Second, func() error {
		if dev.exited() {
			t.Fatalf("dev exited %d before its banner:\n%s", dev.code, stderr)
		}
		if !strings.Contains(stdout.String(), "Ctrl-C stops it.") {
			return fmt.Errorf("no banner yet; stderr:\n%s", tail([]byte(stderr.String()), 600))
		}
		return nil
	})
	banner := stdout.String()
	t.Logf("banner:\n%s", banner)
	for _, want := range []string{
		"Kafka (embedded)   " + kafkaAddr,
		"HTTP               http://" + httpAddr,
		"/metrics /healthz /readyz", "/.well-known/jwks.json",
		"/audit/", "user auditor, password in " + filepath.Join(dir, devPasswordFile),
		"data folder        " + dir,
		"store              " + filepath.Join(dir, "decisions.db"),
		"records sample",
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q", want)
		}
	}
	// The endpoints it names answer where it says.
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"} {
		testenv.Eventually(ctx, t, p, 30*time.Second, func() error {
			resp, err := http.Get("http://" + httpAddr + p)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", p, resp.Status)
			}
			return nil
		})
	}

	var pasted []string
	for _, line := range strings.Split(banner, "\n") {
		if _, cmd, ok := strings.Cut(line, "certless "); ok && strings.HasPrefix(cmd, "--data ") && strings.Contains(cmd, " request ") {
			pasted = strings.Fields(cmd)
		}
	}
	if len(pasted) == 0 {
		t.Fatalf("no request command (with --data) in the banner:\n%s", banner)
	}
	// The subject is a real one of the dev dataset: the request is
	// answered, through the Kafka address given on the command line.
	code, out, errs := runCLI(t, pasted...)
	if code != exitOK || !strings.Contains(out, "answered") || !strings.Contains(out, "(verified, signed by certless/") {
		t.Fatalf("pasted `certless %s`: exit %d\n%s%s", strings.Join(pasted, " "), code, out, errs)
	}
	cfgFile, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfgFile), kafkaAddr) || !strings.Contains(string(cfgFile), httpAddr) {
		t.Errorf("the flags' addresses are not saved in config.yaml:\n%s", cfgFile)
	}
	dev.interrupt(t)
	if dev.code != exitOK {
		t.Errorf("dev exited %d after Ctrl-C:\n%s", dev.code, tail([]byte(stderr.String()), 1500))
	}
}

// TestDevPortTakenNamesFlag: a port dev needs that is taken fails dev at
// once with the flag that moves it.
func TestDevPortTakenNamesFlag(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().String()
	free := "127.0.0.1:" + strconv.Itoa(freePort(t))
	dir := t.TempDir()
	for _, c := range []struct{ flag, kafka, http string }{
		{"--kafka-addr", busy, free},
		{"--http-addr", free, busy},
	} {
		code, _, errs := runCLI(t, "--data", dir, "dev", "--kafka-addr", c.kafka, "--http-addr", c.http)
		want := busy + " is in use: pick another with " + c.flag
		if code == exitOK || !strings.Contains(errs, want) {
			t.Errorf("dev with %s taken: exit %d, want an error saying %q:\n%s", c.flag, code, want, tail([]byte(errs), 800))
		}
	}
}

// TestServeKafkaUnreachable runs `certless serve` against a closed port:
// /healthz answers at once, /readyz says what it waits for, the log says
// where it connects and that it retries, and it fails within the start-up
// timeout (15s by default, or kafka.startup_timeout) naming the address
// and the cause.
func TestServeKafkaUnreachable(t *testing.T) {
	for _, c := range []struct {
		name     string
		setting  string
		timeout  time.Duration
		deadline time.Duration
	}{
		{"default 15s", "", 15 * time.Second, 25 * time.Second},
		{"startup_timeout 3s", "  startup_timeout: 3s\n", 3 * time.Second, 10 * time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			closed := "127.0.0.1:" + strconv.Itoa(freePort(t)) // nothing listens there
			httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
			cfg := writeServeConfig(t, closed, httpAddr, c.setting, "")
			start := time.Now()
			serve := startRun(t, "--config", cfg, "serve")
			stderr := serve.stderr

			// While it waits for Kafka: alive, not ready, and saying why.
			ctx := context.Background()
			var health, ready string
			testenv.Eventually(ctx, t, "/healthz and /readyz while Kafka is unreachable", 10*time.Second, func() error {
				h, hs, err := httpGet("http://" + httpAddr + "/healthz")
				if err != nil {
					return err
				}
				r, rs, err := httpGet("http://" + httpAddr + "/readyz")
				if err != nil {
					return err
				}
				health, ready = fmt.Sprint(hs, " ", h), fmt.Sprint(rs, " ", r)
				if hs != http.StatusOK || rs != http.StatusServiceUnavailable || !strings.Contains(r, "last_error") {
					return fmt.Errorf("healthz %s, readyz %s", health, ready)
				}
				return nil
			})
			var body struct {
				Ready      bool   `json:"ready"`
				WaitingFor string `json:"waiting_for"`
				LastError  string `json:"last_error"`
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(ready, "503 ")), &body); err != nil {
				t.Fatalf("readyz: %v: %s", err, ready)
			}
			if body.Ready || body.WaitingFor != "Kafka at "+closed || !strings.Contains(body.LastError, "refused") {
				t.Errorf("/readyz while waiting for Kafka: %s", ready)
			}
			if serve.exited() {
				t.Fatalf("serve exited %d while /healthz was checked", serve.code)
			}

			select {
			case <-serve.done:
			case <-time.After(c.deadline):
				t.Fatalf("serve still running after %v:\n%s", c.deadline, tail([]byte(stderr.String()), 1500))
			}
			took := time.Since(start)
			t.Logf("serve gave up after %v with exit %d", took.Round(time.Millisecond), serve.code)
			logs := stderr.String()
			if serve.code == exitOK {
				t.Errorf("serve exited 0")
			}
			// It waits the timeout (less the half second kept to say
			// why) and its error is out by then.
			if took < c.timeout-startupReportBudget || took > c.timeout+time.Second {
				t.Errorf("serve gave up after %v, start-up timeout %v", took, c.timeout)
			}
			last := lastLine(logs)
			for _, want := range []string{"no broker reachable at " + closed + " within " + c.timeout.String(), "connection refused", "is Kafka running"} {
				if !strings.Contains(last, want) {
					t.Errorf("the error lacks %q: %s", want, last)
				}
			}
			for _, want := range []string{`"connecting to Kafka at ` + closed + `"`, `"Kafka not reachable yet; retrying"`, `"attempt":2`} {
				if !strings.Contains(logs, want) {
					t.Errorf("the log lacks %s:\n%s", want, tail([]byte(logs), 1500))
				}
			}
			// The address is free again: nothing of the start-up is left.
			l, err := net.Listen("tcp", httpAddr)
			if err != nil {
				t.Errorf("the HTTP address is still held after serve failed: %v", err)
			} else {
				l.Close()
			}
		})
	}
}

// writeServeConfig writes a serve configuration: Kafka at kafkaAddr, the
// HTTP address, a fresh broker key and SQLite store; kafkaExtra goes in
// the kafka block, extra at the top level.
func writeServeConfig(t *testing.T, kafkaAddr, httpAddr, kafkaExtra, extra string) string {
	t.Helper()
	dir := t.TempDir()
	if code, _, errs := runCLI(t, "keys", "generate", "--agency", "certless", "--dir", filepath.Join(dir, "keys")); code != exitOK {
		t.Fatalf("keys generate: %s", errs)
	}
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`kafka:
  embedded: false
  brokers: [%q]
%sstore:
  dsn: %s
keys_dir: %s
http:
  addr: %s
%s`, kafkaAddr, kafkaExtra, filepath.Join(dir, "decisions.db"), filepath.Join(dir, "keys"), httpAddr, extra)), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestServeStartupBehindLogin: while serve waits for Kafka, its start-up
// endpoints are behind the same TLS and operator login as later; Ctrl-C
// ends the wait at once and frees the address.
func TestServeStartupBehindLogin(t *testing.T) {
	dir := t.TempDir()
	certPEM := writeTLSWebConfig(t, dir, map[string]string{"ops": "ops-password"})
	closed := "127.0.0.1:" + strconv.Itoa(freePort(t))
	httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	cfg := writeServeConfig(t, closed, httpAddr, "  startup_timeout: 2m\n",
		"  web_config_file: "+filepath.Join(dir, "web.yml")+"\n  operators: [ops]\n")
	serve := startRun(t, "--config", cfg, "serve")

	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("bad test certificate")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	status := func(path, user, password string) (int, string, error) {
		req, err := http.NewRequest(http.MethodGet, "https://"+httpAddr+path, nil)
		if err != nil {
			return 0, "", err
		}
		if user != "" {
			req.SetBasicAuth(user, password)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	ctx := context.Background()
	testenv.Eventually(ctx, t, "/healthz over TLS with the operator's login", 10*time.Second, func() error {
		if serve.exited() {
			t.Fatalf("serve exited %d:\n%s", serve.code, serve.stderr)
		}
		code, body, err := status("/healthz", "ops", "ops-password")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %s %v", code, body, err)
		}
		return nil
	})
	for _, c := range []struct {
		path, user, password string
		want                 int
		body                 string
	}{
		{"/healthz", "", "", http.StatusUnauthorized, ""},
		{"/readyz", "ops", "wrong", http.StatusUnauthorized, ""},
		{"/readyz", "ops", "ops-password", http.StatusServiceUnavailable, `"waiting_for":"Kafka at ` + closed + `"`},
		{"/.well-known/jwks.json", "", "", http.StatusServiceUnavailable, "certless is starting"},
	} {
		code, body, err := status(c.path, c.user, c.password)
		if err != nil || code != c.want || !strings.Contains(body, c.body) {
			t.Errorf("%s as %q: %d %q %v, want %d with %q", c.path, c.user, code, body, err, c.want, c.body)
		}
	}
	start := time.Now()
	serve.interrupt(t)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Ctrl-C while waiting for Kafka took %v", took)
	}
	if !strings.Contains(serve.stderr.String(), "waiting for "+closed) {
		t.Errorf("serve after Ctrl-C (exit %d) does not say what it was waiting for:\n%s", serve.code, tail([]byte(serve.stderr.String()), 800))
	}
	if l, err := net.Listen("tcp", httpAddr); err != nil {
		t.Errorf("the HTTP address is still held after Ctrl-C: %v", err)
	} else {
		l.Close()
	}
}

func httpGet(url string) (string, int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}
