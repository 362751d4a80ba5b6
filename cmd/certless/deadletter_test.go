package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certless/certless/adapters/records"
	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	"github.com/certless/certless/internal/testenv"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"github.com/certless/certless/schemas/residentid"
)

// TestRealKafkaRequestExitCodesAndDeadLetters drives `certless request`,
// `certless deadletter tail` and `certless receipts tail` through the CLI
// against a broker on the real Kafka and PostgreSQL: one exit code per
// decision; a request signed with a key the broker does not know fails
// within 2 s naming unknown_key, and the dead-letter tail shows it without
// its message; an invalid ID number or query type exits 2 with nothing
// produced.
func TestRealKafkaRequestExitCodesAndDeadLetters(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	cfgPath := filepath.Join(cfg.DataDir, config.FileName)
	if err := cfg.Write(cfgPath); err != nil {
		t.Fatal(err)
	}
	svc := startTestService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0"})
	picks := demoSubjects(records.Generate(devSeed, devPersons))

	request := func(cfgPath string, args ...string) (int, string, string) {
		t.Helper()
		return runCLI(t, append([]string{"--config", cfgPath, "request", "--as", "court-changchun", "--timeout", "60s"}, args...)...)
	}
	digestRE := regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	sent := map[string]string{} // request digest → what it was
	for _, c := range []struct {
		what string
		args []string
		code int
	}{
		{"answered", []string{"--query", "criminal_record", "--subject", picks.offender.IDNumber, "--name", picks.offender.Name}, exitOK},
		{"not_found", []string{"--query", "identity", "--subject", picks.unknownID, "--name", "张三"}, exitNotFound},
		{"denied", []string{"--query", "household", "--subject", picks.clean.IDNumber, "--name", picks.clean.Name}, exitDenied},
		// A name over the schema's 64 characters: the broker's signed rejection.
		{"rejected", []string{"--query", "identity", "--subject", picks.clean.IDNumber, "--name", strings.Repeat("王", 65)}, exitRejected},
	} {
		code, out, errOut := request(cfgPath, c.args...)
		if code != c.code {
			t.Fatalf("%s: exit %d, want %d\n%s%s", c.what, code, c.code, out, errOut)
		}
		if !regexp.MustCompile(`(?m)^decision\s+` + c.what + `$`).MatchString(out) {
			t.Errorf("%s: the receipt printed says otherwise:\n%s", c.what, out)
		}
		if c.code != exitOK && !strings.Contains(errOut, "request "+c.what) {
			t.Errorf("%s: stderr does not say so: %q", c.what, errOut)
		}
		d := digestRE.FindString(out)
		if d == "" {
			t.Fatalf("%s: no request digest in\n%s", c.what, out)
		}
		sent[d] = c.what
	}

	// Invalid input: exit 2, nothing sent, the number never repeated.
	bad := picks.offender.IDNumber[:17] + string(otherCheckChar(picks.offender.IDNumber[17]))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--query", "identity", "--subject", bad, "--name", picks.offender.Name}, "check_digit"},
		{[]string{"--query", "horoscope", "--subject", picks.offender.IDNumber, "--name", picks.offender.Name}, "not a query type"},
		{[]string{"--query", "kinship", "--subject", picks.kinA.IDNumber, "--name", picks.kinA.Name}, "--related-subject"},
	} {
		code, out, errOut := request(cfgPath, c.args...)
		if code != exitUsage || !strings.Contains(errOut, c.want) {
			t.Errorf("request %v: exit %d, want %d naming %q\n%s%s", c.args[1], code, exitUsage, c.want, out, errOut)
		}
		if strings.Contains(errOut, bad) || strings.Contains(errOut, picks.offender.IDNumber) {
			t.Errorf("the error repeats the ID number: %q", errOut)
		}
	}

	// A key the running broker has never seen: a keys folder with the
	// broker's public keys and a fresh court key only.
	stranger := t.TempDir()
	jwks, err := keys.ReadJWKS(cfg.KeysDir, cfg.BrokerID)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keys.JWKSPath(stranger, cfg.BrokerID), jwks, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runCLI(t, "keys", "generate", "--agency", "court-changchun", "--dir", stranger); code != exitOK {
		t.Fatalf("keys generate: %d %s%s", code, out, errOut)
	}
	strangerCfg := *cfg
	strangerCfg.KeysDir = stranger
	strangerPath := filepath.Join(t.TempDir(), config.FileName)
	if err := strangerCfg.Write(strangerPath); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, out, errOut := request(strangerPath, "--query", "identity", "--subject", picks.clean.IDNumber, "--name", picks.clean.Name)
	took := time.Since(start)
	t.Logf("a request signed with an unregistered key failed after %v (exit %d): %s", took.Round(time.Millisecond), code, strings.TrimSpace(errOut))
	if code != exitDeadLetter || !strings.Contains(errOut, "unknown_key: is this key registered with the running broker?") {
		t.Fatalf("unregistered key: exit %d, want %d naming unknown_key with the hint\n%s%s", code, exitDeadLetter, out, errOut)
	}
	if took > 2*time.Second {
		t.Errorf("the dead letter took %v to be reported, want under 2s", took)
	}
	deadDigest := digestRE.FindString(out)
	if deadDigest == "" || sent[deadDigest] != "" {
		t.Fatalf("no new request digest in\n%s", out)
	}
	sent[deadDigest] = "unknown_key"
	code, out, _ = request(strangerPath, "--query", "identity", "--subject", picks.clean.IDNumber, "--name", picks.clean.Name, "--json")
	var dlJSON deadLetterLine
	if err := json.Unmarshal([]byte(out), &dlJSON); code != exitDeadLetter || err != nil || dlJSON.Reason != "unknown_key" || dlJSON.Hint == "" || dlJSON.Message != nil {
		t.Fatalf("request --json of a dead-lettered request: exit %d, %v: %s", code, err, out)
	}
	sent[dlJSON.Digest] = "unknown_key"
	strangerKey, err := keys.SigningKey(stranger, "court-changchun", time.Now())
	if err != nil {
		t.Fatal(err)
	}

	// What went on the request topic: exactly the five requests sent.
	onTopic := map[string]bool{}
	kcfg := kafkaConfig(cfg.Kafka)
	for _, p := range mustPartitions(ctx, t, kcfg, svc.topics.Requests("court-changchun")) {
		recs, err := client.ReadTopic(ctx, kcfg, svc.topics.Requests("court-changchun"), p, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			onTopic[envelope.DigestOf(r.Value)] = true
			if bytes.Contains(payloadOf(t, r.Value), []byte(bad)) {
				t.Errorf("the request with the bad check digit was produced (offset %d)", r.Offset)
			}
		}
	}
	if len(onTopic) != len(sent) {
		t.Errorf("the request topic holds %d requests, want the %d sent", len(onTopic), len(sent))
	}
	for d, what := range sent {
		if !onTopic[d] {
			t.Errorf("%s request %s is not on the request topic", what, d)
		}
	}

	// The dead-letter tail: the dead letter, never its message.
	var message []byte
	for _, p := range mustPartitions(ctx, t, kcfg, svc.topics.DeadLetter()) {
		recs, err := client.ReadTopic(ctx, kcfg, svc.topics.DeadLetter(), p, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			var dl broker.DeadLetter
			if json.Unmarshal(r.Value, &dl) == nil && dl.Digest == deadDigest {
				message = dl.Message
			}
		}
	}
	if len(message) == 0 {
		t.Fatal("the dead letter keeps no copy of the message; the test cannot show the tail leaves it out")
	}
	_, payload, _ := strings.Cut(string(message), ".")
	payload, _, _ = strings.Cut(payload, ".")
	code, out, errOut = runCLI(t, "--config", cfgPath, "deadletter", "tail")
	if code != exitOK {
		t.Fatalf("deadletter tail: exit %d\n%s%s", code, out, errOut)
	}
	line := lineWith(out, deadDigest)
	t.Logf("deadletter tail:\n%s", out)
	for _, want := range []string{"unknown_key", "kid=" + strangerKey.KID(), "agency=court-changchun",
		"topic=" + svc.topics.Requests("court-changchun"), "partition=", "offset="} {
		if !strings.Contains(line, want) {
			t.Errorf("deadletter tail line lacks %q: %q", want, line)
		}
	}
	if strings.Contains(out, payload) || strings.Contains(out, picks.clean.IDNumber) {
		t.Errorf("deadletter tail prints the message without --raw:\n%s", out)
	}
	code, out, _ = runCLI(t, "--config", cfgPath, "deadletter", "tail", "--raw")
	if code != exitOK || !strings.Contains(out, string(message)) {
		t.Errorf("deadletter tail --raw: exit %d, lacks the message:\n%s", code, out)
	}
	code, out, _ = runCLI(t, "--config", cfgPath, "deadletter", "tail", "--json")
	var got deadLetterLine
	if err := json.Unmarshal([]byte(lineWith(out, deadDigest)), &got); code != exitOK || err != nil {
		t.Fatalf("deadletter tail --json: exit %d, %v:\n%s", code, err, out)
	}
	if got.Reason != "unknown_key" || got.KID != strangerKey.KID() || got.Message != nil || got.Hint == "" {
		t.Errorf("deadletter tail --json: %+v", got)
	}

	// --follow: the history, then a dead letter produced while it runs.
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	var fout lockedBuffer
	followed := make(chan int, 1)
	go func() {
		followed <- run(fctx, []string{"--config", cfgPath, "deadletter", "tail", "--follow"}, &fout, &fout)
	}()
	testenv.Eventually(ctx, t, "the history in deadletter tail --follow", 30*time.Second, func() error {
		if !strings.Contains(fout.String(), deadDigest) {
			return fmt.Errorf("not yet:\n%s", fout.String())
		}
		return nil
	})
	prod, err := bkafka.NewProducer(kcfg, bkafka.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	junk := []byte("not.a.jws!" + testenv.Random(6))
	if err := prod.Produce(ctx, bkafka.Message{Topic: svc.topics.Requests("court-changchun"), Value: junk}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(ctx, t, "the new dead letter in deadletter tail --follow", 30*time.Second, func() error {
		if l := lineWith(fout.String(), envelope.DigestOf(junk)); !strings.Contains(l, "malformed") {
			return fmt.Errorf("not yet:\n%s", fout.String())
		}
		return nil
	})
	stop()
	if code := <-followed; code != exitOK {
		t.Errorf("deadletter tail --follow: exit %d after the interrupt:\n%s", code, fout.String())
	}
	if n := strings.Count(fout.String(), deadDigest); n != 1 {
		t.Errorf("deadletter tail --follow printed the unknown_key dead letter %d times:\n%s", n, fout.String())
	}

	// The court's receipts: one line each, verified, under both names.
	for _, name := range []string{"receipt", "receipts"} {
		code, out, errOut := runCLI(t, "--config", cfgPath, name, "tail", "--as", "court-changchun")
		if code != exitOK {
			t.Fatalf("%s tail: exit %d\n%s%s", name, code, out, errOut)
		}
		t.Logf("%s tail --as court-changchun:\n%s", name, out)
		for d, what := range sent {
			l := lineWith(out, d)
			switch {
			case what == "unknown_key" && l != "":
				t.Errorf("%s tail: a receipt for the dead-lettered request: %q", name, l)
			case what != "unknown_key" && !strings.Contains(l, what):
				t.Errorf("%s tail: the %s receipt is not listed as such: %q\n%s", name, what, l, out)
			}
		}
	}
	code, out, _ = runCLI(t, "--config", cfgPath, "receipts", "tail", "--as", "court-changchun", "--json")
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var r receiptTailLine
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.RequestDigest == "" {
			t.Errorf("receipts tail --json: %q: %v", l, err)
			continue
		}
		if want := sent[r.RequestDigest]; want != "" && r.Decision != want {
			t.Errorf("receipts tail --json: %s is %s, want %s", r.RequestDigest, r.Decision, want)
		}
		n++
	}
	receipted := 0
	for _, what := range sent {
		if what != "unknown_key" {
			receipted++
		}
	}
	if code != exitOK || n != receipted {
		t.Errorf("receipts tail --json: exit %d, %d receipts, want %d", code, n, receipted)
	}
}

