package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/envelope"
	bkafka "github.com/certless/certless/kafka"
	"github.com/certless/certless/keys"
	"github.com/certless/certless/schemas"
	"go.uber.org/zap"
)

// TestRealKafkaExchangeRun: on the real Kafka and PostgreSQL, `certless
// exchange run` builds a day of the sample schedule (Baicheng's hukou
// cancellations) from the records database and publishes its records and
// manifest to the recipient's batches topic; a re-run publishes the same
// bytes; `exchange export` and `verify` pass, and fail naming the record
// file after one byte of it changed, or naming the record when one is gone.
func TestRealKafkaExchangeRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	path := filepath.Join(cfg.DataDir, config.FileName)
	if err := cfg.Write(path); err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, append([]string{"--config", path}, args...)...)
		if code != exitOK {
			t.Fatalf("certless %s: %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	topic := broker.Topics{Prefix: cfg.Kafka.TopicPrefix}.Batches("social-security-baicheng")
	if err := bkafka.EnsureTopics(ctx, kafkaConfig(cfg.Kafka), bkafka.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	tail, err := client.TailTopic(ctx, kafkaConfig(cfg.Kafka), topic)
	if err != nil {
		t.Fatal(err)
	}
	defer tail.Close()
	run := []string{"exchange", "run", "--agreement", "social-security-baicheng/records", "--schedule", "daily-cancellations", "--period", "2026-03-01T12:00:00+08:00"}
	out := cli(run...)
	m := regexp.MustCompile(`batch ([0-9A-Z]{26}): .* sequence (\d+), .*, (\d+) records`).FindStringSubmatch(out)
	if m == nil || m[3] == "0" {
		t.Fatalf("run: %s", out)
	}
	id := m[1]
	read := func() map[string][]byte {
		t.Helper()
		got := map[string][]byte{}
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		defer rcancel()
		for {
			rec, err := tail.Next(rctx)
			if err != nil {
				t.Fatalf("batch on %s: %v", topic, err)
			}
			if rec.Headers["certless-batch"] != id {
				continue
			}
			if rec.Headers["certless-batch-manifest"] == "1" {
				got["manifest"] = rec.Value
				return got
			}
			got[rec.Headers["certless-batch-index"]] = rec.Value
		}
	}
	first := read()
	if len(first) != 2 || first["0"] == nil {
		t.Fatalf("published %d messages", len(first))
	}
	cli(run...)
	again := read()
	for k, v := range first {
		if string(again[k]) != string(v) {
			t.Fatalf("a re-run published other bytes for %s", k)
		}
	}

	// The recipient acknowledges the batch through the running broker; no
	// other agency may, nor with another manifest digest.
	svc := startLoggedService(ctx, t, cfg, serviceOptions{httpAddr: "127.0.0.1:0"}, zap.NewNop())
	ref := schemas.MessageRef{ID: id, Digest: envelope.DigestOf(first["manifest"])}
	ack := func(agency string, ref schemas.MessageRef) *client.Receipt {
		t.Helper()
		k, err := keys.SigningKey(cfg.KeysDir, agency, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := newAgencyClient(ctx, cfg, agency, "")
		if err != nil {
			t.Fatal(err)
		}
		c.Kafka = svc.kafka
		defer c.Close()
		body, _ := json.Marshal(schemas.Acknowledgement{RefType: schemas.TypeBatchManifest, Ref: ref})
		issued := time.Now().UTC().Truncate(time.Second)
		raw, err := envelope.Sign(k, envelope.Payload{Type: schemas.TypeAcknowledgement, ID: newULID(), Agency: agency, IssuedAt: issued,
			ExpiresAt: issued.Add(10 * time.Minute), Purpose: envelope.Purpose{Basis: "pension-eligibility", CaseRef: "BATCH-ACK"}, Body: body})
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Request(ctx, client.Signed{Digest: envelope.DigestOf(raw), Bytes: raw})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := ack("court-changchun", ref); got.Decision != schemas.DecisionRejected || got.Reason != "not_your_receipt" {
		t.Errorf("another agency acknowledges the batch: %s/%s", got.Decision, got.Reason)
	}
	if got := ack("social-security-baicheng", schemas.MessageRef{ID: id, Digest: "sha256:" + strings.Repeat("0", 64)}); got.Decision != schemas.DecisionRejected || got.Reason != "receipt_digest_mismatch" {
		t.Errorf("an acknowledgement with another digest: %s/%s", got.Decision, got.Reason)
	}
	if got := ack("social-security-baicheng", ref); got.Decision != schemas.DecisionAnswered || got.Acknowledged == nil {
		t.Fatalf("the recipient's acknowledgement: %s/%s %s", got.Decision, got.Reason, got.Detail)
	}
	if b, ok, err := svc.batches.ByID(ctx, id); err != nil || !ok || b.AckedAt.IsZero() || b.SentAt.IsZero() {
		t.Fatalf("the stored batch is not acknowledged: %+v %v", b.AckedAt, err)
	}

	dir := filepath.Join(t.TempDir(), "batch")
	cli("exchange", "export", "--batch", id, "--out", dir)
	if out := cli("exchange", "verify", dir, "--sequence", m[2]); !strings.Contains(out, "batch verified") {
		t.Fatalf("verify: %s", out)
	}
	if string(first["manifest"]) != string(mustRead(t, filepath.Join(dir, "manifest.jws"))) {
		t.Fatal("the exported manifest is not the published one")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "records", "*.jws"))
	sort.Strings(files)
	b := mustRead(t, files[0])
	b[len(b)/2] ^= 1
	if err := os.WriteFile(files[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "--config", path, "exchange", "verify", dir)
	if code == exitOK || !strings.Contains(errOut, "record file "+filepath.Base(files[0])) {
		t.Fatalf("verify after one byte changed: exit %d %s", code, errOut)
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "--config", path, "exchange", "verify", dir)
	if code == exitOK || !strings.Contains(errOut, "record 0 of") {
		t.Fatalf("verify with a record gone: exit %d %s", code, errOut)
	}
	code, _, errOut = runCLI(t, "--config", path, "exchange", "verify", dir, "--sequence", "999")
	if code == exitOK || !strings.Contains(errOut, "expected 999") {
		t.Fatalf("verify of an old batch: exit %d %s", code, errOut)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
