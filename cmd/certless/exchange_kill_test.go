package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/certless/certless/broker"
	"github.com/certless/certless/client"
	"github.com/certless/certless/config"
	"github.com/certless/certless/exchange"
)

// TestRealKafkaExchangeKillMidBatch: a broker child process on the real
// Kafka and PostgreSQL is killed hard (SIGKILL, by a fault point) after
// publishing the first record of a batch and before its manifest; the
// restarted broker publishes the same batch — same id, byte-identical
// parts — and the rest, with no gap and no second batch for any period.
func TestRealKafkaExchangeKillMidBatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cfg := realConfig(ctx, t)
	cfg.Exchange.CatchUp = config.Duration(2 * 24 * time.Hour)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "certless.yaml")
	cfg.HTTP.Addr = "127.0.0.1:0"
	if err := cfg.Write(cfgPath); err != nil {
		t.Fatal(err)
	}
	bin := certlessBinary(ctx, t)
	logPath := filepath.Join(dir, "broker.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	start := func(env ...string) *exec.Cmd {
		cmd := exec.Command(bin, "--config", cfgPath, "serve")
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	brokerLog := func() string { b, _ := os.ReadFile(logPath); return tail(b, 3000) }

	proc := start(envCrashAfterRecords + "=1")
	waited := make(chan error, 1)
	go func() { waited <- proc.Wait() }()
	select {
	case err := <-waited:
		ws, ok := proc.ProcessState.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("the broker was to kill itself mid-batch; it exited with %v\n%s", err, brokerLog())
		}
	case <-ctx.Done():
		_ = proc.Process.Kill()
		t.Fatalf("the broker did not reach the fault point\n%s", brokerLog())
	}

	st, err := exchange.Open(ctx, cfg.Store.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const agreement, schedule = "social-security-baicheng/records", "daily-cancellations"
	last, err := st.Last(ctx, agreement, schedule)
	if err != nil || last < 2 {
		t.Fatalf("before the kill the broker stored batches up to %d (%v)", last, err)
	}
	mark, _, _ := st.Watermark(ctx, agreement, schedule)
	before := map[int]exchange.Stored{}
	for seq := last; seq > 0; seq-- {
		b, ok, err := st.Get(ctx, agreement, schedule, seq)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if !b.SentAt.IsZero() {
			t.Fatalf("batch %d counts as sent though the broker died publishing", seq)
		}
		before[seq] = b
	}
	topic := broker.Topics{Prefix: cfg.Kafka.TopicPrefix}.Batches("social-security-baicheng")
	recs, err := client.ReadTopic(ctx, kafkaConfig(cfg.Kafka), topic, 0, 1000)
	if err != nil || len(recs) != 1 || recs[0].Headers["certless-batch-manifest"] == "1" {
		t.Fatalf("before the restart the topic holds %d messages (%v); want the first record only", len(recs), err)
	}
	killed := recs[0].Headers["certless-batch"]

	// Restart without the fault point: it publishes what is stored.
	proc = start()
	defer func() {
		_ = proc.Process.Signal(syscall.SIGTERM)
		_ = proc.Wait()
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		sums, err := st.Summaries(ctx, time.Now(), time.Hour)
		if err == nil && len(sums) == 1 && sums[0].Unsent == 0 && sums[0].LastSent >= last {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("the restarted broker did not publish the stored batches: %+v %v\n%s", sums, err, brokerLog())
		}
	}
	bs, recs := batchesOn(ctx, t, cfg, topic)
	// VerifyStream saw the sequences run on without a gap or a repeat.
	if len(bs) < len(before) || bs[0].Manifest.Sequence != last-len(before)+1 || mark != last {
		t.Fatalf("after the restart %d batches from %d; %d were stored before the kill", len(bs), bs[0].Manifest.Sequence, len(before))
	}
	seen := map[int]bool{}
	for _, b := range bs {
		if seen[b.Manifest.Sequence] {
			t.Fatalf("two batches for period %d", b.Manifest.Sequence)
		}
		seen[b.Manifest.Sequence] = true
		if old, ok := before[b.Manifest.Sequence]; ok && (old.ID != b.ID || !bytes.Equal(old.Manifest, b.ManifestJWS)) {
			t.Fatalf("period %d: batch %s after the restart, %s before", b.Manifest.Sequence, b.ID, old.ID)
		}
	}
	copies := 0
	for _, r := range recs {
		if r.Headers["certless-batch"] == killed && r.Headers["certless-batch-index"] == "0" {
			copies++
		}
	}
	if copies != 2 {
		t.Fatalf("the killed batch's first record is on the topic %d times, want 2 (before and after the kill, verified identical)", copies)
	}
	t.Logf("killed mid-batch %s; after the restart %d batches, sequences %d..%d, all verified", killed, len(bs), bs[0].Manifest.Sequence, bs[len(bs)-1].Manifest.Sequence)
}