// TestRequestHelpExampleIsValid: every `certless request` example, in the
// command's help and in the README, names a valid ID number of a subject of
// the dev dataset under its name.
func TestRequestHelpExampleIsValid(t *testing.T) {
	byID := map[string]string{}
	for _, p := range records.Generate(devSeed, devPersons).Persons {
		byID[p.IDNumber] = p.Name
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`--subject\s+(\S+)\s+(?:\\\s+)?--name\s+(\S+)`)
	n := 0
	for where, text := range map[string]string{"help": requestExample, "README": string(readme)} {
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			id, name := m[1], m[2]
			if strings.HasPrefix(id, "<") || id == "ID" || id == "$ID" || strings.HasPrefix(id, "\"$") {
				continue // a placeholder
			}
			n++
			if err := residentid.Validate(id); err != nil {
				t.Errorf("%s example --subject %s: %v", where, id, err)
			}
			if byID[id] != name {
				t.Errorf("%s example --subject %s --name %s: the dev dataset has %q", where, id, name, byID[id])
			}
		}
	}
	if !strings.Contains(requestExample, "--subject") || n == 0 {
		t.Fatal("no example found to check")
	}
}

// TestRequestRefusesInvalidInputOffline: without any broker or
// configuration, an invalid ID number or query type is a usage error.
func TestRequestRefusesInvalidInputOffline(t *testing.T) {
	dir := t.TempDir()
	good := records.Generate(devSeed, devPersons).Persons[0]
	for _, args := range [][]string{
		{"--query", "identity", "--subject", good.IDNumber[:17] + string(otherCheckChar(good.IDNumber[17])), "--name", good.Name},
		{"--query", "identity", "--subject", "220102199013071234", "--name", good.Name},
		{"--query", "identity", "--subject", "22010219900307123", "--name", good.Name},
		{"--query", "criminal-record", "--subject", good.IDNumber, "--name", good.Name},
		{"--query", "kinship", "--subject", good.IDNumber, "--name", good.Name, "--related-subject", good.IDNumber[:17] + string(otherCheckChar(good.IDNumber[17])), "--related-name", "某"},
	} {
		code, out, errOut := runCLI(t, append([]string{"--data", dir, "request", "--as", "court-changchun"}, args...)...)
		if code != exitUsage {
			t.Errorf("request %v: exit %d, want %d\n%s%s", args, code, exitUsage, out, errOut)
		}
	}
	// A valid input gets past the check (and fails later, on the empty
	// data folder's missing keys, with 1).
	code, _, errOut := runCLI(t, "--data", dir, "request", "--as", "court-changchun", "--query", "identity", "--subject", good.IDNumber, "--name", good.Name, "--timeout", "1s")
	if code != exitFailure {
		t.Errorf("a valid request on an empty data folder: exit %d, want %d (%s)", code, exitFailure, errOut)
	}
}

