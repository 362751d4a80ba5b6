package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// plainCheck fails t when s carries an escape sequence or a carriage return.
func plainCheck(t *testing.T, what, s string) {
	t.Helper()
	if i := strings.IndexAny(s, "\x1b\r"); i >= 0 {
		t.Errorf("%s carries %q at byte %d:\n%q", what, s[i], i, s[max(0, i-80):min(len(s), i+80)])
	}
}

// openPTY opens a pseudo-terminal: what is written to tty is read from pty.
func openPTY(t *testing.T) (pty, tty *os.File) {
	t.Helper()
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	fd := int(pty.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open tty: %v", err)
	}
	t.Cleanup(func() { pty.Close(); tty.Close() })
	return pty, tty
}

// runWithTTYStderr runs the binary with its standard error on a terminal
// and returns what it wrote there.
func runWithTTYStderr(ctx context.Context, t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	pty, tty := openPTY(t)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.Discard
	cmd.Stderr = tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close() // the child holds it now; EOF (EIO) on pty once it exits
	read := make(chan string, 1)
	go func() { b, _ := io.ReadAll(pty); read <- string(b) }()
	werr := cmd.Wait()
	select {
	case s := <-read:
		if werr != nil {
			t.Fatalf("%v: %v\n%s", args, werr, s)
		}
		return s
	case <-ctx.Done():
		t.Fatalf("%v (%v): terminal output not drained before the deadline", args, werr)
		return ""
	}
}

// TestPipedOutputIsPlain: through pipes, bench, demo and records sample print
// no colour and no carriage-return progress, though TERM asks for colour;
// on a terminal the same commands do colour (and bench draws its progress
// line), unless NO_COLOR is set.
func TestPipedOutputIsPlain(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the terminal half opens /dev/ptmx")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := certlessBinary(ctx, t)
	// A fresh data folder for every run: a second demo in the same folder
	// finds the periodic exchange's batches of the first.
	colourful := []string{"NO_COLOR=", "TERM=xterm-256color"}
	bench := []string{"--data", t.TempDir(), "bench", "--mode", "embedded", "--requests", "300", "--in-flight", "32", "--verify", "5", "--half-load=false", "--ceiling=false"}
	for _, args := range [][]string{
		{"--data", t.TempDir(), "demo"},
		{"records", "sample"},
		bench,
	} {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), colourful...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb // pipes
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
		if out.Len() == 0 {
			t.Fatalf("%v printed nothing", args)
		}
		plainCheck(t, fmt.Sprint(args, " stdout"), out.String())
		plainCheck(t, fmt.Sprint(args, " stderr"), errb.String())
	}
	// The demo's dead letters are WARN lines: coloured on a terminal.
	if s := runWithTTYStderr(ctx, t, bin, colourful, "--data", t.TempDir(), "demo"); !strings.Contains(s, "\x1b[33mWARN\x1b[0m") {
		t.Errorf("demo on a terminal: no coloured WARN level in\n%q", s)
	}
	if s := runWithTTYStderr(ctx, t, bin, []string{"NO_COLOR=1", "TERM=xterm-256color"}, "--data", t.TempDir(), "demo"); !strings.Contains(s, "WARN") || strings.Contains(s, "\x1b[") {
		t.Errorf("demo on a terminal with NO_COLOR: want plain WARN lines, got\n%q", s)
	}
	bench[1] = t.TempDir()
	if s := runWithTTYStderr(ctx, t, bin, colourful, bench...); !strings.Contains(s, "\rpipeline") {
		t.Errorf("bench on a terminal draws no progress line:\n%q", s)
	}
}

// TestOutputJSON: --output json prints one JSON document on stdout for
// records sample, demo, agency list, bench and version; another value is a
// usage error.
func TestOutputJSON(t *testing.T) {
	data := t.TempDir()
	var sample []struct {
		IDNumber   string `json:"id_number"`
		Name, Note string
	}
	cliJSON(t, &sample, "records", "sample", "--n", "2", "--output", "json")
	if len(sample) != 8 || len(sample[0].IDNumber) != 18 || sample[0].Name == "" || sample[0].Note != "no criminal record" {
		t.Fatalf("records sample: %+v", sample)
	}
	var demo struct {
		OK               bool
		Requests, Failed int
		ReceiptsVerified int `json:"receipts_verified"`
		DeadLetters      int `json:"dead_letters"`
		Cases            []struct {
			Agency, Request, Digest, Expected, Got string
			OK                                     bool
		}
		Checkpoint    string
		SourceAnswers map[string]map[string]float64 `json:"source_answers"`
	}
	cliJSON(t, &demo, "--data", data, "demo", "-o", "json")
	if !demo.OK || demo.Failed != 0 || demo.Requests == 0 || len(demo.Cases) != demo.Requests || demo.DeadLetters == 0 || demo.ReceiptsVerified == 0 ||
		!strings.HasPrefix(demo.Checkpoint, "certless.local/") || len(demo.SourceAnswers) == 0 {
		t.Fatalf("demo: %+v", demo)
	}
	digests := 0
	for _, c := range demo.Cases {
		if c.Agency == "" || c.Expected == "" || !c.OK {
			t.Fatalf("demo case %+v", c)
		}
		if strings.HasPrefix(c.Digest, "sha256:") {
			digests++
		}
	}
	if digests < demo.ReceiptsVerified {
		t.Fatalf("%d cases name their request digest, %d receipts verified", digests, demo.ReceiptsVerified)
	}
	var list struct {
		Agencies []struct{ ID, Level, Region, Status string }
		Sources  []struct{ Name, Kind string }
	}
	cliJSON(t, &list, "--data", data, "agency", "list", "--output", "json")
	ids := map[string]bool{}
	for _, a := range list.Agencies {
		ids[a.ID] = a.Status != "" && a.Region != ""
	}
	if !ids["court-changchun"] || !ids["notary-dunhua"] || len(list.Sources) == 0 {
		t.Fatalf("agency list: %+v", list)
	}
	var b struct {
		Mode          string
		Requests      int
		Lost          int
		Decisions     map[string]int
		ThroughputPer float64 `json:"throughput_per_s"`
	}
	code, out, errb := runCLI(t, "--data", t.TempDir(), "bench", "--mode", "embedded", "--requests", "300", "--in-flight", "32", "--verify", "5", "--half-load=false", "--ceiling=false", "--output", "json")
	if code != exitOK || json.Unmarshal([]byte(out), &b) != nil {
		t.Fatalf("bench --output json: exit %d, stdout not one JSON document:\n%s\n%s", code, out, errb)
	}
	if b.Mode != "embedded" || b.Requests != 300 || b.Lost != 0 || b.Decisions["answered"] == 0 || b.ThroughputPer <= 0 || !strings.Contains(errb, "lost 0") {
		t.Fatalf("bench --output json: %+v; the summary on stderr:\n%s", b, errb)
	}
	var v struct {
		Module    string
		Version   string
		GoVersion string `json:"go_version"`
		Platform  string
		Dirty     *bool
	}
	cliJSON(t, &v, "version", "--output", "json")
	if v.Module != "github.com/certless/certless" || v.Version == "" || v.GoVersion != runtime.Version() || v.Platform != runtime.GOOS+"/"+runtime.GOARCH || v.Dirty == nil {
		t.Fatalf("version: %+v", v)
	}
	for _, args := range [][]string{{"version", "-o", "yaml"}, {"records", "sample", "--output", "xml"}, {"bench", "--output", "csv"}} {
		if code, out, errb := runCLI(t, args...); code != exitUsage || out != "" || !strings.Contains(errb, "want text or json") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errb)
		}
	}
}

// cliJSON runs the command in process and decodes its whole stdout into v.
func cliJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	code, out, errb := runCLI(t, args...)
	if code != exitOK {
		t.Fatalf("%v: exit %d\n%s", args, code, errb)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%v: stdout is not JSON: %v\n%s", args, err, out)
	}
	if dec.More() {
		t.Fatalf("%v: more than one JSON document on stdout:\n%s", args, out)
	}
}

// TestVersionNamesTheCommit: a binary built from the checkout reports its
// commit, whether the tree was dirty, and the Go version.
func TestVersionNamesTheCommit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	head, err := exec.CommandContext(ctx, "git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v", err)
	}
	status, err := exec.CommandContext(ctx, "git", "status", "--porcelain").Output() // what go build asks too
	if err != nil {
		t.Fatalf("git status: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "certless")
	if out, err := exec.CommandContext(ctx, "go", "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, bin, "version", "--output", "json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Commit    string
		Dirty     bool
		GoVersion string `json:"go_version"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if v.Commit != strings.TrimSpace(string(head)) || v.Dirty != (len(status) > 0) || v.GoVersion != runtime.Version() {
		t.Fatalf("version %+v, HEAD %s", v, head)
	}
	text, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "commit " + v.Commit
	if v.Dirty {
		want += "+dirty"
	}
	if !strings.Contains(string(text), want) || !strings.Contains(string(text), runtime.Version()) {
		t.Fatalf("version says %q, want %q and %s", text, want, runtime.Version())
	}
}