// TestDecisionExitCodesDistinct: each decision has its own exit code, none
// of them 1 or 2, and the dead letter another.
func TestDecisionExitCodesDistinct(t *testing.T) {
	seen := map[int]string{exitFailure: "failure", exitUsage: "usage", exitDeadLetter: "dead letter"}
	for _, d := range []string{schemas.DecisionNotFound, schemas.DecisionDenied, schemas.DecisionRejected,
		schemas.DecisionUnavailable, schemas.DecisionInternalError} {
		c := decisionExit(d)
		if prev, ok := seen[c]; ok || c == exitOK {
			t.Errorf("%s exits %d, like %s", d, c, prev)
		}
		seen[c] = d
	}
	if decisionExit(schemas.DecisionAnswered) != exitOK {
		t.Error("answered does not exit 0")
	}
}

func otherCheckChar(c byte) byte {
	if c == '0' {
		return '1'
	}
	return '0'
}

func payloadOf(t *testing.T, jws []byte) []byte {
	t.Helper()
	parts := bytes.Split(jws, []byte("."))
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(string(parts[1]))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustPartitions(ctx context.Context, t *testing.T, kcfg bkafka.Config, topic string) []int {
	t.Helper()
	ps, err := topicPartitions(ctx, kcfg, topic)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// lineWith is the first line of out containing s, or "".
func lineWith(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// lockedBuffer is a bytes.Buffer that a running command writes to while
// the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
